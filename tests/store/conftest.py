"""Fixtures that give every store test a fresh database on each backend.

PostgreSQL tests use the server at FLOW_TEST_PG_URL, one new schema per test (selected through
the connection's search_path), dropped afterwards, so parallel or repeated runs never collide.
If that server is unreachable the PostgreSQL tests fail and say so: a skipped backend would let
a PostgreSQL-only bug through unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flow.daemon.store import Store

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """The URL of a fresh, empty database (no tables yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state/flow.db"
        return
    yield request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    yield s
    s.close()
