"""Fixtures every test folder shares: the real PostgreSQL server.

PostgreSQL tests use the server at FLOW_TEST_PG_URL, one new schema per test (selected through
the connection's search_path), dropped afterwards, so parallel or repeated runs never collide.
If that server is unreachable the PostgreSQL tests fail and say so: a skipped backend would let
a PostgreSQL-only bug through unnoticed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

PG_URL = os.environ.get("FLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine]:
    """An engine on the test server, used only to create and drop schemas."""
    url = sa.make_url(PG_URL).set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    problem = None
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.DBAPIError as exc:
        problem = " ".join(str(exc.orig).split())
    if problem is not None:
        pytest.fail(
            f"PostgreSQL at {url} is unreachable ({problem}); start it or point FLOW_TEST_PG_URL at one. "
            "The store contract must hold on PostgreSQL, so these tests fail rather than skip.",
            pytrace=False,
        )
    yield engine
    engine.dispose()


def fresh_pg_url(admin: sa.Engine) -> tuple[str, str]:
    schema = f"flow_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def drop_pg_schema(admin: sa.Engine, schema: str) -> None:
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_url(pg_admin: sa.Engine) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL schema."""
    url, schema = fresh_pg_url(pg_admin)
    yield url
    drop_pg_schema(pg_admin, schema)
