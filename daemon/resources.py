"""What every running try costs: its process tree sampled every `sample_interval`, limits, admission.

Each tick reads one process table for the whole host (see proctable.py), finds every try's tree in
it, and reads each member's figures through cached psutil objects; those OS calls run in a worker
thread so the event loop only does the arithmetic. CPU % is the growth of the tree's CPU seconds
between two ticks: a child that ran and was reaped in between still counts (its time went into
its parent's children_* times), where summing per-process cpu_percent() would miss it.

When a try ends its totals are settled with the kernel's rusage of the leader (exact CPU seconds
and max RSS even for a try shorter than one tick) and stored with a series of at most
MAX_POINTS points for sparklines.

Remote (SSH) tries are a second source feeding the same `apply()`: see resources_remote.py and
docs/design.md 4b. This loop samples only the tries that run on this host.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flow.executors.base import TreeSample
from flow.units import format_bytes, format_seconds, parse_threshold

from .footprint import Footprint
from .proctable import HostSample, ProcFacade, ProcSample, tree_members
from .resources_remote import RemoteSampling, remote_refs, run_remote

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("flow.resources")

MAX_POINTS = 60
"""Points kept per try: one a tick, then pairs merged (and the stride doubled) when full."""
ADMISSION_MAX_AGE = 0.5
"""Seconds a free-memory reading stays good for admission between ticks."""


def executor_tags(engine: Engine, roots: dict[str, int]) -> dict[str, str]:
    """The FLOW_TRY tag of each local try in `roots`: from the executor that started it, or from
    recovery for a try an earlier flowd started (a remote orphan has none: sampled elsewhere)."""
    tags = getattr(engine.executor, "tags", None)
    out = {ref: tag for ref, tag in tags().items() if ref in roots} if callable(tags) else {}
    for ref, orphan in getattr(engine, "orphans", {}).items():
        tag = getattr(orphan, "tag", None)
        if ref in roots and isinstance(tag, str):
            out[ref] = tag
    return out


def sum_tree(samples: list[ProcSample]) -> TreeSample:
    out = TreeSample()
    for s in samples:
        out.user += s.user
        out.system += s.system
        out.rss += s.rss
        out.read_bytes += s.read_bytes
        out.write_bytes += s.write_bytes
        out.threads += s.threads
    out.procs = len(samples)
    return out


class Series:
    """A bounded time series: ticks are averaged (CPU) or maxed (RSS) into buckets of `stride`."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self.max_points = max_points
        self.stride = 1
        self.points: list[tuple[float, float, int]] = []
        self._bucket: list[tuple[float, float, int]] = []

    def add(self, t: float, cpu: float, rss: int) -> None:
        self._bucket.append((t, cpu, rss))
        if len(self._bucket) >= self.stride:
            self.points.append(_merge(self._bucket))
            self._bucket = []
            if len(self.points) >= self.max_points:
                self.points = [_merge(self.points[i:i + 2]) for i in range(0, len(self.points), 2)]
                self.stride *= 2

    def as_json(self) -> dict[str, list[Any]]:
        pts = self.points + ([_merge(self._bucket)] if self._bucket else [])
        pts = pts[-self.max_points:]
        return {"t": [round(p[0], 1) for p in pts], "cpu": [round(p[1], 1) for p in pts],
                "rss": [p[2] for p in pts]}


def _merge(pts: list[tuple[float, float, int]]) -> tuple[float, float, int]:
    return pts[-1][0], sum(p[1] for p in pts) / len(pts), max(p[2] for p in pts)


@dataclass
class TryStats:
    """Running figures of one try; cumulative counters only grow (a process that exited unreaped
    takes its counters with it, and the tree's total must not go backwards)."""

    ref: str
    t0: float
    memory_limit: int | None = None
    cpu_time_limit: float | None = None
    cpu_user: float = 0.0
    cpu_system: float = 0.0
    read_bytes: int = 0
    write_bytes: int = 0
    rss: int = 0
    peak_rss: int = 0
    cpu_percent: float = 0.0
    peak_cpu_percent: float = 0.0
    procs: int = 0
    threads: int = 0
    max_procs: int = 0
    max_threads: int = 0
    last_t: float | None = None
    last_cpu: float = 0.0
    series: Series = field(default_factory=Series)
    limit_hit: str | None = None
    samples: int = 0

    def add(self, tree: TreeSample, now: float) -> None:
        self.samples += 1
        self.cpu_user = max(self.cpu_user, tree.user)
        self.cpu_system = max(self.cpu_system, tree.system)
        self.read_bytes = max(self.read_bytes, tree.read_bytes)
        self.write_bytes = max(self.write_bytes, tree.write_bytes)
        total = self.cpu_user + self.cpu_system
        since = self.t0 if self.last_t is None else self.last_t
        span = now - since
        self.cpu_percent = max(0.0, (total - self.last_cpu) / span * 100.0) if span > 0 else 0.0
        self.last_t, self.last_cpu = now, total
        self.peak_cpu_percent = max(self.peak_cpu_percent, self.cpu_percent)
        self.rss, self.procs, self.threads = tree.rss, tree.procs, tree.threads
        self.peak_rss = max(self.peak_rss, tree.rss)
        self.max_procs = max(self.max_procs, tree.procs)
        self.max_threads = max(self.max_threads, tree.threads)
        self.series.add(now - self.t0, self.cpu_percent, tree.rss)

    def check_limits(self) -> str | None:
        """The reason to kill the try, the first time a limit is crossed."""
        if self.limit_hit is not None:
            return None
        if self.memory_limit is not None and self.rss > self.memory_limit:
            self.limit_hit = (f"memory limit {format_bytes(self.memory_limit)} exceeded: "
                              f"{format_bytes(self.rss)} (tree RSS)")
        elif self.cpu_time_limit is not None and self.cpu_user + self.cpu_system > self.cpu_time_limit:
            self.limit_hit = (f"cpu time limit {format_seconds(self.cpu_time_limit)} exceeded: "
                              f"{self.cpu_user + self.cpu_system:.1f}s CPU (user+system, whole tree)")
        return self.limit_hit

    def figures(self, wall: float, rusage: dict[str, float] | None = None) -> dict[str, Any]:
        ru = rusage or {}
        user = max(self.cpu_user, float(ru.get("utime") or 0.0))
        system = max(self.cpu_system, float(ru.get("stime") or 0.0))
        peak_rss = max(self.peak_rss, int(float(ru.get("maxrss_kb") or 0) * 1024))
        avg = (user + system) / wall * 100.0 if wall > 0 else 0.0
        return {
            "cpu_user": round(user, 3), "cpu_system": round(system, 3), "peak_rss": peak_rss,
            "avg_cpu_percent": round(avg, 1), "peak_cpu_percent": round(max(self.peak_cpu_percent, avg), 1),
            "read_bytes": self.read_bytes, "write_bytes": self.write_bytes, "wall": round(wall, 3),
            "max_procs": max(self.max_procs, 1 if rusage else 0), "max_threads": self.max_threads,
            "series": self.series.as_json(),
        }


@dataclass
class Admission:
    min_free_memory: str | None = None
    holding: bool = False
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"min_free_memory": self.min_free_memory, "holding": self.holding, "reason": self.reason}


def admission_for(setting: str, host: HostSample) -> Admission:
    """Hold when available memory is below the setting; the reason quotes both in the setting's units."""
    if not setting:
        return Admission()
    kind, value = parse_threshold(setting, "min_free_memory")
    free_pct = host.mem_available / host.mem_total * 100.0 if host.mem_total else 0.0
    if kind == "percent":
        holding = free_pct < value
        reason = f"admission control: free memory {free_pct:.0f}% < min_free_memory {setting}"
    else:
        holding = host.mem_available < value
        reason = (f"admission control: free memory {format_bytes(host.mem_available)} < "
                  f"min_free_memory {format_bytes(value)}")
    return Admission(setting, holding, reason if holding else None)


RunningTry = tuple[str, int, int | None, float | None]
"""(ref, leader pid, memory_limit bytes, cpu_time_limit seconds)."""


class ResourceMonitor:
    """Samples the running tries of one engine; owns their live figures until the try ends."""

    def __init__(self, settings: Any, facade: ProcFacade | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.facade = facade or ProcFacade()
        self.clock = clock
        self.stats: dict[str, TryStats] = {}
        self.host: HostSample | None = None
        self._host_at = -1e9
        self._admission = Admission()
        self._admission_setting: str | None = None
        self.sampling_cpu = 0.0
        """CPU seconds the sampling thread has spent, for the benchmark and the status."""
        self.ticks = 0
        self.remote = RemoteSampling()
        self.footprint = Footprint()

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, engine: Engine) -> None:
        """Sample, enforce limits and watch free memory until cancelled; an error costs one tick.

        Remote tries are left to their own source (resources_remote.py), which runs beside this
        loop: their pid is a session id on another host and means nothing in this host's table.
        """
        remote = asyncio.create_task(run_remote(self, engine), name="resources-remote")
        try:
            await self._run_local(engine)
        finally:
            remote.cancel()

    async def _run_local(self, engine: Engine) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.footprint.due():
                try:
                    await loop.run_in_executor(None, self.footprint.refresh, engine)
                except Exception:
                    log.exception("measuring the database and log folder sizes failed")
            interval = float(getattr(self.settings, "sample_interval", 2.0) or 2.0)
            await asyncio.sleep(interval)
            try:
                running = engine.running_tries()
                elsewhere = remote_refs(engine, running)
                running = [r for r in running if r[0] not in elsewhere]
                roots = {r[0]: r[1] for r in running}
                tags = executor_tags(engine, roots)
                trees = await loop.run_in_executor(None, self.collect, roots, tags)
                was = self._admission.holding
                for ref, reason in self.apply(running, trees):
                    log.warning("try %s: %s; killing its process tree", ref, reason)
                    engine.kill_try(ref, reason)
                if self.admission(refresh=True).holding != was:
                    log.warning("%s", self._admission.reason or "admission control: free memory is back; "
                                "starting tasks again")
                    engine.wake()
            except Exception:
                log.exception("resource sampling failed; trying again next tick")

    def collect(self, roots: dict[str, int], tags: dict[str, str] | None = None) -> dict[str, TreeSample | None]:
        """The OS side of a tick (runs in a worker thread): one table, then each tree's members.

        `tags` (ref -> FLOW_TRY tag) adds what a try started outside its session; finding those
        costs one more pass over /proc, so it is only made when there are tags to look for.
        """
        started = time.thread_time()
        table = self.facade.table()
        tagged = None
        if tags:
            by_tag = self.facade.tagged(set(tags.values()))
            tagged = {ref: by_tag.get(tag, []) for ref, tag in tags.items()}
        members = tree_members(roots, table, tagged)
        alive: set[tuple[int, int]] = set()
        out: dict[str, TreeSample | None] = {}
        for ref, pids in members.items():
            samples = []
            for pid in pids:
                key = (pid, table[pid][2])
                sample = self.facade.sample(*key)
                if sample is not None:
                    samples.append(sample)
                    alive.add(key)
            out[ref] = sum_tree(samples) if samples else None
        self.facade.forget_except(alive)
        self.host, self._host_at = self.facade.host(), self.clock()
        self.sampling_cpu += time.thread_time() - started
        self.ticks += 1
        return out

    def apply(self, running: list[RunningTry], trees: dict[str, TreeSample | None]) -> list[tuple[str, str]]:
        """Fold a tick into each try's figures (on the loop); the limits crossed, as (ref, reason)."""
        now = self.clock()
        kills = []
        for ref, _pid, mem_limit, cpu_limit in running:
            stats = self.stats.get(ref)
            if stats is None:
                stats = self.stats[ref] = TryStats(ref, now)
            stats.memory_limit, stats.cpu_time_limit = mem_limit, cpu_limit
            tree = trees.get(ref)
            if tree is None:
                continue
            stats.add(tree, now)
            reason = stats.check_limits()
            if reason is not None:
                kills.append((ref, reason))
        return kills

    def started(self, ref: str) -> None:
        """A try's process exists: its wall clock (and first CPU % span) starts now."""
        self.stats[ref] = TryStats(ref, self.clock())

    # -- what the rest of flowd reads -------------------------------------------------------

    def live(self, ref: str) -> dict[str, Any] | None:
        """Figures so far of a running try; None until its first sample."""
        stats = self.stats.get(ref)
        if stats is None or not stats.samples:
            return None
        return stats.figures(self.clock() - stats.t0)

    def finish(self, ref: str, rusage: dict[str, float] | None, duration: float | None) -> dict[str, Any] | None:
        """The try's final figures (None if it never ran a process); forgets its live state."""
        stats = self.stats.pop(ref, None)
        if stats is None and not rusage:
            return None
        if stats is None:
            stats = TryStats(ref, self.clock())
        wall = (rusage or {}).get("wall") or duration or (self.clock() - stats.t0)
        return stats.figures(float(wall), rusage)

    def limit_reason(self, ref: str) -> str | None:
        stats = self.stats.get(ref)
        return stats.limit_hit if stats is not None else None

    def admission(self, *, refresh: bool = False) -> Admission:
        """The current verdict; free memory is re-read when older than ADMISSION_MAX_AGE or asked to."""
        setting = str(getattr(self.settings, "min_free_memory", "") or "")
        if not setting:
            self._admission = Admission()
            return self._admission
        stale = self.clock() - self._host_at > ADMISSION_MAX_AGE
        if refresh or stale or self.host is None:
            self.host, self._host_at = self.facade.host(), self.clock()
        if refresh or stale or setting != self._admission_setting:
            self._admission = admission_for(setting, self.host)
            self._admission_setting = setting
        return self._admission

    def hold(self) -> str | None:
        """For the planner's snapshot: the reason no task may start now, or None."""
        return self.admission().reason
