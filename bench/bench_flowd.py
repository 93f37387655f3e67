"""flowd as a service: start-up time, idle cost and request latency. Prints figures, asserts nothing.

start   exec -> READY=1 (sd_notify, as systemd sees it) with the example DAGs: the first start
        (creating the database) and then warm starts on the same database.
idle    RSS of flowd and of its task runner, and their CPU use over --idle seconds, with the
        example DAGs loaded and paused (nothing runs; what a quiet server pays to keep flowd).
status  round trip of the `status` request, sequential on one connection (--requests of them),
        speaking the protocol directly over a raw socket; and connect + hello + status on a new
        connection each time (what one `flow status` costs flowd, without Python start-up).

    .venv/bin/python bench/bench_flowd.py [--starts 5] [--idle 10] [--requests 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
FLOWD = str(Path(sys.executable).parent / "flowd")
HELLO = b'{"hello": {"protocol": 1, "client": "bench"}}\n'


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Flowd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.sock_path = str(base / "flowd.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(base / "notify.sock"))
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Seconds from spawning flowd to its READY=1."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOW_", "LISTEN_", "WATCHDOG_"))}
        env.update(HOME=str(self.base / "home"), NOTIFY_SOCKET=str(self.base / "notify.sock"),
                   FLOW_PAUSED_AT_CREATION="true", FLOW_DEFAULT_TIMEZONE="UTC")
        cmd = [FLOWD, "--user", "--socket", self.sock_path, "--dags-folder", str(self.base / "dags"),
               "--db", str(self.base / "flow.db"), "--log-folder", str(self.base / "logs"), "--log-level", "warning"]
        self.notify.settimeout(60)
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        while True:
            try:
                data = self.notify.recv(65536)
            except TimeoutError:
                raise SystemExit("flowd did not send READY=1 within 60 s") from None
            if b"READY=1" in data.split(b"\n"):
                return time.perf_counter() - t0

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def connect(path: str) -> tuple[socket.socket, object]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    f = s.makefile("rwb")
    f.write(HELLO)
    f.flush()
    if "hello" not in json.loads(f.readline()):
        raise SystemExit("flowd refused the handshake")
    return s, f


def status_round_trips(path: str, n: int) -> list[float]:
    s, f = connect(path)
    times = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            f.write(b'{"id": %d, "method": "status"}\n' % i)
            f.flush()
            reply = json.loads(f.readline())
            times.append((time.perf_counter() - t0) * 1000)
            if reply.get("id") != i or "result" not in reply:
                raise SystemExit(f"unexpected reply: {reply}")
    finally:
        s.close()
    return times


def connect_round_trips(path: str, n: int) -> list[float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        s, f = connect(path)
        f.write(b'{"id": %d, "method": "status"}\n' % i)
        f.flush()
        json.loads(f.readline())
        s.close()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=5, help="warm starts to time after the first")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    ap.add_argument("--requests", type=int, default=1000)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {psutil.cpu_count()} cpus, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")
    base = Path(tempfile.mkdtemp(prefix="fdb-"))
    running: list[Flowd] = []
    try:
        (base / "dags").mkdir()
        (base / "home").mkdir()
        for example in sorted((ROOT / "dags").glob("*.py")):
            shutil.copy(example, base / "dags")
        flowd = Flowd(base)
        running.append(flowd)
        cold = flowd.start()
        flowd.stop()
        warm = []
        for _ in range(args.starts):
            warm.append(flowd.start())
            if len(warm) < args.starts:
                flowd.stop()
        print(f"start  exec -> READY=1 with {len(list((base / 'dags').glob('*.py')))} example DAG files: "
              f"first (new database) {cold * 1000:.0f} ms; warm median {statistics.median(warm) * 1000:.0f} ms, "
              f"min {min(warm) * 1000:.0f} ms over {len(warm)}")

        assert flowd.proc is not None
        main_proc = psutil.Process(flowd.proc.pid)
        time.sleep(1.0)  # let the first periodic scan and the runner's warm-up finish
        procs = [main_proc, *main_proc.children(recursive=True)]
        before = {p.pid: p.cpu_times() for p in procs}
        t0 = time.perf_counter()
        time.sleep(args.idle)
        wall = time.perf_counter() - t0
        for p in procs:
            cpu = p.cpu_times()
            used = (cpu.user + cpu.system) - (before[p.pid].user + before[p.pid].system)
            role = "flowd " if p.pid == main_proc.pid else "runner" if p.ppid() == main_proc.pid else "child "
            print(f"idle   {role} pid {p.pid}: RSS {p.memory_info().rss / 2**20:.1f} MiB, "
                  f"CPU {used * 1000:.0f} ms over {wall:.1f} s ({100 * used / wall:.2f}%)")

        rt = status_round_trips(flowd.sock_path, args.requests)
        print(f"status {args.requests} requests on one connection: p50 {pct(rt, 50):.3f} ms, "
              f"p99 {pct(rt, 99):.3f} ms, max {max(rt):.3f} ms")
        fresh = connect_round_trips(flowd.sock_path, max(1, args.requests // 10))
        print(f"status connect + hello + status, {len(fresh)} times: p50 {pct(fresh, 50):.3f} ms, "
              f"p99 {pct(fresh, 99):.3f} ms")
        flowd.stop()
    finally:
        for f in running:
            if f.proc is not None and f.proc.poll() is None:
                f.proc.kill()
                f.proc.wait()
        shutil.rmtree(base, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
