"""The `flow` commands that talk to a running flowd, run as a user runs them: the installed script
against a real flowd process on a temporary socket.

One flowd serves the whole module (each test uses its own DAGs), so the file stays fast. Waiting
is done on flowd's own events (a test-side client subscribes), never on sleeps.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flow.daemon.client import Client

from .conftest import FLOW, Flowd, clean_env, make_flowd, running

CHAIN = """
from flow import DAG
from flow.operators import BashOperator
with DAG("{name}", schedule=None):
    a = BashOperator(task_id="a", bash_command="echo a-ran")
    b = BashOperator(task_id="b", bash_command="echo b-ran")
    c = BashOperator(task_id="c", bash_command="echo c-ran")
    d = BashOperator(task_id="d", bash_command="echo d-ran")
    a >> b >> c
"""

TWO_LINES = """
from flow import DAG
from flow.operators import BashOperator
with DAG("{name}", schedule=None):
    first = BashOperator(task_id="first", bash_command="echo line-one; echo line-two")
    second = BashOperator(task_id="second", bash_command="echo from-second")
    first >> second
"""

FAILS = """
from flow import DAG
from flow.operators import BashOperator
with DAG("{name}", schedule=None):
    BashOperator(task_id="boom", bash_command="echo about to fail; exit 7")
"""

BIG = """
from flow import DAG
from flow.operators import BashOperator
with DAG("{name}", schedule=None):
    BashOperator(task_id="count", bash_command="seq 1 60000")
"""

WAITS = """
from flow import DAG
from flow.operators import BashOperator
with DAG("{name}", schedule=None):
    BashOperator(task_id="wait", bash_command="echo begin; while [ ! -e {flag} ]; do sleep 0.02; done; echo finish")
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flowd]:
    f = make_flowd(tmp_path_factory.mktemp("flowd"))
    with running(f):
        yield f


def add_dag(daemon: Flowd, template: str, name: str, **fmt: Any) -> str:
    """Write a DAG file and return once flowd has loaded it (on its `dags` event)."""
    with Client.connect(daemon.socket_path) as client:
        client.call("subscribe", topics=["dags"])
        known = {d["dag_id"] for d in client.call("dags.list")["dags"]}
        daemon.add_dag(f"{name}.py", template.format(name=name, **fmt))
        if name not in known:
            for event in client.events(timeout=15):
                if name in event["data"].get("upserted", []):
                    break
            else:
                pytest.fail(f"flowd did not load DAG {name}; stderr:\n{daemon.stderr()}")
    return name


def wait_run_end(client: Client, dag_id: str, run_id: str) -> str:
    """The run's next final state, from events on a client that subscribed before the change."""
    for event in client.events(timeout=30):
        data = event["data"]
        if (event["event"] == "run" and data.get("dag_id") == dag_id and data.get("run_id") == run_id
                and data["state"] in ("success", "failed")):
            return data["state"]
    pytest.fail(f"run {run_id} of {dag_id} did not end within 30 s")


def cli_json(daemon: Flowd, *args: str) -> Any:
    res = daemon.cli(*args, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


def tries(daemon: Flowd, dag_id: str, run_id: str) -> dict[str, list[str]]:
    got = cli_json(daemon, "runs", "show", dag_id, run_id)
    return {ti["task_id"]: [t["state"] for t in ti["tries"]] for ti in got["task_instances"]}


def run_to_end(daemon: Flowd, dag_id: str) -> str:
    res = daemon.cli("dags", "trigger", dag_id, "--follow")
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.splitlines()[0]


def test_status_shows_the_daemon_and_its_socket(daemon):
    res = daemon.cli("status")
    assert res.returncode == 0, res.stderr
    assert f"pid {daemon.proc.pid}" in res.stdout and daemon.socket_path in res.stdout
    assert "RSS" in res.stdout and "free slots" in res.stdout
    st = cli_json(daemon, "status")
    assert st["pid"] == daemon.proc.pid and st["socket"] == daemon.socket_path
    assert st["parallelism"] == st["free_slots"] + st["running"]


def test_trigger_follow_streams_task_lines_and_exits_0(daemon):
    add_dag(daemon, TWO_LINES, "two_lines")
    res = daemon.cli("dags", "trigger", "two_lines", "--follow")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout.splitlines()
    assert out[0].startswith("manual__")
    assert "  first | line-one" in out and "  first | line-two" in out and "  second | from-second" in out
    done_first = next(i for i, line in enumerate(out) if line.endswith("✔ first success"))
    assert out.index("  first | line-two") < done_first < out.index("  second | from-second")
    assert out[-1].endswith(f"✔ run {out[0]} success")


def test_trigger_follow_of_a_failing_dag_exits_1_with_its_output(daemon):
    add_dag(daemon, FAILS, "fails")
    res = daemon.cli("dags", "trigger", "fails", "--follow")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "  boom | about to fail" in res.stdout
    assert "✘ boom failed  (exit status 7)" in res.stdout
    last = res.stdout.splitlines()[-1]
    assert "✘ run manual__" in last and " failed: " in last and "boom" in last


def test_trigger_json_then_runs_list_and_show(daemon):
    add_dag(daemon, CHAIN, "listed")
    with Client.connect(daemon.socket_path) as client:
        client.call("subscribe", topics=["run"])
        run = cli_json(daemon, "dags", "trigger", "listed", "--conf", '{"day": "2026-01-01"}')["run"]
        assert run["dag_id"] == "listed" and run["conf"] == {"day": "2026-01-01"}
        assert wait_run_end(client, "listed", run["run_id"]) == "success"
    runs = cli_json(daemon, "runs", "list", "listed")["runs"]
    assert [r["run_id"] for r in runs] == [run["run_id"]] and runs[0]["state"] == "success"
    table = daemon.cli("runs", "list", "listed")
    assert run["run_id"] in table.stdout and "✔ success" in table.stdout
    shown = daemon.cli("runs", "show", "listed", run["run_id"])
    assert shown.returncode == 0, shown.stderr
    for header in ("TASK", "TRY", "STATE", "DURATION", "EXIT", "HOST", "PID"):
        assert header in shown.stdout
    assert '{"day": "2026-01-01"}' in shown.stdout
    got = cli_json(daemon, "runs", "show", "listed", run["run_id"])
    first = got["task_instances"][0]["tries"][0]
    assert first["exit_code"] == 0 and first["pid"] > 0 and first["hostname"] and first["duration"] >= 0


def test_clear_downstream_with_yes_reruns_exactly_those_tasks(daemon):
    add_dag(daemon, CHAIN, "cleared")
    run_id = run_to_end(daemon, "cleared")
    with Client.connect(daemon.socket_path) as client:
        client.call("subscribe", topics=["run"])
        res = daemon.cli("tasks", "clear", "cleared", "b", "--run", run_id, "--downstream", "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "clear: 2 task instance(s)" in res.stdout
        listed = [line.split()[0] for line in res.stdout.splitlines()[2:] if line.startswith(("a ", "b ", "c ", "d "))]
        assert listed == ["b", "c"]
        assert wait_run_end(client, "cleared", run_id) == "success"
    assert tries(daemon, "cleared", run_id) == {"a": ["success"], "b": ["success", "success"],
                                                 "c": ["success", "success"], "d": ["success"]}


def test_clear_without_yes_off_a_terminal_refuses_and_changes_nothing(daemon):
    add_dag(daemon, CHAIN, "refused")
    run_id = run_to_end(daemon, "refused")
    cmd = [FLOW, "--socket", daemon.socket_path, "tasks", "clear", "refused", "--run", run_id]
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
                         env=clean_env(daemon.home))
    assert res.returncode == 1
    assert "use --yes" in res.stderr and res.stderr.count("\n") == 1
    assert all(f"{t} " in res.stdout for t in "abcd")
    dry = cli_json(daemon, "tasks", "clear", "refused", "--run", run_id, "--dry-run")
    assert dry["dry_run"] is True and len(dry["task_instances"]) == 4
    assert tries(daemon, "refused", run_id) == {t: ["success"] for t in "abcd"}


def test_mark_failed_then_retry_runs_the_failed_task_again(daemon):
    add_dag(daemon, CHAIN, "marked")
    run_id = run_to_end(daemon, "marked")
    res = daemon.cli("tasks", "mark", "failed", "marked", "d", "--run", run_id, "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "mark failed: 1 task instance(s)" in res.stdout
    states = {ti["task_id"]: ti["state"] for ti in cli_json(daemon, "runs", "show", "marked", run_id)["task_instances"]}
    assert states == {"a": "success", "b": "success", "c": "success", "d": "failed"}
    dry = daemon.cli("tasks", "retry", "marked", "--run", run_id, "--dry-run")
    assert dry.returncode == 0 and "✘ failed" in dry.stdout and "retry:" not in dry.stdout
    with Client.connect(daemon.socket_path) as client:
        client.call("subscribe", topics=["run"])
        retried = cli_json(daemon, "tasks", "retry", "marked", "--run", run_id, "--yes")
        assert [t["task_id"] for t in retried["task_instances"]] == ["d"] and retried["dry_run"] is False
        assert wait_run_end(client, "marked", run_id) == "success"
    assert tries(daemon, "marked", run_id)["d"] == ["success", "success"]
    again = daemon.cli("tasks", "retry", "marked", "--run", run_id, "--yes")
    assert again.returncode == 0 and "nothing to retry" in again.stdout


def test_logs_read_tail_and_json(daemon):
    add_dag(daemon, TWO_LINES, "logged")
    run_id = run_to_end(daemon, "logged")
    res = daemon.cli("logs", "logged", "first")
    assert res.returncode == 0, res.stderr
    assert "\nline-one\nline-two\n" in res.stdout and "exited with status 0" in res.stdout
    from_two = res.stdout[res.stdout.index("line-two"):]
    tail = daemon.cli("logs", "logged", "first", "--run", run_id, "--try", "1", "--tail", str(len(from_two)))
    assert tail.stdout == from_two
    got = cli_json(daemon, "logs", "logged", "second")
    assert "\nfrom-second\n" in got["data"] and got["running"] is False
    assert got["size"] == got["next_offset"] == len(got["data"].encode())
    missing = daemon.cli("logs", "logged", "first", "--try", "5")
    assert missing.returncode == 1 and missing.stderr.startswith("flow: ")


def test_a_log_longer_than_one_read_comes_out_whole(daemon):
    add_dag(daemon, BIG, "big")
    run_to_end(daemon, "big")
    res = daemon.cli("logs", "big", "count")
    assert res.returncode == 0, res.stderr
    numbers = [line for line in res.stdout.splitlines() if not line.startswith("[flow]")]
    assert numbers == [str(n) for n in range(1, 60001)]
    assert len(res.stdout.encode()) > 2 * 128 * 1024


def test_logs_follow_prints_a_running_try_until_it_ends(daemon, tmp_path):
    flag = tmp_path / "go"
    add_dag(daemon, WAITS, "waits", flag=str(flag))
    with Client.connect(daemon.socket_path) as client:
        client.call("subscribe", topics=["ti"])
        run_id = cli_json(daemon, "dags", "trigger", "waits")["run"]["run_id"]
        for event in client.events(timeout=30):
            if event["data"].get("run_id") == run_id and event["data"]["state"] == "running":
                break
    cmd = [FLOW, "--socket", daemon.socket_path, "logs", "waits", "wait", "--follow"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=clean_env(daemon.home)) as proc:
        head = [proc.stdout.readline() for _ in range(2)]
        assert head[0].startswith("[flow] waits.wait try 1 started") and head[1] == "begin\n"
        assert proc.poll() is None
        flag.touch()
        rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert rest.startswith("finish\n") and "exited with status 0" in rest


def test_pause_and_unpause_show_in_status_and_the_dag_list(daemon):
    add_dag(daemon, TWO_LINES, "pausable")
    before = cli_json(daemon, "status")["paused"]
    res = daemon.cli("dags", "pause", "pausable")
    assert res.returncode == 0 and res.stdout.strip() == "DAG 'pausable' paused"
    assert daemon.cli("dags", "pause", "pausable").stdout.strip() == "DAG 'pausable' was already paused"
    assert cli_json(daemon, "status")["paused"] == before + 1
    held = daemon.cli("dags", "trigger", "pausable", "--date", "2026-01-31T09:00:00+01:00")
    assert held.returncode == 0 and held.stdout.strip() == "manual__2026-01-31T08:00:00+00:00"
    assert [r["state"] for r in cli_json(daemon, "runs", "list", "pausable")["runs"]] == ["queued"]
    with Client.connect(daemon.socket_path) as client:
        dag = next(d for d in client.call("dags.list")["dags"] if d["dag_id"] == "pausable")
    assert dag["is_paused"] is True
    assert cli_json(daemon, "dags", "unpause", "pausable") == {"dag_id": "pausable", "is_paused": False,
                                                               "changed": True}
    assert cli_json(daemon, "status")["paused"] == before


def test_audit_shows_actions_with_the_user_name(daemon):
    add_dag(daemon, TWO_LINES, "audited")
    assert daemon.cli("dags", "pause", "audited").returncode == 0
    assert daemon.cli("dags", "unpause", "audited").returncode == 0
    user = pwd.getpwuid(os.getuid()).pw_name
    entries = cli_json(daemon, "audit", "--dag", "audited")["entries"]
    assert [e["action"] for e in entries] == ["unpause", "pause"]
    assert all(e["user"] == user and e["uid"] == os.getuid() for e in entries)
    res = daemon.cli("audit", "--dag", "audited", "--limit", "1")
    assert res.returncode == 0
    assert f"{user} ({os.getuid()})" in res.stdout and "unpause" in res.stdout and " pause " not in res.stdout


def test_unknown_dag_is_one_line_and_exit_1(daemon):
    for args in (("dags", "trigger", "nope"), ("runs", "list", "nope"), ("dags", "pause", "nope")):
        res = daemon.cli(*args)
        assert res.returncode == 1, args
        assert res.stderr.startswith("flow: unknown DAG 'nope'") and res.stderr.count("\n") == 1


def test_bad_conf_is_a_usage_error(daemon):
    res = daemon.cli("dags", "trigger", "whatever", "--conf", "{not json")
    assert res.returncode == 2 and "--conf" in res.stderr and "not valid JSON" in res.stderr


def test_flowd_not_running_names_the_socket_in_one_line(tmp_path):
    folder = tempfile.mkdtemp(prefix="fd-")
    try:
        sock = os.path.join(folder, "flowd.sock")
        cmd = [FLOW, "--socket", sock, "status"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=clean_env(tmp_path))
        assert res.returncode == 1
        assert res.stderr == (f"flow: cannot reach flowd at {sock} (no such file): start it with "
                              "`systemctl --user start flowd`, `systemctl start flowd`, or `flowd &`\n")
        Path(sock).write_text("")
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=clean_env(tmp_path))
        assert res.returncode == 1 and "(not a socket)" in res.stderr and res.stderr.count("\n") == 1
    finally:
        shutil.rmtree(folder)


def test_a_stopped_flowd_is_reported_as_not_running(flowd):
    assert flowd.cli("status").returncode == 0
    assert flowd.stop() == 0
    res = flowd.cli("status")
    assert res.returncode == 1 and flowd.socket_path in res.stderr and "flowd &" in res.stderr
