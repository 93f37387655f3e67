"""A full log folder loses output, never a try's exit status, and nobody is left to guess.

A real flowd writes its task logs to a 1 MiB tmpfs that the test fills to the last byte. Three
tries run there: a bash task that succeeds, one that exits 3, and a Python task (whose result is a
file beside its log, so it fails and says why). Their logs and exit records cannot be
written, yet the database holds their true exit statuses (the runner reports them over its
socket), each try's error line says "log incomplete: log folder full", `flow status` and the
status payload say so, and one webhook alert goes out. After the filler is removed, the next run
logs normally and the warning is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ..daemon.conftest import Flowd, make_flowd
from ..daemon.receivers import HTTPReceiver

DAG = """
import pendulum
from flow import DAG
from flow.operators import BashOperator, PythonOperator
with DAG("full", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
         default_args={"notify_on_failure": ["hook"]}):
    BashOperator(task_id="ok", bash_command="echo all good; exit 0")
    BashOperator(task_id="bad", bash_command="echo about to fail; exit 3")
    PythonOperator(task_id="py", python_callable=lambda: print("python says hi"))
"""


@pytest.fixture
def tmpfs() -> Iterator[Path]:
    """A 1 MiB tmpfs (we run as root), unmounted however the test ends."""
    path = Path(tempfile.mkdtemp(prefix="flow-logfull-"))
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, f"cannot mount a tmpfs (root is needed): {res.stderr}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        os.rmdir(path)


@pytest.fixture
def http() -> Iterator[HTTPReceiver]:
    receiver = HTTPReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def fd(tmp_path: Path, tmpfs: Path, http: HTTPReceiver) -> Iterator[Flowd]:
    f = make_flowd(tmp_path)
    f.log_folder = str(tmpfs)
    cfg = tmp_path / "flowd.toml"
    cfg.write_text(f'[notifiers.hook]\ntype = "webhook"\nurl = "{http.url()}"\nretry_delay = 0.2\n')
    f.extra_args = ["--config", str(cfg)]
    f.env["FLOW_PAUSED_AT_CREATION"] = "false"
    try:
        yield f
    finally:
        f.discard()


def fill(folder: Path) -> Path:
    """Write until the filesystem refuses a single byte more."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
        try:
            while True:
                fh.write(b"\0")
        except OSError as exc:
            assert exc.errno == 28, exc
    assert os.statvfs(folder).f_bavail == 0
    return filler


def status(f: Flowd) -> dict[str, Any]:
    out = f.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def tries(f: Flowd, run_id: str, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """The run's tries as the database holds them, once both have ended."""
    engine = sa.create_engine(f.db_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as c:
                rows = c.execute(sa.text(
                    "SELECT t.task_id, t.state, t.exit_code, t.error, t.log_path FROM task_try t "
                    "JOIN dag_run r ON r.id = t.dag_run_id WHERE r.run_id = :r"), {"r": run_id}).mappings().all()
            got = {r["task_id"]: dict(r) for r in rows}
            if len(got) == 3 and all(r["state"] in ("success", "failed") for r in got.values()):
                return got
            if time.monotonic() > deadline:
                pytest.fail(f"the run's tries did not end within {timeout:g}s: {got}\n{f.stderr()}")
            time.sleep(0.2)
    finally:
        engine.dispose()


def trigger(f: Flowd) -> str:
    out = f.cli("dags", "trigger", "full")
    assert out.returncode == 0, out.stderr + f.stderr()
    return out.stdout.strip()


def test_a_full_log_folder_keeps_exit_statuses_says_so_and_recovers(fd: Flowd, tmpfs: Path,
                                                                    http: HTTPReceiver) -> None:
    fd.add_dag("full.py", DAG)
    fd.start()
    deadline = time.monotonic() + 60
    while status(fd)["dags"] != 1:
        assert time.monotonic() < deadline, fd.stderr()
        time.sleep(0.2)
    filler = fill(tmpfs)

    got = tries(fd, trigger(fd))
    assert (got["ok"]["state"], got["ok"]["exit_code"]) == ("success", 0)
    assert (got["bad"]["state"], got["bad"]["exit_code"]) == ("failed", 3)
    assert got["ok"]["error"].startswith("log incomplete: log folder full"), got["ok"]
    assert got["bad"]["error"].startswith("exit status 3; log incomplete: log folder full"), got["bad"]
    # A Python task's result is a file beside its log: it cannot report success, and says why.
    assert got["py"]["state"] == "failed" and "log incomplete: log folder full" in got["py"]["error"], got["py"]
    for t in got.values():  # nothing of them reached the disk: the database is where they live
        assert not os.path.exists(t["log_path"] + ".status.json")
        assert not os.path.exists(t["log_path"]) or os.path.getsize(t["log_path"]) == 0

    st = status(fd)
    assert st["storage"]["log_problem"]["tries"] == 3, st["storage"]
    assert st["storage"]["log_problem"]["reason"].startswith("log incomplete: log folder full")
    assert len(st["problems"]) == 1 and "log folder full" in st["problems"][0]
    shown = fd.cli("status")
    assert shown.returncode == 0 and "warning: log incomplete: log folder full" in shown.stdout, shown.stdout
    alerts = [r.json() for r in http.inbox.wait(3)]  # two failures and the log folder, once
    events = sorted(a["event"] for a in alerts)
    assert events == ["task.failed", "task.failed", "task.log_incomplete"], events
    assert "log folder full" in next(a for a in alerts if a["event"] == "task.log_incomplete")["error"]

    filler.unlink()
    got = tries(fd, trigger(fd))
    assert (got["ok"]["state"], got["ok"]["error"]) == ("success", None)
    assert got["bad"]["error"] == "exit status 3"
    assert (got["py"]["state"], got["py"]["error"]) == ("success", None)
    assert "all good" in Path(got["ok"]["log_path"]).read_text()
    record = json.loads(Path(got["bad"]["log_path"] + ".status.json").read_text())
    assert record["exit_code"] == 3 and record["log_incomplete"] is None
    st = status(fd)
    assert st["storage"]["log_problem"] is None and st["problems"] == []
    assert "log folder full" not in fd.cli("status").stdout
    events = sorted(r.json()["event"] for r in http.inbox.wait(4))  # the second failure; no second log alert
    assert events == ["task.failed"] * 3 + ["task.log_incomplete"], events
