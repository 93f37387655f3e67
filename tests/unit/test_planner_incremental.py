"""The incremental planner decides exactly what a full re-plan decides.

A run with a RunIndex and a `changed` set is planned from what changed; without them, from every
task. Random DAGs go through random event sequences (tries ending well or badly, retries coming
due, tries starting, operator clears, time passing); after each batch both forms of the same
snapshot are planned and must give identical decisions. The index is kept up to date exactly as
the engine keeps it: one update per state change.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.planner import plan
from flow.plantypes import DagDef, Decisions, RunView, Snapshot, TaskDef, TIView
from flow.runindex import RunIndex
from flow.states import ACTIVE, RunState, TaskState
from flow.triggerrules import TRIGGER_RULES

T = TaskState
NOW = datetime(2026, 3, 1, tzinfo=UTC)


@st.composite
def dags(draw: st.DrawFn, name: str) -> DagDef:
    n = draw(st.integers(2, 9))
    tasks = {}
    for i in range(n):
        ups = tuple(f"t{j}" for j in range(i) if draw(st.booleans()))
        tasks[f"t{i}"] = TaskDef(
            f"t{i}", upstream=ups,
            trigger_rule=draw(st.sampled_from(TRIGGER_RULES)),
            retries=draw(st.integers(0, 1)), retry_delay=draw(st.sampled_from([0.0, 5.0, 60.0])),
            priority_weight=draw(st.integers(1, 3)),
            kind=draw(st.sampled_from(["bash", "bash", "empty"])),
        )
    down: dict[str, list[str]] = {t: [] for t in tasks}
    for t in tasks.values():
        for u in t.upstream:
            down[u].append(t.task_id)
    tasks = {tid: replace(t, downstream=tuple(down[tid])) for tid, t in tasks.items()}
    return DagDef(name, tasks, max_active_tasks=draw(st.integers(1, 4)),
                  dagrun_timeout=draw(st.sampled_from([None, None, 600.0])))


class World:
    """Runs as the engine holds them: states, an index per run, and what changed since the plan."""

    def __init__(self, defs: dict[str, DagDef], runs: list[tuple[int, str]], parallelism: int) -> None:
        self.defs = defs
        self.parallelism = parallelism
        self.now = NOW
        self.runs: dict[int, dict] = {}
        for key, dag_id in runs:
            tis = {tid: TIView(tid, T.NONE) for tid in defs[dag_id].tasks}
            self.runs[key] = {"dag_id": dag_id, "state": RunState.QUEUED, "start": None, "tis": tis,
                              "index": RunIndex(defs[dag_id], tis), "changed": None}
        self.dirty: set[int] = set(self.runs)

    def set(self, key: int, tid: str, view: TIView) -> None:
        run = self.runs[key]
        old = run["tis"][tid]
        run["tis"][tid] = view
        run["index"].update(tid, old, view)
        if run["changed"] is not None:
            run["changed"].add(tid)
        self.dirty.add(key)

    def snapshot(self, incremental: bool) -> Snapshot:
        views = []
        for key, run in self.runs.items():
            if run["state"].finished:
                continue
            changed = frozenset(run["changed"]) if incremental and run["changed"] is not None else None
            views.append(RunView(key, run["dag_id"], f"r{key}", run["state"], NOW + timedelta(minutes=key), NOW,
                                 run["start"], dict(run["tis"]), None, changed,
                                 run["index"] if incremental else None))
        return Snapshot(self.defs, tuple(views), self.parallelism, dirty=frozenset(self.dirty))

    def apply(self, d: Decisions) -> None:
        planned = set(self.dirty)
        for key in planned:
            self.runs[key]["changed"] = set()
        self.dirty.clear()
        for rc in d.runs:
            run = self.runs[rc.key]
            run["state"] = rc.new
            if rc.new is RunState.RUNNING:
                run["start"] = self.now
            self.dirty.add(rc.key)
        for ch in d.tis:
            view = self.runs[ch.run_key]["tis"][ch.task_id]
            extra = {"next_retry_at": None} if view.state is T.UP_FOR_RETRY else {}
            self.set(ch.run_key, ch.task_id, replace(view, state=ch.new, **extra))
        for s in d.start:
            view = self.runs[s.run_key]["tis"][s.task_id]
            self.set(s.run_key, s.task_id, replace(view, try_number=view.try_number + 1))


def plan_both(world: World) -> Decisions:
    full = plan(world.snapshot(incremental=False), world.now)
    fast = plan(world.snapshot(incremental=True), world.now)
    assert fast == full
    return full


def settle(world: World) -> None:
    for _ in range(50):
        d = plan_both(world)
        world.apply(d)
        if not d.runs:
            return


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_incremental_plans_equal_full_plans(data: st.DataObject) -> None:
    defs = {"a": data.draw(dags("a")), "b": data.draw(dags("b"))}
    runs = [(k, data.draw(st.sampled_from(["a", "b"]))) for k in range(1, data.draw(st.integers(1, 3)) + 1)]
    world = World(defs, runs, parallelism=data.draw(st.integers(1, 6)))
    settle(world)
    for _ in range(data.draw(st.integers(1, 12))):
        for _ in range(data.draw(st.integers(1, 3))):
            event(world, data)
        settle(world)


def event(world: World, data: st.DataObject) -> None:
    live = [(k, tid, v) for k, r in world.runs.items() if not r["state"].finished for tid, v in r["tis"].items()]
    kind = data.draw(st.sampled_from(["end", "end", "start", "clear", "time"]))
    if kind == "time" or not live:
        world.now += timedelta(seconds=data.draw(st.sampled_from([1, 10, 120, 900])))
        return
    if kind == "start":
        queued = [(k, tid, v) for k, tid, v in live if v.state is T.QUEUED]
        if queued:
            k, tid, v = data.draw(st.sampled_from(queued))
            world.set(k, tid, replace(v, state=T.RUNNING))  # QUEUED -> RUNNING: the engine does not replan
        return
    if kind == "end":
        active = [(k, tid, v) for k, tid, v in live if v.state in ACTIVE]
        if active:
            k, tid, v = data.draw(st.sampled_from(active))
            task = world.defs[world.runs[k]["dag_id"]].tasks[tid]
            outcome = data.draw(st.sampled_from([T.SUCCESS, T.FAILED, T.UP_FOR_RETRY]))
            if outcome is T.UP_FOR_RETRY and v.try_number > task.retries:
                outcome = T.FAILED
            retry_at = world.now + timedelta(seconds=task.retry_delay) if outcome is T.UP_FOR_RETRY else None
            world.set(k, tid, replace(v, state=outcome, next_retry_at=retry_at))
        return
    done = [(k, tid, v) for k, tid, v in live if v.state.finished and world.runs[k]["state"] is RunState.RUNNING]
    if done:
        k, tid, v = data.draw(st.sampled_from(done))
        world.set(k, tid, replace(v, state=T.NONE))  # an operator's clear
