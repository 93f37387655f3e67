"""The planner's inputs and outputs: plain, immutable data so that planning stays a pure function."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from flow.dagindex import DagIndex, build_index
from flow.states import RunState, TaskState

if TYPE_CHECKING:
    from flow.runindex import RunIndex


@dataclass(frozen=True)
class TaskDef:
    task_id: str
    upstream: tuple[str, ...] = ()
    downstream: tuple[str, ...] = ()
    trigger_rule: str = "all_success"
    retries: int = 0
    retry_delay: float = 300.0
    retry_exponential_backoff: bool = False
    max_retry_delay: float | None = None
    depends_on_past: bool = False
    priority_weight: int = 1
    kind: str = "python"  # "bash" | "python" | "empty"
    is_branch: bool = False
    is_short_circuit: bool = False

    @classmethod
    def from_serialized(cls, t: dict) -> TaskDef:
        return cls(
            task_id=t["task_id"],
            upstream=tuple(t.get("upstream", ())),
            downstream=tuple(t.get("downstream", ())),
            trigger_rule=t.get("trigger_rule", "all_success"),
            retries=int(t.get("retries", 0)),
            retry_delay=float(t.get("retry_delay", 300.0)),
            retry_exponential_backoff=bool(t.get("retry_exponential_backoff", False)),
            max_retry_delay=t.get("max_retry_delay"),
            depends_on_past=bool(t.get("depends_on_past", False)),
            priority_weight=int(t.get("priority_weight", 1)),
            kind=t.get("kind", "python"),
            is_branch=bool(t.get("is_branch", False)),
            is_short_circuit=bool(t.get("is_short_circuit", False)),
        )


@dataclass(frozen=True)
class DagDef:
    dag_id: str
    tasks: dict[str, TaskDef]  # topological order
    max_active_runs: int = 16
    max_active_tasks: int = 16
    dagrun_timeout: float | None = None

    @classmethod
    def from_serialized(cls, d: dict) -> DagDef:
        return cls(
            dag_id=d["dag_id"],
            tasks={t["task_id"]: TaskDef.from_serialized(t) for t in d["tasks"]},
            max_active_runs=int(d.get("max_active_runs", 16)),
            max_active_tasks=int(d.get("max_active_tasks", 16)),
            dagrun_timeout=d.get("dagrun_timeout"),
        )

    @property
    def leaves(self) -> tuple[str, ...]:
        return tuple(t.task_id for t in self.tasks.values() if not t.downstream)

    @cached_property
    def index(self) -> DagIndex:
        """Topological order and edges, built on first use (raises ValueError for a cycle or a bad edge)."""
        return build_index(self)

    @cached_property
    def has_depends_on_past(self) -> bool:
        return any(t.depends_on_past for t in self.tasks.values())


@dataclass(frozen=True)
class TIView:
    task_id: str
    state: TaskState
    try_number: int = 0  # tries started so far
    next_retry_at: datetime | None = None


@dataclass(frozen=True)
class RunView:
    key: int  # the run's primary key in the store
    dag_id: str
    run_id: str
    state: RunState
    logical_date: datetime
    queued_at: datetime
    start_date: datetime | None  # when it became RUNNING
    tis: dict[str, TIView]
    prev_tis: dict[str, TaskState] | None = None
    """The previous run's task states (by logical date) for depends_on_past; None if no previous run."""
    changed: frozenset[str] | None = None
    """Tasks whose state changed since the engine last planned this run; None: consider every task.

    With ``index`` set, a dirty run is planned from these alone (and their direct downstream): the
    rest of the run was settled by the previous plan, so only what changed can move anything.
    """
    index: RunIndex | None = None
    """The engine's running summaries of ``tis`` (flow/runindex.py); None: the planner scans ``tis``."""


@dataclass(frozen=True)
class Snapshot:
    dags: dict[str, DagDef]
    runs: tuple[RunView, ...]
    """Every unfinished run (QUEUED or RUNNING) of every DAG: the planner needs them all to count slots."""
    parallelism: int = 32
    paused: frozenset[str] = frozenset()
    """DAG ids that are paused: their QUEUED runs stay queued, their RUNNING runs finish normally."""
    dirty: frozenset[int] | None = None
    """Run keys that changed since the last plan; None means all. Others are only counted for slots."""
    hold: str | None = None
    """Why no task may start at all right now (admission control), or None; running ones go on."""


@dataclass(frozen=True)
class RunChange:
    key: int
    old: RunState
    new: RunState
    reason: str = ""


@dataclass(frozen=True)
class TIChange:
    run_key: int
    task_id: str
    old: TaskState
    new: TaskState
    reason: str = ""


@dataclass(frozen=True)
class Start:
    run_key: int
    task_id: str


@dataclass(frozen=True)
class Kill:
    run_key: int
    task_id: str
    reason: str


@dataclass
class Decisions:
    runs: list[RunChange] = field(default_factory=list)
    tis: list[TIChange] = field(default_factory=list)
    """Applied in order; a TI may appear more than once (NONE -> SCHEDULED -> SUCCESS for empty tasks)."""
    start: list[Start] = field(default_factory=list)
    """SCHEDULED -> QUEUED, in the order they should be handed to the executor."""
    kill: list[Kill] = field(default_factory=list)
    wake_at: datetime | None = None

    def __bool__(self) -> bool:
        return bool(self.runs or self.tis or self.start or self.kill)
