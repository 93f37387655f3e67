"""flowtui against a real flowd: start-up, a big DAG list, and what a slow ssh link must carry.

paint   spawn `flowtui` in a pseudo-terminal (120x40) until the first DAG id is on the screen
        (whole process: Python start-up, imports, the handshake, the first `dags.list`, the paint).
list    1,000 DAGs (one generated file) in a pseudo-terminal: open (spawn until rows are painted),
        filter (typing `dag_0999` until the filter line is painted with the one row), scroll
        (20 page-downs and `ctrl+end` until the last DAG is painted).
churn   50 one-second tasks re-run continuously (a new run every second or two) while flowtui
        shows the DAG list (and then the DAG's grid) in a pseudo-terminal: bytes flowtui writes to
        the terminal per second.
steady  the grid of 5 runs whose tasks keep changing (about 100 state changes a second) while no
        run column comes or goes: the same figure.
logs    the log screen following a task that writes 50 lines a second: the same figure.
dagslist  flowd's side of opening the list: `dags.list` over the socket for 1,000 DAGs without runs,
        then with one finished run each, then the same after a restart (runs only in the database).

    .venv/bin/python bench/bench_console.py [--paints 5] [--churn 15]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_flowd import ROOT, Flowd  # noqa: E402

from flow.daemon.client import Client  # noqa: E402

FLOWTUI = str(Path(sys.executable).parent / "flowtui")
MANY = """
from flow import DAG
from flow.operators import BashOperator
for i in range({n}):
    with DAG(f"dag_{{i:04d}}", schedule=None, tags=["bulk"]) as d:
        BashOperator(task_id="only", bash_command="true")
    globals()[d.dag_id] = d
"""
CHURN = """
from flow import DAG
from flow.operators import BashOperator
with DAG("churn", schedule=None, max_active_tasks=64, max_active_runs=4) as d:
    for i in range(50):
        BashOperator(task_id=f"t{i:02d}", bash_command="sleep 1", do_xcom_push=False)
"""
STEADY = """
from flow import DAG, chain
from flow.operators import BashOperator
with DAG("steady", schedule=None, max_active_tasks=64, max_active_runs=8) as d:
    for c in range(10):
        chain(*[BashOperator(task_id=f"c{c}_{i:02d}", bash_command="sleep 1", do_xcom_push=False)
                for i in range(40)])
"""
CHATTY = """
from flow import DAG
from flow.operators import BashOperator
with DAG("chatty", schedule=None) as d:
    BashOperator(task_id="talk", do_xcom_push=False, bash_command=(
        "for i in $(seq 1 3000); do echo line $i of a chatty task with some words in it; sleep 0.02; done"))
"""


class Terminal:
    """flowtui on the slave side of a pty; every byte it writes is read (and counted) here."""

    def __init__(self, socket_path: str, size: tuple[int, int] = (120, 40)) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "LANG": "C.UTF-8"}
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([FLOWTUI, "--socket", socket_path], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self.seen = bytearray()

    def read(self, seconds: float) -> int:
        """Bytes read within `seconds`."""
        got, deadline = 0, time.perf_counter() + seconds
        while (left := deadline - time.perf_counter()) > 0:
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    break
                got += len(chunk)
                self.seen += chunk
                del self.seen[:-262144]
        return got

    def wait_for(self, text: bytes, timeout: float = 30) -> float:
        deadline = time.perf_counter() + timeout
        while text not in self.seen:
            if time.perf_counter() > deadline:
                raise SystemExit(f"flowtui did not show {text!r} within {timeout:g} s")
            self.read(0.01)
        return time.perf_counter() - self.started

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        self.send(b"q")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def fresh_flowd(base: Path, files: dict[str, str]) -> Flowd:
    shutil.rmtree(base, ignore_errors=True)
    (base / "dags").mkdir(parents=True)
    (base / "home").mkdir()
    for name, text in files.items():
        (base / "dags" / name).write_text(text)
    flowd = Flowd(base)
    flowd.start()
    return flowd


def wait_dags(path: str, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    with Client.connect(path) as client:
        while len(client.call("dags.list")["dags"]) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"flowd did not load {n} DAGs within {timeout:g} s")
            time.sleep(0.5)


def bench_paint(base: Path, paints: int) -> None:
    flowd = fresh_flowd(base, {p.name: p.read_text() for p in sorted((ROOT / "dags").glob("*.py"))})
    try:
        wait_dags(flowd.sock_path, 1)
        times = []
        for _ in range(paints):
            term = Terminal(flowd.sock_path)
            times.append(term.wait_for(b"example_"))
            term.close()
        print(f"paint  spawn -> first DAG row on a 120x40 pty: median {statistics.median(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms over {paints} starts")
    finally:
        flowd.stop()


def bench_list(base: Path, n: int = 1000) -> None:
    """Whole-process figures on a pty: what the operator at the keyboard waits for."""
    flowd = fresh_flowd(base, {"many.py": MANY.format(n=n)})
    try:
        wait_dags(flowd.sock_path, n)
        term = Terminal(flowd.sock_path)
        opened = term.wait_for(b"dag_0000")
        term.read(0.5)
        term.send(b"/")
        term.wait_for(b"filter by DAG id")
        t0 = time.perf_counter()
        term.send(b"dag_0999")
        term.wait_for(b"filter: 'dag_0999'")
        filtered = time.perf_counter() - t0
        term.send(b"\x1b")
        term.read(1.0)
        term.send(b"\x1b[1;5H")  # ctrl+home: the cursor stayed on dag_0999 when the filter was cleared
        term.wait_for(b"dag_0000")
        term.read(0.5)
        term.seen.clear()
        t0 = time.perf_counter()
        term.send(b"\x1b[6~" * 20 + b"\x1b[1;5F")
        term.wait_for(b"dag_0999")
        scrolled = time.perf_counter() - t0
        term.close()
        print(f"list   {n} DAGs on a 120x40 pty: spawn -> rows painted {opened * 1000:.0f} ms; filter "
              f"{filtered * 1000:.0f} ms (typed 'dag_0999' -> one row); scroll {scrolled * 1000:.0f} ms "
              f"(20 pgdn + ctrl+end -> last row painted)")
    finally:
        flowd.stop()


def bench_churn(base: Path, seconds: float) -> None:
    flowd = fresh_flowd(base, {"churn.py": CHURN})
    try:
        wait_dags(flowd.sock_path, 1)
        term = Terminal(flowd.sock_path)
        term.wait_for(b"churn")
        with Client.connect(flowd.sock_path) as client:
            client.call("dags.pause", dag_id="churn", paused=False)
            for view, keys in (("DAG list", b""), ("DAG grid", b"\r")):
                if keys:
                    term.send(keys)
                    term.read(2.0)
                term.read(1.0)
                cpu0 = sum(psutil.Process(term.proc.pid).cpu_times()[:2])
                total, t0, done = 0, time.perf_counter(), 0
                while time.perf_counter() - t0 < seconds:
                    if len(client.call("runs.list", dag_id="churn", limit=4)["runs"]) < 4 or done % 2 == 0:
                        try:
                            client.call("dags.trigger", dag_id="churn")
                        except Exception:  # noqa: BLE001 - max_active_runs reached: the runs keep it busy
                            pass
                    done += 1
                    total += term.read(1.0)
                elapsed = time.perf_counter() - t0
                ti = sum(1 for r in client.call("runs.list", dag_id="churn", limit=100)["runs"]) * 50
                cpu = (sum(psutil.Process(term.proc.pid).cpu_times()[:2]) - cpu0) / elapsed * 100
                print(f"churn  {view}: {total / elapsed / 1024:.1f} KiB/s written to the terminal over "
                      f"{elapsed:.0f} s while 50 one-second tasks re-ran ({ti} task instances so far); "
                      f"flowtui used {cpu:.1f}% of a core")
        term.close()
    finally:
        flowd.stop()


def bench_steady(base: Path, seconds: float) -> None:
    """The grid while 5 runs already on screen work through 10 chains of one-second tasks each:
    about 50 tasks start and 50 finish every second, and no run column comes or goes."""
    flowd = fresh_flowd(base, {"steady.py": STEADY})
    try:
        wait_dags(flowd.sock_path, 1)
        with Client.connect(flowd.sock_path) as client:
            client.call("dags.pause", dag_id="steady", paused=False)
            for _ in range(5):
                client.call("dags.trigger", dag_id="steady")
            term = Terminal(flowd.sock_path)
            term.wait_for(b"steady")
            term.send(b"\r")
            term.read(3.0)
            before = client.call("status")
            t0 = time.perf_counter()
            total = term.read(seconds)
            elapsed = time.perf_counter() - t0
            done = sum(1 for r in client.call("runs.list", dag_id="steady")["runs"] if r["state"] != "running")
            print(f"steady DAG grid: {total / elapsed / 1024:.1f} KiB/s written to the terminal over {elapsed:.0f} s "
                  f"while 5 runs x 10 chains of one-second tasks ran ({before['running']} tasks running at the "
                  f"start, {done} runs finished early)")
            term.close()
    finally:
        flowd.stop()


def bench_logs(base: Path, seconds: float) -> None:
    """`l` on the running task's cell, which follows its log: bytes per second while it streams."""
    flowd = fresh_flowd(base, {"chatty.py": CHATTY})
    try:
        wait_dags(flowd.sock_path, 1)
        with Client.connect(flowd.sock_path) as client:
            client.call("dags.pause", dag_id="chatty", paused=False)
            client.call("dags.trigger", dag_id="chatty")
            term = Terminal(flowd.sock_path)
            term.wait_for(b"chatty")
            term.send(b"\r")
            term.read(2.0)
            term.send(b"l")
            term.wait_for(b"chatty task")
            term.read(1.0)
            total = term.read(seconds)
            print(f"logs   following a task writing 50 lines/s: {total / seconds / 1024:.1f} KiB/s written to the "
                  f"terminal over {seconds:.0f} s")
            term.close()
    finally:
        flowd.stop()


def bench_dags_list(base: Path, n: int = 1000) -> None:
    flowd = fresh_flowd(base, {"many.py": MANY.format(n=n)})

    def timed(client: Client) -> float:
        def once() -> float:
            t0 = time.perf_counter()
            client.call("dags.list")
            return time.perf_counter() - t0
        return statistics.median(once() for _ in range(7)) * 1000

    try:
        wait_dags(flowd.sock_path, n)
        with Client.connect(flowd.sock_path) as client:
            idle = timed(client)
            for i in range(n):
                client.call("dags.pause", dag_id=f"dag_{i:04d}", paused=False)
                client.call("dags.trigger", dag_id=f"dag_{i:04d}")
            deadline = time.monotonic() + 300
            while any((d.get("last_run") or {}).get("state") != "success" for d in client.call("dags.list")["dags"]):
                if time.monotonic() > deadline:
                    raise SystemExit("the runs did not finish within 300 s")
                time.sleep(1)
            finished = timed(client)
        flowd.stop()
        flowd.start()
        wait_dags(flowd.sock_path, n)
        with Client.connect(flowd.sock_path) as client:
            restarted = timed(client)
        print(f"dagslist {n} DAGs: dags.list median {idle:.0f} ms without runs, {finished:.0f} ms with one "
              f"finished run each, {restarted:.0f} ms after a restart (runs only in the database)")
    finally:
        flowd.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paints", type=int, default=5)
    ap.add_argument("--churn", type=float, default=15.0, help="seconds of churn per view")
    ap.add_argument("--only", choices=("paint", "list", "churn", "steady", "logs", "dagslist"))
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {psutil.cpu_count()} cpus, Python {platform.python_version()}")
    base = Path(tempfile.mkdtemp(prefix="fcb-"))
    try:
        if args.only in (None, "paint"):
            bench_paint(base / "paint", args.paints)
        if args.only in (None, "list"):
            bench_list(base / "list")
        if args.only in (None, "churn"):
            bench_churn(base / "churn", args.churn)
        if args.only in (None, "steady"):
            bench_steady(base / "steady", args.churn)
        if args.only in (None, "logs"):
            bench_logs(base / "logs", args.churn)
        if args.only in (None, "dagslist"):
            bench_dags_list(base / "dagslist")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
