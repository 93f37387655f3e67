"""A DAG folder full of hostile files never holds up scheduling, start-up or the other files.

One real flowd, 99 broken files (syntax and import errors, five that hang at import, one that
allocates 1 GiB, two that fork, one that calls os._exit, one that prints 100 MB) beside five
good DAGs that run every five seconds (tests/daemon/badfolder.py). Two phases:

1. A first start on an empty database: flowd is READY at once, every file that fails quickly
   shows its import error before the first hanging file could even have timed out, and the
   processes the forking files left behind are gone.
2. A restart with the same folder (and one good file edited while flowd was down): READY well
   before any hanging file's timeout, the five DAGs run on time from their stored form while
   the folder is parsed again, the edited file's new form replaces the stored one (files that
   hold stored DAGs are parsed first, ones that timed out before last), and the
   hanging files' timeouts are reported one timeout (plus the pool's hand-over) after READY,
   not one after the other.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from flow.daemon.client import Client
from flow.daemon.store import Store

from .badfolder import GOOD, fire_times, import_errors, lateness, write_folder
from .conftest import make_flowd

TIMEOUT = 20
"""parse_timeout for this flowd: long enough to tell 'at once' from 'after the hanging files'."""
EVERY = 5
"""The good DAGs' schedule, in seconds."""


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def watch_errors(client: Client, wanted: set[str], since: float, limit: float) -> dict[str, float]:
    """Poll import errors until every file in `wanted` has one; path -> seconds after `since`."""
    seen: dict[str, float] = {}
    while not wanted <= set(seen) and time.monotonic() - since < limit:
        for path in import_errors(client):
            seen.setdefault(path, time.monotonic() - since)
        time.sleep(0.25)  # each answer carries 99 tracebacks: don't make flowd busy serving them
    return seen


def test_a_hostile_dag_folder_holds_up_neither_start_nor_scheduling(tmp_path: Path) -> None:
    f = make_flowd(tmp_path)
    f.env.update(FLOW_PARSE_TIMEOUT=str(TIMEOUT), FLOW_PARSE_MEMORY_LIMIT="512MiB")
    folder = write_folder(Path(f.dags_folder), tmp_path / "scratch", every=EVERY)
    try:
        # -- 1. first start, nothing stored ---------------------------------------------------
        t0 = time.monotonic()
        f.start()
        ready = time.monotonic()
        first_ready = ready - t0
        with Client.connect(f.socket_path, timeout=10) as client:
            assert client.call("status")["dags"] in (0, [], {})
            seen = watch_errors(client, set(folder.quick), ready, 3 * TIMEOUT)
            errors = import_errors(client)
            hang_seen = [seen[p] for p in folder.hanging if p in seen]
            missing = sorted(set(folder.quick) - set(seen))
            assert not missing, f"no import error for {missing}"
            quick_last = max(seen[p] for p in folder.quick)
            assert not hang_seen or quick_last < min(hang_seen), \
                "files that fail at once waited for the hanging ones"
            for path in folder.quick:
                assert folder.expected[path] in errors[path], (path, errors[path])
            while len(client.call("dags.list")["dags"]) < len(folder.good):
                assert time.monotonic() - ready < 3 * TIMEOUT, "the good DAGs never loaded"
                time.sleep(0.1)
        lingering = int(folder.pidfiles["lingers"].read_text())
        both = [int(p) for p in folder.pidfiles["both"].read_text().split()]  # the copy may be killed first
        deadline = time.monotonic() + 10
        while not all(gone(p) for p in (lingering, *both)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone(lingering), "a process forked at import outlived the parse"
        assert all(gone(p) for p in both)
        assert f.proc.poll() is None

        # -- 2. restart with a file edited while flowd was down --------------------------------
        parsers = [p for p in psutil.Process(f.proc.pid).children(recursive=True)
                   if "flow.daemon.parser" in " ".join(p.cmdline())]
        assert parsers, "the hanging files should still be importing in their children"
        assert f.stop() == 0
        assert all(gone(p.pid) for p in parsers), "a parse child outlived flowd"
        edited = Path(f.dags_folder) / "good_1.py"
        edited.write_text(GOOD.format(dag_id="good_1", every=EVERY, tags=["v2"]))
        t0 = time.monotonic()
        f.start()
        ready = time.monotonic()
        restart_ready = ready - t0
        since = datetime.now(UTC)
        assert restart_ready < TIMEOUT, f"READY took {restart_ready:.1f}s, past a hanging file's timeout"
        with Client.connect(f.socket_path, timeout=10) as client:
            status = client.call("status")
            assert status["dags"] == len(folder.good), "the stored DAGs must be there at READY"
            tags_seen = None
            seen = {}
            while time.monotonic() - ready < 3 * TIMEOUT:
                for path, message in import_errors(client).items():
                    if path in folder.hanging and "timed out after" in message:
                        seen.setdefault(path, time.monotonic() - ready)
                if tags_seen is None:
                    dag = next(d for d in client.call("dags.list")["dags"] if d["dag_id"] == "good_1")
                    if dag.get("tags") == ["v2"]:
                        tags_seen = time.monotonic() - ready
                if len(seen) == len(folder.hanging) and tags_seen is not None:
                    break
                time.sleep(0.2)
        assert tags_seen is not None, "the file edited while flowd was down was not loaded again"
        # Files that hold stored DAGs are parsed first after a start, the ones that timed out last.
        assert tags_seen < min(seen.values()), (tags_seen, seen)
        assert sorted(seen) == sorted(folder.hanging), f"hanging files without a timeout error: {seen}"
        # Five 20 s timeouts one after the other would take 100 s; side by side they take one.
        assert max(seen.values()) < 2 * TIMEOUT, seen
        end = datetime.now(UTC)

        store = Store.open(f.db_url)
        try:
            late = lateness(store, folder.good, since)
            for dag_id in folder.good:
                fires = fire_times(store, dag_id, since)
                due = [t for t in fires if t <= end - timedelta(seconds=2)]
                expected = int((end - since).total_seconds() // EVERY) - 1
                assert len(due) >= expected, f"{dag_id}: {len(due)} runs in {end - since}, expected {expected}"
                gaps = [(b - a).total_seconds() for a, b in zip(due, due[1:], strict=False)]
                assert all(g == EVERY for g in gaps), f"{dag_id} skipped a fire time: {gaps}"
                assert late[dag_id] and max(late[dag_id]) < EVERY, f"{dag_id} ran late: {late[dag_id]}"
        finally:
            store.close()
        worst = max(max(v) for v in late.values())
        print(f"\nfirst READY {first_ready:.2f}s; quick import errors all visible {quick_last:.1f}s after it; "
              f"restart READY {restart_ready:.2f}s; edited file loaded {tags_seen:.1f}s after READY; "
              f"hanging files' timeouts {min(seen.values()):.1f}-{max(seen.values()):.1f}s after READY; "
              f"worst run lateness during the re-parse {worst:.2f}s")
        assert f.proc.poll() is None
    finally:
        f.discard()


@pytest.mark.parametrize("value", ["lots", "0"])
def test_a_bad_parse_setting_is_one_line_and_exit_1(tmp_path: Path, value: str) -> None:
    f = make_flowd(tmp_path)
    try:
        env = {**f.full_env(), "FLOW_PARSE_MEMORY_LIMIT": value}
        out = subprocess.run(f.command(), env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 1
        assert "parse_memory_limit" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    finally:
        f.discard()


def test_a_reload_with_a_hanging_file_is_ready_again_before_its_timeout(tmp_path: Path) -> None:
    f = make_flowd(tmp_path)
    f.env["FLOW_PARSE_TIMEOUT"] = "60"
    f.add_dag("hangs.py", "import time\ntime.sleep(1000)\n")
    f.add_dag("good.py", GOOD.format(dag_id="good", every=3600, tags=[]))
    try:
        f.start()
        mark = len(f.notifications())
        t0 = time.monotonic()
        f.proc.send_signal(1)  # SIGHUP
        ready = f.wait_notification("READY=1", after=f.wait_notification("RELOADING=1", after=mark), timeout=50)
        waited = time.monotonic() - t0
        assert waited < 40, f"the reload waited {waited:.0f}s for a file that hangs for 60s"
        assert any(n.startswith("STATUS=1 DAGs") for n in f.notifications()[ready:]), f.notifications()[mark:]
        assert "still being parsed" in f.stderr()
        assert f.proc.poll() is None
    finally:
        f.discard()
