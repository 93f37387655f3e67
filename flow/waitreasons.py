"""Why a task that is not running yet is waiting, in the words an operator searches for.

Pure, like the planner, and built from the same Snapshot, but kept apart from it: the planner
decides, this explains. The checks follow the planner's order (`_start_tasks`): admission
control, then the global slots (parallelism), then the DAG's max_active_tasks; a SCHEDULED task
with a free slot is simply next in line behind tasks of higher priority.
"""

from __future__ import annotations

from collections import Counter

from flow.plantypes import RunView, Snapshot
from flow.states import ACTIVE, RunState, TaskState

T = TaskState
_SHOWN = 5


def _names(ids: list[str]) -> str:
    return ", ".join(ids[:_SHOWN]) + (f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else "")


class WaitReasons:
    """Counts slots once per snapshot, then explains any number of runs."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snap = snapshot
        self.active = 0
        self.by_dag: Counter[str] = Counter()
        self.running_runs: Counter[str] = Counter()
        for run in snapshot.runs:
            n = sum(1 for ti in run.tis.values() if ti.state in ACTIVE)
            self.active += n
            self.by_dag[run.dag_id] += n
            if run.state is RunState.RUNNING:
                self.running_runs[run.dag_id] += 1

    def for_run(self, run: RunView) -> dict[str, str]:
        """{task_id: reason} for each task of `run` that waits; running and finished tasks are left out."""
        dag = self.snap.dags.get(run.dag_id)
        out: dict[str, str] = {}
        if dag is None:
            return out
        if run.state is RunState.QUEUED:
            if run.dag_id in self.snap.paused:
                why = "the DAG is paused"
            elif self.running_runs[run.dag_id] >= dag.max_active_runs:
                why = f"DAG's max_active_runs reached ({dag.max_active_runs})"
            else:
                why = "run queued: starts at the next scheduling pass"
            return {tid: why for tid, ti in run.tis.items() if not ti.state.finished}
        for tid, ti in run.tis.items():
            if ti.state is T.NONE:
                task = dag.tasks.get(tid)
                pending = [u for u in (task.upstream if task else ()) if u in run.tis
                           and not run.tis[u].state.finished]
                if pending:
                    out[tid] = f"upstream pending: {_names(pending)}"
                elif task is not None and task.depends_on_past and run.prev_tis and tid in run.prev_tis:
                    out[tid] = f"depends_on_past: previous run's {tid} is {TaskState(run.prev_tis[tid]).value}"
                else:
                    out[tid] = "waiting for the scheduler to evaluate its trigger rule"
            elif ti.state is T.SCHEDULED:
                out[tid] = self._slot(run.dag_id, dag.max_active_tasks)
            elif ti.state is T.QUEUED:
                out[tid] = "handed to the executor; its process is starting"
            elif ti.state is T.UP_FOR_RETRY:
                when = ti.next_retry_at.isoformat() if ti.next_retry_at else "now"
                out[tid] = f"waiting to retry (at {when})"
        return out

    def _slot(self, dag_id: str, max_active_tasks: int) -> str:
        if self.snap.hold is not None:
            return self.snap.hold
        if self.active >= self.snap.parallelism:
            return f"no free slot (parallelism {self.snap.parallelism})"
        if self.by_dag[dag_id] >= max_active_tasks:
            return f"DAG's max_active_tasks reached ({max_active_tasks})"
        return "next in line: tasks of higher priority or older runs start first"
