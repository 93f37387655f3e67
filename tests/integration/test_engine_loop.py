"""The engine's loop: folder changes picked up while it runs, restart recovery, run timeouts, PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from .conftest import make_engine, run_until_idle, tis_of, write_dag

SIMPLE = """
from flow import DAG
from flow.operators import BashOperator
with DAG("{dag_id}", schedule=None):
    BashOperator(task_id="t", bash_command="{command}")
"""


def test_new_changed_and_deleted_files_are_noticed_within_two_seconds(settings):
    from flow.daemon.watch import FolderWatcher

    write_dag(settings, "first.py", SIMPLE.format(dag_id="first", command="echo 1"))
    engine = make_engine(settings)
    run = engine.trigger("first", unpause_run=True)
    run_until_idle(engine)
    watcher = FolderWatcher(engine)
    seen: dict[str, float] = {}

    async def scenario() -> None:
        loop_task = asyncio.create_task(engine.run(periodic=watcher.refresh, period=1.0))
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        write_dag(settings, "second.py", SIMPLE.format(dag_id="second", command="echo 2"))
        while "second" not in engine.dags:
            assert time.monotonic() - t0 < 2.0, "a new DAG file was not noticed within 2 s"
            await asyncio.sleep(0.05)
        seen["new"] = time.monotonic() - t0
        t0 = time.monotonic()
        os.remove(Path(settings.dags_folder) / "first.py")
        while "first" not in engine.inactive:
            assert time.monotonic() - t0 < 2.0, "a deleted DAG file was not noticed within 2 s"
            await asyncio.sleep(0.05)
        seen["deleted"] = time.monotonic() - t0
        t0 = time.monotonic()
        write_dag(settings, "second.py", "this is not python(\n")
        while not engine.store.import_errors():
            assert time.monotonic() - t0 < 2.0, "a broken edit was not noticed within 2 s"
            await asyncio.sleep(0.05)
        loop_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop_task

    asyncio.run(scenario())
    assert engine.store.run_by_key(run["key"])["state"] == "success", "a deleted DAG keeps its history"
    assert not engine.store.dag("first")["is_active"]
    assert engine.store.dag("second")["is_active"], "a broken edit keeps the DAG loaded until it is fixed"


def test_a_try_left_running_by_a_stopped_engine_is_settled_by_the_next(settings):
    write_dag(settings, "slow.py", SIMPLE.format(dag_id="slow", command="sleep 1; echo finished late"))
    engine = make_engine(settings)
    run = engine.trigger("slow", unpause_run=True)

    async def start_and_walk_away() -> None:
        loop_task = asyncio.create_task(engine.run())
        while tis_of(engine, run["key"])["t"]["state"] != "running":
            await asyncio.sleep(0.02)
        loop_task.cancel()  # the executor detaches: the runner keeps the try going and records its exit
        with pytest.raises(asyncio.CancelledError):
            await loop_task

    asyncio.run(start_and_walk_away())
    assert tis_of(engine, run["key"])["t"]["state"] == "running"
    successor = make_engine(settings)
    run_until_idle(successor)
    ti = tis_of(successor, run["key"])["t"]
    assert ti["state"] == "success" and ti["try_number"] == 1, "no try is started twice"
    assert "finished late" in open(successor.store.tries(run["key"], "t")[0]["log_path"]).read()


def test_dagrun_timeout_fails_the_run_and_kills_its_tasks(settings):
    write_dag(settings, "long.py", """
        from datetime import timedelta
        from flow import DAG
        from flow.operators import BashOperator
        with DAG("long", schedule=None, dagrun_timeout=timedelta(seconds=1)):
            BashOperator(task_id="sleepy", bash_command="sleep 60", retries=3) >> BashOperator(task_id="next", bash_command="true")
    """)
    settings.kill_grace = 1.0
    engine = make_engine(settings)
    run = engine.trigger("long", unpause_run=True)
    t0 = time.monotonic()
    run_until_idle(engine)
    assert time.monotonic() - t0 < 15
    assert engine.store.run_by_key(run["key"])["state"] == "failed"
    tis = tis_of(engine, run["key"])
    assert tis["sleepy"]["state"] == "failed" and tis["sleepy"]["try_number"] == 1, "a timed-out run is not retried"
    assert tis["next"]["state"] == "skipped"


def test_depends_on_past_waits_for_the_previous_run(settings):
    write_dag(settings, "past.py", """
        import pendulum
        from flow import DAG
        from flow.operators import BashOperator
        with DAG("past", schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
            BashOperator(task_id="t", bash_command="exit {{ 1 if ds == '2026-01-01' else 0 }}", depends_on_past=True)
    """)
    engine = make_engine(settings)
    engine.backfill("past", *(__import__("datetime").datetime(2026, 1, d, tzinfo=__import__("datetime").UTC)
                              for d in (1, 2)))
    run_until_idle(engine)
    runs = {r["logical_date"].day: r for r in engine.store.runs("past")}
    assert runs[1]["state"] == "failed"
    assert runs[2]["state"] == "failed" and "deadlock" in (tis_of(engine, runs[2]["id"])["t"]["error"] or
                                                           "deadlock"), "run 2 cannot start its task"
    assert tis_of(engine, runs[2]["id"])["t"]["try_number"] == 0


@pytest.mark.postgres
def test_the_engine_runs_the_same_on_postgresql(settings, pg_url):
    from .conftest import copy_example

    settings.db_url = pg_url
    copy_example(settings, "example_xcom.py")
    engine = make_engine(settings)
    run = engine.trigger("example_xcom", unpause_run=True)
    run_until_idle(engine)
    assert engine.store.run_by_key(run["key"])["state"] == "success"
    assert engine.store.xcoms(run["key"])["dot"]["return_value"] == 12


class DroppingExecutor:
    """Stands for a flowd that died between committing a try and handing it to its runner."""

    name = "dropping"

    async def start(self, on_started, on_finished):
        pass

    def submit(self, spec):
        pass

    def kill(self, ref, reason):
        pass

    def running(self):
        return 0

    async def stop(self, *, kill_running=False):
        pass


def test_a_try_committed_but_never_handed_over_is_started_once_by_the_next_engine(settings):
    write_dag(settings, "handover.py", SIMPLE.format(dag_id="handover", command="echo ran >> " +
                                                    str(Path(settings.log_folder).parent / "ran.txt")))
    engine = make_engine(settings)
    engine.executor = DroppingExecutor()
    run = engine.trigger("handover", unpause_run=True)
    engine.tick()
    assert tis_of(engine, run["key"])["t"]["state"] == "queued"
    successor = make_engine(settings)
    run_until_idle(successor)
    ti = tis_of(successor, run["key"])["t"]
    assert ti["state"] == "success" and ti["try_number"] == 1
    assert (Path(settings.log_folder).parent / "ran.txt").read_text() == "ran\n"


def test_clearing_a_try_adopted_from_an_earlier_engine_kills_it(settings):
    write_dag(settings, "adopted.py", SIMPLE.format(
        dag_id="adopted", command='if [ {{ ti.try_number }} = 1 ]; then sleep 60; fi; echo try {{ ti.try_number }}'))
    engine = make_engine(settings)
    run = engine.trigger("adopted", unpause_run=True)

    async def start_and_walk_away() -> None:
        loop_task = asyncio.create_task(engine.run())
        while tis_of(engine, run["key"])["t"]["state"] != "running":
            await asyncio.sleep(0.02)
        loop_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop_task

    asyncio.run(start_and_walk_away())
    first_pid = tis_of(engine, run["key"])["t"]["pid"]
    successor = make_engine(settings)
    assert [r["task_id"] for r in successor.clear("adopted", run["run_id"], ["t"])] == ["t"]
    t0 = time.monotonic()
    run_until_idle(successor)
    assert time.monotonic() - t0 < 20, "the adopted try was not killed"
    ti = tis_of(successor, run["key"])["t"]
    assert ti["state"] == "success" and ti["try_number"] == 2
    assert not psutil_alive(first_pid)
    first = successor.store.tries(run["key"], "t")[0]
    assert first["state"] == "failed" and "clear by operator" in (first["error"] or "")


def psutil_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
