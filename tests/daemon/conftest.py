"""A real `flowd` process for tests: its own folders, socket and sd_notify listener.

The fixture plays systemd's part: it owns the $NOTIFY_SOCKET datagram socket, so a test can
wait for READY=1 (which flowd sends only once its socket answers) instead of sleeping, and
can see every STATUS, RELOADING, STOPPING and WATCHDOG message flowd sent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

BIN = Path(sys.executable).parent
FLOWD = str(BIN / "flowd")
FLOW = str(BIN / "flow")
READY_TIMEOUT = 20.0


def clean_env(home: Path) -> dict[str, str]:
    """The test runner's environment without anything that would point flowd elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLOW_", "XDG_", "LISTEN_", "WATCHDOG_", "NOTIFY_SOCKET"))
           and k not in ("STATE_DIRECTORY", "LOGS_DIRECTORY", "RUNTIME_DIRECTORY", "CONFIGURATION_DIRECTORY")}
    env.update(HOME=str(home), FLOW_DEFAULT_TIMEZONE="UTC", PYTHONUNBUFFERED="1")
    return env


class NotifyListener:
    """The receiving end of sd_notify: a datagram socket drained by a thread into a list of lines."""

    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self._stop = False
        self.thread = threading.Thread(target=self._drain, name="sd-notify-listener", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.cond:
                self.lines.extend(line for line in data.decode(errors="replace").split("\n") if line)
                self.cond.notify_all()

    def wait_for(self, line: str, *, start: int = 0, timeout: float, alive=lambda: True) -> int | None:
        """Index of the first `line` at or after `start`, or None after `timeout` (or once not alive)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.lines)):
                    if self.lines[i] == line:
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or not alive():
                    return None
                self.cond.wait(min(left, 0.1))

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=2)
        self.sock.close()


@dataclass
class Flowd:
    """One flowd under test. Change `extra_args` or `env` and call start() again to reconfigure."""

    socket_path: str
    dags_folder: str
    db_url: str
    log_folder: str
    proc: subprocess.Popen | None = None
    home: Path = field(default=Path("."), repr=False)
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """Added to the clean environment flowd starts with (e.g. {"FLOW_STOP_MODE": "kill"})."""
    argv: list[str] | None = None
    """When set, flowd's whole command line (after the program), instead of the folders' flags."""
    stderr_path: Path = field(default=Path("flowd.stderr"), repr=False)
    listener: NotifyListener | None = field(default=None, repr=False)
    _family: dict[int, float] = field(default_factory=dict, repr=False)
    """pid -> create time of every process seen under flowd (a pid can be reused)."""

    def command(self) -> list[str]:
        if self.argv is not None:
            return [FLOWD, *self.argv]
        return [FLOWD, "--user", "--socket", self.socket_path, "--dags-folder", self.dags_folder,
                "--db", self.db_url, "--log-folder", self.log_folder, *self.extra_args]

    def full_env(self) -> dict[str, str]:
        env = clean_env(self.home)
        env.update(self.env)
        if self.listener is not None:
            env["NOTIFY_SOCKET"] = self.listener.path
        return env

    def start(self) -> None:
        """Start flowd and return once it has sent READY=1; fail with its stderr if it does not."""
        assert self.proc is None or self.proc.poll() is not None, "flowd is already running"
        assert self.listener is not None
        mark = len(self.listener.lines)
        with open(self.stderr_path, "ab") as err:
            err.write(f"--- flowd start {time.strftime('%H:%M:%S')}\n".encode())
            err.flush()
            self.proc = subprocess.Popen(self.command(), env=self.full_env(), stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err)
        proc = self.proc
        got = self.listener.wait_for("READY=1", start=mark, timeout=READY_TIMEOUT,
                                     alive=lambda: proc.poll() is None)
        if got is None:
            code = proc.poll()
            if code is None:
                proc.kill()
                proc.wait()
            pytest.fail(f"flowd did not send READY=1 within {READY_TIMEOUT:g}s (exit status {code}); "
                        f"stderr:\n{self.stderr()}", pytrace=False)
        self._remember_family()

    def _remember_family(self) -> None:
        """Note the runner and tasks started under this flowd so teardown can end them."""
        roots = list(self._family) + ([self.proc.pid] if self.proc is not None else [])
        for pid in roots:
            try:
                for child in psutil.Process(pid).children(recursive=True):
                    self._family.setdefault(child.pid, child.create_time())
            except psutil.NoSuchProcess:
                pass

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send `sig` and wait for flowd to exit; returns its exit status."""
        assert self.proc is not None
        self._remember_family()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"flowd did not exit within {timeout:g}s of signal {sig}; stderr:\n{self.stderr()}",
                        pytrace=False)

    def kill9(self) -> None:
        """SIGKILL flowd only (as a crash would); its runner and tasks carry on."""
        assert self.proc is not None
        self._remember_family()
        self.proc.kill()
        self.proc.wait()

    def notifications(self) -> list[str]:
        """Every sd_notify line received so far (a datagram "A=1\\nB=2" gives two), in order."""
        assert self.listener is not None
        with self.listener.cond:
            return list(self.listener.lines)

    def wait_notification(self, line: str, *, after: int = 0, timeout: float = 20.0) -> int:
        """Index of the first notification equal to `line` at index >= `after`; fails on timeout."""
        assert self.listener is not None
        got = self.listener.wait_for(line, start=after, timeout=timeout)
        if got is None:
            pytest.fail(f"no {line!r} from flowd within {timeout:g}s; got {self.notifications()[after:]}; "
                        f"stderr:\n{self.stderr()}", pytrace=False)
        return got

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run the `flow` command against this flowd (its socket) and its folders."""
        cmd = [FLOW, "--socket", self.socket_path, "--dags-folder", self.dags_folder, "--db", self.db_url,
               "--log-folder", self.log_folder, *args]
        env = clean_env(self.home)
        env.update(self.env)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)

    def add_dag(self, name: str, source: str) -> Path:
        """Write a DAG file (dedented) atomically, so flowd never parses half of it."""
        path = Path(self.dags_folder) / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(textwrap.dedent(source))
        os.replace(tmp, path)
        return path

    def cleanup(self) -> None:
        """Stop flowd if it runs, end whatever it started, close the notify socket."""
        if self.proc is not None and self.proc.poll() is None:
            self._remember_family()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._remember_family()
        for pid, created in self._family.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created:
                    proc.kill()
            except psutil.NoSuchProcess:
                pass
        if self.listener is not None:
            self.listener.close()

    def discard(self) -> None:
        """cleanup(), then remove the short folder that held the socket."""
        self.cleanup()
        shutil.rmtree(os.path.dirname(self.socket_path), ignore_errors=True)


def make_flowd(tmp_path: Path) -> Flowd:
    """A configured, not yet started Flowd whose files live under tmp_path (socket in a short dir)."""
    short = tempfile.mkdtemp(prefix="fd-")
    dags = tmp_path / "dags"
    dags.mkdir(exist_ok=True)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    f = Flowd(socket_path=os.path.join(short, "flowd.sock"), dags_folder=str(dags),
              db_url=f"sqlite:///{tmp_path / 'flow.db'}", log_folder=str(tmp_path / "logs"), home=home,
              stderr_path=tmp_path / "flowd.stderr")
    f.listener = NotifyListener(os.path.join(short, "notify.sock"))
    return f


@contextlib.contextmanager
def running(f: Flowd) -> Iterator[Flowd]:
    """f started; discarded (stopped, its tasks ended, its socket folder removed) afterwards."""
    try:
        f.start()
        yield f
    finally:
        f.discard()


@pytest.fixture
def flowd(tmp_path: Path) -> Iterator[Flowd]:
    """A started flowd with an empty DAG folder; stopped (and its tasks ended) at teardown."""
    with running(make_flowd(tmp_path)) as f:
        yield f
