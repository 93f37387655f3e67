"""Host-key edge cases against a real sshd that offers an Ed25519 and an RSA host key.

A host with several key types and a known_hosts holding only some of them must be asked for a
known type (as OpenSSH asks), so only a different key of the *same* type is "changed"; markers
(`@revoked`, `@cert-authority`) and hashed names are read line by line, so one line never hides
the others.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from flow.executors import ssh_hostkeys
from flow.executors.ssh import SSHExecutor
from flow.executors.ssh_config import load_connections
from flow.executors.ssh_pool import SSHConnectError, classify, open_transport

from .conftest import KEYGEN, Collector, Sshd, keygen, make_spec, make_sshd, write_connections


@pytest.fixture(scope="module")
def dual_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    root = tmp_path_factory.mktemp("dual_sshd")
    s = make_sshd(root)
    s.extra_host_keys = [keygen(root / "host_rsa", comment="flow-test-host", kind="rsa")]
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _pub(path: Path) -> tuple[str, str]:
    kind, b64 = (path.parent / (path.name + ".pub")).read_text().split()[:2]
    return kind, b64


def _line(sshd: Sshd, key: Path, marker: str = "") -> str:
    kind, b64 = _pub(key)
    return f"{marker + ' ' if marker else ''}[127.0.0.1]:{sshd.port} {kind} {b64}\n"


def _conn(tmp_path: Path, sshd: Sshd, known: str):  # noqa: ANN202
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    path = write_connections(conf / "connections.toml", sshd)
    (conf / "known_hosts").write_text(known)
    return load_connections(path)["local"]


def _connect(conn) -> paramiko.PKey:  # noqa: ANN001
    transport = open_transport(conn)
    try:
        return transport.get_remote_server_key()
    finally:
        transport.close()


def _refusal(conn) -> SSHConnectError:  # noqa: ANN001
    with pytest.raises(Exception) as info:
        _connect(conn)
    return classify(conn, info.value)


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees its own once-per-line warnings (the set is per process)."""
    monkeypatch.setattr(ssh_hostkeys, "_warned", set(), raising=False)


def test_only_rsa_known_on_a_host_offering_rsa_and_ed25519_connects_with_rsa(tmp_path: Path, dual_sshd: Sshd) -> None:
    conn = _conn(tmp_path, dual_sshd, _line(dual_sshd, dual_sshd.extra_host_keys[0]))
    key = _connect(conn)
    assert key.get_name() == "ssh-rsa"
    assert key.get_base64() == _pub(dual_sshd.extra_host_keys[0])[1]


def test_only_ed25519_known_connects_with_ed25519(tmp_path: Path, dual_sshd: Sshd) -> None:
    conn = _conn(tmp_path, dual_sshd, _line(dual_sshd, dual_sshd.host_key))
    assert _connect(conn).get_name() == "ssh-ed25519"


def test_a_key_of_a_type_the_host_does_not_offer_is_unknown_not_changed(tmp_path: Path, dual_sshd: Sshd) -> None:
    other = keygen(tmp_path / "other_ecdsa", kind="ecdsa")
    conn = _conn(tmp_path, dual_sshd, _line(dual_sshd, other))
    err = _refusal(conn)
    assert err.kind == "host key unknown", str(err)
    assert "ecdsa-sha2-nistp256" in str(err) and "CHANGED" not in str(err)


def test_a_different_key_of_the_same_type_is_changed(tmp_path: Path, dual_sshd: Sshd) -> None:
    other = keygen(tmp_path / "other_rsa", kind="rsa")
    conn = _conn(tmp_path, dual_sshd, _line(dual_sshd, other))
    err = _refusal(conn)
    assert err.kind == "host key changed", str(err)
    assert ssh_hostkeys.fingerprint(paramiko.RSAKey(data=base64.b64decode(_pub(other)[1]))) in str(err)


def test_a_revoked_line_for_another_key_leaves_the_rest_of_the_file_working(tmp_path: Path, dual_sshd: Sshd) -> None:
    stale = keygen(tmp_path / "stale", kind="ed25519")
    known = "@revoked * " + " ".join(_pub(stale)) + "\n" + _line(dual_sshd, dual_sshd.host_key)
    conn = _conn(tmp_path, dual_sshd, known)
    assert _connect(conn).get_base64() == _pub(dual_sshd.host_key)[1]


def test_the_revoked_key_itself_is_refused_as_revoked(tmp_path: Path, dual_sshd: Sshd) -> None:
    conn = _conn(tmp_path, dual_sshd, _line(dual_sshd, dual_sshd.host_key, "@revoked"))
    err = _refusal(conn)
    assert err.kind == "host key revoked", str(err)
    assert "REVOKED" in str(err) and "line 1" in str(err)


def test_a_revoked_key_beside_a_trusted_one_of_another_type_connects_with_the_trusted(
        tmp_path: Path, dual_sshd: Sshd) -> None:
    known = _line(dual_sshd, dual_sshd.host_key, "@revoked") + _line(dual_sshd, dual_sshd.extra_host_keys[0])
    conn = _conn(tmp_path, dual_sshd, known)
    assert _connect(conn).get_name() == "ssh-rsa"


def test_a_key_listed_and_revoked_is_refused(tmp_path: Path, dual_sshd: Sshd) -> None:
    known = _line(dual_sshd, dual_sshd.host_key) + _line(dual_sshd, dual_sshd.host_key, "@revoked")
    err = _refusal(_conn(tmp_path, dual_sshd, known))
    assert err.kind == "host key revoked", str(err)


def test_cert_authority_lines_are_skipped_with_one_warning(tmp_path: Path, dual_sshd: Sshd,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    ca = keygen(tmp_path / "ca")
    known = "@cert-authority *.example.org " + " ".join(_pub(ca)) + "\n" + _line(dual_sshd, dual_sshd.host_key)
    conn = _conn(tmp_path, dual_sshd, known)
    with caplog.at_level(logging.WARNING, logger="flow.executors.ssh_hostkeys"):
        for _ in range(3):
            assert _connect(conn).get_name() == "ssh-ed25519"
    warnings = [r.getMessage() for r in caplog.records if "@cert-authority" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "line 1" in warnings[0]


def test_hashed_host_names_match(tmp_path: Path, dual_sshd: Sshd) -> None:
    conn = _conn(tmp_path, dual_sshd, _line(dual_sshd, dual_sshd.extra_host_keys[0]))
    subprocess.run([KEYGEN, "-H", "-f", conn.known_hosts], check=True, capture_output=True)
    text = Path(conn.known_hosts).read_text()
    assert text.startswith("|1|") and "127.0.0.1" not in text
    assert _connect(conn).get_name() == "ssh-rsa"


def test_a_broken_line_loses_only_itself(tmp_path: Path, dual_sshd: Sshd, caplog: pytest.LogCaptureFixture) -> None:
    known = f"[127.0.0.1]:{dual_sshd.port} ssh-ed25519 not-base64!!\n" + _line(dual_sshd, dual_sshd.extra_host_keys[0])
    conn = _conn(tmp_path, dual_sshd, known)
    with caplog.at_level(logging.WARNING, logger="flow.executors.ssh_hostkeys"):
        assert _connect(conn).get_name() == "ssh-rsa"
    assert any("line 1" in r.getMessage() for r in caplog.records)


def test_a_task_on_a_host_whose_offered_key_is_revoked_fails_with_revoked_and_runs_once_rsa_is_known(
        tmp_path: Path, dual_sshd: Sshd) -> None:
    """Through the SSH executor, as flowd runs a remote try: the reason reaches the try's error."""
    conn = _conn(tmp_path, dual_sshd, _line(dual_sshd, dual_sshd.host_key, "@revoked"))
    conf = Path(conn.known_hosts).parent / "connections.toml"

    async def one(command: str):  # noqa: ANN202
        ex = SSHExecutor(str(conf))
        c = Collector()
        await ex.start(c.on_started, c.on_finished)
        try:
            spec = make_spec(tmp_path, command)
            ex.submit(spec)
            return await c.wait_finished(spec.ref, timeout=90)
        finally:
            await ex.stop()

    refused = asyncio.run(one("echo should-not-run"))
    assert not refused.ok and "host key revoked" in refused.error and "REVOKED" in refused.error, refused.error
    with open(conn.known_hosts, "a") as fh:
        fh.write(_line(dual_sshd, dual_sshd.extra_host_keys[0]))
    ran = asyncio.run(one("echo ran-with-rsa"))
    assert ran.ok and ran.xcom == {"return_value": "ran-with-rsa"}, ran.error
