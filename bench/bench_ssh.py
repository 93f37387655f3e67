"""SSH executor overhead against a private sshd on 127.0.0.1. Prints figures, asserts nothing.

warm     N sequential remote `true` tries on a warm connection (submit -> on_finished), against
         the same `true` run on a raw paramiko channel on that connection (what sshd itself costs
         per session: fork, login shell, exit), and against `ssh host true` run by hand (a new
         OpenSSH connection each time). flow's overhead is the first minus the second.
parallel 50 remote `true` tries submitted at once on one host (max_sessions 8), against
         `xargs -P8` running 50 `ssh host true`.

    .venv/bin/python bench/bench_ssh.py [--warm 30] [--parallel 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flow.executors.ssh import SSHExecutor  # noqa: E402
from tests.ssh.conftest import Collector, make_spec, make_sshd, write_connections  # noqa: E402


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.1f} ms"


async def warm(conf: Path, root: Path, n: int) -> tuple[list[float], list[float]]:
    ex = SSHExecutor(str(conf))
    c = Collector()
    await ex.start(c.on_started, c.on_finished)
    flow_times, raw_times = [], []
    try:
        first = make_spec(root, "true", do_xcom_push=False)
        ex.submit(first)
        await c.wait_finished(first.ref)  # connects
        conn = ex.pool.connection("local")
        for _ in range(n):
            spec = make_spec(root, "true", do_xcom_push=False)
            t0 = time.perf_counter()
            ex.submit(spec)
            result = await c.wait_finished(spec.ref)
            flow_times.append(time.perf_counter() - t0)
            if not result.ok:
                raise SystemExit(f"benchmark try failed: {result.error}")

            def raw() -> float:
                t = time.perf_counter()
                chan = ex.pool.open_channel(conn)
                chan.exec_command("true")
                chan.recv_exit_status()
                chan.close()
                return time.perf_counter() - t

            raw_times.append(await asyncio.to_thread(raw))
    finally:
        await ex.stop()
    return flow_times, raw_times


async def parallel(conf: Path, root: Path, n: int) -> float:
    ex = SSHExecutor(str(conf))
    c = Collector()
    await ex.start(c.on_started, c.on_finished)
    try:
        warmup = make_spec(root, "true")
        ex.submit(warmup)
        await c.wait_finished(warmup.ref)
        specs = [make_spec(root, "true", do_xcom_push=False) for _ in range(n)]
        t0 = time.perf_counter()
        for s in specs:
            ex.submit(s)
        results = [await c.wait_finished(s.ref, timeout=300) for s in specs]
        total = time.perf_counter() - t0
        bad = [r.error for r in results if not r.ok]
        if bad:
            raise SystemExit(f"{len(bad)} benchmark tries failed: {bad[0]}")
        return total
    finally:
        await ex.stop()


def ssh_cmd(sshd, command: str) -> list[str]:  # noqa: ANN001
    return ["ssh", "-q", "-p", str(sshd.port), "-i", str(sshd.user_key), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "127.0.0.1", command]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warm", type=int, default=30)
    ap.add_argument("--parallel", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="flow-bench-ssh-") as tmp:
        root = Path(tmp)
        sshd = make_sshd(root / "sshd")
        sshd.start()
        try:
            conf = write_connections(root / "connections.toml", sshd, max_sessions=8)
            flow_t, raw_t = asyncio.run(warm(conf, root, args.warm))
            by_hand = []
            for _ in range(min(args.warm, 15)):
                t0 = time.perf_counter()
                subprocess.run(ssh_cmd(sshd, "true"), check=True)
                by_hand.append(time.perf_counter() - t0)
            overhead = [f - r for f, r in zip(flow_t, raw_t, strict=True)]
            print(f"warm     {args.warm} remote `true` tries: flow {ms(flow_t)}; raw channel {ms(raw_t)}; "
                  f"`ssh host true` by hand {ms(by_hand)}; flow overhead over the raw channel "
                  f"{ms(overhead)} (target < 20 ms)")
            total = asyncio.run(parallel(conf, root, args.parallel))
            t0 = time.perf_counter()
            subprocess.run(["bash", "-c", f"seq {args.parallel} | xargs -P8 -I{{}} " +
                            " ".join(ssh_cmd(sshd, "true"))], check=True)
            xargs = time.perf_counter() - t0
            print(f"parallel {args.parallel} remote `true` tries at once, max_sessions 8: total {total:.2f} s "
                  f"vs xargs -P8 of `ssh host true` {xargs:.2f} s")
        finally:
            sshd.stop()


if __name__ == "__main__":
    main()
