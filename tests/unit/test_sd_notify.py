"""The systemd protocols with real sockets: sd_notify, the watchdog interval, socket activation,
and the folders systemd hands a system-mode flowd through $STATE_DIRECTORY and friends."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from flow.daemon import config
from flow.daemon.config import load_settings, mask_url, render_settings
from flow.daemon.systemd import Notifier, listen_fds, monotonic_usec, watchdog_interval


@pytest.fixture
def short_dir():
    d = tempfile.mkdtemp(prefix="fd-")
    yield Path(d)
    for p in Path(d).iterdir():
        p.unlink()
    os.rmdir(d)


def receiver(address: str | bytes) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


# -- sd_notify ------------------------------------------------------------------------------------


def test_notify_sends_one_datagram_of_lines_to_a_path(short_dir: Path):
    path = str(short_dir / "notify")
    with receiver(path) as rx:
        env = {"NOTIFY_SOCKET": path}
        n = Notifier.from_environ(env)
        assert env == {}  # consumed: children must not notify systemd
        assert n.notify("READY=1", "STATUS=3 DAGs")
        assert rx.recv(4096) == b"READY=1\nSTATUS=3 DAGs"
        n.close()


def test_notify_reaches_an_abstract_socket():
    name = f"flow-test-{uuid.uuid4().hex}"
    with receiver(b"\0" + name.encode()) as rx:
        n = Notifier.from_environ({"NOTIFY_SOCKET": f"@{name}"})
        assert n.notify("WATCHDOG=1")
        assert rx.recv(4096) == b"WATCHDOG=1"


def test_notify_never_blocks_when_the_reader_is_stuck(short_dir: Path):
    path = str(short_dir / "notify")
    with receiver(path):
        n = Notifier(path)
        sent = [n.notify(f"STATUS={i}") for i in range(2000)]  # nobody reads: the queue fills up
        assert sent[0] and not sent[-1]


@pytest.mark.parametrize("value", [None, "", "relative/path"])
def test_without_a_usable_notify_socket_nothing_is_sent(value):
    env = {} if value is None else {"NOTIFY_SOCKET": value}
    n = Notifier.from_environ(env)
    assert not n.enabled and n.notify("READY=1") is False


def test_notify_to_a_vanished_socket_is_not_an_error(short_dir: Path):
    n = Notifier(str(short_dir / "gone"))
    assert n.notify("READY=1") is False


def test_monotonic_usec_is_the_monotonic_clock_in_microseconds():
    import time

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= monotonic_usec() <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


# -- watchdog -------------------------------------------------------------------------------------


@pytest.mark.parametrize("env,expected", [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "4242"}, 0.2),
    ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "4243"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_of_watchdog_usec_for_its_pid(env, expected):
    given = dict(env)
    assert watchdog_interval(given, pid=4242) == expected
    assert given == {}


# -- socket activation ----------------------------------------------------------------------------


@pytest.mark.parametrize("env", [
    {"LISTEN_FDS": "1", "LISTEN_PID": "4243"},  # inherited by accident: not ours to take
    {"LISTEN_FDS": "1"},
    {"LISTEN_FDS": "x", "LISTEN_PID": "4242"},
    {},
])
def test_listen_fds_ignores_variables_meant_for_someone_else(env):
    given = dict(env)
    assert listen_fds(given, pid=4242) == []
    assert given == {}


CHILD = """
import json, os, sys
from flow.daemon.systemd import activated_socket, listen_fds
print(json.dumps({"fds": [(x.fd, x.name) for x in listen_fds(dict(os.environ), unset=False)],
                  "inheritable": os.get_inheritable(3)}))
sock = activated_socket()
print(json.dumps({"name": sock.getsockname(), "fd": sock.fileno(), "left": sorted(k for k in os.environ
                  if k.startswith("LISTEN_")), "fd4_open": os.path.exists("/proc/self/fd/4")}))
"""


def test_activated_socket_takes_fd_3_and_closes_the_rest(short_dir: Path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(short_dir / "a.sock"))
    listener.listen()
    extra = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    a, b = listener.fileno(), extra.fileno()
    script = f'exec 3<&{a} 4<&{b} {a}<&- {b}<&-; LISTEN_PID=$$ exec "$0" -c "$1"'
    env = {**os.environ, "LISTEN_FDS": "2", "LISTEN_FDNAMES": "flowd.socket:other"}
    res = subprocess.run(["bash", "-c", script, sys.executable, CHILD], env=env, pass_fds=[a, b],
                         capture_output=True, text=True, timeout=30)
    listener.close()
    extra.close()
    assert res.returncode == 0, res.stderr
    first, second = (json.loads(line) for line in res.stdout.splitlines())
    assert first == {"fds": [[3, "flowd.socket"], [4, "other"]], "inheritable": False}
    assert second == {"name": str(short_dir / "a.sock"), "fd": 3, "left": [], "fd4_open": False}
    assert "ignoring fd 4 (other)" in res.stderr


# -- the folders of each mode ---------------------------------------------------------------------


@pytest.fixture
def bare_env(monkeypatch, tmp_path):
    for var in [*config.Settings.ENV.values(), "FLOW_CONFIG", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
                "XDG_RUNTIME_DIR", "STATE_DIRECTORY", "LOGS_DIRECTORY", "RUNTIME_DIRECTORY",
                "CONFIGURATION_DIRECTORY"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_system_mode_uses_the_fhs_folders(bare_env):
    s = load_settings(mode="system")
    assert (s.dags_folder, s.db_url, s.log_folder, s.socket_path) == (
        "/etc/flowd/dags", "sqlite:////var/lib/flowd/flow.db", "/var/log/flowd", "/run/flowd/flowd.sock")
    assert config.config_file_path("system") == Path("/etc/flowd/flowd.toml")


def test_system_mode_uses_the_folders_systemd_made_for_the_unit(bare_env, tmp_path):
    for var, sub in (("STATE_DIRECTORY", "state"), ("LOGS_DIRECTORY", "logs"), ("RUNTIME_DIRECTORY", "run"),
                     ("CONFIGURATION_DIRECTORY", "etc")):
        bare_env.setenv(var, f"{tmp_path / sub}:{tmp_path / 'second'}")
    s = load_settings(mode="system")
    assert s.db_url == f"sqlite:///{tmp_path}/state/flow.db"
    assert (s.log_folder, s.socket_path, s.dags_folder) == (
        str(tmp_path / "logs"), str(tmp_path / "run/flowd.sock"), str(tmp_path / "etc/dags"))
    assert config.config_file_path("system") == tmp_path / "etc/flowd.toml"


def test_user_mode_keeps_everything_in_the_home_and_the_runtime_dir(bare_env, tmp_path):
    bare_env.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    s = load_settings(mode="user")
    home = tmp_path / "home"
    assert s.dags_folder == str(home / ".config/flowd/dags")
    assert s.db_url == f"sqlite:///{home}/.local/share/flowd/flow.db"
    assert s.socket_path == str(tmp_path / "run/flowd/flowd.sock")
    assert config.config_file_path("user") == home / ".config/flowd/flowd.toml"


@pytest.mark.parametrize("euid,mode", [(0, "system"), (1000, "user")])
def test_the_default_mode_follows_who_runs_flowd(bare_env, euid, mode):
    bare_env.setattr(config.os, "geteuid", lambda: euid)
    assert config.default_mode() == mode


def test_log_level_is_checked(bare_env):
    bare_env.setenv("FLOW_LOG_LEVEL", "LOUD")
    with pytest.raises(config.ConfigError, match=r"log_level = 'loud' from \$FLOW_LOG_LEVEL"):
        load_settings(mode="user")


@pytest.mark.parametrize("url,shown", [
    ("postgresql+psycopg://flow:s3cr:et@db/flow", "postgresql+psycopg://flow:***@db/flow"),
    ("postgresql://db/flow?user=flow&password=s3cret&x=1", "postgresql://db/flow?user=flow&password=***&x=1"),
    ("sqlite:////var/lib/flowd/flow.db", "sqlite:////var/lib/flowd/flow.db"),
])
def test_passwords_are_masked(url, shown):
    assert mask_url(url) == shown


def test_rendered_settings_are_toml_with_their_sources(bare_env, tmp_path):
    import tomllib

    cfg = tmp_path / "flowd.toml"
    cfg.write_text("paused_at_creation = true\n")
    s = load_settings({"parallelism": 3}, config_file=cfg, mode="user")
    text = render_settings(s, mode="user", config_file=cfg)
    assert tomllib.loads(text) == s.as_dict()
    assert "# command line" in next(line for line in text.splitlines() if line.startswith("parallelism"))
    assert f"# {cfg}" in next(line for line in text.splitlines() if line.startswith("paused_at_creation"))
