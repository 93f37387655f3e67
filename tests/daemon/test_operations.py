"""Day-two operations through a real flowd: log retention, the per-try log cap, `flow db clean`."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Flowd, make_flowd


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[Flowd]:
    f = make_flowd(tmp_path)
    f.env.update({"FLOW_PAUSED_AT_CREATION": "false"})
    yield f
    f.cleanup()
    shutil.rmtree(Path(f.socket_path).parent, ignore_errors=True)


def status(f: Flowd) -> dict[str, Any]:
    out = f.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_for(pred: Any, what: str, f: Flowd, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; flowd stderr:\n{f.stderr()}")
        time.sleep(0.3)


def write_log(folder: Path, rel: str, size: int, age_days: float) -> Path:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    when = time.time() - age_days * 86400
    os.utime(path, (when, when))
    return path


def test_old_logs_and_empty_folders_are_removed_at_start_and_on_reload(fd):
    logs = Path(fd.log_folder)
    old = write_log(logs, "dag_id=a/run_id=old/task_id=t/attempt=1.log", 1000, 10)
    old_status = write_log(logs, "dag_id=a/run_id=old/task_id=t/attempt=1.log.status.json", 10, 10)
    recent = write_log(logs, "dag_id=a/run_id=new/task_id=t/attempt=1.log", 500, 2)
    fd.env["FLOW_LOG_RETENTION_DAYS"] = "7"
    fd.start()
    st = wait_for(lambda: (s := status(fd))["storage"]["last_sweep"] and s, "the first sweep", fd)
    assert not old.exists() and not old_status.exists()
    assert not (logs / "dag_id=a" / "run_id=old").exists(), "empty folders must go too"
    assert recent.exists()
    sweep = st["storage"]["last_sweep"]
    assert sweep["removed_files"] == 2 and sweep["removed_bytes"] == 1010 and sweep["removed_dirs"] >= 2
    assert st["storage"]["log_bytes"] == 500 and st["storage"]["log_files"] == 1
    assert st["storage"]["db_bytes"] > 0
    # A reload sweeps again (after a retention change, say), without a restart.
    later = write_log(logs, "dag_id=b/run_id=r/task_id=t/attempt=1.log", 10, 30)
    fd.proc.send_signal(1)
    wait_for(lambda: not later.exists() and not (logs / "dag_id=b").exists(), "the reload sweep", fd)
    human = fd.cli("status").stdout
    assert "file(s) after the last sweep; kept 7 days" in human


CHATTY = """
from flow import DAG
from flow.operators import BashOperator

with DAG("chatty", schedule=None, max_active_runs=16):
    BashOperator(task_id="talk", bash_command="for i in $(seq 1 20000); do echo \\"line $i of the chatty task\\"; done")
"""


def test_many_chatty_runs_keep_the_log_folder_bounded(fd):
    fd.env["FLOW_MAX_LOG_BYTES_PER_TRY"] = "8192"
    fd.start()
    fd.add_dag("chatty.py", CHATTY)
    wait_for(lambda: status(fd)["dags"] == 1, "the DAG", fd)
    runs = []
    for i in range(8):
        out = fd.cli("dags", "trigger", "chatty", "--date", f"2026-01-01T00:0{i}:00Z")
        assert out.returncode == 0, out.stderr
        runs.append(out.stdout.strip())

    def finished() -> bool:
        listed = json.loads(fd.cli("runs", "list", "chatty", "--json").stdout)["runs"]
        return len(listed) == 8 and all(r["state"] == "success" for r in listed)

    wait_for(finished, "8 successful runs", fd, timeout=180)
    logs = list(Path(fd.log_folder).rglob("attempt=1.log"))
    assert len(logs) == 8
    # 20000 lines are ~570 kB per try; each log keeps 8 KiB plus three [flow] lines and the start line.
    assert all(p.stat().st_size < 8192 + 1024 for p in logs), [p.stat().st_size for p in logs]
    assert not list(Path(fd.log_folder).rglob("*.tail.*")), "the ring files are removed at the end"
    text = fd.cli("logs", "chatty", "talk", "--run", runs[0]).stdout
    assert "line 1 of the chatty task" in text and "line 20000 of the chatty task" in text
    assert "line 10000 of the chatty task" not in text
    cut = next(line for line in text.splitlines() if "bytes cut here" in line)
    removed = int(cut.split("log cut: ")[1].split(" ")[0])
    full = sum(len(f"line {i} of the chatty task\n") for i in range(1, 20001))
    head = text.split("[flow] this try's log reached", 1)[0]
    head_output = "".join(line for line in head.splitlines(keepends=True) if not line.startswith("[flow]"))
    if not head_output.endswith("task\n"):
        head_output = head_output[:-1]  # the newline put before the [flow] note, not output
    tail_output = text.split(cut + "\n", 1)[1].split("[flow] exited", 1)[0]
    # Nothing is lost without being counted: head + cut + tail is the whole output.
    assert len(head_output.encode()) + removed + len(tail_output.encode()) == full


SLOW = """
from flow import DAG
from flow.operators import BashOperator

with DAG("slow", schedule=None, max_active_runs=4):
    BashOperator(task_id="wait", bash_command="echo waiting; sleep 600")

with DAG("quick", schedule=None, max_active_runs=4):
    BashOperator(task_id="go", bash_command="echo go")
"""


def test_db_clean_removes_old_finished_runs_and_their_logs_but_never_a_running_one(fd):
    fd.start()
    fd.add_dag("slow.py", SLOW)
    wait_for(lambda: status(fd)["dags"] == 2, "the DAGs", fd)
    for i in range(3):
        assert fd.cli("dags", "trigger", "quick", "--date", f"2026-01-0{i + 1}T00:00:00Z").returncode == 0
    slow = fd.cli("dags", "trigger", "slow", "--date", "2026-01-01T00:00:00Z").stdout.strip()
    done = lambda: all(r["state"] == "success" for r in json.loads(  # noqa: E731
        fd.cli("runs", "list", "quick", "--json").stdout)["runs"])
    wait_for(done, "the quick runs", fd)
    wait_for(lambda: status(fd)["running"] == 1, "the slow task to run", fd)

    dry = fd.cli("db", "clean", "--before", "2026-01-03", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    counted = json.loads(dry.stdout)
    assert counted["runs"] == 2 and counted["rows"]["dag_run"] == 2 and counted["rows"]["task_instance"] == 2
    assert counted["rows"]["task_try"] == 2 and counted["log_files"] >= 2 and counted["log_bytes"] > 0
    assert counted["rows"]["try_resources"] == 2, "every try's resource figures go with it"
    assert len(json.loads(fd.cli("runs", "list", "quick", "--json").stdout)["runs"]) == 3, "a dry run removes nothing"

    refused = fd.cli("db", "clean", "--before", "2027-01-01")
    assert refused.returncode == 1 and "--yes" in refused.stderr

    out = fd.cli("db", "clean", "--before", "2027-01-01", "--yes")
    assert out.returncode == 0, out.stderr
    assert "removed 3 finished run(s)" in out.stdout and "task_instance" in out.stdout
    assert json.loads(fd.cli("runs", "list", "quick", "--json").stdout)["runs"] == []
    assert not list(Path(fd.log_folder).glob("dag_id=quick*")), "the runs' logs and DAG folder are gone"
    # The running run is untouched: its rows and its log stay.
    slow_runs = json.loads(fd.cli("runs", "list", "slow", "--json").stdout)["runs"]
    assert [r["run_id"] for r in slow_runs] == [slow] and slow_runs[0]["state"] == "running"
    assert "waiting" in fd.cli("logs", "slow", "wait", "--run", slow).stdout
    audit = json.loads(fd.cli("audit", "--json").stdout)["entries"]
    clean = next(e for e in audit if e["action"] == "db.clean")
    assert clean["params"]["runs"] == 3 and clean["params"]["rows"]["xcom"] >= 0


def test_cli_shows_local_times_with_the_zone_and_utc_on_request(fd):
    fd.env["FLOW_DEFAULT_TIMEZONE"] = "Asia/Seoul"
    fd.start()
    fd.add_dag("slow.py", SLOW)
    wait_for(lambda: status(fd)["dags"] == 2, "the DAGs", fd)
    run_id = fd.cli("dags", "trigger", "quick", "--date", "2026-03-02T09:00:00").stdout.strip()
    assert run_id == "manual__2026-03-02T00:00:00+00:00", "a date without offset is local; ids stay UTC"
    local = fd.cli("runs", "list", "quick").stdout
    assert "2026-03-02 09:00:00 KST" in local
    assert "2026-03-02 00:00:00 UTC" in fd.cli("--utc", "runs", "list", "quick").stdout
    fd.env["FLOW_UTC"] = "1"
    assert "2026-03-02 00:00:00 UTC" in fd.cli("runs", "list", "quick").stdout
    assert status(fd)["default_timezone"] == "Asia/Seoul"
