"""flowd with a hostile DAG folder: start-up, import-error latency and run lateness. Prints, asserts nothing.

The folder is tests/daemon/badfolder.py's: 99 broken files (syntax and import errors, five that
hang at import, one allocating 1 GiB, two that fork, one os._exit, one printing 100 MB) beside
five good DAGs that run every five seconds. parse_timeout is --timeout (20 s).

start     exec -> READY=1 on an empty database, and the same with only the five good files.
errors    seconds after READY until the files that fail at once all show their import error,
          and until the five hanging files show their timeout.
restart   exec -> READY=1 with the folder and the DAGs already stored, then the lateness of every
          scheduled run (creation minus fire time) while the folder is parsed again, until the
          hanging files have timed out again.

    .venv/bin/python bench/bench_bad_folder.py [--timeout 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from flow.daemon.client import Client  # noqa: E402
from flow.daemon.store import Store  # noqa: E402
from tests.daemon.badfolder import GOOD, import_errors, lateness, write_folder  # noqa: E402
from tests.daemon.conftest import make_flowd  # noqa: E402


def timed_out_since(client: Client, since: datetime) -> set[str]:
    """Files whose timeout was recorded after `since` (a restart keeps the earlier rows until then)."""
    return {e["filename"] for e in client.call("import_errors.list")["import_errors"]
            if "timed out" in e["message"] and datetime.fromisoformat(e["timestamp"]) >= since}


def new_flowd(base: Path, env: dict[str, str]):
    base.mkdir(parents=True)
    f = make_flowd(base)
    f.env.update(env)
    return f


def timed_start(f) -> float:
    t0 = time.perf_counter()
    f.start()
    return time.perf_counter() - t0


def until(predicate, limit: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=20.0, help="parse_timeout, seconds")
    args = ap.parse_args()
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
          f"parse_timeout {args.timeout:g}s, parse_processes 2")
    env = {"FLOW_PARSE_TIMEOUT": str(args.timeout), "FLOW_PARSE_MEMORY_LIMIT": "512MiB", "FLOW_LOG_LEVEL": "warning"}
    with tempfile.TemporaryDirectory(prefix="bench-bad-") as tmp:
        good_only = new_flowd(Path(tmp) / "good", env)
        for i in range(1, 6):
            (Path(good_only.dags_folder) / f"good_{i}.py").write_text(GOOD.format(dag_id=f"good_{i}", every=5,
                                                                                 tags=[]))
        try:
            print(f"start, 5 good files only:          READY after {timed_start(good_only):.2f}s")
        finally:
            good_only.discard()

        f = new_flowd(Path(tmp) / "bad", env)
        folder = write_folder(Path(f.dags_folder), Path(tmp) / "scratch")
        try:
            print(f"start, 99 bad + 5 good, empty db:  READY after {timed_start(f):.2f}s")
            with Client.connect(f.socket_path, timeout=10) as client:
                quick = until(lambda: set(folder.quick) <= set(import_errors(client)), 4 * args.timeout)
                hung = until(lambda: all("timed out" in import_errors(client).get(p, "") for p in folder.hanging),
                             4 * args.timeout)
            print(f"  quick import errors all visible: {quick:.1f}s after READY" if quick is not None
                  else "  quick import errors: not all visible")
            print(f"  hanging files' timeouts visible: {hung + (quick or 0):.1f}s after READY" if hung is not None
                  else "  hanging files' timeouts: not all visible")
            f.stop()
            ready = timed_start(f)
            since = datetime.now(UTC)
            print(f"restart, 99 bad + 5 good stored:   READY after {ready:.2f}s")
            with Client.connect(f.socket_path, timeout=10) as client:
                hung = until(lambda: set(folder.hanging) <= timed_out_since(client, since), 4 * args.timeout)
            print(f"  hanging files' timeouts again:   {hung:.1f}s after READY" if hung is not None
                  else "  hanging files' timeouts: not all seen again")
            time.sleep(6)  # the runs due by now have been created
            store = Store.open(f.db_url)
            try:
                late = [x for v in lateness(store, folder.good, since).values() for x in v]
            finally:
                store.close()
            if late:
                print(f"  run lateness while re-parsing: {len(late)} runs, median {statistics.median(late):.3f}s, "
                      f"max {max(late):.3f}s")
        finally:
            f.discard()


if __name__ == "__main__":
    main()
