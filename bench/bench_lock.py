"""Losing the lock and a broken database, against a real flowd: how soon it notices, how the socket fares.

lockloss  SQLite lock file deleted / PostgreSQL lock backend terminated while 10 one-second tasks
          run: seconds until flowd logs that it took the lock back (the check runs every second).
stall     another process holds SQLite's write lock (BEGIN EXCLUSIVE) for 10 s while tasks run:
          `status` round trips (one every 50 ms) before and during the stall, and the stall length
          status reports at the end.
fence     the lease check's cost: 2,000 one-row insert transactions on SQLite (and PostgreSQL), with
          and without the fence, microseconds per transaction.

    .venv/bin/python bench/bench_lock.py [--pg postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

FLOWD = str(Path(sys.executable).parent / "flowd")
DAG = """
import pendulum
from flow import DAG
from flow.operators import BashOperator

with DAG("busy", schedule="*/1 * * * *", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         max_active_runs=1):
    for i in range(10):
        BashOperator(task_id=f"t{i}", do_xcom_push=False, bash_command="sleep 1")
"""


def start(base: Path, db: str) -> tuple[subprocess.Popen, Path]:
    (base / "dags").mkdir(parents=True)
    (base / "dags" / "busy.py").write_text(DAG)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(base / "n.sock"))
    notify.settimeout(60)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOW_", "LISTEN_", "WATCHDOG_"))}
    env.update(HOME=str(base), NOTIFY_SOCKET=str(base / "n.sock"), FLOW_DEFAULT_TIMEZONE="UTC",
               FLOW_PAUSED_AT_CREATION="false")
    err = base / "stderr"
    proc = subprocess.Popen([FLOWD, "--user", "--socket", str(base / "s.sock"), "--dags-folder", str(base / "dags"),
                             "--db", db, "--log-folder", str(base / "logs")], env=env, stdin=subprocess.DEVNULL,
                            stderr=open(err, "wb"))
    while b"READY=1" not in notify.recv(65536).split(b"\n"):
        pass
    notify.close()
    return proc, err


def status(path: str) -> tuple[float, dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(path)
        f = s.makefile("rwb")
        t0 = time.perf_counter()
        f.write(b'{"hello": {"protocol": 1, "client": "bench"}}\n{"id": 1, "method": "status"}\n')
        f.flush()
        f.readline()
        reply = json.loads(f.readline())
        return (time.perf_counter() - t0) * 1000, reply["result"]


def wait_text(err: Path, text: str, after: int, timeout: float = 60) -> float:
    t0 = time.perf_counter()
    while text not in err.read_text(errors="replace")[after:]:
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"no {text!r} within {timeout} s")
        time.sleep(0.02)
    return time.perf_counter() - t0


def wait_running(path: str) -> None:
    while status(path)[1]["running"] == 0:
        time.sleep(0.2)


def lockloss_sqlite(base: Path) -> float:
    db = base / "flow.db"
    proc, err = start(base, f"sqlite:///{db}")
    try:
        wait_running(str(base / "s.sock"))
        mark = len(err.read_text())
        os.unlink(str(db) + ".flowd-lock")
        return wait_text(err, "took the database lock back", mark)
    finally:
        proc.terminate()
        proc.wait(30)


def lockloss_pg(base: Path, url: str) -> float:
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    db = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    proc, err = start(base, db)
    try:
        wait_running(str(base / "s.sock"))
        mark = len(err.read_text())
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                                 ":n"), {"n": f"flowd pid {proc.pid} on {socket.gethostname()}"[:63]})
        return wait_text(err, "took the database lock back", mark)
    finally:
        proc.terminate()
        proc.wait(30)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def stall(base: Path, seconds: float) -> None:
    db = base / "flow.db"
    proc, _ = start(base, f"sqlite:///{db}")
    path = str(base / "s.sock")
    try:
        wait_running(path)

        def sample(duration: float) -> list[float]:
            out, t0 = [], time.perf_counter()
            while time.perf_counter() - t0 < duration:
                out.append(status(path)[0])
                time.sleep(0.05)
            return out

        before = sample(5)
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        during = sample(seconds)
        said = status(path)[1]["database"]
        blocker.execute("ROLLBACK")
        blocker.close()
        for name, xs in (("before", before), ("during the stall", during)):
            xs = sorted(xs)
            print(f"status {name}: n={len(xs)} p50 {statistics.median(xs):.1f} ms, "
                  f"p99 {xs[int(len(xs) * 0.99) - 1]:.1f} ms, max {xs[-1]:.1f} ms")
        print(f"status said: {said['problem']} for {said['for_seconds']} s, {said['failed_writes']} failed writes")
    finally:
        proc.terminate()
        proc.wait(30)


def fence(url: str, n: int = 2000) -> tuple[float, float]:
    """Median microseconds per write transaction without and with the fence, interleaved in
    rounds of 100 so that a busy machine's noise falls on both alike."""
    from datetime import UTC, datetime

    from flow.daemon.store import Store

    with Store.open(url) as store:
        epoch = store.take_lease("bench", os.getpid(), "/bench", datetime.now(UTC))
        rounds: dict[bool, list[float]] = {False: [], True: []}
        for r in range(2 * n // 100):
            fenced = r % 2 == 1
            store.fence_epoch = epoch if fenced else None
            t0 = time.perf_counter()
            for _ in range(100):
                with store.begin() as tx:  # a transaction that writes, as every engine commit does
                    tx.add_audit(time=datetime.now(UTC), uid=0, user="bench", action="bench")
            rounds[fenced].append((time.perf_counter() - t0) / 100 * 1e6)
    return statistics.median(rounds[False]), statistics.median(rounds[True])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--stall", type=float, default=10.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-lock-") as tmp:
        base = Path(tmp)
        print(f"lockloss sqlite: taken back after {lockloss_sqlite(base / 'a'):.2f} s")
        try:
            print(f"lockloss postgresql: taken back after {lockloss_pg(base / 'b', args.pg):.2f} s")
        except Exception as exc:
            print(f"lockloss postgresql: skipped ({exc})")
        stall(base / "c", args.stall)
        bare, fenced = fence(f"sqlite:///{base / 'fence.db'}")
        print(f"fence sqlite: {bare:.0f} us per write transaction without, {fenced:.0f} us with")
        try:
            import sqlalchemy as sa

            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(args.pg.replace("postgresql://", "postgresql+psycopg://", 1),
                                     isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            try:
                db = sa.make_url(args.pg).update_query_dict({"options": f"-csearch_path={schema}"})
                bare, fenced = fence(db.render_as_string(False), 500)
                print(f"fence postgresql: {bare:.0f} us per write transaction without, {fenced:.0f} us with")
            finally:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                admin.dispose()
        except Exception as exc:
            print(f"fence postgresql: skipped ({exc})")


if __name__ == "__main__":
    main()
