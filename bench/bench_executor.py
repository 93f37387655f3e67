"""LocalExecutor latency: submit -> on_finished for tasks that do nothing. Prints, asserts nothing.

200 sequential `true` bash tasks, 200 templated ones (`true {{ ds }}`: what Jinja costs), then 100
sequential no-op PythonOperator tasks, each submitted only after the previous one finished, so every
figure is the executor's own overhead: the JSON round trip, rendering and starting bash (or forking
and importing the DAG file for Python), reaping, the status file.

    .venv/bin/python bench/bench_executor.py [--bash 200] [--templated 200] [--python 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

from flow.executors.base import TaskResult, TaskSpec
from flow.executors.local import LocalExecutor

DAG_SOURCE = """
from flow import DAG
from flow.operators import PythonOperator

with DAG("bench_noop", schedule=None):
    PythonOperator(task_id="noop", python_callable=lambda: None)
"""


def _spec(root: Path, kind: str, i: int, dag_file: str, command: str) -> TaskSpec:
    log = root / "logs" / kind / f"{i}.log"
    return TaskSpec(
        ref=f"{kind}-{i}", kind=kind, dag_id="bench_noop", task_id="noop", run_id="bench", try_number=1,
        dag_file=dag_file, log_path=str(log), status_path=f"{log}.status.json",
        bash_command=command if kind == "bash" else None, do_xcom_push=False,
        context={"logical_date": "2024-01-01T00:00:00+00:00", "data_interval_start": "2024-01-01T00:00:00+00:00",
                 "data_interval_end": "2024-01-01T00:00:00+00:00", "run_id": "bench", "run_type": "manual",
                 "conf": {}, "params": {}, "dag_id": "bench_noop", "task_id": "noop", "try_number": 1,
                 "max_tries": 1, "timezone": "UTC"},
    )


async def _measure(root: Path, kind: str, n: int, dag_file: str, command: str = "true") -> tuple[list[float], int]:
    finished: asyncio.Queue[TaskResult] = asyncio.Queue()
    executor = LocalExecutor()
    await executor.start(lambda ref, pid, rendered: None, finished.put_nowait)
    latencies, failures = [], 0
    try:
        for i in range(n):
            spec = _spec(root, kind, i, dag_file, command)
            t0 = time.perf_counter()
            executor.submit(spec)
            result = await finished.get()
            latencies.append((time.perf_counter() - t0) * 1000)
            failures += not result.ok
    finally:
        await executor.stop(kill_running=True)
    return latencies, failures


def _report(label: str, ms: list[float], failures: int) -> None:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"{label:<22} n={len(ms):<4} median {statistics.median(ms):6.2f} ms   p95 {p95:6.2f} ms   "
          f"max {ordered[-1]:6.2f} ms   failed {failures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bash", type=int, default=200, help="sequential `true` bash tasks")
    parser.add_argument("--templated", type=int, default=200, help="sequential `true {{ ds }}` bash tasks")
    parser.add_argument("--python", type=int, default=100, help="sequential no-op Python tasks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flow-bench-") as tmp:
        root = Path(tmp)
        dag_file = root / "bench_noop.py"
        dag_file.write_text(textwrap.dedent(DAG_SOURCE))
        print("submit -> finished latency, LocalExecutor (one task at a time)")
        if args.bash:
            _report("bash `true`", *asyncio.run(_measure(root, "bash", args.bash, str(dag_file))))
        if args.templated:
            _report("bash `true {{ ds }}`",
                    *asyncio.run(_measure(root, "bash", args.templated, str(dag_file), "true {{ ds }}")))
        if args.python:
            _report("python no-op", *asyncio.run(_measure(root, "python", args.python, str(dag_file))))


if __name__ == "__main__":
    main()
