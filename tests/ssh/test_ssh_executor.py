"""The SSH executor against a real sshd: output, exit status, kills, host keys, sessions."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from flow.executors import ssh_remote
from flow.executors.ssh import SSHExecutor

from .conftest import Collector, Sshd, keygen, make_spec, remote_survivors, write_connections


async def _run(conf: Path, specs, *, during=None):  # noqa: ANN001, ANN202
    ex = SSHExecutor(str(conf))
    c = Collector()
    await ex.start(c.on_started, c.on_finished)
    try:
        for spec in specs:
            ex.submit(spec)
        if during is not None:
            await during(ex, c)
        return [await c.wait_finished(s.ref, timeout=90) for s in specs], ex
    finally:
        await ex.stop()


def run(conf: Path, *specs, during=None):  # noqa: ANN001, ANN201
    results, _ = asyncio.run(_run(conf, list(specs), during=during))
    return results


def log_of(spec) -> str:  # noqa: ANN001
    return Path(spec.log_path).read_text(errors="replace")


def test_success_streams_both_outputs_and_pushes_the_last_line(tmp_path: Path, connections: Path) -> None:
    spec = make_spec(tmp_path, "echo out-line; echo err-line >&2; id -un")
    (r,) = run(connections, spec)
    assert r.ok, r.error
    assert r.exit_code == 0 and r.pid and r.pid > 1
    text = log_of(spec)
    assert "out-line\n" in text and "err-line\n" in text
    assert "as remote process group" in text and "flow-pgid" not in text
    assert r.xcom == {"return_value": os.environ.get("USER") or "root"}
    record = Path(spec.status_path).read_text()
    assert '"ok": true' in record


def test_nonzero_exit_and_remote_signal_death(tmp_path: Path, connections: Path) -> None:
    failing = make_spec(tmp_path, "echo before; exit 7")
    killed = make_spec(tmp_path, "kill -9 $$")
    r1, r2 = run(connections, failing, killed)
    assert not r1.ok and r1.exit_code == 7 and r1.error == "exit status 7"
    assert not r2.ok and r2.signal == 9 and r2.exit_code is None
    assert r2.error.startswith("killed by SIGKILL")


def test_ten_megabytes_of_stdout_and_a_stderr_flood_at_once(tmp_path: Path, connections: Path) -> None:
    cmd = ("( head -c 10485760 /dev/zero | tr '\\0' 'Q' | fold -w 1023; echo ) & "
           "( for i in $(seq 1 20000); do echo err-$i >&2; done ) & wait; echo done")
    spec = make_spec(tmp_path, cmd)
    (r,) = run(connections, spec)
    assert r.ok, r.error
    text = log_of(spec)
    assert text.count("Q") == 10 * 1024 * 1024
    assert "err-1\n" in text and "err-20000\n" in text
    assert r.xcom == {"return_value": "done"}


def test_templated_command_env_and_cwd_apply_remotely(tmp_path: Path, connections: Path) -> None:
    where = tmp_path / "remote-cwd"
    where.mkdir()
    spec = make_spec(tmp_path, 'echo "ds={{ ds }} run={{ run_id }} v=$GREETING dir=$(pwd)"',
                     env={"GREETING": "hello {{ ds_nodash }}"}, cwd=str(where))
    seen = {}

    async def during(ex: SSHExecutor, c: Collector) -> None:
        await c.wait_started(spec.ref)
        seen.update(c.rendered)

    (r,) = run(connections, spec, during=during)
    assert r.ok, r.error
    assert r.xcom == {"return_value": f"ds=2026-01-02 run=manual__x v=hello 20260102 dir={where}"}
    assert seen[spec.ref] == {"command": 'echo "ds=2026-01-02 run=manual__x v=$GREETING dir=$(pwd)"', "cwd": str(where)}


def test_live_output_reaches_the_log_before_the_end(tmp_path: Path, connections: Path) -> None:
    spec = make_spec(tmp_path, "echo first-line; sleep 60; echo never")
    seen = {}

    async def during(ex: SSHExecutor, c: Collector) -> None:
        await c.wait_started(spec.ref)
        for _ in range(300):
            if "first-line" in log_of(spec):
                break
            await asyncio.sleep(0.1)
        seen["live"] = "first-line" in log_of(spec) and spec.ref not in c.results
        ex.kill(spec.ref, "test is done")

    (r,) = run(connections, spec, during=during)
    assert seen["live"]
    assert r.killed == "test is done" and "never" not in log_of(spec)


def test_timeout_kills_the_whole_remote_tree(tmp_path: Path, sshd: Sshd, connections: Path) -> None:
    # children, a grandchild in a subshell, and one that escapes into a session of its own
    cmd = "sleep 300 & (sleep 301 & wait) & setsid sleep 302 & trap '' TERM; echo up; wait"
    spec = make_spec(tmp_path, cmd, execution_timeout=5.0, kill_grace=1.0)
    tag = ssh_remote.try_tag(spec.log_path)
    seen: list[int] = []

    async def during(ex: SSHExecutor, c: Collector) -> None:
        await c.wait_started(spec.ref)
        for _ in range(100):
            seen[:] = await asyncio.to_thread(remote_survivors, sshd, tag)
            if len(seen) >= 4 or spec.ref in c.results:
                break
            await asyncio.sleep(0.05)

    (r,) = run(connections, spec, during=during)
    assert len(seen) >= 4, f"the tree should have been running before the timeout: {seen}"
    assert r.timed_out and not r.ok and r.error == "timed out after 5s"
    assert "SIGKILL" in log_of(spec)
    for _ in range(50):
        left = remote_survivors(sshd, tag)
        if not left:
            break
        time.sleep(0.1)
    assert left == [], f"still running on the remote host: {left}"


def test_unknown_host_key_is_refused_and_names_the_trust_command(tmp_path: Path, sshd: Sshd) -> None:
    conf = write_connections(tmp_path / "connections.toml", sshd, trusted=False)
    spec = make_spec(tmp_path, "echo should-not-run")
    (r,) = run(conf, spec)
    assert not r.ok
    assert "host key unknown" in r.error and "SHA256:" in r.error
    assert "flow connections trust local" in r.error and f"[127.0.0.1]:{sshd.port}" in r.error
    assert (tmp_path / "known_hosts").read_text() == "", "nothing may be added silently"


def test_changed_host_key_is_refused(tmp_path: Path, own_sshd: Sshd) -> None:
    conf = write_connections(tmp_path / "connections.toml", own_sshd)
    own_sshd.kill()
    for suffix in ("", ".pub"):
        os.unlink(str(own_sshd.host_key) + suffix)
    keygen(own_sshd.host_key)
    own_sshd.start()
    spec = make_spec(tmp_path, "echo should-not-run")
    (r,) = run(conf, spec)
    assert not r.ok and "host key changed" in r.error and "CHANGED" in r.error
    assert "flow connections trust local" in r.error


def test_wrong_user_key_and_refused_port_are_classified(tmp_path: Path, sshd: Sshd) -> None:
    stranger = keygen(tmp_path / "stranger")
    conf = write_connections(tmp_path / "connections.toml", sshd, key=stranger)
    (r,) = run(conf, make_spec(tmp_path, "true"))
    assert not r.ok and ": auth failed:" in r.error
    closed = Sshd(sshd.dir, port=_closed_port(), host_key=sshd.host_key, user_key=sshd.user_key)
    (tmp_path / "c2").mkdir()
    conf2 = write_connections(tmp_path / "c2" / "connections.toml", closed)
    (r2,) = run(conf2, make_spec(tmp_path, "true"))
    assert not r2.ok and ": connection refused:" in r2.error


def _closed_port() -> int:
    from .conftest import free_port

    return free_port()


def test_missing_connection_fails_the_try_clearly(tmp_path: Path, connections: Path) -> None:
    spec = make_spec(tmp_path, "true", conn="nowhere")
    (r,) = run(connections, spec)
    assert not r.ok and "no connection named 'nowhere'" in r.error and str(connections) in r.error


def test_twenty_tries_share_one_connection_within_the_session_limit(tmp_path: Path, sshd: Sshd) -> None:
    conf = write_connections(tmp_path / "connections.toml", sshd, max_sessions=8)
    marker = tmp_path / "concurrency"
    marker.mkdir()
    cmd = f"touch {marker}/$$; sleep 0.5; ls {marker} | wc -l; rm {marker}/$$"
    specs = [make_spec(tmp_path, cmd) for _ in range(20)]
    results, _ = asyncio.run(_run(conf, specs))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    peak = max(int(r.xcom["return_value"]) for r in results)
    assert 1 <= peak <= 8


def test_connection_is_reused_between_tries(tmp_path: Path, connections: Path) -> None:
    transports = []

    async def go() -> None:
        ex = SSHExecutor(str(connections))
        c = Collector()
        await ex.start(c.on_started, c.on_finished)
        try:
            for _ in range(3):
                spec = make_spec(tmp_path, "true")
                ex.submit(spec)
                assert (await c.wait_finished(spec.ref)).ok
                transports.append(ex.pool.link(ex.pool.connection("local")).transport)
        finally:
            await ex.stop()

    asyncio.run(go())
    assert transports[0] is not None and transports[0] is transports[1] is transports[2]


@pytest.mark.parametrize("kind", ["python"])
def test_non_bash_task_with_a_connection_is_refused(tmp_path: Path, connections: Path, kind: str) -> None:
    spec = make_spec(tmp_path, "true")
    spec.kind = kind
    (r,) = run(connections, spec)
    assert not r.ok and "only bash commands" in r.error
