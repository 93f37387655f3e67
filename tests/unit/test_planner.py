"""plan(snapshot, now) and its helpers, table-driven and named after the transitions they check."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from flow.dagindex import branch_skips
from flow.planner import on_try_finished, plan
from flow.plantypes import DagDef, Decisions, RunView, Snapshot, TaskDef, TIView
from flow.states import RunState, TaskState, check_run_transition, check_task_transition

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RUNNING, QUEUED = RunState.RUNNING, RunState.QUEUED


def task(tid: str, *upstream: str, **kw) -> TaskDef:
    return TaskDef(task_id=tid, upstream=upstream, **kw)


def dag(*tasks: TaskDef, dag_id: str = "d", **kw) -> DagDef:
    return DagDef(dag_id=dag_id, tasks={t.task_id: t for t in tasks}, **kw)


def run(key: int, tis: dict[str, str], *, dag_id: str = "d", state: RunState = RUNNING, day: int = 1,
        started: datetime | None = NOW - timedelta(minutes=1), prev: dict[str, str] | None = None,
        retry_at: dict[str, datetime] | None = None) -> RunView:
    logical = datetime(2024, 1, day, tzinfo=UTC)
    views = {t: TIView(t, TaskState(s), next_retry_at=(retry_at or {}).get(t)) for t, s in tis.items()}
    prev_tis = None if prev is None else {t: TaskState(s) for t, s in prev.items()}
    return RunView(key, dag_id, f"run{key}", state, logical, logical, started if state is RUNNING else None,
                   views, prev_tis)


def snap(dags: DagDef | list[DagDef], *runs: RunView, **kw) -> Snapshot:
    dags = [dags] if isinstance(dags, DagDef) else dags
    return Snapshot(dags={d.dag_id: d for d in dags}, runs=runs, **kw)


def planned(snapshot: Snapshot, now: datetime = NOW) -> Decisions:
    """plan(), plus checks that every decision chains from the snapshot through legal transitions."""
    d = plan(snapshot, now)
    states = {(r.key, t): ti.state for r in snapshot.runs for t, ti in r.tis.items()}
    for ch in d.tis:
        assert states[ch.run_key, ch.task_id] == ch.old, ch
        check_task_transition(ch.old, ch.new)
        states[ch.run_key, ch.task_id] = ch.new
    for st in d.start:
        assert states[st.run_key, st.task_id] == TaskState.QUEUED, st
    run_states = {r.key: r.state for r in snapshot.runs}
    for rc in d.runs:
        assert run_states[rc.key] == rc.old, rc
        check_run_transition(rc.old, rc.new)
        run_states[rc.key] = rc.new
    assert d.wake_at is None or d.wake_at > now
    return d


def final(d: Decisions, key: int = 1) -> dict[str, str]:
    return {ch.task_id: ch.new.value for ch in d.tis if ch.run_key == key}


def moves(d: Decisions, key: int = 1) -> list[tuple[str, str, str]]:
    return [(ch.task_id, ch.old.value, ch.new.value) for ch in d.tis if ch.run_key == key]


def run_moves(d: Decisions) -> list[tuple[int, str]]:
    return [(rc.key, rc.new.value) for rc in d.runs]


def started(d: Decisions) -> list[tuple[int, str]]:
    return [(s.run_key, s.task_id) for s in d.start]


# -- trigger rules inside plan --------------------------------------------------------------------

CHAIN = dag(task("a"), task("b", "a"), task("c", "b"), task("d", "c"))


@pytest.mark.parametrize(("a_state", "b_after"), [
    ("success", "queued"),  # test_none_to_scheduled_when_upstream_succeeded (then started)
    ("running", None),  # test_none_stays_none_while_upstream_running
    ("up_for_retry", None),  # test_none_stays_none_while_upstream_waits_for_retry
    ("failed", "upstream_failed"),  # test_none_to_upstream_failed_when_upstream_failed
    ("skipped", "skipped"),  # test_none_to_skipped_when_upstream_skipped
])
def test_none_transition_by_upstream_state(a_state: str, b_after: str | None) -> None:
    d = planned(snap(CHAIN, run(1, {"a": a_state, "b": "none", "c": "none", "d": "none"},
                                retry_at={"a": NOW + timedelta(hours=1)})))
    assert final(d).get("b") == b_after


def test_none_to_scheduled_to_queued_for_root_task() -> None:
    d = planned(snap(CHAIN, run(1, {"a": "none", "b": "none", "c": "none", "d": "none"})))
    assert moves(d) == [("a", "none", "scheduled"), ("a", "scheduled", "queued")]
    assert started(d) == [(1, "a")]


def test_upstream_failed_cascades_down_a_chain_and_fails_the_run_in_one_call() -> None:
    d = planned(snap(CHAIN, run(1, {"a": "failed", "b": "none", "c": "none", "d": "none"})))
    assert final(d) == {"b": "upstream_failed", "c": "upstream_failed", "d": "upstream_failed"}
    assert d.runs[0].new is RunState.FAILED and d.runs[0].reason == "failed leaves: d (upstream_failed)"


BRANCHY = [task("branch", is_branch=True), task("x1", "branch"), task("x2", "x1"), task("y", "branch")]


@pytest.mark.parametrize(("join_rule", "y_state", "expected"), [
    ("all_success", "success", {"x2": "skipped", "join": "skipped"}),
    ("none_failed_min_one_success", "success", {"x2": "skipped", "join": "queued"}),
    ("none_failed_min_one_success", "running", {"x2": "skipped"}),
    ("none_failed_min_one_success", "skipped", {"x2": "skipped", "join": "skipped"}),
    ("one_success", "success", {"x2": "skipped", "join": "queued"}),
    ("none_failed", "failed", {"x2": "skipped", "join": "upstream_failed"}),
])
def test_branch_skip_propagates_to_join(join_rule: str, y_state: str, expected: dict[str, str]) -> None:
    g = dag(*BRANCHY, task("join", "x2", "y", trigger_rule=join_rule))
    skipped = branch_skips(g, "branch", ["y"])
    assert skipped == {"x1"}
    states = {"branch": "success", "x1": "skipped", "x2": "none", "y": y_state, "join": "none"}
    assert final(planned(snap(g, run(1, states)))) == expected


# -- empty tasks ------------------------------------------------------------------------------------


def test_empty_task_none_to_scheduled_to_success_without_start_and_cascades() -> None:
    g = dag(task("start", kind="empty"), task("work", "start"), task("other", "start"))
    d = planned(snap(g, run(1, {"start": "none", "work": "none", "other": "none"})))
    assert moves(d)[:2] == [("start", "none", "scheduled"), ("start", "scheduled", "success")]
    assert final(d) == {"start": "success", "work": "queued", "other": "queued"}
    assert started(d) == [(1, "work"), (1, "other")]


def test_chain_of_empty_tasks_finishes_the_run_in_one_call() -> None:
    g = dag(task("a", kind="empty"), task("b", "a", kind="empty"), task("c", "b", kind="empty"))
    d = planned(snap(g, run(1, {"a": "none", "b": "none", "c": "none"})))
    assert final(d) == {"a": "success", "b": "success", "c": "success"}
    assert run_moves(d) == [(1, "success")] and d.start == []


# -- retries ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("retry_at", "after", "wake"), [
    (NOW - timedelta(seconds=1), "queued", None),  # test_up_for_retry_to_scheduled_when_delay_passed
    (NOW, "queued", None),  # the delay ends exactly now
    (None, "queued", None),  # no recorded delay: due at once
    (NOW + timedelta(seconds=30), None, NOW + timedelta(seconds=30)),  # test_up_for_retry_waits_and_wakes
])
def test_up_for_retry_by_delay(retry_at: datetime | None, after: str | None, wake: datetime | None) -> None:
    d = planned(snap(CHAIN, run(1, {"a": "up_for_retry", "b": "none", "c": "none", "d": "none"},
                                retry_at={"a": retry_at} if retry_at else None)))
    assert final(d).get("a") == after
    assert d.wake_at == wake


@pytest.mark.parametrize(("kw", "try_number", "ok", "retryable", "state", "delay"), [
    ({}, 1, True, True, "success", None),  # test_running_to_success
    ({"retries": 0}, 1, False, True, "failed", None),  # test_running_to_failed_without_retries
    ({"retries": 2}, 1, False, True, "up_for_retry", 300),  # test_running_to_up_for_retry
    ({"retries": 2}, 2, False, True, "up_for_retry", 300),
    ({"retries": 2}, 3, False, True, "failed", None),  # test_running_to_failed_on_last_try
    ({"retries": 2}, 1, False, False, "failed", None),  # test_running_to_failed_when_not_retryable
    ({"retries": 5, "retry_delay": 10, "retry_exponential_backoff": True}, 1, False, True, "up_for_retry", 10),
    ({"retries": 5, "retry_delay": 10, "retry_exponential_backoff": True}, 3, False, True, "up_for_retry", 40),
    ({"retries": 5, "retry_delay": 10, "retry_exponential_backoff": True, "max_retry_delay": 25},
     3, False, True, "up_for_retry", 25),
    ({"retries": 5, "retry_delay": 100, "max_retry_delay": 50}, 1, False, True, "up_for_retry", 50),
    ({"retries": 10_000, "retry_delay": 60, "retry_exponential_backoff": True},
     5000, False, True, "up_for_retry", 365 * 86400),  # no overflow however many tries
])
def test_on_try_finished(kw: dict, try_number: int, ok: bool, retryable: bool, state: str,
                         delay: float | None) -> None:
    got = on_try_finished(task("t", **kw), try_number, ok, NOW, retryable=retryable)
    assert got == (TaskState(state), None if delay is None else NOW + timedelta(seconds=delay))


def test_on_try_finished_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="task 't': try_number must be at least 1, got 0"):
        on_try_finished(task("t"), 0, False, NOW)
    with pytest.raises(ValueError, match="task 't': ended_at is naive"):
        on_try_finished(task("t"), 1, False, NOW.replace(tzinfo=None))


# -- task slots -------------------------------------------------------------------------------------


def roots(n: int, dag_id: str = "d", **kw) -> DagDef:
    return dag(*(task(f"t{i}") for i in range(n)), dag_id=dag_id, **kw)


def test_scheduled_to_queued_limited_by_parallelism_counting_tasks_already_running() -> None:
    other = run(2, {"x": "running"}, dag_id="o", day=2)
    d = planned(snap([roots(5), roots(1, "o")], run(1, {f"t{i}": "none" for i in range(5)}), other,
                     parallelism=3))
    assert started(d) == [(1, "t0"), (1, "t1")]
    assert list(final(d).values()).count("scheduled") == 3


def test_scheduled_to_queued_limited_by_max_active_tasks_per_dag() -> None:
    d = planned(snap([roots(4, max_active_tasks=2), roots(2, "o")],
                     run(1, {f"t{i}": "scheduled" for i in range(4)}),
                     run(2, {"t0": "scheduled", "t1": "scheduled"}, dag_id="o", day=5), parallelism=10))
    assert started(d) == [(1, "t0"), (1, "t1"), (2, "t0"), (2, "t1")]


def test_start_order_priority_then_logical_date_then_topology() -> None:
    g = dag(task("z", priority_weight=1), task("low", priority_weight=1), task("high", priority_weight=9))
    later = run(1, {"z": "scheduled", "low": "scheduled", "high": "scheduled"}, day=3)
    earlier = run(2, {"z": "scheduled", "low": "scheduled", "high": "scheduled"}, day=2)
    d = planned(snap(g, later, earlier, parallelism=5))
    assert started(d) == [(2, "high"), (1, "high"), (2, "z"), (2, "low"), (1, "z")]


def test_paused_dag_running_run_still_starts_tasks_but_queued_run_stays() -> None:
    d = planned(snap(roots(1), run(1, {"t0": "scheduled"}), run(2, {"t0": "none"}, state=QUEUED, day=2),
                     paused=frozenset({"d"})))
    assert started(d) == [(1, "t0")] and d.runs == []


# -- runs -------------------------------------------------------------------------------------------


def test_queued_run_to_running_oldest_first_within_max_active_runs_and_starts_its_roots() -> None:
    g = roots(1, max_active_runs=2)
    d = planned(snap(g, run(1, {"t0": "running"}), run(4, {"t0": "none"}, state=QUEUED, day=4),
                     run(3, {"t0": "none"}, state=QUEUED, day=3), run(5, {"t0": "none"}, state=QUEUED, day=5)))
    assert run_moves(d) == [(3, "running")]
    assert moves(d, 3) == [("t0", "none", "scheduled"), ("t0", "scheduled", "queued")]


def test_run_slot_freed_by_a_run_finishing_in_the_same_call() -> None:
    d = planned(snap(roots(1, max_active_runs=1), run(1, {"t0": "success"}),
                     run(2, {"t0": "none"}, state=QUEUED, day=2)))
    assert run_moves(d) == [(1, "success"), (2, "running")]


@pytest.mark.parametrize(("states", "outcome", "reason"), [
    ({"a": "success", "b": "skipped", "c": "success"}, "success", "all leaves succeeded or were skipped"),
    ({"a": "failed", "b": "success", "c": "success"}, "success", None),  # only leaves decide
    ({"a": "success", "b": "failed", "c": "upstream_failed"}, "failed",
     "failed leaves: b (failed), c (upstream_failed)"),
    ({"a": "success", "b": "failed", "c": "running"}, None, None),  # test_running_run_stays_while_a_task_runs
])
def test_running_run_finishes_from_its_leaves(states: dict, outcome: str | None, reason: str | None) -> None:
    g = dag(task("a"), task("b", "a", trigger_rule="all_done"), task("c", "a", trigger_rule="all_done"))
    d = planned(snap(g, run(1, states)))
    assert run_moves(d) == ([(1, outcome)] if outcome else [])
    if reason:
        assert d.runs[0].reason == reason


# -- dagrun_timeout ---------------------------------------------------------------------------------


def test_running_run_to_failed_on_dagrun_timeout_with_kills_and_skips() -> None:
    g = dag(*(task(t) for t in "abcdef"), dagrun_timeout=600.0)
    states = {"a": "running", "b": "queued", "c": "scheduled", "d": "none", "e": "up_for_retry", "f": "success"}
    d = planned(snap(g, run(1, states, started=NOW - timedelta(seconds=600),
                            retry_at={"e": NOW + timedelta(hours=1)})))
    reason = "dagrun_timeout of 600s exceeded"
    assert [(k.task_id, k.reason) for k in d.kill] == [("a", reason), ("b", reason)]
    assert final(d) == {"c": "skipped", "d": "skipped", "e": "skipped"}
    assert [(rc.new, rc.reason) for rc in d.runs] == [(RunState.FAILED, reason)]
    assert d.start == [] and d.wake_at is None


def test_dagrun_timeout_not_reached_sets_wake_at() -> None:
    g = roots(1, dagrun_timeout=600.0)
    d = planned(snap(g, run(1, {"t0": "running"}, started=NOW - timedelta(seconds=100)),
                     run(2, {"t0": "none"}, state=QUEUED, day=2)))
    assert d.kill == [] and run_moves(d) == [(2, "running")]
    assert d.wake_at == NOW + timedelta(seconds=500)


# -- depends_on_past and deadlock ---------------------------------------------------------------------

PAST = dag(task("a", depends_on_past=True), task("b", "a"))


@pytest.mark.parametrize(("prev", "a_after"), [
    (None, "queued"),  # no previous run
    ({}, "queued"),  # the task did not exist in the previous run
    ({"a": "success"}, "queued"),
    ({"a": "skipped"}, "queued"),
    ({"a": "running"}, None),  # waits for the previous run
    ({"a": "up_for_retry"}, None),
])
def test_none_to_scheduled_with_depends_on_past(prev: dict | None, a_after: str | None) -> None:
    d = planned(snap(PAST, run(1, {"a": "none", "b": "none"}, prev=prev)))
    assert final(d).get("a") == a_after and d.runs == []


@pytest.mark.parametrize("prev_state", ["failed", "upstream_failed"])
def test_running_run_to_failed_on_deadlock_from_depends_on_past(prev_state: str) -> None:
    d = planned(snap(PAST, run(1, {"a": "none", "b": "none"}, prev={"a": prev_state})))
    assert run_moves(d) == [(1, "failed")] and d.tis == []
    assert d.runs[0].reason == (f"deadlock: no task can be scheduled; depends_on_past blocks a (previous run: "
                                f"{prev_state}); stuck: a, b")


def test_no_deadlock_while_another_task_is_in_flight() -> None:
    g = dag(task("a", depends_on_past=True), task("x"))
    assert not planned(snap(g, run(1, {"a": "none", "x": "running"}, prev={"a": "failed"})))


# -- dirty runs -------------------------------------------------------------------------------------


def test_clean_run_gets_no_trigger_rule_decisions_but_its_scheduled_tasks_start() -> None:
    g = dag(task("a"), task("b", "a"), task("s"))
    d = planned(snap(g, run(1, {"a": "success", "b": "none", "s": "scheduled"}), dirty=frozenset()))
    assert moves(d) == [("s", "scheduled", "queued")]


def test_clean_run_whose_tasks_all_finished_is_left_for_when_it_is_dirty() -> None:
    assert not planned(snap(CHAIN, run(1, dict.fromkeys("abcd", "success")), dirty=frozenset({7})))


@pytest.mark.parametrize("retry_at", [{"a": NOW}, None])
def test_clean_run_with_due_retry_is_planned_anyway(retry_at: dict | None) -> None:
    d = planned(snap(CHAIN, run(1, {"a": "up_for_retry", "b": "none", "c": "none", "d": "none"},
                                retry_at=retry_at), dirty=frozenset()))
    assert final(d) == {"a": "queued"}


def test_clean_run_past_dagrun_timeout_fails_anyway() -> None:
    g = roots(1, dagrun_timeout=60.0)
    d = planned(snap(g, run(1, {"t0": "running"}), dirty=frozenset()))
    assert run_moves(d) == [(1, "failed")] and [k.task_id for k in d.kill] == ["t0"]


def test_clean_queued_run_to_running_when_a_run_slot_is_free() -> None:
    d = planned(snap(roots(1, max_active_runs=1), run(2, {"t0": "none"}, state=QUEUED), dirty=frozenset()))
    assert run_moves(d) == [(2, "running")] and started(d) == [(2, "t0")]


def test_wake_at_is_the_earliest_retry_or_timeout_across_all_runs() -> None:
    g = roots(2, dagrun_timeout=3600.0)
    d = planned(snap(g, run(1, {"t0": "up_for_retry", "t1": "running"}, retry_at={"t0": NOW + timedelta(seconds=90)}),
                     run(2, {"t0": "running", "t1": "running"}, day=2, started=NOW - timedelta(seconds=3540)),
                     dirty=frozenset({1})))
    assert not d and d.wake_at == NOW + timedelta(seconds=60)
    assert planned(snap(CHAIN, run(1, {"a": "running"}))).wake_at is None


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("g", "message"), [
    (dag(task("a", trigger_rule="all_sucess")), "dag 'd' task 'a': unknown trigger rule 'all_sucess'"),
    (dag(task("a", "ghost")), "dag 'd' task 'a': refers to 'ghost', which is not a task of the DAG"),
    (dag(task("a", "b"), task("b", "a")), "dag 'd': dependency cycle among tasks a, b"),
    (DagDef("d", {"a": task("b")}), "dag 'd': task stored under 'a' says its task_id is 'b'"),
])
def test_bad_dag_is_named_in_the_error(g: DagDef, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan(snap(g, run(1, {"a": "none"})), NOW)


def test_naive_datetimes_are_rejected_with_where() -> None:
    with pytest.raises(ValueError, match=r"plan\(now\) is naive"):
        plan(snap(CHAIN), NOW.replace(tzinfo=None))
    bad = replace(run(3, {"a": "none"}), start_date=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="run 3 \\(dag 'd', run_id 'run3'\\): start_date is naive"):
        plan(snap(CHAIN, bad), NOW)


def test_run_of_unknown_dag_only_holds_its_slots() -> None:
    ghost = run(9, {"x": "running", "y": "none"}, dag_id="gone")
    d = planned(snap(roots(2), ghost, run(1, {"t0": "scheduled", "t1": "scheduled"}), parallelism=2))
    assert started(d) == [(1, "t0")] and d.runs == []


# -- whole runs, driven like the engine drives the planner ----------------------------------------


def drive(g: DagDef, fail_first: frozenset[str] = frozenset(), parallelism: int = 32) -> tuple[str, int, int]:
    """Plan, commit, then finish one active task per step; on idle, jump the clock to wake_at."""
    now, tis = NOW, {t: TIView(t, TaskState.NONE) for t in g.tasks}
    state, started_at, dirty, calls, peak = QUEUED, None, frozenset({1}), 0, 0
    while not state.finished:
        view = RunView(1, g.dag_id, "r", state, NOW, NOW, started_at, dict(tis))
        d = plan(Snapshot({g.dag_id: g}, (view,), parallelism=parallelism, dirty=dirty), now)
        calls += 1
        for rc in d.runs:
            state, started_at = rc.new, started_at or now
        for ch in d.tis:
            tis[ch.task_id] = replace(tis[ch.task_id], state=ch.new, next_retry_at=None)
        for st in d.start:
            tis[st.task_id] = replace(tis[st.task_id], try_number=tis[st.task_id].try_number + 1)
        active = [t for t, ti in tis.items() if ti.state in (TaskState.QUEUED, TaskState.RUNNING)]
        peak = max(peak, len(active))
        dirty = frozenset({1}) if d else frozenset()
        if active:
            ti = tis[active[0]]
            ok = not (active[0] in fail_first and ti.try_number == 1)
            new, retry_at = on_try_finished(g.tasks[active[0]], ti.try_number, ok, now)
            tis[active[0]] = replace(ti, state=new, next_retry_at=retry_at)
            dirty = frozenset({1})
        elif not d:
            assert d.wake_at is not None, f"stuck without wake_at: {tis}"
            now = d.wake_at
    return state.value, calls, peak


def test_fan_out_of_500_tasks_runs_to_success_within_parallelism() -> None:
    g = dag(task("start", kind="empty"), *(task(f"w{i}", "start") for i in range(500)),
            task("join", *(f"w{i}" for i in range(500))), task("end", "join", kind="empty"), max_active_tasks=64)
    outcome, calls, peak = drive(g)
    assert outcome == "success" and peak == 32
    assert calls < 520


def test_retry_after_delay_runs_to_success_on_timer_wake_with_nothing_dirty() -> None:
    g = dag(task("a", retries=1, retry_delay=30.0), task("b", "a", kind="empty"))
    assert drive(g, fail_first=frozenset({"a"}))[0] == "success"
    assert drive(replace(g, tasks={**g.tasks, "a": task("a", retries=0)}), frozenset({"a"}))[0] == "failed"
