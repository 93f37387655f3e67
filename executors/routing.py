"""Sends each try to the executor that can run it: SSH when its task names a connection, else the default.

The engine keeps talking to one executor; this is that one. Adding the SSH path this way left
the engine, its kill and its recovery code unchanged except where a remote try must be told apart.
The SSH executor (and paramiko, a tenth of a second to import) is only built for the first
remote try, so a flowd or a `flow` command without SSH tasks never pays for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .base import Executor, FinishedCallback, StartedCallback, TaskSpec


def is_remote(spec: TaskSpec) -> bool:
    return bool(isinstance(spec.extra, dict) and spec.extra.get("ssh_conn_id"))


class RoutingExecutor:
    def __init__(self, default: Executor, remote_factory: Callable[[], Any]) -> None:
        self.default = default
        self.remote: Any = None
        self._factory = remote_factory
        self._bound: tuple[asyncio.AbstractEventLoop, StartedCallback, FinishedCallback] | None = None
        self.name = default.name

    def __getattr__(self, attr: str) -> Any:
        """Anything else (runner_pid, ...) is the default executor's, as before there was routing."""
        return getattr(self.default, attr)

    async def start(self, on_started: StartedCallback, on_finished: FinishedCallback) -> None:
        self._bound = (asyncio.get_running_loop(), on_started, on_finished)
        await self.default.start(on_started, on_finished)
        if self.remote is not None:
            self.remote.bind(*self._bound)

    def _remote(self) -> Any:
        if self.remote is None:
            if self._bound is None:
                raise RuntimeError("RoutingExecutor.submit() before start()")
            self.remote = self._factory()
            self.remote.bind(*self._bound)
        return self.remote

    def submit(self, spec: TaskSpec) -> None:
        (self._remote() if is_remote(spec) else self.default).submit(spec)

    def kill(self, ref: str, reason: str) -> None:
        (self.remote if self.remote is not None and self.remote.owns(ref) else self.default).kill(ref, reason)

    def running(self) -> int:
        return self.default.running() + (self.remote.running() if self.remote is not None else 0)

    async def stop(self, *, kill_running: bool = False) -> None:
        try:
            if self.remote is not None:
                await self.remote.stop(kill_running=kill_running)
        finally:
            await self.default.stop(kill_running=kill_running)
