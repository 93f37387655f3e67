"""Why a task waits (pure, from the planner's snapshot), and the planner starting nothing under a hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flow.planner import plan
from flow.plantypes import DagDef, RunView, Snapshot, TaskDef, TIView
from flow.states import RunState, TaskState
from flow.waitreasons import WaitReasons

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOLD = "admission control: free memory 3% < min_free_memory 10%"


def dag(dag_id: str = "d", **kw) -> DagDef:
    tasks = [TaskDef("a"), TaskDef("b"), TaskDef("c", upstream=("a", "b")), TaskDef("r")]
    return DagDef(dag_id=dag_id, tasks={t.task_id: t for t in tasks}, **kw)


def run(key: int, states: dict[str, str], *, dag_id: str = "d", state: RunState = RunState.RUNNING) -> RunView:
    tis = {t: TIView(t, TaskState(s), next_retry_at=NOW + timedelta(minutes=5) if s == "up_for_retry" else None)
           for t, s in states.items()}
    return RunView(key, dag_id, f"run{key}", state, NOW, NOW, NOW if state is RunState.RUNNING else None, tis)


def reasons(snapshot: Snapshot, key: int = 1) -> dict[str, str]:
    view = next(r for r in snapshot.runs if r.key == key)
    return WaitReasons(snapshot).for_run(view)


def test_each_waiting_state_gets_its_reason_and_running_tasks_none():
    r = run(1, {"a": "running", "b": "scheduled", "c": "none", "r": "up_for_retry"})
    got = reasons(Snapshot({"d": dag(max_active_tasks=1)}, (r,)))
    assert got == {"b": "DAG's max_active_tasks reached (1)", "c": "upstream pending: a, b",
                   "r": f"waiting to retry (at {(NOW + timedelta(minutes=5)).isoformat()})"}


def test_slots_are_counted_across_dags_and_a_hold_comes_first():
    busy = run(2, {"a": "running", "b": "queued", "c": "none", "r": "success"}, dag_id="other")
    mine = run(1, {"a": "scheduled", "b": "success", "c": "none", "r": "success"})
    dags = {"d": dag(), "other": dag("other")}
    assert reasons(Snapshot(dags, (mine, busy), parallelism=2))["a"] == "no free slot (parallelism 2)"
    assert reasons(Snapshot(dags, (mine, busy), parallelism=2, hold=HOLD))["a"] == HOLD
    free = reasons(Snapshot(dags, (mine, busy), parallelism=8))["a"]
    assert free.startswith("next in line")


def test_queued_runs_say_why_they_have_not_started():
    going = run(1, {"a": "running", "b": "none", "c": "none", "r": "none"})
    waiting = run(2, {"a": "none", "b": "none", "c": "none", "r": "none"}, state=RunState.QUEUED)
    snapshot = Snapshot({"d": dag(max_active_runs=1)}, (going, waiting))
    assert set(reasons(snapshot, 2).values()) == {"DAG's max_active_runs reached (1)"}
    paused = Snapshot({"d": dag()}, (waiting,), paused=frozenset({"d"}))
    assert set(reasons(paused, 2).values()) == {"the DAG is paused"}


def test_scheduled_to_queued_does_not_happen_under_an_admission_hold():
    r = run(1, {"a": "scheduled", "b": "scheduled", "c": "none", "r": "success"})
    held = plan(Snapshot({"d": dag()}, (r,), hold=HOLD), NOW)
    assert held.start == [] and all(ch.new is not TaskState.QUEUED for ch in held.tis)
    free = plan(Snapshot({"d": dag()}, (r,)), NOW)
    assert {s.task_id for s in free.start} == {"a", "b"}
