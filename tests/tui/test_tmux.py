"""End to end: the real `flowtui` program in a real terminal (tmux) against a real flowd.

Keys go in with send-keys and the screen comes back with capture-pane, so this covers what the
Pilot tests cannot: the console script, terminal start-up, the driver, and a viewer who really is
another user (uid 65534, in the group flowd is told is its viewer group).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow.daemon.client import Client
from tests.daemon.conftest import BIN, Flowd, clean_env, make_flowd

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534  # nobody:nogroup on Debian


class Tmux:
    """One private tmux server (its own -L socket) running one command in a fixed-size window."""

    def __init__(self) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("tmux is not installed: `apt-get install tmux` (.ci/run installs it)", pytrace=False)
        self.name = f"flowtest-{uuid.uuid4().hex[:8]}"

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.name, *args], capture_output=True, text=True, check=check,
                              timeout=20)

    def start(self, argv: list[str], env: dict[str, str], size: tuple[int, int] = (100, 30)) -> None:
        command = " ".join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv])
        self.tmux("-f", "/dev/null", "new-session", "-d", "-x", str(size[0]), "-y", str(size[1]), command)
        self.tmux("set-option", "-g", "remain-on-exit", "on")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p").stdout

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} did not appear within {timeout:g}s; the screen:\n{screen}")
            time.sleep(0.2)

    def wait_gone(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text in (screen := self.screen()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} still shown after {timeout:g}s; the screen:\n{screen}")
            time.sleep(0.2)

    def exited(self, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.tmux("display-message", "-p", "#{pane_dead}", check=False).stdout.strip() == "1":
                return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        self.tmux("kill-server", check=False)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    t = Tmux()
    try:
        yield t
    finally:
        t.close()


def terminal_env(flowd: Flowd) -> dict[str, str]:
    env = {k: v for k, v in clean_env(flowd.home).items() if k in ("PATH", "HOME", "LANG", "LC_ALL")}
    env.update(TERM="xterm-256color", LANG="C.UTF-8", HOME=str(flowd.home))
    return env


def start_flowd(tmp_path: Path, **env: str) -> Flowd:
    flowd = make_flowd(tmp_path)
    flowd.env.update(env)
    for name in ("example_xcom", "example_branch"):
        shutil.copy(ROOT / "dags" / f"{name}.py", Path(flowd.dags_folder) / f"{name}.py")
    flowd.start()
    return flowd


def runs(flowd: Flowd, dag_id: str) -> list[dict]:
    with Client.connect(flowd.socket_path) as client:
        return client.call("runs.list", dag_id=dag_id)["runs"]


def test_flowtui_in_a_terminal_lists_dags_triggers_one_and_quits(tmp_path: Path, tmux: Tmux):
    flowd = start_flowd(tmp_path)
    try:
        tmux.start([str(BIN / "flowtui"), "--socket", flowd.socket_path], terminal_env(flowd))
        screen = tmux.wait_for("example_xcom")
        assert "example_branch" in screen and "(operator)" in screen
        tmux.send("/")
        tmux.wait_for("filter by DAG id")
        tmux.send("xcom", "Enter")
        tmux.wait_for("filter: 'xcom'")
        tmux.wait_gone("example_branch")  # only example_xcom is left, under the cursor
        tmux.send("t")
        tmux.wait_for("Triggered example_xcom")
        deadline = time.monotonic() + 60
        while not [r for r in runs(flowd, "example_xcom") if r["state"] == "success"]:
            assert time.monotonic() < deadline, f"the triggered run did not succeed: {runs(flowd, 'example_xcom')}"
            time.sleep(0.2)
        assert runs(flowd, "example_branch") == [] or all(r["run_type"] == "scheduled"
                                                          for r in runs(flowd, "example_branch"))
        tmux.send("q")
        assert tmux.exited(), f"flowtui did not quit on q; the screen:\n{tmux.screen()}"
    finally:
        flowd.cleanup()


def test_a_real_viewer_sees_the_dags_and_is_refused_a_trigger(tmp_path: Path, tmux: Tmux):
    """uid 65534 keeps DAC override (ambient capability) only so it can read the checkout wherever CI put it."""
    flowd = start_flowd(tmp_path, FLOW_VIEWER_GROUP="nogroup")
    try:
        os.chmod(os.path.dirname(flowd.socket_path), 0o755)
        home = tmp_path / "viewer-home"
        home.mkdir()
        os.chown(home, NOBODY, NOBODY)
        env = {**terminal_env(flowd), "HOME": str(home)}
        as_viewer = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                     "--inh-caps=+dac_override,+dac_read_search", "--ambient-caps=+dac_override,+dac_read_search"]
        tmux.start([*as_viewer, str(BIN / "flowtui"), "--socket", flowd.socket_path], env)
        screen = tmux.wait_for("example_xcom")
        assert "nobody (viewer)" in screen
        tmux.send("/")
        tmux.wait_for("filter by DAG id")
        tmux.send("xcom", "Enter")
        tmux.wait_gone("example_branch")
        tmux.send("t")
        screen = tmux.wait_for("Not allowed")
        assert "viewer" in screen
        assert runs(flowd, "example_xcom") == []
        tmux.send("q")
        assert tmux.exited()
    finally:
        flowd.cleanup()
