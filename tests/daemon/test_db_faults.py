"""A broken SQLite database under a running flowd: reported, never hidden, nothing lost.

Real flowds. The faults are real too: the file deleted or replaced, another process holding
SQLite's write lock (a stalled database), and a small tmpfs holding the database filled up.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow.daemon.store import Store

from .conftest import Flowd, make_flowd
from .test_crash import wait_until
from .test_flowd_process import hello_status
from .test_lock_loss import CHAIN, TASKS

LATE = """
from flow import DAG
from flow.operators import EmptyOperator

with DAG("late", schedule=None):
    EmptyOperator(task_id="e")
"""


def chain(f: Flowd, marks: Path, tasks: int = TASKS) -> None:
    f.add_dag("chain.py", CHAIN.replace("{TASKS}", str(tasks)).replace("{MARKS}", str(marks)))


def assert_chain_once(f: Flowd, marks: Path, tasks: int = TASKS, timeout: float = 90) -> None:
    with Store.open(f.db_url) as store:
        def done():
            runs = store.runs("chain", limit=None)
            return runs[0] if runs and runs[0]["state"] in ("success", "failed") else None
        run = wait_until(done, timeout, "the chain to finish", f)
        got = marks.read_text().split()
        assert sorted(got) == sorted(f"t{i}" for i in range(tasks)), f"a task ran twice or not at all: {got}"
        assert run["state"] == "success", {t["task_id"]: t["state"] for t in store.task_instances(run["id"])}
        assert [len(store.tries(run["id"], f"t{i}")) for i in range(tasks)] == [1] * tasks


def db_status(f: Flowd) -> dict:
    return hello_status(f.socket_path)["database"]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_file_deleted_or_replaced_under_flowd_stops_it_with_one_clear_line(flowd: Flowd, how: str):
    db = flowd.db_url.removeprefix("sqlite:///")
    if how == "deleted":
        os.unlink(db)
    else:
        other = db + ".new"
        sqlite3.connect(other).close()
        os.replace(other, db)
    assert flowd.proc.wait(20) == 1, flowd.stderr()
    errors = [line for line in flowd.stderr().splitlines() if " ERROR " in line]
    assert errors and f"the database file {db} was {how}" in errors[0], flowd.stderr()[-2000:]


def test_a_stalled_database_leaves_status_answering_and_saying_so_then_nothing_is_lost(flowd: Flowd,
                                                                                       tmp_path: Path):
    marks = tmp_path / "marks.txt"
    chain(flowd, marks)
    wait_until(lambda: marks.exists() and len(marks.read_text().split()) >= 1, 60, "the chain to start", flowd)
    assert db_status(flowd)["problem"] is None
    blocker = sqlite3.connect(flowd.db_url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # every writer now waits: a stalled database, as flowd sees it
    flowd.add_dag("late.py", LATE)  # parsed during the stall: its DAG cannot be recorded yet
    try:
        wait_until(lambda: "cannot record the DAG folder's parse" in flowd.stderr(), 30,
                   "the parse of late.py to fail to be recorded", flowd)
        stalled = wait_until(lambda: (s := db_status(flowd))["problem"] == "database stalled" and s, 30,
                             "status to say the database is stalled", flowd)
        assert "database is locked" in stalled["detail"]
        later = wait_until(lambda: (s := db_status(flowd))["for_seconds"] > stalled["for_seconds"] and s, 30,
                           "the stall to be counted", flowd)
        assert later["failed_writes"] >= stalled["failed_writes"]
        assert "database stalled for" in flowd.cli("status").stdout
        assert flowd.proc.poll() is None
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    wait_until(lambda: db_status(flowd)["problem"] is None, 30, "the stall to be over", flowd)
    assert_chain_once(flowd, marks)
    with Store.open(flowd.db_url) as store:
        wait_until(lambda: store.dag("late"), 30, "the DAG parsed during the stall to be recorded", flowd)


def test_a_stalled_postgresql_table_leaves_status_answering_and_saying_so(tmp_path: Path, pg_url: str):
    """LOCK TABLE from another session: flowd's writes wait 1 s for it (lock_timeout), then retry;
    status, which reads nothing from the database, still answers."""
    import sqlalchemy as sa

    f = make_flowd(tmp_path)
    f.db_url = pg_url
    marks = tmp_path / "marks.txt"
    chain(f, marks)
    blocker = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1),
                               poolclass=sa.pool.NullPool)
    try:
        f.start()
        wait_until(lambda: marks.exists() and len(marks.read_text().split()) >= 1, 60, "the chain to start", f)
        with blocker.connect() as conn:
            conn.exec_driver_sql("LOCK TABLE task_instance IN EXCLUSIVE MODE")  # reads go on, writes wait
            conn.exec_driver_sql("LOCK TABLE import_error IN ACCESS EXCLUSIVE MODE")  # reads wait too
            stalled = wait_until(lambda: (s := db_status(f))["problem"] == "database stalled" and s, 30,
                                 "status to say the database is stalled", f)
            assert "lock timeout" in stalled["detail"]
            assert f.proc.poll() is None
            conn.rollback()
        wait_until(lambda: db_status(f)["problem"] is None, 30, "the stall to be over", f)
        assert_chain_once(f, marks)
    finally:
        blocker.dispose()
        f.discard()


@pytest.fixture
def small_fs() -> Iterator[Path]:
    """A 16 MiB tmpfs of our own (the tests run as root), unmounted afterwards."""
    mount = Path(tempfile.mkdtemp(prefix="flow-full-"))
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "flowfull", str(mount)],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"cannot mount a tmpfs (the tests need root): {res.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        os.rmdir(mount)


def fill(folder: Path) -> Path:
    """Fill the filesystem to the last block."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * (1 << 16))
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_database_disk_holds_tasks_says_database_full_and_resumes_with_nothing_lost(
        tmp_path: Path, small_fs: Path):
    f = make_flowd(tmp_path)
    f.db_url = f"sqlite:///{small_fs / 'flow.db'}"
    marks = tmp_path / "marks.txt"
    tasks = 12
    chain(f, marks, tasks)
    try:
        f.start()
        wait_until(lambda: marks.exists() and len(marks.read_text().split()) >= 1, 60, "the chain to start", f)
        filler = fill(small_fs)
        full = wait_until(lambda: (s := db_status(f))["problem"] == "database full" and s, 60,
                          "status to say the database is full", f)
        assert "full" in full["detail"]
        assert "database full for" in f.cli("status").stdout
        assert f.proc.poll() is None, f.stderr()[-2000:]
        # Restarted while still full: it waits for space (not READY yet, not exited), then starts.
        assert f.stop() == 0
        mark = len(f.stderr())
        starting = threading.Thread(target=f.start)
        starting.start()
        wait_until(lambda: "ERROR flow.dblock: database full" in f.stderr()[mark:], 60,
                   "the restarted flowd to say the database is full", f)
        time.sleep(1)  # it stays up, waiting: it does not exit
        assert f.proc.poll() is None, f.stderr()[mark:]
        filler.unlink()
        starting.join()
        assert hello_status(f.socket_path)["pid"] == f.proc.pid
        wait_until(lambda: db_status(f)["problem"] is None, 30, "the database to be writable again", f)
        assert_chain_once(f, marks, tasks)
    finally:
        f.discard()
