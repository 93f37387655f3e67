"""The remote source of the resource monitor: figures of SSH tries, sampled over their connections.

The monitor owns the figures (CPU %, peaks, series, limits) of every try; a *source* only says
what a try's processes cost at one instant. The local source is the host's process table
(proctable.py); this one asks the SSH executor, which owns the connections, for one sample per
host per tick (executors/ssh_sample.py). Its samples go through the same `ResourceMonitor.apply`
as local ones, so stored figures, `runs.get`, `tasks stats` and the limits behave the same, and a
limit crossed kills through the executor's own kill path.

It runs as its own task beside the local sampler rather than inside the local tick: a host that
answers slowly delays its own tries' figures, never the limits of the tries on this host.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flow.executors.base import TreeSample

    from .engine import Engine
    from .resources import ResourceMonitor, RunningTry

log = logging.getLogger("flow.resources")


def remote_executor(engine: Engine) -> Any:
    """The SSH executor behind the engine's routing executor, once a remote try has been submitted."""
    remote = getattr(engine.executor, "remote", None)
    return remote if remote is not None and hasattr(remote, "sample_plan") else None


def remote_refs(engine: Engine, running: list[RunningTry]) -> set[str]:
    """The running tries the SSH executor owns: their pid is a session id on another host."""
    remote = remote_executor(engine)
    if remote is None:
        return set()
    return {r[0] for r in running if remote.owns(r[0])}


class RemoteSampling:
    """Counters of the remote sampler, for the benchmark and for `flow status`."""

    def __init__(self) -> None:
        self.ticks = 0
        self.skipped = 0
        """Host samples skipped: no free session, the connection down, unreadable output."""
        self.cpu = 0.0
        """CPU seconds of the sampling thread (paramiko's transport thread does the crypto apart)."""

    def as_json(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "skipped": self.skipped, "cpu_seconds": round(self.cpu, 3)}


async def run_remote(monitor: ResourceMonitor, engine: Engine) -> None:
    """Sample the remote tries every `sample_interval` until cancelled; an error costs one tick."""
    loop = asyncio.get_running_loop()
    while True:
        interval = float(getattr(monitor.settings, "sample_interval", 2.0) or 2.0)
        await asyncio.sleep(interval)
        try:
            remote = remote_executor(engine)
            if remote is None:
                continue
            running = [r for r in engine.running_tries() if remote.owns(r[0])]
            items = remote.sample_plan([r[0] for r in running])
            if not items:
                continue
            trees, skipped = await loop.run_in_executor(None, _timed, monitor, remote, items)
            if skipped:
                monitor.remote.skipped += len(skipped)
                log.debug("remote sample skipped this tick on %s", ", ".join(skipped))
            samples: dict[str, TreeSample | None] = {ref: t if t.procs else None for ref, t in trees.items()}
            # a try that ended while its host was sampled is settled already: no figures after that
            still = [r for r in running if r[0] in samples and remote.owns(r[0])]
            for ref, reason in monitor.apply(still, samples):
                log.warning("try %s: %s; killing its remote process group", ref, reason)
                engine.kill_try(ref, reason)
        except Exception:
            log.exception("remote resource sampling failed; trying again next tick")


def _timed(monitor: ResourceMonitor, remote: Any, items: list[Any]) -> tuple[dict[str, Any], list[str]]:
    started = time.thread_time()
    try:
        return remote.sample(items)
    finally:
        monitor.remote.cpu += time.thread_time() - started
        monitor.remote.ticks += 1
