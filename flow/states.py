"""Task and run states, and the one place that says which transitions are legal.

Every state change in flow goes through :func:`check_task_transition` or
:func:`check_run_transition`, so a bug that would move a finished task back to
RUNNING is caught where it happens rather than discovered in the history later.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    NONE = "none"
    """Created with its run; its upstream tasks have not all finished yet."""
    SCHEDULED = "scheduled"
    """Its dependencies are met; it waits for a free slot (parallelism, max_active_tasks)."""
    QUEUED = "queued"
    """Committed as handed to the executor; the executor has not reported a process yet."""
    RUNNING = "running"
    """A process runs it (locally or remotely); its pid and start time are recorded."""
    SUCCESS = "success"
    """It finished with exit status 0 (or was marked success by an operator)."""
    FAILED = "failed"
    """It finished badly and has no retries left (or was marked failed)."""
    UP_FOR_RETRY = "up_for_retry"
    """It failed but has retries left; it becomes SCHEDULED again once its retry delay passes."""
    UPSTREAM_FAILED = "upstream_failed"
    """Its trigger rule can no longer be met because upstream tasks failed."""
    SKIPPED = "skipped"
    """A branch or short-circuit upstream skipped it, or its trigger rule skipped it."""
    REMOVED = "removed"
    """The task no longer exists in the DAG file; kept for history."""

    @property
    def finished(self) -> bool:
        return self in FINISHED

    def __str__(self) -> str:
        return self.value


FINISHED = frozenset(
    {TaskState.SUCCESS, TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.SKIPPED, TaskState.REMOVED}
)
"""States from which the scheduler will never move a task by itself."""

ACTIVE = frozenset({TaskState.QUEUED, TaskState.RUNNING})
"""States that hold an executor slot."""


class RunState(StrEnum):
    QUEUED = "queued"
    """Created; waits for a free run slot (max_active_runs)."""
    RUNNING = "running"
    """Its tasks are being scheduled."""
    SUCCESS = "success"
    """Every leaf task finished in a state that counts as success (success or skipped)."""
    FAILED = "failed"
    """A leaf failed or upstream-failed, or the run exceeded dagrun_timeout."""

    @property
    def finished(self) -> bool:
        return self in (RunState.SUCCESS, RunState.FAILED)

    def __str__(self) -> str:
        return self.value


class IllegalTransition(ValueError):
    """Raised when code tries a state change that the state machine does not allow."""


T = TaskState
_TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    # NONE -> SCHEDULED when deps are met; -> SKIPPED / UPSTREAM_FAILED by trigger rules.
    T.NONE: frozenset({T.SCHEDULED, T.SKIPPED, T.UPSTREAM_FAILED, T.REMOVED}),
    # SCHEDULED -> QUEUED when a slot is free; -> SUCCESS for an EmptyOperator (nothing to run);
    # -> SKIPPED when its run times out.
    T.SCHEDULED: frozenset({T.QUEUED, T.SUCCESS, T.NONE, T.SKIPPED, T.UPSTREAM_FAILED, T.REMOVED}),
    # QUEUED -> RUNNING when the executor reports the process; -> FAILED if it could not start.
    T.QUEUED: frozenset({T.RUNNING, T.SUCCESS, T.FAILED, T.UP_FOR_RETRY, T.SCHEDULED, T.NONE}),
    # RUNNING -> a finished state, or UP_FOR_RETRY when retries are left.
    T.RUNNING: frozenset({T.SUCCESS, T.FAILED, T.UP_FOR_RETRY, T.SKIPPED}),
    # UP_FOR_RETRY -> SCHEDULED once the retry delay has passed; -> SKIPPED when its run times out.
    T.UP_FOR_RETRY: frozenset({T.SCHEDULED, T.QUEUED, T.FAILED, T.SKIPPED}),
}
_RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.FAILED}),
    RunState.RUNNING: frozenset({RunState.SUCCESS, RunState.FAILED}),
    # A finished run goes back to RUNNING only when an operator clears or retries its tasks.
    RunState.SUCCESS: frozenset(),
    RunState.FAILED: frozenset(),
}


def check_task_transition(old: TaskState, new: TaskState, *, operator: bool = False) -> None:
    """Raise IllegalTransition unless ``old -> new`` is a legal task transition.

    ``operator=True`` is for explicit operator actions (clear, mark success/failed), which may
    move a task from any state to NONE (clear) or to SUCCESS/FAILED (mark).
    """
    if old == new:
        return
    if operator and new in (T.NONE, T.SUCCESS, T.FAILED, T.SKIPPED):
        return
    if new not in _TASK_TRANSITIONS.get(old, frozenset()):
        raise IllegalTransition(f"task state {old.value} -> {new.value} is not allowed")


def check_run_transition(old: RunState, new: RunState, *, operator: bool = False) -> None:
    """Raise IllegalTransition unless ``old -> new`` is a legal run transition.

    ``operator=True`` lets clear/retry/mark move a finished run back to QUEUED/RUNNING or set it.
    """
    if old == new:
        return
    if operator:
        return
    if new not in _RUN_TRANSITIONS[old]:
        raise IllegalTransition(f"run state {old.value} -> {new.value} is not allowed")


GLYPHS: dict[str, str] = {
    "none": "·",
    "scheduled": "○",
    "queued": "◌",
    "running": "▶",
    "success": "✔",
    "failed": "✘",
    "up_for_retry": "↻",
    "upstream_failed": "⊘",
    "skipped": "⤼",
    "removed": "−",
}
"""One glyph per state, so a state never depends on colour alone (NO_COLOR, colour-blind users)."""
