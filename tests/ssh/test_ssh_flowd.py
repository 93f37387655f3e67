"""Remote tasks through a real flowd: clear and mark kill the remote tree, a lost sshd fails the try
and the retry succeeds, and a crashed flowd's remote try is killed and recorded by the next one."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flow.daemon.client import Client
from flow.daemon.specs import log_path
from flow.executors.ssh_remote import try_tag

from ..daemon.conftest import Flowd, make_flowd
from .conftest import Sshd, remote_survivors, write_connections

LONG = """
from flow import DAG
from flow.operators import SSHOperator
with DAG("{name}", schedule=None):
    SSHOperator(task_id="long", ssh_conn_id="local", command="echo up-{{{{ ti.try_number if ti is defined else 1 }}}}; sleep 300 & sleep 301; wait")
"""

FLAKY = """
from flow import DAG
from flow.operators import BashOperator
with DAG("{name}", schedule=None):
    BashOperator(task_id="flaky", ssh_conn_id="local", retries=1, retry_delay=3,
                 bash_command="echo attempt; if [ ! -e {flag} ]; then touch {flag}; sleep 300; fi; echo fine")
"""


def start_flowd(tmp_path: Path, conf: Path) -> Flowd:
    f = make_flowd(tmp_path)
    f.env["FLOW_CONNECTIONS"] = str(conf)
    f.env["FLOW_KILL_GRACE"] = "1"
    f.start()
    return f


@pytest.fixture
def conf(tmp_path: Path, sshd: Sshd) -> Path:
    (tmp_path / "conf").mkdir()
    return write_connections(tmp_path / "conf" / "connections.toml", sshd)


@pytest.fixture
def daemon(tmp_path: Path, conf: Path) -> Iterator[Flowd]:
    f = start_flowd(tmp_path, conf)
    try:
        yield f
    finally:
        f.discard()


def add_dag(daemon: Flowd, template: str, name: str, **fmt: Any) -> None:
    with Client.connect(daemon.socket_path) as client:
        client.call("subscribe", topics=["dags"])
        daemon.add_dag(f"{name}.py", template.format(name=name, **fmt))
        for event in client.events(timeout=30):
            if name in event["data"].get("upserted", []):
                return
    pytest.fail(f"flowd did not load DAG {name}; stderr:\n{daemon.stderr()}")


def cli_json(daemon: Flowd, *args: str) -> Any:
    res = daemon.cli(*args, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


def wait_ti(client: Client, task_id: str, states: tuple[str, ...], try_number: int | None = None,
            timeout: float = 60) -> dict[str, Any]:
    for event in client.events(timeout=timeout):
        data = event["data"]
        if (event["event"] == "ti" and data.get("task_id") == task_id and data["state"] in states
                and (try_number is None or data.get("try_number") == try_number)):
            return data
    pytest.fail(f"task {task_id} did not reach {states} within {timeout:g}s")


def wait_for(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def try_log(daemon: Flowd, dag_id: str, run_id: str, task_id: str, n: int) -> str:
    return log_path(daemon.log_folder, dag_id, run_id, task_id, n)


def tries(daemon: Flowd, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
    got = cli_json(daemon, "runs", "show", dag_id, run_id)
    return next(ti["tries"] for ti in got["task_instances"] if ti["task_id"] == task_id)


def running_remote(daemon: Flowd, sshd: Sshd, dag: str, run_id: str, n: int) -> str:
    """Wait until try n runs remotely (its output arrived, its processes exist); returns its tag."""
    path = try_log(daemon, dag, run_id, "long", n)
    wait_for(lambda: os.path.exists(path) and "up-" in Path(path).read_text(), f"try {n}'s first line")
    tag = try_tag(path)
    wait_for(lambda: len(remote_survivors(sshd, tag)) >= 3, f"try {n}'s remote processes")
    return tag


def test_clear_and_mark_kill_the_remote_tree(daemon: Flowd, sshd: Sshd) -> None:
    add_dag(daemon, LONG, "remote_long")
    with Client.connect(daemon.socket_path) as client:
        client.call("subscribe", topics=["ti"])
        run_id = cli_json(daemon, "dags", "trigger", "remote_long")["run"]["run_id"]
        wait_ti(client, "long", ("running",), 1)
        tag1 = running_remote(daemon, sshd, "remote_long", run_id, 1)
        res = daemon.cli("tasks", "clear", "remote_long", "long", "--run", run_id, "--yes")
        assert res.returncode == 0, res.stderr
        wait_ti(client, "long", ("running",), 2)
        tag2 = running_remote(daemon, sshd, "remote_long", run_id, 2)
        wait_for(lambda: remote_survivors(sshd, tag1) == [], "try 1's remote processes to be gone")
        res = daemon.cli("tasks", "mark", "success", "remote_long", "long", "--run", run_id, "--yes")
        assert res.returncode == 0, res.stderr
    wait_for(lambda: remote_survivors(sshd, tag2) == [], "try 2's remote processes to be gone")
    wait_for(lambda: all(t["state"] != "running" for t in tries(daemon, "remote_long", run_id, "long")),
             "both tries to be recorded")
    t1, t2 = tries(daemon, "remote_long", run_id, "long")
    assert t1["state"] == "failed" and "clear by operator" in t1["error"]
    assert t2["state"] == "failed" and "mark_success by operator" in t2["error"]
    assert [t["rendered"] for t in (t1, t2)] == [f"echo up-{n}; sleep 300 & sleep 301; wait" for n in (1, 2)]


def test_sshd_killed_mid_task_fails_the_try_and_the_retry_succeeds(tmp_path: Path, own_sshd: Sshd) -> None:
    (tmp_path / "conf").mkdir()
    conf = write_connections(tmp_path / "conf" / "connections.toml", own_sshd)
    daemon = start_flowd(tmp_path, conf)
    try:
        add_dag(daemon, FLAKY, "remote_flaky", flag=str(tmp_path / "flag"))
        with Client.connect(daemon.socket_path) as client:
            client.call("subscribe", topics=["ti"])
            run_id = cli_json(daemon, "dags", "trigger", "remote_flaky")["run"]["run_id"]
            wait_ti(client, "flaky", ("running",), 1)
            first = try_log(daemon, "remote_flaky", run_id, "flaky", 1)
            wait_for(lambda: (tmp_path / "flag").exists(), "the first try to start its sleep")
            tag1 = try_tag(first)
            wait_for(lambda: remote_survivors(own_sshd, tag1) != [], "the first try's remote processes")
            own_sshd.kill()
            wait_ti(client, "flaky", ("up_for_retry",), 1)
            own_sshd.start()
            final = wait_ti(client, "flaky", ("success", "failed"), 2)
        assert final["state"] == "success"
        t1, t2 = tries(daemon, "remote_flaky", run_id, "flaky")
        assert "connection lost while the task ran" in t1["error"]
        assert t2["state"] == "success"
        wait_for(lambda: remote_survivors(own_sshd, tag1) == [], "the lost try's processes to be killed")
    finally:
        daemon.cleanup()


def test_a_crashed_flowds_remote_try_is_killed_and_recorded(daemon: Flowd, sshd: Sshd) -> None:
    add_dag(daemon, LONG, "remote_crash")
    with Client.connect(daemon.socket_path) as client:
        client.call("subscribe", topics=["ti"])
        run_id = cli_json(daemon, "dags", "trigger", "remote_crash")["run"]["run_id"]
        wait_ti(client, "long", ("running",), 1)
        tag = running_remote(daemon, sshd, "remote_crash", run_id, 1)
    daemon.kill9()
    assert remote_survivors(sshd, tag) != [], "without flowd nothing kills it: that is what recovery is for"
    daemon.start()
    wait_for(lambda: tries(daemon, "remote_crash", run_id, "long")[0]["state"] == "failed", "the try's record")
    (t1,) = tries(daemon, "remote_crash", run_id, "long")
    assert t1["error"].startswith("lost: flowd stopped while it ran remotely") and "was killed" in t1["error"]
    assert remote_survivors(sshd, tag) == []


def test_a_stopping_flowd_kills_its_remote_tries_and_records_them(daemon: Flowd, sshd: Sshd) -> None:
    add_dag(daemon, LONG, "remote_stop")
    with Client.connect(daemon.socket_path) as client:
        client.call("subscribe", topics=["ti"])
        run_id = cli_json(daemon, "dags", "trigger", "remote_stop")["run"]["run_id"]
        wait_ti(client, "long", ("running",), 1)
        tag = running_remote(daemon, sshd, "remote_stop", run_id, 1)
    assert daemon.stop() == 0
    assert remote_survivors(sshd, tag) == []
    daemon.start()
    wait_for(lambda: tries(daemon, "remote_stop", run_id, "long")[0]["state"] == "failed", "the try's record")
    (t1,) = tries(daemon, "remote_stop", run_id, "long")
    assert "flowd stopped while it ran" in t1["error"]
