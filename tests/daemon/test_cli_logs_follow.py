"""`flow logs --follow` on a task that has not started, and across a retry; `flow` output of
untrusted text to a terminal (a pty) and to a pipe. The real `flow` script against a real flowd."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow.daemon.client import Client

from .conftest import FLOW, Flowd, clean_env, make_flowd, running
from .test_cli_remote import add_dag, cli_json

# `first` holds `late` back until the flag exists; `late` fails its first try and succeeds on the retry.
LATE_AND_FLAKY = """
from flow import DAG
from flow.operators import BashOperator
with DAG("{name}", schedule=None):
    first = BashOperator(task_id="first", bash_command="while [ ! -e {flag} ]; do sleep 0.02; done")
    late = BashOperator(task_id="late", retries=1, retry_delay=0.2,
                        bash_command="if [ -e {marker} ]; then echo second-try; else touch {marker}; echo first-try; exit 3; fi")
    first >> late
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flowd]:
    f = make_flowd(tmp_path_factory.mktemp("flowd"))
    with running(f):
        yield f


def test_logs_follow_waits_for_a_task_that_has_not_started_and_follows_its_retry(daemon: Flowd, tmp_path: Path):
    flag, marker = tmp_path / "go", tmp_path / "marker"
    add_dag(daemon, LATE_AND_FLAKY, "late_flaky", flag=str(flag), marker=str(marker))
    cli_json(daemon, "dags", "trigger", "late_flaky")
    cmd = [FLOW, "--socket", daemon.socket_path, "logs", "late_flaky", "late", "--follow"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=clean_env(daemon.home)) as proc:
        assert "has not started yet" in proc.stderr.readline()
        assert proc.poll() is None  # it waits instead of exiting 1
        flag.touch()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "first-try" in out and "second-try" in out and out.index("first-try") < out.index("second-try")
    assert "--- try 2 of late" in err


def test_logs_follow_with_a_try_number_stays_on_that_try(daemon: Flowd, tmp_path: Path):
    flag, marker = tmp_path / "go", tmp_path / "marker"
    flag.touch()
    add_dag(daemon, LATE_AND_FLAKY, "late_flaky_pinned", flag=str(flag), marker=str(marker))
    with Client.connect(daemon.socket_path) as client:
        client.call("subscribe", topics=["run"])
        run_id = cli_json(daemon, "dags", "trigger", "late_flaky_pinned")["run"]["run_id"]
        deadline = time.monotonic() + 60
        for event in client.events(timeout=60):
            if event["data"].get("run_id") == run_id and event["data"].get("state") == "success":
                break
            assert time.monotonic() < deadline
    res = daemon.cli("logs", "late_flaky_pinned", "late", "--try", "1", "--follow")
    assert res.returncode == 0, res.stderr
    assert "first-try" in res.stdout and "second-try" not in res.stdout


HOSTILE = """
from flow import DAG
from flow.operators import BashOperator
with DAG("{name}", schedule=None, default_args={{"owner": "ops\\x1b]2;PWNED\\x07"}}, tags=["t\\x1b[31mred"]):
    BashOperator(task_id="say", bash_command="printf 'x\\\\033]2;PWNED\\\\007y\\\\n'")
"""


def in_a_pty(daemon: Flowd, *args: str) -> str:
    """What `flow ARGS` writes when its stdout is a terminal."""
    import os
    import pty
    import select

    main, sub = pty.openpty()
    cmd = [FLOW, "--socket", daemon.socket_path, "--dags-folder", daemon.dags_folder, "--db", daemon.db_url,
           "--log-folder", daemon.log_folder, *args]
    with subprocess.Popen(cmd, stdout=sub, stderr=subprocess.PIPE, env=clean_env(daemon.home)) as proc:
        os.close(sub)
        out = b""
        while True:
            ready, _, _ = select.select([main], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the other side closed: the command is done
                break
            if not chunk:
                break
            out += chunk
        proc.wait(timeout=30)
    os.close(main)
    return out.decode()


def test_untrusted_text_is_drawn_on_a_terminal_and_byte_exact_in_a_pipe(daemon: Flowd):
    add_dag(daemon, HOSTILE, "hostile")
    with Client.connect(daemon.socket_path) as client:
        client.call("subscribe", topics=["run"])
        run_id = cli_json(daemon, "dags", "trigger", "hostile")["run"]["run_id"]
        for event in client.events(timeout=60):
            if event["data"].get("run_id") == run_id and event["data"].get("state") in ("success", "failed"):
                break
    listed = in_a_pty(daemon, "dags", "list")
    assert "ops^[]2;PWNED^G" in listed and "t^[[31mred" in listed and "\x1b]2;" not in listed
    logged = in_a_pty(daemon, "logs", "hostile", "say")
    assert "x^[]2;PWNED^Gy" in logged and "\x1b]2;" not in logged
    piped = daemon.cli("logs", "hostile", "say")
    assert piped.returncode == 0 and "x\x1b]2;PWNED\x07y\n" in piped.stdout  # a pipe gets the bytes as written
    assert "ops\x1b]2;PWNED\x07" in daemon.cli("dags", "list").stdout
    daemon.add_dag("broken_title.py", "import os\nraise RuntimeError('bad \\x1b]2;PWNED\\x07 file')\n")
    deadline = time.monotonic() + 30
    while "PWNED" not in (errors := in_a_pty(daemon, "dags", "list-import-errors")):
        assert time.monotonic() < deadline, errors
        time.sleep(0.2)
    assert "bad ^[]2;PWNED^G file" in errors and "\x1b]2;" not in errors


def test_triggering_a_paused_dag_warns_on_stderr(daemon: Flowd, tmp_path: Path):
    flag, marker = tmp_path / "go", tmp_path / "marker"
    add_dag(daemon, LATE_AND_FLAKY, "paused_one", flag=str(flag), marker=str(marker))
    assert daemon.cli("dags", "pause", "paused_one").returncode == 0
    res = daemon.cli("dags", "trigger", "paused_one")
    assert res.returncode == 0 and res.stdout.startswith("manual__")
    assert "is paused: the run is queued and waits until it is unpaused" in res.stderr


def test_runs_list_without_a_dag_lists_every_dags_runs_and_state_failed_the_failed_ones(daemon: Flowd, tmp_path: Path):
    flag, marker = tmp_path / "go", tmp_path / "marker"
    flag.touch()
    add_dag(daemon, LATE_AND_FLAKY, "lister", flag=str(flag), marker=str(marker))
    add_dag(daemon, 'from flow import DAG\nfrom flow.operators import BashOperator\nwith DAG("{name}", schedule=None):\n'
                    '    BashOperator(task_id="boom", bash_command="echo no; exit 4")\n', "lister_fails")
    for dag_id in ("lister", "lister_fails"):
        assert daemon.cli("dags", "trigger", dag_id, "--follow").returncode in (0, 1)
    every = cli_json(daemon, "runs", "list")["runs"]
    assert {"lister", "lister_fails"} <= {r["dag_id"] for r in every}
    failed = cli_json(daemon, "runs", "list", "--state", "failed")["runs"]
    assert {r["dag_id"] for r in failed} >= {"lister_fails"} and "lister" not in {r["dag_id"] for r in failed}
    table = daemon.cli("runs", "list", "--state", "failed")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:2] == ["DAG", "RUN"]
    with Client.connect(daemon.socket_path) as client:
        failures = client.call("failures.list")["failures"]
    mine = [f for f in failures if f["dag_id"] == "lister_fails"]
    assert mine and mine[0]["task_id"] == "boom" and mine[0]["state"] == "failed"
