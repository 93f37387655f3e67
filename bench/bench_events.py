"""Events pushed by flowd to 20 subscribed clients while 500 tasks run; one more client never reads.

Prints events per second per client, the run's wall time with and without the stalled client
(it must not slow the others or the scheduler), and what the stalled client finally receives
(a resync). Figures are printed, not asserted. Uses only the documented protocol (docs/protocol.md).

    .venv/bin/python bench/bench_events.py [--tasks 500] [--clients 20]
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
import textwrap
import threading
import time
from pathlib import Path

FLOWD = str(Path(sys.executable).parent / "flowd")

FANOUT = """
from flow import DAG
from flow.operators import BashOperator
with DAG("bench_events", schedule=None, max_active_tasks=16):
    start = BashOperator(task_id="start", bash_command="true")
    end = BashOperator(task_id="end", bash_command="true")
    start >> [BashOperator(task_id=f"m{{i:03d}}", bash_command="true", do_xcom_push=False)
              for i in range({n})] >> end
"""


class Conn:
    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.next_id = 0
        self.send({"hello": {"protocol": 1, "client": "bench"}})
        self.hello = json.loads(self.file.readline())

    def send(self, msg: dict) -> None:
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def call(self, method: str, **params):
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = json.loads(self.file.readline())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]


def start_flowd(root: Path, n: int) -> tuple[subprocess.Popen, str]:
    (root / "dags").mkdir()
    (root / "dags" / "bench_events.py").write_text(textwrap.dedent(FANOUT.format(n=n)))
    sock = tempfile.mkdtemp(prefix="fb-") + "/flowd.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOW_", "NOTIFY_SOCKET", "LISTEN_"))}
    env["HOME"] = str(root)
    proc = subprocess.Popen([FLOWD, "--user", "--socket", sock, "--dags-folder", str(root / "dags"),
                             "--db", f"sqlite:///{root / 'flow.db'}", "--log-folder", str(root / "logs"),
                             "--parallelism", "16"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            c = Conn(sock)
            if "bench_events" in [d["dag_id"] for d in c.call("dags.list")["dags"]]:
                c.sock.close()
                return proc, sock
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("flowd did not come up")


def one_round(sock: str, clients: int, stalled: bool) -> dict:
    readers = []
    counts = [0] * clients
    for _ in range(clients):
        c = Conn(sock)
        c.call("subscribe")
        readers.append(c)

    def read(i: int, c: Conn) -> None:
        for line in c.file:
            msg = json.loads(line)
            if "event" in msg:
                counts[i] += 1
                data = msg.get("data") or {}
                if msg["event"] == "run" and data.get("state") in ("success", "failed"):
                    return

    staller = None
    if stalled:
        staller = Conn(sock)
        staller.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        staller.call("subscribe")
    threads = [threading.Thread(target=read, args=(i, c)) for i, c in enumerate(readers)]
    for t in threads:
        t.start()
    ctl = Conn(sock)
    t0 = time.perf_counter()
    ctl.call("dags.trigger", dag_id="bench_events")
    for t in threads:
        t.join(120)
    wall = time.perf_counter() - t0
    result = {"wall": wall, "min_events": min(counts), "max_events": max(counts)}
    if staller is not None:
        staller.sock.settimeout(5)
        kinds: dict[str, int] = {}
        try:
            for line in staller.file:
                kind = json.loads(line).get("event", "reply")
                kinds[kind] = kinds.get(kind, 0) + 1
        except (OSError, ValueError):
            pass
        result["stalled_client_got"] = kinds
    for c in readers + [ctl] + ([staller] if staller else []):
        c.sock.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=500)
    ap.add_argument("--clients", type=int, default=20)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="flow-bench-events-"))
    proc, sock = start_flowd(root, args.tasks)
    try:
        for stalled in (False, True):
            r = one_round(sock, args.clients, stalled)
            rate = r["min_events"] / r["wall"]
            print(f"{args.clients} subscribers{' + 1 that never reads' if stalled else ''}: run of "
                  f"{args.tasks + 2} tasks took {r['wall']:.2f} s; each subscriber got {r['min_events']}-"
                  f"{r['max_events']} events ({rate:.0f} events/s per client, {rate * args.clients:.0f} total)")
            if stalled:
                print(f"  the client that never read then found: {r.get('stalled_client_got')}")
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
