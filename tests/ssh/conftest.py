"""A real OpenSSH sshd on 127.0.0.1 for the SSH tests, with its own host and user keys.

Debian's openssh-server provides /usr/sbin/sshd (`.ci/run` installs it). Without it these tests
fail and say so: remote execution is not something to call tested against an imitation.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

SSHD = "/usr/sbin/sshd"
KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
START_TIMEOUT = 15.0


def _need_sshd() -> None:
    if not os.access(SSHD, os.X_OK) or not os.access(KEYGEN, os.X_OK):
        pytest.fail(f"{SSHD} (and ssh-keygen) are needed for the SSH tests: install Debian's openssh-server "
                    "(apt-get install openssh-server; .ci/run does it)", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, *, comment: str = "flow-test", kind: str = "ed25519") -> Path:
    size = ["-b", "2048"] if kind == "rsa" else []
    subprocess.run([KEYGEN, "-q", "-t", kind, *size, "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


def fingerprint_of(pub: Path) -> str:
    out = subprocess.run([KEYGEN, "-l", "-f", str(pub)], check=True, capture_output=True, text=True).stdout
    return out.split()[1]


@dataclass
class Sshd:
    """One sshd: `start()` again after `kill()` brings it back on the same port with the same keys."""

    dir: Path
    port: int
    host_key: Path
    user_key: Path
    max_sessions: int = 10
    extra_host_keys: list[Path] = field(default_factory=list)
    """More HostKey files (another key type), offered beside host_key."""
    proc: subprocess.Popen | None = None
    sessions: list[int] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.dir / "sshd_config"

    def write_config(self) -> None:
        self.config.write_text(textwrap.dedent(f"""\
            Port {self.port}
            ListenAddress 127.0.0.1
            HostKey {self.host_key}
            PidFile {self.dir / 'sshd.pid'}
            AuthorizedKeysFile {self.dir / 'authorized_keys'}
            PermitRootLogin prohibit-password
            StrictModes no
            UsePAM no
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            MaxSessions {self.max_sessions}
            MaxStartups 100:30:200
            ClientAliveInterval 0
            LogLevel ERROR
            """) + "".join(f"HostKey {k}\n" for k in self.extra_host_keys))

    def start(self) -> None:
        _need_sshd()
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.write_config()
        log = open(self.dir / "sshd.log", "ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"sshd exited with status {self.proc.returncode}:\n{self.log()}", pytrace=False)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"sshd did not answer on port {self.port} within {START_TIMEOUT:g}s:\n{self.log()}",
                    pytrace=False)

    def log(self) -> str:
        try:
            return (self.dir / "sshd.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL the listener and every session process under it: the host's sshd is gone."""
        if self.proc is None:
            return
        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        sshd_family = [p for p in family if _is_sshd(p)]
        self.proc.kill()
        self.proc.wait()
        for p in sshd_family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc = None

    def stop(self) -> None:
        self.kill()


def _is_sshd(p: psutil.Process) -> bool:
    try:
        return "sshd" in p.name()
    except psutil.Error:
        return False


def make_sshd(root: Path, *, max_sessions: int = 10) -> Sshd:
    _need_sshd()
    root.mkdir(parents=True, exist_ok=True)
    host_key = keygen(root / "host_ed25519", comment="flow-test-host")
    user_key = keygen(root / "user_ed25519")
    (root / "authorized_keys").write_text((root / "user_ed25519.pub").read_text())
    return Sshd(root, free_port(), host_key, user_key, max_sessions=max_sessions)


def known_hosts_line(sshd: Sshd) -> str:
    pub = (sshd.host_key.parent / (sshd.host_key.name + ".pub")).read_text().split()
    return f"[127.0.0.1]:{sshd.port} {pub[0]} {pub[1]}\n"


def write_connections(path: Path, sshd: Sshd, *, name: str = "local", trusted: bool = True,
                      key: Path | None = None, max_sessions: int = 8, extra: str = "") -> Path:
    known = path.parent / "known_hosts"
    known.write_text(known_hosts_line(sshd) if trusted else "")
    path.write_text(textwrap.dedent(f"""\
        [{name}]
        host = "127.0.0.1"
        port = {sshd.port}
        user = "{os.environ.get('USER') or psutil.Process().username()}"
        key_file = "{key or sshd.user_key}"
        known_hosts = "{known}"
        connect_timeout = 5
        keepalive_interval = 2
        max_sessions = {max_sessions}
        """) + extra)
    return path


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """One sshd shared by the tests that do not kill it or change its keys."""
    s = make_sshd(tmp_path_factory.mktemp("sshd"))
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def own_sshd(tmp_path: Path) -> Iterator[Sshd]:
    """An sshd this test may kill, restart or re-key."""
    s = make_sshd(tmp_path / "sshd")
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def connections(tmp_path: Path, sshd: Sshd) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir()
    return write_connections(conf / "connections.toml", sshd)


def remote_survivors(sshd: Sshd, tag: str) -> list[int]:
    """Over a separate connection (the ssh client, not flow's pool): pids still carrying the try's tag."""
    out = ssh_run(sshd, f"grep -lsxF FLOW_TRY={tag} /proc/[0-9]*/environ 2>/dev/null; true")
    pids = []
    for line in out.splitlines():
        parts = line.split("/")
        if len(parts) > 2 and parts[2].isdigit() and int(parts[2]) != 0:
            pids.append(int(parts[2]))
    return pids


def ssh_run(sshd: Sshd, command: str) -> str:
    """Run a command with OpenSSH's own client: an independent second connection."""
    res = subprocess.run(
        ["ssh", "-q", "-p", str(sshd.port), "-i", str(sshd.user_key), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes",
         "127.0.0.1", command], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, f"ssh {command!r} failed ({res.returncode}): {res.stderr}"
    return res.stdout


class Collector:
    """The executor's two callbacks, as futures a test can await."""

    def __init__(self) -> None:
        self.started: dict[str, int] = {}
        self.rendered: dict[str, dict | None] = {}
        self.results: dict[str, object] = {}
        self.events: dict[str, asyncio.Event] = {}

    def _event(self, key: str) -> asyncio.Event:
        return self.events.setdefault(key, asyncio.Event())

    def on_started(self, ref: str, pid: int, rendered: dict | None = None) -> None:
        self.started[ref] = pid
        self.rendered[ref] = rendered
        self._event("s:" + ref).set()

    def on_finished(self, result) -> None:  # noqa: ANN001
        self.results[result.ref] = result
        self._event("f:" + result.ref).set()

    async def wait_started(self, ref: str, timeout: float = 30) -> int:
        await asyncio.wait_for(self._event("s:" + ref).wait(), timeout)
        return self.started[ref]

    async def wait_finished(self, ref: str, timeout: float = 60):  # noqa: ANN201
        await asyncio.wait_for(self._event("f:" + ref).wait(), timeout)
        return self.results[ref]


def make_spec(tmp_path: Path, command: str, *, conn: str = "local", ref: str | None = None, **fields):  # noqa: ANN201
    from flow.executors.base import TaskSpec

    ref = ref or f"1:t{uuid.uuid4().hex[:6]}:1"
    log = tmp_path / "logs" / f"{ref.replace(':', '_')}.log"
    fields.setdefault("kill_grace", 2.0)
    return TaskSpec(ref=ref, kind="bash", dag_id="d", task_id=ref.split(":")[1], run_id="manual__x", try_number=1,
                    dag_file=str(tmp_path / "dag.py"), log_path=str(log), status_path=str(log) + ".status.json",
                    bash_command=command, extra={"ssh_conn_id": conn},
                    context={"dag_id": "d", "task_id": "t", "run_id": "manual__x", "run_type": "manual",
                             "logical_date": "2026-01-02T03:04:05+00:00",
                             "data_interval_start": "2026-01-02T03:04:05+00:00",
                             "data_interval_end": "2026-01-02T03:04:05+00:00", "conf": {}, "params": {},
                             "try_number": 1, "max_tries": 1, "timezone": "UTC"},
                    **fields)

