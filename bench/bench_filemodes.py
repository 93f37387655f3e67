"""What flowd's start-up check of file modes costs on a big log folder (flow/filemodes.py).

flowd walks the whole log folder before it listens (daemon/main.secure_files), so this is time
added to every start. Builds a log tree shaped like flow's (dag_id=/run_id=/task_id=/attempt=N.log
and its .status.json), first with every file 0644 (what an older flowd left: all are fixed), then
again (nothing to fix: the cost of every later start). Prints the figures; asserts nothing.

    .venv/bin/python bench/bench_filemodes.py [--runs 2000] [--tasks 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from flow import filemodes


def build(root: str, runs: int, tasks: int) -> int:
    count = 0
    for r in range(runs):
        for t in range(tasks):
            folder = os.path.join(root, f"dag_id=d{r % 20}", f"run_id=scheduled__{r}", f"task_id=t{t}")
            os.makedirs(folder, mode=0o755, exist_ok=True)
            for name in ("attempt=1.log", "attempt=1.log.status.json"):
                path = os.path.join(folder, name)
                with open(path, "wb") as fh:
                    fh.write(b"x\n")
                os.chmod(path, 0o644)
                count += 1
    return count


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="flow-bench-modes-") as root:
        files = build(root, args.runs, args.tasks)
        entries = sum(len(d) + len(f) for _r, d, f in os.walk(root))
        fixing, checking = [], []
        for _ in range(args.repeat):
            for dirpath, dirs, names in os.walk(root):
                for name in dirs:
                    os.chmod(os.path.join(dirpath, name), 0o755)
                for name in names:
                    os.chmod(os.path.join(dirpath, name), 0o644)
            fixed = filemodes.Fixed()
            t0 = time.perf_counter()
            filemodes.secure_tree(root, gid=None, fixed=fixed)
            fixing.append(time.perf_counter() - t0)
            assert fixed.count == entries, (fixed.count, entries)
            t0 = time.perf_counter()
            filemodes.secure_tree(root, gid=None, fixed=filemodes.Fixed())
            checking.append(time.perf_counter() - t0)
    print(f"log tree: {files} files, {entries} entries in all")
    print(f"secure_tree fixing every entry: median {statistics.median(fixing):.3f}s "
          f"({statistics.median(fixing) / entries * 1e6:.1f} us/entry)")
    print(f"secure_tree with nothing to fix: median {statistics.median(checking):.3f}s "
          f"({statistics.median(checking) / entries * 1e6:.1f} us/entry)")


if __name__ == "__main__":
    main()
