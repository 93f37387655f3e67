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

import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from flow.dagindex import DagIndex
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
    """One call of :func:`plan`: slot counters and the in-call states that make cascades visible.

    A run with an index and a ``changed`` set is planned *incrementally*: only the changed tasks,
    their direct downstream and what those changes cascade into are visited, in topological
    order, and its completion is read from state counts. Every other run is planned by visiting all
    of its tasks. Both give the same decisions for a run the previous plan left settled (checked by
    a property test against the full pass).
    """

    def __init__(self, snapshot: Snapshot, now: datetime) -> None:
        self.snap = snapshot
        self.now = now
        self.out = Decisions()
        self.active = 0
        self.active_by_dag: dict[str, int] = defaultdict(int)
        self.running_runs: dict[str, int] = defaultdict(int)
        self.over: dict[int, dict[str, TaskState]] = {}
        """States changed within this call, by run: read before the snapshot's."""
        self.count_delta: dict[int, dict[TaskState, int]] = {}
        self.parent_delta: dict[int, dict[str, dict[TaskState, int]]] = {}
        self.live: list[RunView] = []  # RUNNING after this call, in snapshot order then promotions
        for run in snapshot.runs:
            where = f"run {run.key} (dag {run.dag_id!r}, run_id {run.run_id!r})"
            _require_aware(run.logical_date, f"{where}: logical_date")
            _require_aware(run.start_date, f"{where}: start_date")
            if run.index is not None:
                n = sum(run.index.counts.get(s, 0) for s in ACTIVE)
            else:
                n = sum(1 for ti in run.tis.values() if ti.state in ACTIVE)
            self.active += n
            self.active_by_dag[run.dag_id] += n
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

    def _state(self, run: RunView, tid: str) -> TaskState | None:
        over = self.over.get(run.key)
        if over is not None:
            state = over.get(tid)
            if state is not None:
                return state
        ti = run.tis.get(tid)
        return None if ti is None else ti.state

    def _ti(self, run: RunView, task_id: str, old: TaskState, new: TaskState, reason: str = "") -> None:
        self.out.tis.append(TIChange(run.key, task_id, old, new, reason))
        self.over.setdefault(run.key, {})[task_id] = new
        if run.index is None:
            return
        index = run.index.dag.index
        known = task_id in index.position
        counts = self.count_delta.setdefault(run.key, {})
        if known or old in ACTIVE:
            counts[old] = counts.get(old, 0) - 1
        if known or new in ACTIVE:
            counts[new] = counts.get(new, 0) + 1
        if known:
            parents = self.parent_delta.setdefault(run.key, {})
            for child in index.children[task_id]:
                delta = parents.setdefault(child, {})
                delta[old] = delta.get(old, 0) - 1
                delta[new] = delta.get(new, 0) + 1

    def _finish(self, run: RunView, new: RunState, reason: str) -> None:
        self.out.runs.append(RunChange(run.key, RunState.RUNNING, new, reason))
        self.running_runs[run.dag_id] -= 1

    def _retries(self, run: RunView) -> Iterable[tuple[str, datetime | None]]:
        if run.index is not None:
            return run.index.retrying.items()
        return ((tid, ti.next_retry_at) for tid, ti in run.tis.items() if ti.state is T.UP_FOR_RETRY)

    def _needs_plan(self, run: RunView, dag: DagDef) -> bool:
        """Dirty, or something time-driven is due; otherwise only note when it will be due."""
        retries = [when for _, when in self._retries(run)]
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
                self._plan_run(run, dag, self.now, promoted=True)

    def _plan_run(self, run: RunView, dag: DagDef, started: datetime | None, *, promoted: bool = False) -> None:
        """Trigger rules in topological order (so cascades resolve in one call), then the run's fate."""
        index = dag.index
        self.over.setdefault(run.key, {})
        deadline = _deadline(dag, started)
        if deadline is not None:
            if deadline <= self.now:
                self._time_out(run, dag, index)
                return
            self._wake(deadline)
        incremental = (run.index is not None and run.changed is not None and not promoted
                       and not dag.has_depends_on_past and run.index.dag is dag)
        blocked: dict[str, TaskState] = {}
        if incremental:
            self._visit_changed(run, dag, index)
        else:
            for tid in index.order:
                self._visit(run, dag, index, tid, blocked)
        if self._settle(run, index, blocked, counted=incremental):
            return
        self.live.append(run)

    def _visit(self, run: RunView, dag: DagDef, index: DagIndex, tid: str, blocked: dict[str, TaskState]) -> bool:
        """Decide one task; True if its state changed."""
        state = self._state(run, tid)
        if state is None:
            return False
        task = dag.tasks[tid]
        before = state
        if state is T.NONE:
            self._evaluate(run, task, index, blocked)
        elif state is T.UP_FOR_RETRY:
            retry_at = run.tis[tid].next_retry_at
            if retry_at is None or retry_at <= self.now:
                # UP_FOR_RETRY -> SCHEDULED
                self._ti(run, tid, T.UP_FOR_RETRY, T.SCHEDULED, "retry delay passed")
            else:
                self._wake(retry_at)
        if task.kind == "empty" and self._state(run, tid) is T.SCHEDULED:
            self._ti(run, tid, T.SCHEDULED, T.SUCCESS, "EmptyOperator")  # SCHEDULED -> SUCCESS
        return self._state(run, tid) is not before

    def _visit_changed(self, run: RunView, dag: DagDef, index: DagIndex) -> None:
        """The incremental pass: what changed, its direct downstream, due retries, and their cascades."""
        assert run.index is not None and run.changed is not None
        heap: list[tuple[int, str]] = []
        seen: set[str] = set()

        def push(tid: str) -> None:
            if tid not in seen:
                seen.add(tid)
                heapq.heappush(heap, (index.position[tid], tid))

        for tid in run.changed:
            if tid in index.position:
                push(tid)
                for child in index.children[tid]:
                    push(child)
        for tid in run.index.retrying:
            push(tid)
        blocked: dict[str, TaskState] = {}
        while heap:
            _, tid = heapq.heappop(heap)
            if self._visit(run, dag, index, tid, blocked):
                for child in index.children[tid]:
                    push(child)

    def _parent_counts(self, run: RunView, tid: str, index: DagIndex) -> dict[TaskState, int]:
        if run.index is None or run.changed is None or run.index.dag.index is not index:
            counts: dict[TaskState, int] = {}
            for parent in index.parents[tid]:
                state = self._state(run, parent)
                if state is not None:
                    counts[state] = counts.get(state, 0) + 1
            return counts
        base = run.index.parents.get(tid)
        delta = self.parent_delta.get(run.key, {}).get(tid)
        if not delta:
            return base or {}
        merged = dict(base or {})
        for state, n in delta.items():
            left = merged.get(state, 0) + n
            if left:
                merged[state] = left
            else:
                merged.pop(state, None)
        return merged

    def _evaluate(self, run: RunView, task: TaskDef, index: DagIndex, blocked: dict[str, TaskState]) -> None:
        tid = task.task_id
        counts = self._parent_counts(run, tid, index)
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

    def _settle(self, run: RunView, index: DagIndex, blocked: dict[str, TaskState], *, counted: bool) -> bool:
        """Finish the run if its tasks are done or can never progress; True if it finished.

        ``counted``: decide from the run's state counts where they suffice (the common cases:
        something is still in progress, or nothing is unfinished); scan the tasks otherwise.
        """
        if counted:
            assert run.index is not None
            counts = dict(run.index.counts)
            for state, n in self.count_delta.get(run.key, {}).items():
                counts[state] = counts.get(state, 0) + n
            if not any(n for s, n in counts.items() if not s.finished):
                return self._finish_settled(run, index)
            if any(counts.get(s, 0) for s in _IN_PROGRESS):
                return False
        states = {tid: s for tid in run.tis if (s := self._state(run, tid)) is not None}
        unfinished = [
            tid for tid, s in states.items() if not s.finished and (tid in index.position or s in ACTIVE)
        ]
        if not unfinished:
            return self._finish_settled(run, index)
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

    def _finish_settled(self, run: RunView, index: DagIndex) -> bool:
        bad = []
        for leaf in index.leaves:
            state = self._state(run, leaf)
            if state is not None and state not in _OK_PAST and state is not T.REMOVED:
                bad.append(f"{leaf} ({state.value})")
        if bad:
            self._finish(run, RunState.FAILED, f"failed leaves: {_names(bad)}")  # RUNNING -> FAILED
        else:
            # RUNNING -> SUCCESS
            self._finish(run, RunState.SUCCESS, "all leaves succeeded or were skipped")
        return True

    def _time_out(self, run: RunView, dag: DagDef, index: DagIndex) -> None:
        reason = f"dagrun_timeout of {dag.dagrun_timeout:g}s exceeded"
        states = {tid: s for tid in run.tis if (s := self._state(run, tid)) is not None}
        ordered = [t for t in index.order if t in states] + [t for t in states if t not in index.position]
        for tid in ordered:
            state = states[tid]
            if state in ACTIVE:
                self.out.kill.append(Kill(run.key, tid, reason))
            elif state in _SKIP_ON_TIMEOUT:
                self._ti(run, tid, state, T.SKIPPED, reason)  # NONE / SCHEDULED / UP_FOR_RETRY -> SKIPPED
        self._finish(run, RunState.FAILED, reason)  # RUNNING -> FAILED

    def _startable(self, run: RunView) -> Iterator[tuple[int, int, str]]:
        """The run's SCHEDULED tasks that can start, as (-priority_weight, position, task_id), sorted."""
        dag = self.snap.dags[run.dag_id]
        index = dag.index
        over = self.over.get(run.key) or {}
        if run.index is None or run.index.dag is not dag:
            keys = [
                (-dag.tasks[tid].priority_weight, index.position[tid], tid)
                for tid in run.tis
                if tid in index.position and dag.tasks[tid].kind != "empty" and self._state(run, tid) is T.SCHEDULED
            ]
            keys.sort()
            return iter(keys)
        kept = (k for k in run.index.scheduled if over.get(k[2], T.SCHEDULED) is T.SCHEDULED)
        added = sorted(
            (-dag.tasks[tid].priority_weight, index.position[tid], tid)
            for tid, state in over.items()
            if state is T.SCHEDULED and run.tis[tid].state is not T.SCHEDULED and tid in index.position
            and dag.tasks[tid].kind != "empty"
        )
        return heapq.merge(kept, added) if added else kept

    def _start_tasks(self) -> None:
        """SCHEDULED -> QUEUED by priority_weight desc, logical date asc, topological index asc.

        One sorted stream per live run, merged lazily: the work is in the tasks that start, not in
        the tasks that wait. A DAG at max_active_tasks drops its runs' streams, as every later
        task of theirs would be passed over too.
        """
        if self.active >= self.snap.parallelism or self.snap.hold is not None:
            return
        heads: list[tuple[tuple[int, datetime, int, int, str], int]] = []
        streams: list[tuple[RunView, Iterator[tuple[int, int, str]]]] = []
        for run in self.live:
            stream = self._startable(run)
            first = next(stream, None)
            if first is not None:
                heads.append(((first[0], run.logical_date, first[1], run.key, first[2]), len(streams)))
                streams.append((run, stream))
        heapq.heapify(heads)
        while heads and self.active < self.snap.parallelism:
            key, at = heapq.heappop(heads)
            run, stream = streams[at]
            if self.active_by_dag[run.dag_id] >= self.snap.dags[run.dag_id].max_active_tasks:
                continue  # this run's later tasks are of the same DAG: drop the stream
            tid = key[4]
            self.out.tis.append(TIChange(run.key, tid, T.SCHEDULED, T.QUEUED))  # SCHEDULED -> QUEUED
            self.out.start.append(Start(run.key, tid))
            self.active += 1
            self.active_by_dag[run.dag_id] += 1
            nxt = next(stream, None)
            if nxt is not None:
                heapq.heappush(heads, ((nxt[0], run.logical_date, nxt[1], run.key, nxt[2]), at))


def _deadline(dag: DagDef, started: datetime | None) -> datetime | None:
    if dag.dagrun_timeout is None or started is None:
        return None
    return started + timedelta(seconds=float(dag.dagrun_timeout))
