"""connections.toml, the authoring API, and `flow connections list / test / trust` against a real sshd."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flow import DAG
from flow.executors.ssh_config import ConnectionsError, load_connections
from flow.operators import BashOperator, SSHOperator
from flow.serialize import serialize_dag

from .conftest import Sshd, fingerprint_of, known_hosts_line, write_connections

FLOW = str(Path(sys.executable).parent / "flow")


def flow(conf: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_")}
    env["FLOW_CONNECTIONS"] = str(conf)
    return subprocess.run([FLOW, *args], capture_output=True, text=True, env=env, input=stdin, timeout=60)


@pytest.mark.parametrize(("text", "expect"), [
    ('[db]\nhost = "h"\nprot = 22\n', "line 3: connection 'db', key 'prot': unknown key"),
    ('[db]\nhost = "h"\n\n[web]\nhost = "w"\nport = "22"\n', "line 6: connection 'web', key 'port': expected int"),
    ('[db]\nuser = "u"\n', "line 1: connection 'db': 'host' is required"),
    ('[db]\nhost = "h"\njump_host = "bastion"\n', "key 'jump_host': no connection named 'bastion'"),
    ('[db\nhost = "h"\n', "not valid TOML"),
    ('host = "h"\n', "expected a table [host]"),
])
def test_bad_connections_file_names_file_line_and_key(tmp_path: Path, text: str, expect: str) -> None:
    path = tmp_path / "connections.toml"
    path.write_text(text)
    with pytest.raises(ConnectionsError) as err:
        load_connections(path)
    assert str(path) in str(err.value) and expect in str(err.value)


def test_paths_are_relative_to_the_file_and_defaults_apply(tmp_path: Path) -> None:
    path = tmp_path / "connections.toml"
    path.write_text('[db]\nhost = "db1"\nkey_file = "keys/id"\njump_host = "gw"\n[gw]\nhost = "gw"\nport = 2222\n')
    conns = load_connections(path)
    assert conns["db"].key_file == str(tmp_path / "keys" / "id")
    assert conns["db"].known_hosts == str(tmp_path / "known_hosts")
    assert conns["db"].port == 22 and conns["db"].max_sessions == 8
    assert conns["gw"].known_hosts_name == "[gw]:2222" and conns["db"].known_hosts_name == "db1"


def test_ssh_operator_and_bash_with_a_connection_serialize_the_connection() -> None:
    with DAG("remote_authoring", schedule=None) as dag:
        SSHOperator(task_id="dump", ssh_conn_id="db1", command="pg_dump x > /backup/{{ ds }}.sql")
        BashOperator(task_id="there", bash_command="hostname", ssh_conn_id="web")
        BashOperator(task_id="here", bash_command="hostname")
    tasks = {t["task_id"]: t for t in serialize_dag(dag)["tasks"]}
    assert tasks["dump"]["kind"] == "bash" and tasks["dump"]["operator"] == "SSHOperator"
    assert tasks["dump"]["bash_command"] == "pg_dump x > /backup/{{ ds }}.sql"
    assert tasks["dump"]["extra"] == {"ssh_conn_id": "db1", "skip_on_exit_code": []}  # Airflow's SSHOperator: none
    assert tasks["there"]["extra"] == {"ssh_conn_id": "web", "skip_on_exit_code": [99]}
    assert tasks["here"]["extra"] == {"skip_on_exit_code": [99]}
    with pytest.raises(TypeError, match="ssh_conn_id must name a connection"):
        SSHOperator(task_id="bad", ssh_conn_id="", command="true")


def test_list_test_and_trust(tmp_path: Path, sshd: Sshd) -> None:
    conf = write_connections(tmp_path / "connections.toml", sshd, trusted=False)
    (tmp_path / "secret").write_text("hunter2-do-not-print\n")
    listed = flow(conf, "connections", "list")
    assert listed.returncode == 0, listed.stderr
    assert "local" in listed.stdout and f"127.0.0.1:{sshd.port}" in listed.stdout and "NO" in listed.stdout

    refused = flow(conf, "connections", "test", "local")
    assert refused.returncode == 1 and "host key unknown" in refused.stderr
    assert "flow connections trust local" in refused.stderr

    expected = fingerprint_of(Path(str(sshd.host_key) + ".pub"))
    declined = flow(conf, "connections", "trust", "local", stdin="n\n")
    assert declined.returncode == 1 and expected in declined.stdout and "not stored" in declined.stderr
    assert (tmp_path / "known_hosts").read_text() == ""

    trusted = flow(conf, "connections", "trust", "local", stdin="y\n")
    assert trusted.returncode == 0, trusted.stderr
    assert (tmp_path / "known_hosts").read_text() == known_hosts_line(sshd)

    ok = flow(conf, "connections", "test", "local")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: local (") and "remote user " in ok.stdout and " ms" in ok.stdout

    again = flow(conf, "connections", "trust", "local", "--yes")
    assert again.returncode == 0 and "already trusted" in again.stdout
    assert (tmp_path / "known_hosts").read_text() == known_hosts_line(sshd)


def test_print_config_shows_the_connections_path_and_no_secret(tmp_path: Path, sshd: Sshd) -> None:
    conf = write_connections(tmp_path / "connections.toml", sshd,
                             extra=f'passphrase_file = "{tmp_path / "pass"}"\n')
    (tmp_path / "pass").write_text("hunter2-do-not-print\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_")} | {"FLOW_CONNECTIONS": str(conf)}
    res = subprocess.run([str(Path(sys.executable).parent / "flowd"), "--user", "--print-config"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert f'connections_file = "{conf}"' in res.stdout
    listed = flow(conf, "connections", "list", "--json")
    for out in (res.stdout, listed.stdout):
        assert "hunter2" not in out


def test_example_dag_runs_on_the_localhost_connection(tmp_path: Path, sshd: Sshd) -> None:
    root = Path(__file__).resolve().parents[2]
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "example_ssh.py").write_text((root / "dags" / "example_ssh.py").read_text())
    conf = write_connections(tmp_path / "connections.toml", sshd, name="localhost")
    res = flow(conf, "--dags-folder", str(dags), "--db", str(tmp_path / "flow.db"), "--log-folder",
               str(tmp_path / "logs"), "dags", "test", "example_ssh")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "summary | remote kernel: Linux" in res.stdout
    assert "inventory | run manual__" in res.stdout and "in /tmp" in res.stdout
