"""Task and DAG callbacks run in a worker process after the state they react to is committed."""

from __future__ import annotations

import json

from .conftest import make_engine, run_until_idle, write_dag

CALLBACKS = """
import json, pathlib
from datetime import timedelta
from flow import DAG
from flow.operators import BashOperator

OUT = pathlib.Path({out!r})

def record(kind):
    def cb(context):
        with OUT.open("a") as fh:
            fh.write(json.dumps({{"kind": kind, "task": getattr(context.get("task"), "task_id", None),
                                  "reason": context.get("reason")}}) + "\\n")
    return cb

with DAG("callbacks", schedule=None, on_failure_callback=record("dag_failure"),
         on_success_callback=record("dag_success")):
    ok = BashOperator(task_id="ok", bash_command="true", on_success_callback=record("task_success"))
    bad = BashOperator(task_id="bad", bash_command="exit 4", retries=1, retry_delay=timedelta(0),
                       on_retry_callback=record("task_retry"), on_failure_callback=record("task_failure"))
    ok >> bad
"""


def test_task_and_dag_callbacks_run_with_their_reason(settings, tmp_path):
    out = tmp_path / "callbacks.jsonl"
    write_dag(settings, "callbacks.py", CALLBACKS.format(out=str(out)))
    engine = make_engine(settings)
    run = engine.trigger("callbacks", unpause_run=True)
    run_until_idle(engine)
    assert engine.store.run_by_key(run["key"])["state"] == "failed"
    calls = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = [c["kind"] for c in calls]
    assert sorted(kinds) == ["dag_failure", "task_failure", "task_retry", "task_success"]
    failure = next(c for c in calls if c["kind"] == "task_failure")
    assert failure["task"] == "bad" and "exit status 4" in failure["reason"]
    assert next(c for c in calls if c["kind"] == "dag_failure")["task"] is None
