"""Engine benchmarks: print figures, assert nothing. Run with `make bench` or `.venv/bin/python bench/run.py`.

chain   50 BashOperator `true` tasks in a line: gap from one task's end to the next one's start
        (runner timestamps), and total time against the same 50 commands in a shell loop.
fanout  1 -> N `true` -> 1 with parallelism 16: total time against `xargs -P16` running N commands.
python  50 PythonOperator no-op tasks in a line: the same gap.
scale   fan-outs of 100, 1,000 and 5,000 `true` at parallelism 16: flowd's own CPU per task (the
        engine's process time, not the tasks'), which must stay flat as the run grows.
--quick  smaller sizes, no ssh and resources scenarios: a figure in under a minute for the PR loop.
resources  flowd's CPU for sampling 100 running tries, and bytes stored per try (bench_resources.py).
ssh     bench_ssh.py: remote `true` tries on a private sshd (skipped, with a note, without openssh-server).

Each scenario runs through the real engine with the real local executor and SQLite, exactly as
`flow dags test` does (a fresh database and log folder in a temporary directory).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

CHAIN = """
from flow import DAG, chain
from flow.operators import BashOperator
with DAG("bench_chain", schedule=None, max_active_tasks=64):
    chain(*[BashOperator(task_id=f"t{{i:03d}}", bash_command="true", do_xcom_push=False) for i in range({n})])
"""
FANOUT = """
from flow import DAG
from flow.operators import BashOperator
with DAG("bench_fanout", schedule=None, max_active_tasks=16):
    start = BashOperator(task_id="start", bash_command="true")
    end = BashOperator(task_id="end", bash_command="true")
    mids = [BashOperator(task_id=f"m{{i:03d}}", bash_command="true", do_xcom_push=False) for i in range({n})]
    start >> mids >> end
"""
PYCHAIN = """
from flow import DAG, chain
from flow.operators import PythonOperator
def noop():
    return None
with DAG("bench_python", schedule=None):
    chain(*[PythonOperator(task_id=f"p{{i:03d}}", python_callable=noop, do_xcom_push=False) for i in range({n})])
"""


def run_dag(source: str, dag_id: str, parallelism: int, cpu: list[float] | None = None) -> tuple[float, list[dict]]:
    from flow.daemon.config import load_settings
    from flow.daemon.engine import Engine
    from flow.daemon.store import Store
    from flow.daemon.watch import FolderWatcher
    from flow.executors.local import LocalExecutor

    with tempfile.TemporaryDirectory(prefix="flow-bench-") as tmp:
        root = Path(tmp)
        (root / "dags").mkdir()
        (root / "dags" / f"{dag_id}.py").write_text(textwrap.dedent(source))
        settings = load_settings({"dags_folder": str(root / "dags"), "db_url": f"sqlite:///{root / 'flow.db'}",
                                  "log_folder": str(root / "logs"), "parallelism": parallelism},
                                 config_file=root / "none.toml")
        engine = Engine(Store.open(settings.db_url), LocalExecutor(), settings, schedule=False)
        engine.load()
        FolderWatcher(engine).refresh_sync()
        run = engine.trigger(dag_id, unpause_run=True)
        t0, c0 = time.perf_counter(), time.process_time()
        asyncio.run(engine.run(once=True))
        total = time.perf_counter() - t0
        if cpu is not None:
            cpu.append(time.process_time() - c0)
        state = engine.store.run_by_key(run["key"])["state"]
        if state != "success":
            raise SystemExit(f"benchmark run of {dag_id} ended {state}")
        tries = [t for ti in engine.store.task_instances(run["key"]) for t in engine.store.tries(run["key"], ti["task_id"])]
        return total, tries


def gaps(tries: list[dict]) -> list[float]:
    ordered = sorted(tries, key=lambda t: t["start_date"])
    return [(b["start_date"] - a["end_date"]).total_seconds() * 1000 for a, b in zip(ordered, ordered[1:], strict=False)]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def shell(cmd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", cmd], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chain", type=int, default=50)
    ap.add_argument("--fanout", type=int, default=500)
    ap.add_argument("--python", type=int, default=50)
    ap.add_argument("--scale", default="100,1000,5000", help="fan-out sizes for the CPU-per-task scenario")
    ap.add_argument("--quick", action="store_true", help="small sizes, no ssh/resources scenarios")
    args = ap.parse_args()
    if args.quick:
        args.fanout, args.scale = min(args.fanout, 200), "100,500"
    print(f"machine: {platform.machine()}, {psutil.cpu_count()} cpus, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}")

    total, tries = run_dag(CHAIN.format(n=args.chain), "bench_chain", 16)
    g = gaps(tries)
    loop = shell(f"for i in $(seq {args.chain}); do bash -c true; done")
    print(f"chain  {args.chain} bash tasks: gap median {statistics.median(g):.2f} ms, p95 {pct(g, 95):.2f} ms; "
          f"total {total:.3f} s vs shell loop {loop:.3f} s")

    total, _ = run_dag(FANOUT.format(n=args.fanout), "bench_fanout", 16)
    xargs = shell(f"seq {args.fanout} | xargs -P16 -I{{}} bash -c true")
    print(f"fanout 1 -> {args.fanout} -> 1, parallelism 16: total {total:.3f} s vs xargs -P16 {xargs:.3f} s "
          f"({total / xargs:.2f}x)")

    total, tries = run_dag(PYCHAIN.format(n=args.python), "bench_python", 16)
    g = gaps(tries)
    print(f"python {args.python} python tasks: gap median {statistics.median(g):.2f} ms, p95 {pct(g, 95):.2f} ms; "
          f"total {total:.3f} s")
    sys.stdout.flush()
    for n in (int(x) for x in args.scale.split(",")):
        cpu: list[float] = []
        total, _ = run_dag(FANOUT.format(n=n), "bench_fanout", 16, cpu)
        xargs = shell(f"seq {n} | xargs -P16 -I{{}} bash -c true")
        print(f"scale  fan-out {n}: flowd CPU {cpu[0] / (n + 2) * 1000:.2f} ms per task; total {total:.2f} s "
              f"vs xargs -P16 {xargs:.2f} s ({total / xargs:.2f}x)")
        sys.stdout.flush()
    if args.quick:
        return
    if Path("/usr/sbin/sshd").exists():
        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_ssh.py"))], check=False)
    else:
        print("ssh    skipped: /usr/sbin/sshd is missing (apt-get install openssh-server)")

    from bench_resources import report  # bench/ is sys.path[0] when this file is run

    report(tasks=100, ticks=10)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
