"""The unit files and sysusers/tmpfiles snippets, checked by systemd's own tools.

`systemd-analyze verify` works offline (no systemd as PID 1 needed): it loads the units from
the folder they are in and checks every directive and that ExecStart's binary exists, so the
copies point ExecStart at this virtualenv's flowd. It reports a bad value as a warning and
still exits 0, so the tests also require it to print nothing. sysusers and tmpfiles are applied
with --root to an empty folder, which creates the user, the groups and the folders there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flow import paths
from flow.daemon import config

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
FLOWD = str(Path(sys.executable).parent / "flowd")


def directives(path: Path) -> dict[str, dict[str, str]]:
    """section -> key -> value (the last one wins, as in systemd for these keys)."""
    out: dict[str, dict[str, str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section][key.strip()] = value.strip()
    return out


def system_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> config.Settings:
    """The built-in system-mode settings, whatever this host's environment or /etc/flowd say."""
    for var in [*config.Settings.ENV.values(), "FLOW_CONFIG", "STATE_DIRECTORY", "LOGS_DIRECTORY",
                "RUNTIME_DIRECTORY", "CONFIGURATION_DIRECTORY"]:
        monkeypatch.delenv(var, raising=False)
    return config.load_settings(mode="system", config_file=tmp_path / "absent.toml")


def installable_copies(tmp_path: Path, units: Path = UNITS) -> tuple[Path, Path]:
    """The units as `make install` writes them (ExecStart at the install's flowd), here at ours."""
    service = (units / "flowd.service").read_text()
    assert "ExecStart=/opt/flow/bin/flowd " in service
    (tmp_path / "flowd.service").write_text(service.replace("ExecStart=/opt/flow/bin/flowd", f"ExecStart={FLOWD}"))
    shutil.copy(units / "flowd.socket", tmp_path / "flowd.socket")
    return tmp_path / "flowd.service", tmp_path / "flowd.socket"


def verify(*units: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "notice", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
    return subprocess.run(["systemd-analyze", "verify", "--recursive-errors=yes", "--man=no", *map(str, units)],
                          capture_output=True, text=True, timeout=60, env=env, cwd=units[0].parent)


def test_systemd_analyze_verify_accepts_the_units_without_a_warning(tmp_path: Path):
    res = verify(*installable_copies(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout + res.stderr == ""


def test_systemd_analyze_verify_accepts_the_user_units_without_a_warning(tmp_path: Path):
    res = verify(*installable_copies(tmp_path, UNITS / "user"))
    assert res.returncode == 0, res.stderr
    assert res.stdout + res.stderr == ""


def test_the_user_units_listen_where_a_user_flowd_under_systemd_would(monkeypatch, tmp_path: Path):
    """%t is $XDG_RUNTIME_DIR in a user manager; RuntimeDirectory=flowd makes $RUNTIME_DIRECTORY."""
    sock = directives(UNITS / "user" / "flowd.socket")["Socket"]
    svc = directives(UNITS / "user" / "flowd.service")["Service"]
    assert sock["ListenStream"] == "%t/flowd/flowd.sock" and svc["RuntimeDirectory"] == "flowd"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    assert paths.user_socket_path() == "/run/user/1000/flowd/flowd.sock"
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/user/1000/flowd")
    assert paths.user_socket_path() == "/run/user/1000/flowd/flowd.sock"
    assert svc["ExecStart"] == "/opt/flow/bin/flowd --user" and svc["Type"] == "notify"


def test_the_units_documentation_is_where_make_install_puts_the_readme():
    script = (ROOT / "scripts" / "install.sh").read_text()
    for unit in ("flowd.service", "flowd.socket", "user/flowd.service", "user/flowd.socket"):
        doc = directives(UNITS / unit)["Unit"]["Documentation"]
        assert doc == "file:///usr/share/doc/flow/README.md"
    assert "\nDOCDIR=/usr/share/doc/flow\n" in script and '"$DOCDIR/README.md"' in script


@pytest.mark.parametrize("before,after,needle", [
    ("WatchdogSec=30", "WatchdogSecs=30", "Unknown key 'WatchdogSecs'"),
    (f"ExecStart={FLOWD}", "ExecStart=/nonexistent/flowd", "not executable"),
])
def test_the_verification_notices_a_broken_unit(tmp_path: Path, before: str, after: str, needle: str):
    service, socket_unit = installable_copies(tmp_path)
    service.write_text(service.read_text().replace(before, after))
    res = verify(service, socket_unit)
    assert needle in res.stdout + res.stderr


def test_the_service_is_a_notify_service_with_a_watchdog_that_leaves_tasks_running():
    svc = directives(UNITS / "flowd.service")["Service"]
    expected = {
        "Type": "notify", "NotifyAccess": "main", "ExecReload": "/bin/kill -HUP $MAINPID", "WatchdogSec": "30",
        "Restart": "on-failure", "User": "flowd", "Group": config.Settings().operator_group,
        "StateDirectory": "flowd", "LogsDirectory": "flowd", "RuntimeDirectory": "flowd",
        "RuntimeDirectoryPreserve": "yes", "ConfigurationDirectory": "flowd", "OOMPolicy": "continue",
        "TasksMax": "16384", "KillMode": "process",
    }
    assert {k: svc.get(k) for k in expected} == expected
    for absent in ("ProtectSystem", "PrivateTmp", "NoNewPrivileges", "DeviceAllow", "ProtectClock"):
        assert absent not in svc, f"{absent} would stop some tasks from running"
    assert int(svc["TimeoutStopSec"]) > config.Settings().kill_grace + 10


def test_the_socket_unit_listens_where_a_system_flowd_would(monkeypatch, tmp_path: Path):
    sock = directives(UNITS / "flowd.socket")["Socket"]
    assert sock["ListenStream"] == system_defaults(monkeypatch, tmp_path).socket_path == "/run/flowd/flowd.sock"
    assert (sock["SocketMode"], sock["SocketUser"], sock["SocketGroup"]) == (
        "0666", "flowd", config.Settings().operator_group)
    assert directives(UNITS / "flowd.service")["Service"]["RuntimeDirectory"] == Path(sock["ListenStream"]).parent.name


def test_sysusers_and_tmpfiles_make_the_user_groups_and_folders(monkeypatch, tmp_path: Path):
    root = tmp_path / "root"
    (root / "etc/sysusers.d").mkdir(parents=True)
    (root / "etc/tmpfiles.d").mkdir(parents=True)
    shutil.copy(UNITS / "flowd-sysusers.conf", root / "etc/sysusers.d/flowd.conf")
    shutil.copy(UNITS / "flowd-tmpfiles.conf", root / "etc/tmpfiles.d/flowd.conf")
    for cmd in (["systemd-sysusers", f"--root={root}"], ["systemd-tmpfiles", f"--root={root}", "--create"]):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, f"{cmd}: {res.stderr}"
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}
    assert {"flow", "flow-view"} <= set(groups)
    assert "flowd" in groups["flow"][3].split(",")
    uid, flow_gid = int(users["flowd"][2]), int(groups["flow"][2])
    system = system_defaults(monkeypatch, tmp_path)
    expected = {
        system.db_url.removeprefix("sqlite:///").rsplit("/", 1)[0]: (uid, flow_gid, 0o750),
        system.log_folder: (uid, flow_gid, 0o750),
        system.dags_folder: (0, flow_gid, 0o2775),
    }
    for path, want in expected.items():
        st = os.stat(root / path.lstrip("/"))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == want, path
