"""Log sink and retention costs: what max_log_bytes_per_try and the retention sweep take.

Prints figures, asserts nothing:
- TaskLog.write throughput for 64 KiB chunks (what the runner reads per pipe read), with no cap
  and with a cap small enough that almost everything goes through the tail ring file;
- the retention sweep over a log folder of N try logs (half of them old), as flowd runs it in a
  worker thread.

    .venv/bin/python bench/bench_logs.py [--mib 256] [--files 20000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from flow.daemon.housekeeping import sweep_logs
from flow.executors.logsink import TaskLog


def write_throughput(folder: Path, mib: int, cap: int) -> float:
    chunk = (b"x" * 99 + b"\n") * 655  # ~64 KiB of 100-byte lines
    total = mib << 20
    log = TaskLog(str(folder / f"cap{cap}.log"), cap)
    t0 = time.perf_counter()
    written = 0
    while written < total:
        log.write(chunk)
        written += len(chunk)
    log.close()
    return written / (time.perf_counter() - t0) / (1 << 20)


def sweep_time(folder: Path, files: int) -> tuple[float, int]:
    old = time.time() - 40 * 86400
    for i in range(files):
        path = folder / f"dag_id=d{i % 20}" / f"run_id=r{i // 20}" / "task_id=t" / "attempt=1.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"log line\n" * 10)
        if i % 2:
            os.utime(path, (old, old))
    t0 = time.perf_counter()
    result = sweep_logs(str(folder), 30, datetime.now(UTC), set())
    return time.perf_counter() - t0, result.removed_files


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mib", type=int, default=256)
    p.add_argument("--files", type=int, default=20000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for cap in (0, 1 << 20):
            rate = write_throughput(folder, args.mib, cap)
            label = "no cap" if cap == 0 else f"cap {cap >> 10} KiB"
            print(f"TaskLog.write, {args.mib} MiB in 64 KiB chunks, {label}: {rate:,.0f} MiB/s; "
                  f"file {os.path.getsize(folder / f'cap{cap}.log'):,} bytes")
    with tempfile.TemporaryDirectory() as tmp:
        seconds, removed = sweep_time(Path(tmp), args.files)
        print(f"retention sweep over {args.files:,} try logs (half old): {seconds:.2f} s, removed {removed:,} "
              f"files and their empty folders")


if __name__ == "__main__":
    main()
