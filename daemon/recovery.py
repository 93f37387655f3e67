"""Settling tries that an earlier flowd left in flight.

The runner outlives flowd and writes each try's exit record next to its log, so after a crash,
an upgrade or a restart the record tells how a try ended. For a try still in flight:

- exit record present: the try ended while flowd was down; its real result is recorded.
- process alive (pid from the store, or from the log's first line, which the runner writes
  before anything else): it is followed until its exit record appears; its log keeps growing
  under the old runner, so following the log works as for any try.
- a log but no live process and no record: the old runner may be writing the record right
  now, so it gets a grace period, then is failed as lost.
- a remote (SSH) try's log: an earlier flowd that crashed could not kill it; see recovery_remote.
- no log at all: the try was committed but never handed to a runner (flowd stopped between
  the commit and the spawn), so the same try is handed to the new runner. Nothing runs twice.
  Unless the flowd that committed it is still alive: one that lost its database lock is fenced
  out at its next commit, but a try it committed just before the takeover may be on its way to
  its runner. So the hand-over waits LOST_GRACE for a log to appear (`Unstarted`); if one does,
  the try is followed like any other.
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import time
from typing import TYPE_CHECKING

from flow.executors.base import TaskResult, TaskSpec
from flow.executors.tryprocs import signal_pids, tagged_pids, try_tag
from flow.states import TaskState

from .recovery_remote import RemoteOrphan, remote_marks
from .specs import build_spec, log_path, status_path

if TYPE_CHECKING:
    from .engine import Engine, RunMem

LOST_GRACE = 5.0
"""Seconds a try with a dead process may wait for its exit record before it counts as lost."""

_HEADER_PID = re.compile(rb"^\[flow\] .* started \S+ pid (\d+)")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(path: str) -> TaskResult | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return TaskResult.from_json(json.load(fh))
    except (OSError, ValueError, TypeError):
        return None


def pid_from_log(path: str) -> int | None:
    """The task's pid from the header line the runner writes before the task runs."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(4096)
    except OSError:
        return None
    m = _HEADER_PID.match(first)
    return int(m.group(1)) if m else None


def _remove_rings(status_file: str) -> None:
    """A runner that died without an exit record leaves its ring file (`<log>.tail.<pid>`) behind."""
    for ring in glob.glob(glob.escape(status_file.removesuffix(".status.json")) + ".tail.*"):
        try:
            os.unlink(ring)
        except OSError:
            pass


class Orphan:
    """A try started by an earlier flowd that this one follows to its end."""

    def __init__(self, status_file: str, pid: int | None):
        self.status_file = status_file
        self.pid = pid
        self.dead_since: float | None = None
        self.kill_reason: str | None = None
        """Why this flowd killed it: the old runner's record cannot know, and retries depend on it."""

    def poll(self, ref: str) -> TaskResult | None:
        """The try's result once it has one; a lost result once the grace period is over."""
        result = read_status(self.status_file)
        if result is None:
            if _alive(self.pid):
                return None
            now = time.monotonic()
            if self.dead_since is None:
                self.dead_since = now
            if now - self.dead_since < LOST_GRACE:
                return None
            result = TaskResult(ref=ref, pid=self.pid, ok=False,
                                error="lost: its process ended while flowd was down and left no exit record")
            _remove_rings(self.status_file)
        result.ref = ref
        if self.kill_reason and not result.killed:
            result.killed = self.kill_reason
        return result

    @property
    def tag(self) -> str:
        """The FLOW_TRY tag its processes carry (executors/tryprocs.py): a hash of its log path."""
        return try_tag(self.status_file.removesuffix(".status.json"))

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """TERM (or KILL) the try's process group and whatever carries its tag outside it; the old
        runner then records how it ended."""
        if self.pid:
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        tag = self.tag
        signal_pids(tagged_pids([tag])[tag], sig)


class Unstarted:
    """A try committed as QUEUED that has no log yet: handed over again unless its log appears soon."""

    def __init__(self, log_file: str, spec: TaskSpec):
        self.log_file = log_file
        self.spec = spec
        self.since = time.monotonic()
        self.follow: Orphan | None = None
        self.kill_reason: str | None = None

    def poll(self, ref: str) -> TaskResult | TaskSpec | None:
        """The try's result once it has one, its spec to hand over again, or None: wait."""
        waited = time.monotonic() - self.since >= LOST_GRACE
        if self.follow is None and os.path.exists(self.log_file):
            pid = pid_from_log(self.log_file)
            if pid is not None or waited:
                self.follow = Orphan(status_path(self.log_file), pid)
                if self.kill_reason:
                    self.follow.kill(signal.SIGTERM)
        if self.follow is not None:
            self.follow.kill_reason = self.kill_reason
            return self.follow.poll(ref)
        if not waited:
            return None
        if self.kill_reason:
            return TaskResult(ref=ref, pid=None, ok=False, killed=self.kill_reason, error=self.kill_reason)
        return self.spec

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.follow is not None:
            self.follow.kill(sig)


def settle_orphans(engine: Engine, run: RunMem) -> None:
    """Queue a result for every in-flight try of `run`, follow it, or hand it over again."""
    for task_id, view in run.tis.items():
        if view.state not in (TaskState.QUEUED, TaskState.RUNNING):
            continue
        ref = f"{run.key}:{task_id}:{view.try_number}"
        log_file = log_path(engine.settings.log_folder, run.dag_id, run.run_id, task_id, view.try_number)
        extra = run.extra[task_id]
        extra.ref = ref
        engine.refs[ref] = (run.key, task_id)
        result = read_status(status_path(log_file))
        if result is not None:
            result.ref = ref
            engine._events.append(("finished", result))
        elif (remote := remote_marks(log_file)) is not None:
            engine.orphans[ref] = RemoteOrphan(getattr(engine.settings, "connections_file", ""), remote[0], remote[1], log_file,
                                               engine.settings.kill_grace)
        elif os.path.exists(log_file):
            pid = extra.pid or pid_from_log(log_file)
            engine.orphans[ref] = Orphan(status_path(log_file), pid)
        else:
            task = next((t for t in engine.dags[run.dag_id]["tasks"] if t["task_id"] == task_id), None)
            if task is None:
                engine._events.append(("finished", TaskResult(
                    ref=ref, pid=None, ok=False, error="the task is no longer in its DAG file")))
                continue
            engine.orphans[ref] = Unstarted(log_file, build_spec(engine, run, task, view.try_number, extra.max_tries))
