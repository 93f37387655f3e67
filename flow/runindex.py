"""Summaries of one run's task states, kept up to date by the engine as each state changes.

The planner could derive all of this by scanning the run's task instances, and it still does when
a run has no index (table tests, a run just loaded). With an index the work for one event is
proportional to what the event touches — the task and its direct downstream — instead of to the
size of the run: a join with 5,000 upstreams is decided from its parents' state counts, the run's
completion from its state counts, the tasks to start from a list kept in start order.

The engine owns the index (one per unfinished run) and calls :meth:`RunIndex.update` for every
state change; the planner only reads it, during :func:`flow.planner.plan`, when nothing changes it.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping
from datetime import datetime

from flow.plantypes import DagDef, TIView
from flow.states import ACTIVE, TaskState

T = TaskState
StartKey = tuple[int, int, str]
"""(-priority_weight, topological position, task_id): the order in which one run's tasks start."""


class RunIndex:
    """What :func:`flow.planner.plan` needs of one run without looking at every task instance.

    ``counts`` counts the task instances the planner considers, by state: those of tasks in the
    DAG, and active ones of tasks no longer in it (they still hold a slot). ``parents[tid]`` counts
    the states of ``tid``'s upstream task instances. ``scheduled`` holds the SCHEDULED tasks that
    can start (in the DAG, not EmptyOperators), sorted by :data:`StartKey`; ``retrying`` the
    UP_FOR_RETRY tasks with their retry time.
    """

    __slots__ = ("dag", "counts", "parents", "scheduled", "retrying")

    def __init__(self, dag: DagDef, tis: Mapping[str, TIView]) -> None:
        self.dag = dag
        self.counts: dict[TaskState, int] = {}
        self.parents: dict[str, dict[TaskState, int]] = {}
        self.scheduled: list[StartKey] = []
        self.retrying: dict[str, datetime | None] = {}
        index = dag.index
        for tid, ti in tis.items():
            if tid in index.position or ti.state in ACTIVE:
                _add(self.counts, ti.state, 1)
            if tid in index.position:
                for child in index.children[tid]:
                    _add(self.parents.setdefault(child, {}), ti.state, 1)
                self._enter(tid, ti)
        self.scheduled.sort()

    def update(self, task_id: str, old: TIView | None, new: TIView) -> None:
        """Record that ``task_id`` went from ``old`` (None: it had no task instance) to ``new``."""
        index = self.dag.index
        known = task_id in index.position
        if old is not None:
            if known or old.state in ACTIVE:
                _add(self.counts, old.state, -1)
            if known:
                self._leave(task_id, old)
        if known or new.state in ACTIVE:
            _add(self.counts, new.state, 1)
        if not known:
            return
        self._enter(task_id, new, keep_sorted=True)
        if old is None or old.state is not new.state:
            for child in index.children[task_id]:
                counts = self.parents.setdefault(child, {})
                if old is not None:
                    _add(counts, old.state, -1)
                _add(counts, new.state, 1)

    def start_key(self, task_id: str) -> StartKey:
        return (-self.dag.tasks[task_id].priority_weight, self.dag.index.position[task_id], task_id)

    def _enter(self, tid: str, ti: TIView, *, keep_sorted: bool = False) -> None:
        if ti.state is T.SCHEDULED and self.dag.tasks[tid].kind != "empty":
            key = self.start_key(tid)
            if keep_sorted:
                insort(self.scheduled, key)
            else:
                self.scheduled.append(key)
        elif ti.state is T.UP_FOR_RETRY:
            self.retrying[tid] = ti.next_retry_at

    def _leave(self, tid: str, ti: TIView) -> None:
        if ti.state is T.SCHEDULED and self.dag.tasks[tid].kind != "empty":
            key = self.start_key(tid)
            at = bisect_left(self.scheduled, key)
            if at < len(self.scheduled) and self.scheduled[at] == key:
                del self.scheduled[at]
        elif ti.state is T.UP_FOR_RETRY:
            self.retrying.pop(tid, None)


def _add(counts: dict[TaskState, int], state: TaskState, n: int) -> None:
    left = counts.get(state, 0) + n
    if left:
        counts[state] = left
    else:
        del counts[state]
