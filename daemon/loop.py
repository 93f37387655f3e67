"""The engine's loop: event-driven, with a burst mode that returns once nothing can progress."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flow.states import ACTIVE, RunState

if TYPE_CHECKING:
    from .engine import Engine


class LoopMixin:
    """Mixed into Engine; `self` is the engine."""

    def idle(self: Engine) -> bool:
        """True when nothing is in flight and no unfinished run can still make progress."""
        if self.refs or self._events or self.callbacks or self.callbacks_inflight or self.resubmit:
            return False
        paused = set(self.paused) - {self.runs[k].dag_id for k in self.unpaused_runs if k in self.runs}
        return all(r.state == RunState.QUEUED and r.dag_id in paused for r in self.runs.values())

    async def run(self: Engine, *, once: bool = False, periodic: Callable[[], Any] | None = None,
                  period: float = 1.0, kill_on_exit: bool = False) -> None:
        """Run the loop. once=True returns when idle (burst mode); `periodic` runs every `period` s.

        kill_on_exit stops running tries when the loop ends early (a foreground command interrupted);
        otherwise they go on under the runner and are settled by the next engine that loads them.
        """
        self._wake = asyncio.Event()
        await self.executor.start(self._on_started, self._on_finished)
        loop = asyncio.get_running_loop()
        next_periodic = loop.time()
        sampler = asyncio.create_task(self.monitor.run(self), name="resources")
        try:
            while True:
                if periodic is not None and loop.time() >= next_periodic:
                    res = periodic()
                    if asyncio.iscoroutine(res):
                        await res
                    next_periodic = loop.time() + period
                self._wake.clear()
                wake_at = self.tick()
                if once and self.idle() and not self._due_now():
                    return
                timeout = None if wake_at is None else max(0.0, (wake_at - self.clock()).total_seconds())
                if periodic is not None:
                    left = max(0.0, next_periodic - loop.time())
                    timeout = left if timeout is None else min(timeout, left)
                if self._events and not self.waiting_to_retry():
                    continue
                # asyncio.timeout, not wait_for: on 3.11, wait_for swallows a cancel that arrives just
                # as the wake event is set (CPython gh-86296), and the loop then never ends.
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            sampler.cancel()
            # Stopped because another flowd has the database: its tries are that flowd's now.
            await self.executor.stop(kill_running=kill_on_exit and not self.superseded and self.store.lost is None)

    def _due_now(self: Engine) -> bool:
        if not self.schedule:
            return False
        now = self.clock()
        return any(
            n is not None and n <= now and d not in self.paused and d not in self.inactive
            for d, n in self.next_dagrun.items()
        )

    def running_tries(self: Engine) -> list[tuple[str, int, int | None, float | None]]:
        """(ref, pid, memory_limit, cpu_time_limit) of every try whose process has started."""
        out = []
        tasks: dict[str, dict[str, dict[str, Any]]] = {}
        for ref, (run_key, task_id) in self.refs.items():
            run = self.runs.get(run_key)
            extra = run.extra.get(task_id) if run is not None else None
            if run is None or extra is None or extra.ref != ref or not extra.pid:
                continue
            by_id = tasks.get(run.dag_id)
            if by_id is None:
                by_id = tasks[run.dag_id] = {t["task_id"]: t for t in self.dags.get(run.dag_id, {}).get("tasks", ())}
            task = by_id.get(task_id, {})
            out.append((ref, extra.pid, task.get("memory_limit"), task.get("cpu_time_limit")))
        return out

    def running_count(self: Engine) -> int:
        return sum(1 for r in self.runs.values() for v in r.tis.values() if v.state in ACTIVE)


