"""Which socket and which flowd.toml a client uses (flow/paths.py), and that `flow`, `flowtui` and
the offline commands all follow it: flag or $FLOW_SOCKET, then the user's own flowd if its socket
exists, then the system flowd; the system's flowd.toml when the user has none."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow import paths
from flow.daemon.config import load_settings
from flow.protocol import NotRunning

BIN = Path(sys.executable).parent


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with nothing of their own yet, and a 'system' under tmp_path instead of /etc, /run."""
    for var in ("FLOW_SOCKET", "FLOW_CONFIG", "RUNTIME_DIRECTORY", "CONFIGURATION_DIRECTORY",
                "STATE_DIRECTORY", "LOGS_DIRECTORY", "FLOW_DAGS_FOLDER", "FLOW_DB_URL", "FLOW_LOG_FOLDER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / ".local" / "share"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg-run"))
    for name, sub in (("SYSTEM_CONFIG_DIR", "etc/flowd"), ("SYSTEM_STATE_DIR", "var/lib/flowd"),
                      ("SYSTEM_LOGS_DIR", "var/log/flowd"), ("SYSTEM_RUNTIME_DIR", "run/flowd")):
        monkeypatch.setattr(paths, name, str(tmp_path / sub))
    return tmp_path


def listen(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    return sock


@pytest.fixture
def user_socket(home: Path) -> Iterator[Path]:
    path = home / "xdg-run" / "flowd" / "flowd.sock"
    with listen(path):
        yield path


@pytest.fixture
def system_socket(home: Path) -> Iterator[Path]:
    path = home / "run" / "flowd" / "flowd.sock"
    with listen(path):
        yield path


def test_with_nothing_named_the_users_flowd_comes_first_then_the_systems(home: Path):
    assert paths.socket_candidates() == [str(home / "xdg-run/flowd/flowd.sock"), str(home / "run/flowd/flowd.sock")]


def test_nothing_running_resolves_to_the_users_socket_for_the_message(home: Path):
    assert paths.resolve_socket() == str(home / "xdg-run/flowd/flowd.sock")


def test_only_the_system_flowd_runs_so_it_is_chosen(system_socket: Path):
    assert paths.resolve_socket() == str(system_socket)


def test_the_users_own_flowd_wins_over_the_systems(user_socket: Path, system_socket: Path):
    assert paths.resolve_socket() == str(user_socket)


def test_a_plain_file_where_the_users_socket_should_be_is_not_a_flowd(home: Path, system_socket: Path):
    stale = home / "xdg-run" / "flowd" / "flowd.sock"
    stale.parent.mkdir(parents=True)
    stale.write_text("")
    assert paths.resolve_socket() == str(system_socket)


def test_flag_then_environment_then_configuration_are_the_only_candidate(
        home: Path, user_socket: Path, monkeypatch: pytest.MonkeyPatch):
    assert paths.socket_candidates(configured="/srv/c.sock") == ["/srv/c.sock"]
    monkeypatch.setenv("FLOW_SOCKET", "/env/e.sock")
    assert paths.socket_candidates(configured="/srv/c.sock") == ["/env/e.sock"]
    assert paths.socket_candidates("/flag/f.sock", configured="/srv/c.sock") == ["/flag/f.sock"]
    assert paths.resolve_socket("/flag/f.sock") == "/flag/f.sock"


def test_under_a_user_unit_flowd_listens_in_the_directory_systemd_made(home: Path, monkeypatch):
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/user/1000/flowd")
    assert paths.user_socket_path() == "/run/user/1000/flowd/flowd.sock"


def test_configuration_is_the_users_then_the_systems(home: Path, monkeypatch: pytest.MonkeyPatch):
    user = home / "home/.config/flowd/flowd.toml"
    system = home / "etc/flowd/flowd.toml"
    assert paths.client_config() == paths.ClientConfig(user, False)
    system.parent.mkdir(parents=True)
    system.write_text('socket_path = "/srv/system.sock"\n')
    assert paths.client_config() == paths.ClientConfig(system, True)
    assert paths.configured_socket(system) == "/srv/system.sock"
    user.parent.mkdir(parents=True)
    user.write_text("[flowd]\nparallelism = 2\n")
    assert paths.client_config() == paths.ClientConfig(user, False)
    assert paths.configured_socket(user) is None
    monkeypatch.setenv("FLOW_CONFIG", str(home / "named.toml"))
    assert paths.client_config() == paths.ClientConfig(home / "named.toml", False)
    assert paths.client_config("/x/explicit.toml") == paths.ClientConfig(Path("/x/explicit.toml"), False)


def test_an_unreadable_configuration_names_no_socket(home: Path):
    bad = home / "bad.toml"
    bad.write_text("socket_path = [unclosed\n")
    assert paths.configured_socket(bad) is None
    assert paths.configured_socket(home / "absent.toml") is None


def test_offline_commands_on_a_server_read_the_system_configuration_and_folders(home: Path):
    system = home / "etc/flowd/flowd.toml"
    system.parent.mkdir(parents=True)
    system.write_text("parallelism = 3\n")
    settings = load_settings()
    assert settings.parallelism == 3 and settings.sources["parallelism"] == str(system)
    assert settings.dags_folder == str(home / "etc/flowd/dags")
    assert settings.db_url == f"sqlite:///{home / 'var/lib/flowd/flow.db'}"
    assert settings.log_folder == str(home / "var/log/flowd")


def test_offline_commands_keep_the_users_folders_when_the_user_has_a_configuration(home: Path):
    (home / "etc/flowd").mkdir(parents=True)
    (home / "etc/flowd/flowd.toml").write_text("parallelism = 3\n")
    (home / "home/.config/flowd").mkdir(parents=True)
    (home / "home/.config/flowd/flowd.toml").write_text("parallelism = 5\n")
    settings = load_settings()
    assert settings.parallelism == 5
    assert settings.dags_folder == str(home / "home/.config/flowd/dags")


def test_not_running_names_every_socket_tried():
    err = NotRunning.among([NotRunning("/a.sock", "no such file"),
                            NotRunning("/run/flowd/flowd.sock", "connection refused: a stale socket?")])
    text = str(err)
    assert "/a.sock (no such file)" in text and "/run/flowd/flowd.sock (connection refused" in text
    assert err.tried == [("/a.sock", "no such file"), ("/run/flowd/flowd.sock", "connection refused: a stale socket?")]


@pytest.mark.parametrize("command", [["flow", "status"], ["flowtui"]])
def test_cannot_reach_flowd_lists_the_users_and_the_system_socket(tmp_path: Path, command: list[str]):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "run"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "TERM": "dumb"}
    if paths.is_socket(paths.system_socket_path()):
        pytest.fail("a system flowd runs on this machine at /run/flowd/flowd.sock; this test needs it stopped")
    res = subprocess.run([str(BIN / command[0]), *command[1:]], capture_output=True, text=True, timeout=30, env=env)
    assert res.returncode == 1
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1, res.stderr
    assert f"{tmp_path}/run/flowd/flowd.sock (no such file)" in line
    assert "/run/flowd/flowd.sock (no such file)" in line.split(" or ", 1)[1]
