"""The engine end to end: real parse child, real runner, real bash and Python tasks, real SQLite."""

from __future__ import annotations

import os
import time

import psutil

from .conftest import copy_example, make_engine, run_until_idle, tis_of, utc, write_dag


def states(engine, key):
    return {t: row["state"] for t, row in tis_of(engine, key).items()}


def test_example_branch_follows_even_minute(settings):
    copy_example(settings, "example_branch.py")
    engine = make_engine(settings)
    even = engine.trigger("example_branch", logical_date=utc(2026, 1, 1, 9, 4), unpause_run=True)
    odd = engine.trigger("example_branch", logical_date=utc(2026, 1, 1, 9, 5), unpause_run=True)
    run_until_idle(engine)
    assert states(engine, even["key"]) == {"condition": "success", "dummy_task_1": "success",
                                           "dummy_task_2": "skipped"}
    assert states(engine, odd["key"]) == {"condition": "success", "dummy_task_1": "skipped",
                                          "dummy_task_2": "success"}
    assert engine.store.run_by_key(even["key"])["state"] == "success"


def test_example_xcom_multiplies_the_two_sums(settings):
    copy_example(settings, "example_xcom.py")
    engine = make_engine(settings)
    run = engine.trigger("example_xcom", unpause_run=True)
    run_until_idle(engine)
    assert set(states(engine, run["key"]).values()) == {"success"}
    xcoms = engine.store.xcoms(run["key"])
    assert xcoms["dot"]["return_value"] == xcoms["add1"]["return_value"] * xcoms["add2"]["return_value"]


def test_example_pipeline_retries_flaky_step_and_renders_templates(settings):
    copy_example(settings, "example_pipeline.py")
    engine = make_engine(settings)
    run = engine.trigger("example_pipeline", logical_date=utc(2026, 3, 4, 0, 0), unpause_run=True)
    run_until_idle(engine)
    row = engine.store.run_by_key(run["key"])
    assert row["state"] == "success", states(engine, run["key"])
    tis = tis_of(engine, run["key"])
    assert max(t["try_number"] for t in tis.values()) == 2, "the flaky step should have needed a second try"
    logs = "".join(open(t["log_path"]).read() for task in tis for t in engine.store.tries(run["key"], task))
    assert "2026-03-04" in logs, "{{ ds }} should have been rendered into a command"


def test_example_taskflow_passes_values_along(settings):
    copy_example(settings, "example_taskflow.py")
    engine = make_engine(settings)
    run = engine.trigger("example_taskflow", unpause_run=True)
    run_until_idle(engine)
    assert engine.store.run_by_key(run["key"])["state"] == "success", states(engine, run["key"])


FAILING = """
from datetime import timedelta
from flow import DAG
from flow.operators import BashOperator, EmptyOperator

with DAG("failing", schedule=None, default_args={"retry_delay": timedelta(seconds=0)}):
    bad = BashOperator(task_id="bad", bash_command="echo trying; exit 3", retries=1)
    after = BashOperator(task_id="after", bash_command="echo never")
    cleanup = BashOperator(task_id="cleanup", bash_command="echo cleaning", trigger_rule="all_done")
    bad >> after >> cleanup
"""


def test_failed_task_retries_then_fails_and_downstream_is_upstream_failed(settings):
    write_dag(settings, "failing.py", FAILING)
    engine = make_engine(settings)
    run = engine.trigger("failing", unpause_run=True)
    run_until_idle(engine)
    tis = tis_of(engine, run["key"])
    assert tis["bad"]["state"] == "failed" and tis["bad"]["try_number"] == 2
    assert tis["bad"]["exit_code"] == 3 and "exit status 3" in tis["bad"]["error"]
    assert tis["after"]["state"] == "upstream_failed"
    assert tis["cleanup"]["state"] == "success"
    assert engine.store.run_by_key(run["key"])["state"] == "success", "a run's state comes from its leaves"
    tries = engine.store.tries(run["key"], "bad")
    assert [t["try_number"] for t in tries] == [1, 2] and all(t["state"] == "failed" for t in tries)
    assert all("trying" in open(t["log_path"]).read() for t in tries)


TIMEOUT = """
from datetime import timedelta
from flow import DAG
from flow.operators import BashOperator

with DAG("timeout", schedule=None):
    BashOperator(task_id="slow", bash_command="sleep 300 & echo $! > {pidfile}; sleep 300",
                 execution_timeout=timedelta(seconds=1))
"""


def test_execution_timeout_kills_the_whole_process_group(settings, tmp_path):
    pidfile = tmp_path / "child.pid"
    write_dag(settings, "timeout.py", TIMEOUT.format(pidfile=pidfile))
    settings.kill_grace = 1.0
    engine = make_engine(settings)
    run = engine.trigger("timeout", unpause_run=True)
    started = time.monotonic()
    run_until_idle(engine)
    assert time.monotonic() - started < 20
    ti = tis_of(engine, run["key"])["slow"]
    assert ti["state"] == "failed" and "timed out" in ti["error"]
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the task's background child survived the timeout"
        time.sleep(0.05)


OPS = """
from flow import DAG
from flow.operators import BashOperator

with DAG("ops", schedule="@daily", start_date=__import__("pendulum").datetime(2026, 1, 1, tz="UTC")):
    a = BashOperator(task_id="a", bash_command="echo a")
    b = BashOperator(task_id="b", bash_command="echo b; exit ${FAIL_B:-0}", env={"FAIL_B": "{{ dag_run.conf.get('fail_b', 0) }}"})
    c = BashOperator(task_id="c", bash_command="echo c")
    d = BashOperator(task_id="d", bash_command="echo d")
    a >> b >> c
    a >> d
"""


def test_clear_with_downstream_reruns_exactly_those(settings):
    write_dag(settings, "ops.py", OPS)
    engine = make_engine(settings)
    run = engine.trigger("ops", unpause_run=True)
    run_until_idle(engine)
    dry = engine.clear("ops", run["run_id"], ["b"], downstream=True, dry_run=True)
    assert [r["task_id"] for r in dry] == ["b", "c"]
    assert states(engine, run["key"]) == dict.fromkeys("abcd", "success"), "a dry run changes nothing"
    engine.clear("ops", run["run_id"], ["b"], downstream=True, actor={"uid": 0, "user": "tester"})
    run_until_idle(engine)
    tis = tis_of(engine, run["key"])
    assert {t: r["try_number"] for t, r in tis.items()} == {"a": 1, "b": 2, "c": 2, "d": 1}
    assert engine.store.run_by_key(run["key"])["state"] == "success"
    audit = engine.store.audit(dag_id="ops")
    assert audit[0]["action"] == "clear" and audit[0]["user"] == "tester"


def test_retry_failed_and_mark_success(settings):
    write_dag(settings, "ops.py", OPS)
    engine = make_engine(settings)
    run = engine.trigger("ops", conf={"fail_b": 1}, unpause_run=True)
    run_until_idle(engine)
    assert states(engine, run["key"]) == {"a": "success", "b": "failed", "c": "upstream_failed", "d": "success"}
    assert engine.store.run_by_key(run["key"])["state"] == "failed"
    assert [r["task_id"] for r in engine.retry_failed("ops", run["run_id"], dry_run=True)] == ["b", "c"]
    engine.mark("ops", run["run_id"], ["b"], "success")
    run_until_idle(engine)
    assert states(engine, run["key"])["b"] == "success"
    engine.retry_failed("ops", run["run_id"])  # c is upstream_failed: it runs again now that b succeeded
    run_until_idle(engine)
    assert states(engine, run["key"]) == dict.fromkeys("abcd", "success")
    assert engine.store.run_by_key(run["key"])["state"] == "success"


def test_backfill_creates_one_run_per_missing_interval(settings):
    write_dag(settings, "ops.py", OPS)
    engine = make_engine(settings)
    planned = engine.backfill("ops", utc(2026, 1, 1), utc(2026, 1, 3))
    assert [p["logical_date"][:10] for p in planned] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    run_until_idle(engine)
    runs = engine.store.runs("ops")
    assert sorted(r["run_type"] for r in runs) == ["backfill"] * 3
    assert all(r["state"] == "success" for r in runs)
    assert engine.backfill("ops", utc(2026, 1, 1), utc(2026, 1, 3)) == [], "backfill is idempotent"


SCHEDULED = """
import pendulum
from flow import DAG
from flow.operators import BashOperator

with DAG("every5", schedule="*/5 * * * *", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         catchup={catchup}, max_active_runs=3):
    BashOperator(task_id="t", bash_command="echo {{{{ ds }}}} {{{{ logical_date }}}}")
"""


def test_scheduler_without_catchup_creates_only_the_latest_missed_run(settings):
    from .conftest import Clock

    write_dag(settings, "every5.py", SCHEDULED.format(catchup=False))
    clock = Clock(utc(2026, 1, 1, 1, 2))
    engine = make_engine(settings, clock=clock, schedule=True)
    run_until_idle(engine)
    runs = engine.store.runs("every5")
    assert [r["logical_date"] for r in runs] == [utc(2026, 1, 1, 1, 0)]
    assert runs[0]["data_interval_start"] == utc(2026, 1, 1, 0, 55) and runs[0]["state"] == "success"
    clock.now = utc(2026, 1, 1, 1, 5)
    run_until_idle(engine)
    assert [r["logical_date"] for r in engine.store.runs("every5")] == [utc(2026, 1, 1, 1, 5), utc(2026, 1, 1, 1, 0)]
    run_until_idle(engine)
    assert len(engine.store.runs("every5")) == 2, "no run is created twice for the same fire time"


def test_scheduler_with_catchup_creates_every_missed_run(settings):
    from .conftest import Clock

    write_dag(settings, "every5.py", SCHEDULED.format(catchup=True))
    clock = Clock(utc(2026, 1, 1, 0, 31))
    engine = make_engine(settings, clock=clock, schedule=True)
    run_until_idle(engine)
    dates = sorted(r["logical_date"] for r in engine.store.runs("every5", limit=100))
    assert dates == [utc(2026, 1, 1, 0, m) for m in range(0, 31, 5)]


def test_a_broken_dag_file_is_an_import_error_and_harms_no_other_dag(settings):
    copy_example(settings, "example_xcom.py")
    write_dag(settings, "broken.py", "from flow import DAG\nwith DAG('broken', schedule='not a cron'):\n    pass\n")
    write_dag(settings, "syntax.py", "def oops(:\n")
    engine = make_engine(settings)
    errors = {os.path.basename(e["filename"]): e["message"] for e in engine.store.import_errors()}
    assert set(errors) == {"broken.py", "syntax.py"}
    assert "not a cron" in errors["broken.py"] and "syntax.py:1" in errors["syntax.py"]
    run = engine.trigger("example_xcom", unpause_run=True)
    run_until_idle(engine)
    assert engine.store.run_by_key(run["key"])["state"] == "success"


def test_a_large_fire_is_created_in_slices_and_each_dag_gets_its_run_once(settings, monkeypatch):
    from flow.daemon import engine as engine_module

    from .conftest import Clock

    source = "\n".join(
        f'with DAG("fire{i:03d}", schedule="*/5 * * * *", start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):\n'
        f'    EmptyOperator(task_id="e")' for i in range(120))
    write_dag(settings, "many.py", f"import pendulum\nfrom flow import DAG\nfrom flow.operators import EmptyOperator\n{source}\n")
    clock = Clock(utc(2026, 1, 1, 1, 0, 1))
    queued: list[str] = []
    engine = make_engine(settings, clock=clock, schedule=True,
                         listener=lambda kind, p: queued.append(p["dag_id"]) if kind == "run" and p["state"] == "queued" else None)
    monkeypatch.setattr(engine_module, "FIRE_BUDGET", 0.0)  # one DAG per iteration
    created = []
    for _ in range(200):
        before = len(queued)
        wake = engine.tick()
        created.append(len(queued) - before)
        if wake is None or wake > clock.now:
            break
    assert max(created) == 1 and sum(created) == 120, created  # one per iteration, then nothing is due
    assert sorted(len(engine.store.runs(f"fire{i:03d}")) for i in range(120)) == [1] * 120
