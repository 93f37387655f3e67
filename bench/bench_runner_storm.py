"""The runner under abuse: storms of tries ending together. Prints, asserts nothing.

`timeout`: each repetition starts TRIES tries of CHILDREN children each (`sleep 1000 &` x N;
wait), all with a 0.05 s execution_timeout, so their exits and their pipes' EOFs land in the
runner's loop together; a bystander `echo` runs beside them. `plain`: TRIES `echo` tries that end
together. After a runner death the executor starts a new runner with the next submit and the
storm goes on, so the deaths are counted, not just the first. The runner's CPU is read from /proc
before each repetition's end (a runner that died takes its figure with it).

    .venv/bin/python bench/bench_runner_storm.py [--scenario timeout|plain] [--reps 50] [--tries 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from flow.executors.base import TaskResult, TaskSpec
from flow.executors.local import LocalExecutor


def _spec(root: Path, ref: str, command: str, timeout: float | None) -> TaskSpec:
    log = root / "logs" / f"{ref}.log"
    return TaskSpec(ref=ref, kind="bash", dag_id="storm", task_id=ref, run_id="bench", try_number=1,
                    dag_file=str(root / "dag.py"), log_path=str(log), status_path=f"{log}.status.json",
                    bash_command=command, execution_timeout=timeout, kill_grace=0.2)


def _cpu(pid: int | None) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.Error, TypeError):
        return 0.0
    return times.user + times.system


async def storm(scenario: str, reps: int, tries: int, children: int) -> None:
    finished: dict[str, TaskResult] = {}
    changed = asyncio.Event()

    def on_finished(result: TaskResult) -> None:
        finished[result.ref] = result
        changed.set()

    ex = LocalExecutor()
    await ex.start(lambda *_: None, on_finished)
    runners = {ex.runner_pid}
    command, timeout = ((f"for i in $(seq {children}); do sleep 1000 & done; wait", 0.05) if scenario == "timeout"
                        else ("echo out; echo err >&2", None))
    walls, cpu, failed, bystanders_failed = [], 0.0, 0, 0
    with tempfile.TemporaryDirectory(prefix="flow-storm-") as tmp:
        root = Path(tmp)
        for rep in range(reps):
            refs = [f"r{rep}-t{i}" for i in range(tries)] + [f"r{rep}-bystander"]
            t0 = time.perf_counter()
            for ref in refs[:-1]:
                ex.submit(_spec(root, ref, command, timeout))
            ex.submit(_spec(root, refs[-1], "echo fine", None))
            before = _cpu(ex.runner_pid)
            while not all(r in finished for r in refs):
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), 30)
                except TimeoutError:
                    break
            walls.append(time.perf_counter() - t0)
            cpu += max(0.0, _cpu(ex.runner_pid) - before)
            runners.add(ex.runner_pid)
            expected_ok = timeout is None
            failed += sum(1 for r in refs[:-1] if r not in finished or finished[r].ok != expected_ok)
            bystanders_failed += not (refs[-1] in finished and finished[refs[-1]].ok)
    await ex.stop(kill_running=True)
    died = sum(1 for r in finished.values() if r.error and "runner" in r.error and "died" in r.error
               or r.error and "exited unexpectedly" in r.error)
    print(f"{scenario}: {reps} repetitions of {tries} tries" + (f" x {children} children" if scenario == "timeout" else ""))
    print(f"  runner deaths: {len(runners) - 1}; tries failed by a runner death: {died}")
    print(f"  tries with the wrong outcome: {failed}; bystanders failed: {bystanders_failed}")
    print(f"  wall per repetition: median {statistics.median(walls) * 1000:.0f} ms, max {max(walls) * 1000:.0f} ms")
    print(f"  runner CPU: {cpu:.2f} s in all, {cpu / reps * 1000:.0f} ms per repetition (while it lived)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("timeout", "plain"), default="timeout")
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--tries", type=int, default=None, help="default 20 (timeout) or 30 (plain)")
    parser.add_argument("--children", type=int, default=20)
    args = parser.parse_args()
    tries = args.tries or (20 if args.scenario == "timeout" else 30)
    asyncio.run(storm(args.scenario, args.reps, tries, args.children))


if __name__ == "__main__":
    main()
