"""The small interface every executor implements, and the data that crosses it.

An executor takes a :class:`TaskSpec` (everything needed to run one try, as JSON) and later
reports a :class:`TaskResult`. It never touches the store: the engine records what it says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass
class TaskSpec:
    ref: str
    """Opaque key chosen by the engine (unique per try), echoed back in results."""
    kind: str  # "bash" | "python"
    dag_id: str
    task_id: str
    run_id: str
    try_number: int
    dag_file: str
    log_path: str
    status_path: str
    """Where the runner writes the durable exit record (JSON, written atomically)."""
    execution_timeout: float | None = None
    kill_grace: float = 5.0
    bash_command: str | None = None
    env: dict[str, str] | None = None
    append_env: bool = False
    cwd: str | None = None
    do_xcom_push: bool = True
    context: dict[str, Any] = field(default_factory=dict)
    """JSON template context: logical_date, data_interval_start/end (ISO UTC), run_id, run_type,
    conf, params, dag_id, task_id, try_number, max_tries, timezone."""
    xcoms: dict[str, dict[str, Any]] = field(default_factory=dict)
    """XComs already pushed in this run: {task_id: {key: value}}."""
    extra: dict[str, Any] = field(default_factory=dict)
    max_log_bytes: int = 0
    """max_log_bytes_per_try: past it the log keeps its head and tail (logsink.TaskLog); 0 = no limit."""

    def to_json(self) -> dict[str, Any]:
        """Shallow on purpose: it is serialised at once, and a deep copy cost more than the spawn."""
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TaskSpec:
        return cls(**d)


@dataclass
class TreeSample:
    """One sample of a try's whole process tree, summed: what the resource monitor accumulates,
    whether it was read from this host's /proc or from a remote host's over SSH."""

    user: float = 0.0
    system: float = 0.0
    rss: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    procs: int = 0
    threads: int = 0


@dataclass
class TaskResult:
    ref: str
    pid: int | None
    ok: bool
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    killed: str | None = None
    """Reason given to Executor.kill, when the try ended because it was killed."""
    error: str | None = None
    """One line for the operator: the exception, the template error, 'exit status 2', 'killed by SIGKILL'."""
    xcom: dict[str, Any] | None = None
    branch: list[str] | None = None
    skip_downstream: bool = False
    outcome: str | None = None
    """"skipped" (the task raised AirflowSkipException or exited with a skip_on_exit_code) or
    "no_retry" (AirflowFailException: failed without the retries left); None otherwise."""
    started_at: str | None = None
    ended_at: str | None = None
    rusage: dict[str, float] | None = None
    log_incomplete: str | None = None
    """Set when output or the exit record could not be written (logsink.incomplete_note: "log
    incomplete: log folder full (...)"); the result itself still reached flowd, which records it."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TaskResult:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class LineBuffer:
    """Splits a byte stream into lines, holding a partial last line until its newline arrives.

    Both ends of the executor's socket (flowd's side and the runner's) read JSON lines this way.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        scan = len(self._buf)
        self._buf += data
        lines = []
        while (nl := self._buf.find(b"\n", scan)) >= 0:
            lines.append(bytes(self._buf[:nl]))
            del self._buf[:nl + 1]
            scan = 0
        return lines

    def clear(self) -> None:
        self._buf.clear()


MAX_RENDERED_BYTES = 64 * 1024
"""Most bytes of a try's rendered command that are reported and recorded: a command that names a
.sh template renders the whole script, which may be any size."""
MAX_CWD_BYTES = 4096


def cap_text(text: str, limit: int, what: str) -> str:
    """`text`, storable anywhere: NUL and unencodable characters replaced and, past `limit` UTF-8
    bytes, its head and a line saying it was cut (and from how much), `limit` bytes in all; so
    capping twice changes nothing."""
    data = text.replace("\x00", "\ufffd").encode("utf-8", "replace")
    if len(data) <= limit:
        return data.decode("utf-8")
    marker = f"\n[flow: {what} was cut here; it is {len(data)} bytes]"
    head = data[:max(0, limit - len(marker.encode()))].decode("utf-8", "ignore")
    return head + marker


def rendered_record(command: str, cwd: str | None) -> dict[str, str | None]:
    """What a bash try ran, as the executor reports it with `started`. The environment is left out
    on purpose: its values may be secrets, and its names are the task's own (see its definition)."""
    return {"command": cap_text(command, MAX_RENDERED_BYTES, "the rendered command"),
            "cwd": cap_text(cwd, MAX_CWD_BYTES, "cwd") if cwd else None}


StartedCallback = Callable[[str, int, "dict[str, str | None] | None"], None]
"""(ref, pid, rendered): rendered is rendered_record(...) for a bash try, None for the others."""
FinishedCallback = Callable[[TaskResult], None]


class Executor(Protocol):
    """Runs tries; reports through the two callbacks on the asyncio loop that started it."""

    name: str

    async def start(self, on_started: StartedCallback, on_finished: FinishedCallback) -> None: ...

    def submit(self, spec: TaskSpec) -> None:
        """Hand a try over; returns at once. on_started follows when its process exists."""

    def kill(self, ref: str, reason: str) -> None:
        """TERM the try's whole process group, KILL after the grace period; on_finished follows."""

    def running(self) -> int: ...

    async def stop(self, *, kill_running: bool = False) -> None: ...


_REGISTRY: dict[str, str] = {"local": "flow.executors.local:LocalExecutor",
                              "ssh": "flow.executors.ssh:SSHExecutor"}


def get_executor(name: str, **kwargs: Any) -> Executor:
    """Look an executor up by name, so configuration can say `executor = "local"`."""
    import importlib

    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown executor {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)


def build_executor(name: str, *, connections_file: str | None = None) -> Executor:
    """The configured executor, with tries whose task names an SSH connection routed to SSH."""
    from .routing import RoutingExecutor

    return RoutingExecutor(get_executor(name), lambda: get_executor("ssh", connections_file=connections_file))
