"""Losing "one flowd per database" while flowd runs: no task runs twice, ever.

Real flowds, a real PostgreSQL, a chain DAG whose tasks append their id to a marker file. The
lock is lost the ways it is lost in production: its PostgreSQL backend terminated, its SQLite
lock file deleted. "Both believe they hold it" is forced by stopping the first flowd (SIGSTOP)
right after the loss, so that it cannot notice before the second one has taken the database;
its runner and tasks keep running, as they would under a stalled flowd.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from flow.daemon.dblock import PG_LOCK_CLASS
from flow.daemon.store import LeaseLost, Store

from .conftest import Flowd, make_flowd
from .test_crash import wait_until
from .test_flowd_process import hello_status

TASKS = 5
CHAIN = """
import pendulum
from flow import DAG
from flow.operators import BashOperator

with DAG("chain", schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    prev = None
    for i in range({TASKS}):
        t = BashOperator(task_id=f"t{i}", do_xcom_push=False, bash_command=f"echo t{i} >> {MARKS}; sleep 0.4")
        if prev is not None:
            prev >> t
        prev = t
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'flow.db'}"
        return
    from ..conftest import drop_pg_schema, fresh_pg_url

    admin = request.getfixturevalue("pg_admin")
    url, schema = fresh_pg_url(admin)
    yield url
    drop_pg_schema(admin, schema)


@pytest.fixture
def pair(tmp_path: Path, db_url: str) -> Iterator[tuple[Flowd, Flowd]]:
    """Two flowds (not started) on one database, each with its own socket, logs and DAG folder."""
    (tmp_path / "b").mkdir()
    a, b = make_flowd(tmp_path), make_flowd(tmp_path / "b")
    a.db_url = b.db_url = db_url
    b.log_folder = a.log_folder  # the same host's flowd, restarted elsewhere: it reads the same logs
    marks = tmp_path / "marks.txt"
    for f in (a, b):
        f.add_dag("chain.py", CHAIN.replace("{TASKS}", str(TASKS)).replace("{MARKS}", str(marks)))
    try:
        yield a, b
    finally:
        for f in (a, b):
            if f.proc is not None and f.proc.poll() is None:
                with_cont(f)
            f.discard()


def with_cont(f: Flowd) -> None:
    assert f.proc is not None
    os.kill(f.proc.pid, signal.SIGCONT)


def marks(f: Flowd) -> list[str]:
    """What the chain's tasks appended (the file sits beside the first flowd's DAG folder)."""
    folder = Path(f.dags_folder).parent
    path = (folder.parent if folder.name == "b" else folder) / "marks.txt"
    return path.read_text().split() if path.exists() else []


def started(f: Flowd, n: int) -> None:
    wait_until(lambda: len(marks(f)) >= n, 60, f"{n} chain tasks to start", f)


def chain_done(store: Store, f: Flowd, timeout: float = 90) -> dict:
    def done():
        runs = store.runs("chain", limit=None)
        return runs[0] if runs and runs[0]["state"] in ("success", "failed") else None
    return wait_until(done, timeout, "the chain to finish", f)


def assert_each_ran_once(f: Flowd, store: Store, tasks: int = TASKS) -> None:
    run = chain_done(store, f)
    got = marks(f)
    assert sorted(got) == sorted(f"t{i}" for i in range(tasks)), f"a task ran twice or not at all: {got}"
    assert run["state"] == "success", {t["task_id"]: t["state"] for t in store.task_instances(run["id"])}
    assert [len(store.tries(run["id"], f"t{i}")) for i in range(tasks)] == [1] * tasks
    assert len(store.runs("chain", limit=None)) == 1


def lose_lock(f: Flowd) -> None:
    """Terminate the lock's PostgreSQL backend, or delete the SQLite lock file."""
    if f.db_url.startswith("sqlite"):
        os.unlink(f.db_url.removeprefix("sqlite:///") + ".flowd-lock")
        return
    engine = sa.create_engine(f.db_url.replace("postgresql://", "postgresql+psycopg://", 1),
                              poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            pids = conn.execute(sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = :k AND objsubid = 2 "
                "AND objid = hashtext(current_schema())::oid AND granted"), {"k": PG_LOCK_CLASS}).scalars().all()
            assert len(pids) == 1, pids
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pids[0]}).scalar()
    finally:
        engine.dispose()


def stop_outside_a_transaction(f: Flowd) -> None:
    """SIGSTOP flowd between two transactions. Stopped inside one it would hold the database's
    write lock (SQLite) or the lease row (PostgreSQL), and the takeover would rightly wait for it."""
    assert f.proc is not None
    for _ in range(200):
        os.kill(f.proc.pid, signal.SIGSTOP)
        if not in_transaction(f):
            return
        os.kill(f.proc.pid, signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError("flowd was inside a transaction at every try")


def in_transaction(f: Flowd) -> bool:
    if f.db_url.startswith("sqlite"):
        probe = sqlite3.connect(f.db_url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    ports = [c.laddr.port for c in psutil.Process(f.proc.pid).net_connections(kind="tcp")]
    engine = sa.create_engine(f.db_url.replace("postgresql://", "postgresql+psycopg://", 1),
                              poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY(:p) AND state <> 'idle'"),
                {"p": ports}).scalar())
    finally:
        engine.dispose()


def stderr_has(f: Flowd, text: str, timeout: float = 20) -> None:
    wait_until(lambda: text in f.stderr(), timeout, repr(text), f)


def test_a_lost_lock_is_taken_back_and_a_second_flowd_started_after_the_loss_is_refused(
        pair: tuple[Flowd, Flowd]):
    a, b = pair
    a.start()
    store = Store.open(a.db_url)
    started(a, 2)
    lose_lock(a)
    stderr_has(a, "took the database lock back")
    res = subprocess.run(b.command(), capture_output=True, text=True, timeout=60, env=b.full_env())
    assert res.returncode == 1, res.stderr
    assert f"is in use by flowd pid {a.proc.pid} on {os.uname().nodename}" in res.stderr, res.stderr
    assert_each_ran_once(a, store)
    assert hello_status(a.socket_path)["pid"] == a.proc.pid
    store.close()


def test_two_flowds_that_both_believe_they_hold_the_lock_never_run_a_task_twice(pair: tuple[Flowd, Flowd]):
    a, b = pair
    a.start()
    store = Store.open(a.db_url)
    started(a, 2)
    stop_outside_a_transaction(a)  # a cannot notice the loss: it still believes it holds the lock
    lose_lock(a)
    b.start()
    # a wakes up with work queued (its runner reported tries ending) and a lock it believes it holds.
    with_cont(a)
    code = a.proc.wait(30)
    assert code == 1, a.stderr()
    last = [line for line in a.stderr().splitlines() if "ERROR" in line]
    assert last, a.stderr()
    assert f"flowd pid {b.proc.pid} on {os.uname().nodename}" in last[0], last
    assert "another flowd" in last[0], last
    assert_each_ran_once(b, store)
    assert hello_status(b.socket_path)["pid"] == b.proc.pid
    store.close()


def test_the_fence_refuses_a_commit_after_another_store_took_the_lease(db_url: str):
    """Store level: the epoch check itself, without processes or timing."""
    with Store.open(db_url) as first, Store.open(db_url) as second:
        assert first.take_lease("h1", 1, "/s1", _now()) + 1 == second.take_lease("h2", 2, "/s2", _now())
        with pytest.raises(LeaseLost, match=r"flowd pid 2 on h2 \(socket /s2\), epoch \d+"):
            with first.begin() as tx:
                tx.set_next_dagrun("nope", None)
        assert first.lost is not None
        with second.begin() as tx:  # the holder commits as before
            tx.add_audit(time=_now(), uid=0, user="t", action="x", dag_id=None, params={})
        assert second.lease()["pid"] == 2


def test_a_takeover_waits_for_a_transaction_in_flight_and_then_fences_it_out(db_url: str):
    """The takeover's epoch increment and the holder's transactions are serialised by the database."""
    with Store.open(db_url) as first, Store.open(db_url) as second:
        first.take_lease("h1", 1, "/s1", _now())
        taken = threading.Event()
        with first.begin() as tx:
            tx.add_audit(time=_now(), uid=0, user="t", action="before", dag_id=None, params={})
            thread = threading.Thread(target=lambda: (second.take_lease("h2", 2, "/s2", _now()), taken.set()))
            thread.start()
            assert not taken.wait(0.5), "the takeover did not wait for the transaction in flight"
        thread.join(20)
        assert taken.is_set()
        with pytest.raises(LeaseLost):
            with first.begin():
                pass
        assert [r["action"] for r in second.audit(limit=10, dag_id=None)] == ["before"]


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_a_queued_try_without_a_log_is_followed_if_its_log_appears_and_handed_over_only_after_the_grace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The recovery half of the fence: a try the fenced flowd committed just before the takeover
    may still be on its way to that flowd's runner; it must be followed, not started again."""
    from flow.daemon import recovery
    from flow.executors.base import TaskResult

    log_file = tmp_path / "try.log"
    spec = object()
    late = recovery.Unstarted(str(log_file), spec)  # type: ignore[arg-type]
    assert late.poll("1:t:1") is None  # no log yet: wait
    log_file.write_text(f"[flow] bash started 2026-12-04T18:00:00+00:00 pid {os.getpid()}\n")
    assert late.poll("1:t:1") is None and late.follow is not None and late.follow.pid == os.getpid()
    Path(recovery.status_path(str(log_file))).write_text(
        '{"ref": "x", "pid": 1, "ok": true, "exit_code": 0}')
    result = late.poll("1:t:1")
    assert isinstance(result, TaskResult) and result.ok and result.ref == "1:t:1"

    never = recovery.Unstarted(str(tmp_path / "never.log"), spec)  # type: ignore[arg-type]
    assert never.poll("1:u:1") is None
    monkeypatch.setattr(recovery, "LOST_GRACE", 0.0)
    assert never.poll("1:u:1") is spec  # nobody started it: hand the same try over


def test_while_the_lock_cannot_be_taken_back_no_task_starts_and_the_chain_resumes_once_it_is(
        tmp_path: Path):
    """The lock file deleted and its path taken by a folder: the lock cannot be taken again."""
    f = make_flowd(tmp_path)
    marks_file = tmp_path / "marks.txt"
    tasks = 8  # long enough that the chain would move on while the lock is lost
    f.add_dag("chain.py", CHAIN.replace("{TASKS}", str(tasks)).replace("{MARKS}", str(marks_file))
              .replace("sleep 0.4", "sleep 0.5"))
    lock = Path(f.db_url.removeprefix("sqlite:///") + ".flowd-lock")
    try:
        f.start()
        store = Store.open(f.db_url)
        started(f, 2)
        lock.unlink()
        lock.mkdir()
        held = wait_until(lambda: (s := hello_status(f.socket_path)["database"])["lock"] != "held" and s, 20,
                          "status to say the lock is lost", f)
        assert held["lock"].startswith("lost the database lock: its lock file") and "Is a directory" in held["lock"]
        time.sleep(0.5)  # a try committed just before the loss may still be starting
        ran = len(marks(f))
        time.sleep(2.5)  # several task lengths: the chain would have moved on had starts not been held
        assert len(marks(f)) == ran, "a task started while the database lock was lost"
        assert f.proc.poll() is None
        lock.rmdir()
        stderr_has(f, "took the database lock back")
        assert_each_ran_once(f, store, tasks)
        store.close()
    finally:
        f.discard()
