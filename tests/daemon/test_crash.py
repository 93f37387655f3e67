"""flowd killed with SIGKILL: no task is killed, lost or repeated, and no run is created twice.

State is read straight from the database, as an operator's second flowd would see it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from flow.daemon.store import Store

from .conftest import Flowd

TWENTY = """
import pendulum
from flow import DAG
from flow.operators import BashOperator

with DAG("crash", schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), max_active_tasks=20):
    for i in range(20):
        BashOperator(task_id=f"t{i:02d}", do_xcom_push=False,
                     bash_command=f"echo start {i} >> {RAN}; echo start {i}; sleep {1 if i % 2 == 0 else 6}; echo end {i}")
"""


def wait_until(predicate, timeout: float, what: str, flowd: Flowd):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; flowd stderr:\n{flowd.stderr()[-3000:]}")
        time.sleep(0.1)


def runs_of(store: Store, dag_id: str) -> list[dict]:
    return store.runs(dag_id, limit=None)


def test_sigkill_while_twenty_tasks_run_loses_and_repeats_nothing(flowd: Flowd, tmp_path: Path):
    ran = tmp_path / "ran.txt"
    flowd.add_dag("crash.py", TWENTY.replace("{RAN}", str(ran)))
    store = Store.open(flowd.db_url)

    def all_running():
        runs = runs_of(store, "crash")
        if not runs:
            return None
        tis = store.task_instances(runs[0]["id"])
        return runs[0] if len(tis) == 20 and all(t["state"] == "running" for t in tis) else None

    run = wait_until(all_running, 30, "20 running tasks", flowd)
    flowd.kill9()
    time.sleep(2.5)  # the 1 s tasks finish while flowd is down; the 6 s ones are still running
    flowd.start()

    def finished():
        row = store.run_by_key(run["id"])
        return row if row["state"] in ("success", "failed") else None

    row = wait_until(finished, 40, "the run to finish after the restart", flowd)
    tis = {t["task_id"]: t for t in store.task_instances(run["id"])}
    assert row["state"] == "success", {t: v["state"] for t, v in tis.items()}
    for i in range(20):
        ti = tis[f"t{i:02d}"]
        assert (ti["state"], ti["exit_code"], ti["try_number"]) == ("success", 0, 1), ti
        tries = store.tries(run["id"], ti["task_id"])
        assert len(tries) == 1
        log = Path(tries[0]["log_path"]).read_text()
        assert f"start {i}\n" in log and f"end {i}\n" in log and "exited with status 0" in log, log
    starts = ran.read_text().split("\n")[:-1]
    assert sorted(starts) == sorted(f"start {i}" for i in range(20)), "a task ran twice or not at all"
    assert len(runs_of(store, "crash")) == 1


def test_sigkill_between_a_schedule_coming_due_and_its_run_being_committed(flowd: Flowd, tmp_path: Path):
    flowd.stop()
    flowd.add_dag("due.py", """
        import pendulum
        from flow import DAG
        from flow.operators import BashOperator
        with DAG("due", schedule="@hourly", start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
            BashOperator(task_id="t", bash_command="echo once")
    """)
    crashing = subprocess.Popen(flowd.command(), env={**flowd.full_env(), "FLOW_FAULT": "after_run_insert"},
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert crashing.wait(30) == -9, "flowd should have died at the fault point"
    finally:
        if crashing.poll() is None:
            crashing.kill()
    store = Store.open(flowd.db_url)
    assert runs_of(store, "due") == [], "a run inserted in the killed transaction must not exist"
    flowd.start()
    run = wait_until(lambda: [r for r in runs_of(store, "due") if r["state"] == "success"], 30,
                     "the scheduled run", flowd)[0]
    time.sleep(1.5)  # let another scheduling pass or two happen
    assert [r["run_id"] for r in runs_of(store, "due")] == [run["run_id"]], "the run was created twice"
