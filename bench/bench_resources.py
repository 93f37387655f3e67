"""What resource sampling costs flowd, and what it stores per try. Prints figures, asserts nothing.

sampling  N real `sleep` processes, each the leader of its own session with one child (as the
          runner starts tries: a `bash -c` with a command under it), sampled by flowd's own
          ResourceMonitor with the real psutil facade for T ticks. Reported: CPU seconds per tick
          (thread time of the collecting thread plus the loop-side fold), as % of one core at the
          default 2 s interval, and the wall time of a tick (spent in a worker thread, not on the loop).
storage   the JSON figures stored per try (try_resources row, series included) for tries sampled
          1, 60, 1800 (1 h) and 43200 (1 day) times at the default interval.

    .venv/bin/python bench/bench_resources.py [--tasks 100] [--ticks 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from types import SimpleNamespace

from flow.daemon.resources import ResourceMonitor, TryStats
from flow.executors.base import TreeSample

DEFAULT_INTERVAL = 2.0


def sampling(tasks: int, ticks: int) -> None:
    procs = [subprocess.Popen(["bash", "-c", "sleep 60; true"], start_new_session=True,
                              stdout=subprocess.DEVNULL) for _ in range(tasks)]
    try:
        time.sleep(0.5)  # let each bash start its sleep
        monitor = ResourceMonitor(SimpleNamespace(sample_interval=DEFAULT_INTERVAL, min_free_memory=""))
        running = [(f"t{i}", p.pid, 1 << 40, None) for i, p in enumerate(procs)]
        for ref, *_ in running:
            monitor.started(ref)
        roots = {r[0]: r[1] for r in running}
        cpu, wall, members = [], [], 0
        for _ in range(ticks):
            c0, w0 = time.thread_time(), time.perf_counter()
            trees = monitor.collect(roots)
            monitor.apply(running, trees)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
            members = sum(t.procs for t in trees.values() if t is not None)
            time.sleep(0.2)
        host_procs = len(os.listdir("/proc")) if os.path.isdir("/proc") else 0
        per_tick = statistics.median(cpu)
        print(f"sampling {tasks} tries ({members} processes; ~{host_procs} /proc entries on the host): "
              f"median {per_tick * 1000:.1f} ms CPU per tick (p-max {max(cpu) * 1000:.1f} ms), "
              f"= {per_tick / DEFAULT_INTERVAL * 100:.2f}% of one core at {DEFAULT_INTERVAL:g} s; "
              f"tick wall median {statistics.median(wall) * 1000:.1f} ms (in a worker thread)")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
            p.wait()


def storage() -> None:
    sizes = []
    for samples in (1, 60, 1800, 43200):
        stats = TryStats("bench", 0.0)
        for i in range(samples):
            t = (i + 1) * DEFAULT_INTERVAL
            tree = TreeSample(user=t * 0.7, system=t * 0.1, rss=(512 << 20) + i * 4096, read_bytes=i * 10**6,
                              write_bytes=i * 10**5, procs=3, threads=12)
            stats.add(tree, t)
        figures = stats.figures(samples * DEFAULT_INTERVAL, {"utime": 1.0, "stime": 0.1, "maxrss_kb": 600_000.0})
        sizes.append(f"{samples} samples: {len(json.dumps(figures).encode())} B "
                     f"({len(figures['series']['t'])} points)")
    print("stored per try (figures JSON, series included): " + "; ".join(sizes))


def report(tasks: int = 100, ticks: int = 20) -> None:
    sampling(tasks, ticks)
    storage()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--ticks", type=int, default=20)
    args = ap.parse_args()
    report(args.tasks, args.ticks)


if __name__ == "__main__":
    main()
