"""Several writers on one database: SQLite's locking setup, and the duplicate-run race on both backends."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flow.daemon.store import DuplicateRunError, Store

from .helpers import T0, add_dag, add_run


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/flow.db"
    Store.open(url).close()
    return url


def test_every_sqlite_connection_gets_the_pragmas(sqlite_url: str) -> None:
    with Store.open(sqlite_url) as store:
        with store._read_engine.connect() as one, store._read_engine.connect() as two:
            for conn in (one, two):
                pragmas = {
                    name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                    for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")
                }
                expected = {"journal_mode": "wal", "busy_timeout": 10000, "synchronous": 1, "foreign_keys": 1}
                assert pragmas == expected


def test_second_sqlite_writer_waits_instead_of_failing(sqlite_url: str) -> None:
    first, second = Store.open(sqlite_url), Store.open(sqlite_url)
    add_dag(first)
    outcome: dict[str, Any] = {}

    def write() -> None:
        try:
            with second.begin() as tx:
                # create_run reads, then writes: under a deferred BEGIN, that lock upgrade after
                # another writer's commit fails at once ("database is locked"), ignoring busy_timeout.
                outcome["key"] = tx.create_run(
                    dag_id="etl", run_id="r2", run_type="manual", logical_date=T0, data_interval_start=T0,
                    data_interval_end=T0, conf={}, state="queued", queued_at=T0, tasks=[],
                )
                outcome["paused"] = tx.set_paused("etl", True)
        except Exception as exc:  # asserted below
            outcome["error"] = exc

    with first.begin() as tx:
        tx.add_audit(time=T0, uid=None, user=None, action="hold the write lock")
        writer = threading.Thread(target=write)
        writer.start()
        writer.join(timeout=0.5)
        assert writer.is_alive(), "the second writer should be waiting for the lock"
        # A reader is never blocked by the open write transaction (WAL).
        assert first.dag("etl")["is_paused"] is False
    writer.join(timeout=15)
    assert set(outcome) == {"key", "paused"}, outcome
    assert second.dag("etl")["is_paused"] is True
    assert first.run_by_key(outcome["key"])["run_id"] == "r2"
    first.close()
    second.close()


def _wait_for_lock_wait(admin: sa.Engine, deadline: float) -> bool:
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE 'INSERT INTO dag_run%%'"
    )
    while time.monotonic() < deadline:
        with admin.connect() as conn:
            if conn.exec_driver_sql(query).scalar():
                return True
    return False


def test_duplicate_run_race_keeps_the_loser_usable(db_url: str, request: pytest.FixtureRequest) -> None:
    """The loser of a race on (dag_id, run_id) gets DuplicateRunError and can still commit.

    On PostgreSQL the loser passes the existence check and blocks in its INSERT on the unique
    index until the winner commits (the savepoint path); on SQLite it waits in BEGIN IMMEDIATE.
    """
    winner, loser = Store.open(db_url), Store.open(db_url)
    add_dag(winner)
    outcome: dict[str, Any] = {}

    def race() -> None:
        try:
            with loser.begin() as tx:
                try:
                    tx.create_run(dag_id="etl", run_id="r1", run_type="manual", logical_date=T0,
                                  data_interval_start=T0, data_interval_end=T0, conf={}, state="queued",
                                  queued_at=T0, tasks=[{"task_id": "a", "operator": "EmptyOperator"}])
                except DuplicateRunError:
                    outcome["duplicate"] = True
                outcome["audit"] = tx.add_audit(time=T0, uid=None, user=None, action="after race")
        except Exception as exc:  # asserted below
            outcome["error"] = exc

    with winner.begin() as tx:
        key = tx.create_run(dag_id="etl", run_id="r1", run_type="manual", logical_date=T0,
                            data_interval_start=T0, data_interval_end=T0, conf={}, state="queued",
                            queued_at=T0, tasks=[])
        thread = threading.Thread(target=race)
        thread.start()
        if winner.dialect == "postgresql":
            assert _wait_for_lock_wait(request.getfixturevalue("pg_admin"), time.monotonic() + 10)
        else:
            thread.join(timeout=0.5)
            assert thread.is_alive(), "the loser should be waiting for the write lock"
    thread.join(timeout=15)
    assert set(outcome) == {"duplicate", "audit"}, outcome
    assert [a["action"] for a in winner.audit()] == ["after race"]
    assert winner.task_instances(key) == []
    winner.close()
    loser.close()


def test_opening_an_up_to_date_sqlite_db_is_fast_and_skips_alembic(sqlite_url: str) -> None:
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        Store.open(sqlite_url).close()
        timings.append(time.perf_counter() - start)
    print(f"\nStore.open (up to date, SQLite): best {min(timings) * 1000:.1f} ms")
    assert min(timings) < 0.150
    code = (
        "import sys; from flow.daemon.store import Store; "
        f"Store.open({sqlite_url!r}).close(); print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_runs_survive_reopening_with_a_new_store(sqlite_url: str) -> None:
    with Store.open(sqlite_url) as store:
        add_dag(store)
        key = add_run(store)
    with Store.open(sqlite_url) as again:
        assert again.run_by_key(key)["logical_date"] == T0


def test_many_first_opens_of_one_new_sqlite_file_all_succeed(tmp_path) -> None:
    """flowd starting while `flow db upgrade` runs: every opener of a brand-new file gets a store."""
    import threading

    from flow.daemon import models
    from flow.daemon.store import Store

    for round_ in range(10):
        url = f"sqlite:///{tmp_path}/round{round_}/flow.db"
        barrier = threading.Barrier(8)
        outcomes: list = []

        def opener(url: str = url, barrier: threading.Barrier = barrier, outcomes: list = outcomes) -> None:
            barrier.wait(timeout=10)
            try:
                with Store.open(url) as s:
                    outcomes.append(s.revision())
            except Exception as exc:  # collected and asserted below
                outcomes.append(repr(exc))

        threads = [threading.Thread(target=opener) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert outcomes == [models.HEAD_REVISION] * 8, outcomes
