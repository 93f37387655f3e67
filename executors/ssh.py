"""Running bash tries on other hosts over SSH (paramiko), for tasks with an ``ssh_conn_id``.

Each try gets a thread (ssh_try.RemoteTry) that blocks on paramiko; results come back to flowd's
event loop with call_soon_threadsafe, so the loop never waits on the network. Connections are
shared per host (ssh_pool), commands run under a wrapper that makes them killable as a group
(ssh_remote), and host keys are checked against known-hosts files only (ssh_hostkeys).

On stop the executor kills what still runs remotely and writes each try's exit record: a remote
try cannot outlive flowd the way a local one does under the runner, because its output and exit
status travel over a channel that dies with flowd. The next flowd reads those records
(daemon/recovery.py); after a crash it kills the remote groups itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from .base import FinishedCallback, StartedCallback, TaskResult, TaskSpec, TreeSample
from .ssh_pool import Pool
from .ssh_sample import RemoteItem, sample_tries
from .ssh_try import AFTER_KILL_WAIT, RemoteTry

log = logging.getLogger(__name__)

STOP_REASON = "flowd stopped while it ran (remote tries cannot outlive flowd; its process group was killed)"


def default_connections_file() -> str | None:
    return os.environ.get("FLOW_CONNECTIONS") or None


class SSHExecutor:
    name = "ssh"

    def __init__(self, connections_file: str | None = None, *, pool: Pool | None = None, **_: Any) -> None:
        self.pool = pool or Pool(connections_file or default_connections_file())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_started: StartedCallback | None = None
        self._on_finished: FinishedCallback | None = None
        self._tries: dict[str, RemoteTry] = {}

    async def start(self, on_started: StartedCallback, on_finished: FinishedCallback) -> None:
        self.bind(asyncio.get_running_loop(), on_started, on_finished)

    def bind(self, loop: asyncio.AbstractEventLoop, on_started: StartedCallback,
             on_finished: FinishedCallback) -> None:
        """start() without awaiting: the routing executor builds this one at its first remote try."""
        self._loop = loop
        self._on_started, self._on_finished = on_started, on_finished

    def owns(self, ref: str) -> bool:
        return ref in self._tries

    def submit(self, spec: TaskSpec) -> None:
        if self._loop is None:
            raise RuntimeError("SSHExecutor.submit() before start()")
        if spec.ref in self._tries:
            raise ValueError(f"try {spec.ref!r} was already submitted and has not finished")
        t = RemoteTry(spec, self.pool, self._started_from_thread, self._finished_from_thread)
        self._tries[spec.ref] = t
        t.thread.start()

    def kill(self, ref: str, reason: str) -> None:
        t = self._tries.get(ref)
        if t is not None:
            t.request_kill(reason)

    def running(self) -> int:
        return len(self._tries)

    # -- resource figures (daemon/resources_remote.py drives these) -------------------------

    def sample_plan(self, refs: list[str]) -> list[RemoteItem]:
        """On the loop: what a sample of these tries needs, read while no try thread can end them.

        A try is sampled once the wrapper reported its session; before that it has nothing to show.
        """
        out = []
        for ref in refs:
            t = self._tries.get(ref)
            if t is not None and t.conn is not None and t.pgid is not None:
                out.append((ref, t.conn, t.tag, t.pgid))
        return out

    def sample(self, items: list[RemoteItem]) -> tuple[dict[str, TreeSample], list[str]]:
        """Blocking, for a worker thread: the figures of these tries, one command per host."""
        return sample_tries(self.pool, items)

    async def stop(self, *, kill_running: bool = False) -> None:
        """Kill every remote try (see the module docstring) and wait for their records."""
        tries = list(self._tries.values())
        for t in tries:
            t.request_kill("the executor is stopping" if kill_running else STOP_REASON)
        if tries:
            limit = max(t.spec.kill_grace for t in tries) + AFTER_KILL_WAIT + 30.0

            def join_all() -> None:
                for t in tries:
                    t.thread.join(limit)

            await asyncio.to_thread(join_all)
            late = [t.spec.ref for t in tries if t.thread.is_alive()]
            if late:
                log.error("remote tries still not ended after %.0fs: %s", limit, ", ".join(late))
        await asyncio.to_thread(self.pool.close)

    # -- from the try threads ---------------------------------------------------------------

    def _started_from_thread(self, ref: str, pgid: int, rendered: dict[str, Any] | None) -> None:
        self._post(self._deliver_started, ref, pgid, rendered)

    def _finished_from_thread(self, result: TaskResult) -> None:
        self._post(self._deliver_finished, result)

    def _post(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed in between: the exit record on disk still says it
            pass

    def _deliver_started(self, ref: str, pgid: int, rendered: dict[str, Any] | None) -> None:
        if ref in self._tries and self._on_started is not None:
            self._call(self._on_started, ref, pgid, rendered)

    def _deliver_finished(self, result: TaskResult) -> None:
        if self._tries.pop(result.ref, None) is not None and self._on_finished is not None:
            self._call(self._on_finished, result)

    @staticmethod
    def _call(callback: Any, *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("executor callback %r failed", callback)
