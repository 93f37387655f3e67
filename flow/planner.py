"""The scheduler's brain as a pure function: ``plan(snapshot, now) -> Decisions``.

Nothing here reads a clock, a database or a socket, so every scheduling rule can be tested with a
table of snapshots, and the engine is free to commit the decisions however it likes. The engine
calls :func:`plan` after every change, so per-call work stays linear in the unfinished task
instances: graph indices are built once per :class:`DagDef` object and cached.

``snapshot.dirty`` limits *state-driven* work (trigger rules, run completion, deadlock checks) to
runs that changed. Decisions driven by time or by freed slots are made for every run, because
nothing marks a run dirty when a retry delay passes, a dagrun_timeout expires or another run
frees a run slot: due retries and expired timeouts are handled in any RUNNING run (which is then
planned in full), QUEUED runs are promoted whenever their DAG has a free run slot, and SCHEDULED
tasks of every RUNNING run compete for task slots.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from flow.dagindex import DagIndex, dag_index
from flow.plantypes import DagDef, Decisions, Kill, RunChange, RunView, Snapshot, Start, TaskDef, TIChange
from flow.states import ACTIVE, RunState, TaskState
from flow.triggerrules import SKIP, UPSTREAM_FAILED, WAIT, decide, describe_counts
from flow.triggerrules import evaluate_trigger_rule as evaluate_trigger_rule  # part of the planner API

T = TaskState
_OK_PAST = frozenset({T.SUCCESS, T.SKIPPED})
_IN_PROGRESS = frozenset({T.SCHEDULED, T.QUEUED, T.RUNNING, T.UP_FOR_RETRY})
_SKIP_ON_TIMEOUT = frozenset({T.NONE, T.SCHEDULED, T.UP_FOR_RETRY})
_MAX_RETRY_DELAY = 365 * 86400.0
"""Ceiling for exponential backoff without max_retry_delay, so a datetime never overflows."""
_NAMES_IN_REASON = 10


# -- helpers the engine calls when a try ends, and for clear -------------------------------------


def retry_delay_seconds(task: TaskDef, try_number: int) -> float:
    """Delay before the retry that follows try ``try_number`` (1-based)."""
    delay = float(task.retry_delay)
    if task.retry_exponential_backoff:
        delay *= 2.0 ** min(try_number - 1, 64)
    if task.max_retry_delay is not None:
        delay = min(delay, float(task.max_retry_delay))
    return max(0.0, min(delay, _MAX_RETRY_DELAY))


def on_try_finished(
    task: TaskDef, try_number: int, ok: bool, ended_at: datetime, *, retryable: bool = True
) -> tuple[TaskState, datetime | None]:
    """The state a task takes when try ``try_number`` ends, and when it may be retried."""
    if try_number < 1:
        raise ValueError(f"task {task.task_id!r}: try_number must be at least 1, got {try_number}")
    _require_aware(ended_at, f"task {task.task_id!r}: ended_at")
    if ok:
        return T.SUCCESS, None  # RUNNING -> SUCCESS
    if retryable and try_number < task.retries + 1:
        # RUNNING -> UP_FOR_RETRY
        return T.UP_FOR_RETRY, ended_at + timedelta(seconds=retry_delay_seconds(task, try_number))
    return T.FAILED, None  # RUNNING -> FAILED


def _require_aware(value: datetime | None, what: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{what} is naive ({value.isoformat()}); the planner needs timezone-aware datetimes")


def _names(ids: Iterable[str]) -> str:
    ids = list(ids)
    shown = ", ".join(ids[:_NAMES_IN_REASON])
    return shown + (f" and {len(ids) - _NAMES_IN_REASON} more" if len(ids) > _NAMES_IN_REASON else "")


# -- plan ---------------------------------------------------------------------------------------


def plan(snapshot: Snapshot, now: datetime) -> Decisions:
    """Everything the scheduler should do right now; see the module docstring for ``dirty``."""
    _require_aware(now, "plan(now)")
    return _Pass(snapshot, now).decide()


class _Pass:
    """One call of :func:`plan`: slot counters and the in-call states that make cascades visible."""

    def __init__(self, snapshot: Snapshot, now: datetime) -> None:
        self.snap = snapshot
        self.now = now
        self.out = Decisions()
        self.active = 0
        self.active_by_dag: dict[str, int] = defaultdict(int)
        self.running_runs: dict[str, int] = defaultdict(int)
        self.states: dict[int, dict[str, TaskState]] = {}
        self.live: list[RunView] = []  # RUNNING after this call, in snapshot order then promotions
        for run in snapshot.runs:
            where = f"run {run.key} (dag {run.dag_id!r}, run_id {run.run_id!r})"
            _require_aware(run.logical_date, f"{where}: logical_date")
            _require_aware(run.start_date, f"{where}: start_date")
            for ti in run.tis.values():
                if ti.state in ACTIVE:
                    self.active += 1
                    self.active_by_dag[run.dag_id] += 1
            if run.state is RunState.RUNNING:
                self.running_runs[run.dag_id] += 1

    def decide(self) -> Decisions:
        for run in self.snap.runs:
            dag = self.snap.dags.get(run.dag_id)
            if run.state is not RunState.RUNNING or dag is None:
                continue
            if self._needs_plan(run, dag):
                self._plan_run(run, dag, run.start_date)
            else:
                self.live.append(run)
        self._promote_queued_runs()
        self._start_tasks()
        return self.out

    def _wake(self, when: datetime) -> None:
        if when > self.now and (self.out.wake_at is None or when < self.out.wake_at):
            self.out.wake_at = when

    def _ti(self, run: RunView, task_id: str, old: TaskState, new: TaskState, reason: str = "") -> None:
        self.out.tis.append(TIChange(run.key, task_id, old, new, reason))
        self.states[run.key][task_id] = new

    def _finish(self, run: RunView, new: RunState, reason: str) -> None:
        self.out.runs.append(RunChange(run.key, RunState.RUNNING, new, reason))
        self.running_runs[run.dag_id] -= 1

    def _needs_plan(self, run: RunView, dag: DagDef) -> bool:
        """Dirty, or something time-driven is due; otherwise only note when it will be due."""
        retries = [ti.next_retry_at for ti in run.tis.values() if ti.state is T.UP_FOR_RETRY]
        deadline = _deadline(dag, run.start_date)
        if (
            (self.snap.dirty is None or run.key in self.snap.dirty)
            or any(when is None or when <= self.now for when in retries)
            or (deadline is not None and deadline <= self.now)
        ):
            return True
        for when in [*retries, deadline]:
            if when is not None:
                self._wake(when)
        return False

    def _promote_queued_runs(self) -> None:
        queued: dict[str, list[RunView]] = defaultdict(list)
        for run in self.snap.runs:
            if run.state is RunState.QUEUED and run.dag_id in self.snap.dags:
                if run.dag_id not in self.snap.paused:
                    queued[run.dag_id].append(run)
        for dag_id, runs in queued.items():
            dag = self.snap.dags[dag_id]
            runs.sort(key=lambda r: (r.logical_date, r.queued_at, r.key))
            for run in runs:
                if self.running_runs[dag_id] >= dag.max_active_runs:
                    break
                # QUEUED -> RUNNING; the engine records start_date = now.
                self.out.runs.append(RunChange(run.key, RunState.QUEUED, RunState.RUNNING))
                self.running_runs[dag_id] += 1
                self._plan_run(run, dag, self.now)

    def _plan_run(self, run: RunView, dag: DagDef, started: datetime | None) -> None:
        """Trigger rules in topological order (so cascades resolve in one call), then the run's fate."""
        index = dag_index(dag)
        states = {tid: ti.state for tid, ti in run.tis.items()}
        self.states[run.key] = states
        deadline = _deadline(dag, started)
        if deadline is not None:
            if deadline <= self.now:
                self._time_out(run, dag, index)
                return
            self._wake(deadline)
        blocked: dict[str, TaskState] = {}
        for tid in index.order:
            state = states.get(tid)
            if state is None:
                continue
            task = dag.tasks[tid]
            if state is T.NONE:
                self._evaluate(run, task, index, states, blocked)
            elif state is T.UP_FOR_RETRY:
                retry_at = run.tis[tid].next_retry_at
                if retry_at is None or retry_at <= self.now:
                    # UP_FOR_RETRY -> SCHEDULED
                    self._ti(run, tid, T.UP_FOR_RETRY, T.SCHEDULED, "retry delay passed")
                else:
                    self._wake(retry_at)
            if task.kind == "empty" and states[tid] is T.SCHEDULED:
                self._ti(run, tid, T.SCHEDULED, T.SUCCESS, "EmptyOperator")  # SCHEDULED -> SUCCESS
        if self._settle(run, index, states, blocked):
            return
        self.live.append(run)

    def _evaluate(
        self, run: RunView, task: TaskDef, index: DagIndex, states: dict[str, TaskState],
        blocked: dict[str, TaskState],
    ) -> None:
        tid = task.task_id
        counts: dict[TaskState, int] = {}
        for parent in index.parents[tid]:
            state = states.get(parent)
            if state is not None:
                counts[state] = counts.get(state, 0) + 1
        verdict = decide(task.trigger_rule, counts)
        if verdict == WAIT:
            return
        why = f"{task.trigger_rule}: upstream {describe_counts(counts)}" if counts else "no upstream"
        if verdict == SKIP:
            self._ti(run, tid, T.NONE, T.SKIPPED, why)  # NONE -> SKIPPED
        elif verdict == UPSTREAM_FAILED:
            self._ti(run, tid, T.NONE, T.UPSTREAM_FAILED, why)  # NONE -> UPSTREAM_FAILED
        else:
            if task.depends_on_past and run.prev_tis is not None and tid in run.prev_tis:
                previous = TaskState(run.prev_tis[tid])
                if previous not in _OK_PAST:
                    blocked[tid] = previous
                    return
            self._ti(run, tid, T.NONE, T.SCHEDULED, why)  # NONE -> SCHEDULED

    def _settle(
        self, run: RunView, index: DagIndex, states: dict[str, TaskState], blocked: dict[str, TaskState]
    ) -> bool:
        """Finish the run if its tasks are done or can never progress; True if it finished."""
        unfinished = [
            tid for tid, s in states.items() if not s.finished and (tid in index.position or s in ACTIVE)
        ]
        if not unfinished:
            bad = [
                f"{leaf} ({states[leaf].value})"
                for leaf in index.leaves
                if leaf in states and states[leaf] not in _OK_PAST and states[leaf] is not T.REMOVED
            ]
            if bad:
                self._finish(run, RunState.FAILED, f"failed leaves: {_names(bad)}")  # RUNNING -> FAILED
            else:
                # RUNNING -> SUCCESS
                self._finish(run, RunState.SUCCESS, "all leaves succeeded or were skipped")
            return True
        if any(states[tid] in _IN_PROGRESS for tid in unfinished):
            return False
        if any(not previous.finished for previous in blocked.values()):
            return False  # waiting for the previous run, which is still going
        unfinished.sort(key=lambda tid: index.position.get(tid, len(index.position)))
        reason = "deadlock: no task can be scheduled"
        if blocked:
            causes = [f"{tid} (previous run: {prev.value})" for tid, prev in blocked.items()]
            reason += f"; depends_on_past blocks {_names(causes)}"
        reason += f"; stuck: {_names(unfinished)}"
        self._finish(run, RunState.FAILED, reason)  # RUNNING -> FAILED
        return True

    def _time_out(self, run: RunView, dag: DagDef, index: DagIndex) -> None:
        reason = f"dagrun_timeout of {dag.dagrun_timeout:g}s exceeded"
        states = self.states[run.key]
        ordered = [t for t in index.order if t in states] + [t for t in states if t not in index.position]
        for tid in ordered:
            state = states[tid]
            if state in ACTIVE:
                self.out.kill.append(Kill(run.key, tid, reason))
            elif state in _SKIP_ON_TIMEOUT:
                self._ti(run, tid, state, T.SKIPPED, reason)  # NONE / SCHEDULED / UP_FOR_RETRY -> SKIPPED
        self._finish(run, RunState.FAILED, reason)  # RUNNING -> FAILED

    def _start_tasks(self) -> None:
        """SCHEDULED -> QUEUED by priority_weight desc, logical date asc, topological index asc."""
        if self.active >= self.snap.parallelism or self.snap.hold is not None:
            return
        candidates: list[tuple[int, datetime, int, int, str, RunView]] = []
        for run in self.live:
            dag = self.snap.dags[run.dag_id]
            index = dag_index(dag)
            states = self.states.get(run.key)
            pairs = states.items() if states is not None else ((t, ti.state) for t, ti in run.tis.items())
            for tid, state in pairs:
                if state is T.SCHEDULED and tid in index.position and dag.tasks[tid].kind != "empty":
                    prio = dag.tasks[tid].priority_weight
                    candidates.append((-prio, run.logical_date, index.position[tid], run.key, tid, run))
        candidates.sort(key=lambda c: c[:5])
        for _, _, _, _, tid, run in candidates:
            if self.active >= self.snap.parallelism:
                break
            if self.active_by_dag[run.dag_id] >= self.snap.dags[run.dag_id].max_active_tasks:
                continue
            self.out.tis.append(TIChange(run.key, tid, T.SCHEDULED, T.QUEUED))  # SCHEDULED -> QUEUED
            self.out.start.append(Start(run.key, tid))
            self.active += 1
            self.active_by_dag[run.dag_id] += 1


def _deadline(dag: DagDef, started: datetime | None) -> datetime | None:
    if dag.dagrun_timeout is None or started is None:
        return None
    return started + timedelta(seconds=float(dag.dagrun_timeout))
