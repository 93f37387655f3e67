"""flowd under a local user's abuse: others' `status` latency and flowd's memory. Prints, asserts nothing.

flowd runs with 1024 file descriptors (prlimit, as systemd's default soft limit); a task writes a
24 MB log; then user nobody (setpriv, so run this as root) opens --viewers connections that
pipeline 1 MiB `logs.read` calls and never read (tests/daemon/abuse_client.py). Meanwhile root
measures `status`: --requests round trips on one held connection, and connect + hello + status
on a new connection each time. flowd's RSS is sampled throughout and after the attacker leaves.

    sudo .venv/bin/python bench/bench_abuse.py [--viewers 200] [--requests 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HELLO = b'{"hello": {"protocol": 1, "client": "bench"}}\n'
STATUS = b'{"id": 1, "method": "status"}\n'
DAG = """
import pendulum
from flow import DAG
from flow.operators import BashOperator
with DAG("biglog", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    BashOperator(task_id="big", bash_command="yes 'a log line of flowd under abuse, padded to eighty chars..' | head -c 24000000")
"""


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def call(path: str, method: str, **params: object) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(path)
        fh = s.makefile("rwb")
        fh.write(HELLO + json.dumps({"id": 1, "method": method, "params": params}).encode() + b"\n")
        fh.flush()
        fh.readline()
        return json.loads(fh.readline())["result"]


def fresh_status(path: str) -> float:
    t0 = time.perf_counter()
    call(path, "status")
    return (time.perf_counter() - t0) * 1000


def held_status(fh) -> float:
    t0 = time.perf_counter()
    fh.write(STATUS)
    fh.flush()
    json.loads(fh.readline())
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--viewers", type=int, default=200)
    ap.add_argument("--requests", type=int, default=1000)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="fb-"))
    os.chmod(base, 0o755)
    (base / "dags").mkdir()
    (base / "dags" / "biglog.py").write_text(DAG)
    sock_path = str(base / "flowd.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOW_", "LISTEN_", "WATCHDOG_", "NOTIFY_"))}
    env.update(HOME=str(base), FLOW_DEFAULT_TIMEZONE="UTC", FLOW_VIEWER_GROUP="nogroup")
    folders = ["--socket", sock_path, "--dags-folder", str(base / "dags"), "--db", str(base / "flow.db"),
               "--log-folder", str(base / "logs")]
    flowd = subprocess.Popen(["prlimit", "--nofile=1024:1024", str(BIN / "flowd"), "--user", *folders,
                              "--log-level", "warning"], env=env, stdin=subprocess.DEVNULL)
    attacker = None
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        while "biglog" not in json.dumps(call(sock_path, "dags.list")) and time.monotonic() < deadline:
            time.sleep(0.2)
        run_id = call(sock_path, "dags.trigger", dag_id="biglog")["run"]["run_id"]
        while call(sock_path, "runs.get", dag_id="biglog", run_id=run_id)["run"]["state"] != "success":
            time.sleep(0.2)
        proc = psutil.Process(flowd.pid)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held:
            held.connect(sock_path)
            fh = held.makefile("rwb")
            fh.write(HELLO)
            fh.flush()
            fh.readline()
            quiet = [held_status(fh) for _ in range(args.requests)]
            baseline = proc.memory_info().rss
            script = (ROOT / "tests" / "daemon" / "abuse_client.py").read_text()
            attacker = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                         "/usr/bin/python3", "-I", "-c", script, "viewers", str(args.viewers),
                                         sock_path, "biglog", run_id], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, cwd="/")
            report = json.loads(attacker.stdout.readline())
            held_ms, fresh_ms, peak = [], [], 0
            for i in range(args.requests):
                held_ms.append(held_status(fh))
                if i % 4 == 0:
                    fresh_ms.append(fresh_status(sock_path))
                if i % 20 == 0:
                    peak = max(peak, proc.memory_info().rss)
            attacker.stdin.write("go\n")
            attacker.stdin.flush()
            attacker.wait(30)
            time.sleep(5)
            after = proc.memory_info().rss
        mib = 1 << 20
        print(f"attacker: {args.viewers} viewer connections, {report['refused']} refused at the hello "
              f"(per-user limit), the rest pipelining 1 MiB logs.read calls without reading")
        print(f"status on a held connection, quiet:        p50 {pct(quiet, 50):.2f} ms, p99 {pct(quiet, 99):.2f} ms")
        print(f"status on a held connection, under abuse:  p50 {pct(held_ms, 50):.2f} ms, "
              f"p99 {pct(held_ms, 99):.2f} ms, max {max(held_ms):.1f} ms ({len(held_ms)} requests)")
        print(f"connect + hello + status, under abuse:     p50 {pct(fresh_ms, 50):.2f} ms, "
              f"p99 {pct(fresh_ms, 99):.2f} ms ({len(fresh_ms)} connections)")
        print(f"flowd RSS: {baseline / mib:.0f} MiB before, {peak / mib:.0f} MiB at most under abuse, "
              f"{after / mib:.0f} MiB 5 s after the attacker left")
    finally:
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
        flowd.terminate()
        flowd.wait(30)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
