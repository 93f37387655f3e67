"""One flowd per database: a second one on another socket refuses, naming the first; a crashed
first one (SIGKILL) leaves nothing behind that blocks the next. SQLite and PostgreSQL, real flowds."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Flowd, clean_env, make_flowd
from .test_flowd_process import hello_status


@pytest.fixture
def second(tmp_path: Path) -> Iterator[Flowd]:
    """Another flowd's folders and socket (not started)."""
    (tmp_path / "second").mkdir()
    f = make_flowd(tmp_path / "second")
    try:
        yield f
    finally:
        f.discard()


def refused(f: Flowd) -> str:
    res = subprocess.run(f.command(), capture_output=True, text=True, timeout=60, env=clean_env(f.home))
    assert res.returncode == 1, res.stderr
    assert res.stderr.count("\n") == 1, f"one line, got: {res.stderr!r}"
    return res.stderr


def test_a_second_flowd_on_the_same_sqlite_database_refuses_and_a_killed_one_blocks_nothing(
        flowd: Flowd, second: Flowd):
    second.db_url = flowd.db_url
    db = flowd.db_url.removeprefix("sqlite:///")
    line = refused(second)
    assert line == (f"flowd: the database {db} is in use by flowd pid {flowd.proc.pid} on {os.uname().nodename} "
                    f"(socket {flowd.socket_path}); two flowds on one database would run every task twice: stop "
                    "that one first, or give this one its own --db\n")
    assert not os.path.exists(second.socket_path), "the refused flowd listened on its socket"
    assert hello_status(flowd.socket_path)["pid"] == flowd.proc.pid, "the first flowd carries on"
    flowd.kill9()
    second.start()
    assert hello_status(second.socket_path)["pid"] == second.proc.pid


def test_a_second_flowd_on_the_same_postgresql_schema_refuses_another_schema_is_free(
        tmp_path: Path, pg_url: str, pg_admin, second: Flowd):
    from ..conftest import drop_pg_schema, fresh_pg_url

    first = make_flowd(tmp_path)
    first.db_url = second.db_url = pg_url
    third_dir = tmp_path / "third"
    third_dir.mkdir()
    third = make_flowd(third_dir)
    third.db_url, schema = fresh_pg_url(pg_admin)
    try:
        first.start()
        line = refused(second)
        assert f"is in use by flowd pid {first.proc.pid} on {os.uname().nodename}" in line, line
        assert "two flowds on one database would run every task twice" in line
        third.start()  # another schema of the same database: another flow, not a conflict
        assert hello_status(third.socket_path)["pid"] == third.proc.pid
        first.kill9()
        second.start()
        assert hello_status(second.socket_path)["pid"] == second.proc.pid
    finally:
        for f in (first, third):
            f.discard()
        drop_pg_schema(pg_admin, schema)


def test_an_unlocked_leftover_lock_file_does_not_block(tmp_path: Path):
    """The file stays after a clean stop (only the flock matters): the next flowd starts."""
    f = make_flowd(tmp_path)
    try:
        f.start()
        assert f.stop() == 0
        lock = Path(f.db_url.removeprefix("sqlite:///") + ".flowd-lock")
        assert lock.exists()
        f.start()
        assert f"flowd pid {f.proc.pid}" in lock.read_text()
    finally:
        f.discard()
