"""Where flow's files are: the one answer `flow`, `flowtui`, the offline commands and flowd share.

A server has two flowds a client might mean: the user's own (`flowd --user`, or
`systemctl --user start flowd`) and the system service under /run/flowd. Every client asks this
module which socket and which flowd.toml to use, so `flow status` and `flowtui` never disagree
about which flowd they are talking to, and "cannot reach flowd" can list every socket it tried.

Pure: it reads the environment and looks at files; it never opens a socket. The console imports
it, so it must not import flow.daemon (nor anything heavier than the standard library).
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SYSTEM_CONFIG_DIR = "/etc/flowd"
SYSTEM_STATE_DIR = "/var/lib/flowd"
SYSTEM_LOGS_DIR = "/var/log/flowd"
SYSTEM_RUNTIME_DIR = "/run/flowd"
SOCKET_NAME = "flowd.sock"
CONFIG_NAME = "flowd.toml"


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _xdg(var: str, fallback: str, env: Mapping[str, str] | None = None) -> Path:
    value = _env(env).get(var)
    return Path(value) if value else Path.home() / fallback


def user_config_dir(env: Mapping[str, str] | None = None) -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config", env) / "flowd"


def user_data_dir(env: Mapping[str, str] | None = None) -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share", env) / "flowd"


def user_config_file(env: Mapping[str, str] | None = None) -> Path:
    return user_config_dir(env) / CONFIG_NAME


def system_config_file() -> Path:
    return Path(SYSTEM_CONFIG_DIR) / CONFIG_NAME


def system_socket_path() -> str:
    return f"{SYSTEM_RUNTIME_DIR}/{SOCKET_NAME}"


def user_socket_path(env: Mapping[str, str] | None = None) -> str:
    """A per-user flowd listens in the user's runtime dir (under a user unit: the one systemd made)."""
    e = _env(env)
    unit_dir = e.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if unit_dir:
        return str(Path(unit_dir) / SOCKET_NAME)
    runtime = e.get("XDG_RUNTIME_DIR") or f"/tmp/flowd-{os.getuid()}"
    return str(Path(runtime) / "flowd" / SOCKET_NAME)


@dataclass(frozen=True)
class ClientConfig:
    """The flowd.toml a client reads, and whether it is the system service's."""

    path: Path
    system: bool
    """True when the user has no flowd.toml of their own and /etc/flowd/flowd.toml exists: an
    operator on a server then sees the service's DAG folder, database and logs."""


def client_config(explicit: str | os.PathLike[str] | None = None,
                  env: Mapping[str, str] | None = None) -> ClientConfig:
    """--config, $FLOW_CONFIG, the user's flowd.toml if it exists, else the system one if it exists."""
    if explicit:
        return ClientConfig(Path(explicit).expanduser(), False)
    named = _env(env).get("FLOW_CONFIG")
    if named:
        return ClientConfig(Path(named).expanduser(), False)
    user = user_config_file(env)
    system = system_config_file()
    if not user.exists() and system.is_file():
        return ClientConfig(system, True)
    return ClientConfig(user, False)


def configured_socket(path: Path) -> str | None:
    """socket_path from a flowd.toml (top level or [flowd]), if the file is there and well formed."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    table = data.get("flowd")
    value = table.get("socket_path") if isinstance(table, dict) else None
    value = value or data.get("socket_path")
    return str(Path(value).expanduser()) if isinstance(value, str) and value else None


def socket_candidates(flag: str | None = None, configured: str | None = None,
                      env: Mapping[str, str] | None = None) -> list[str]:
    """The sockets to try, in order: one if the user named it (flag, $FLOW_SOCKET, socket_path in
    the configuration), else the user's own flowd, then the system flowd."""
    explicit = flag or _env(env).get("FLOW_SOCKET") or configured
    if explicit:
        return [str(Path(explicit).expanduser())]
    found: list[str] = []
    for path in (user_socket_path(env), system_socket_path()):
        if path not in found:
            found.append(path)
    return found


def is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def resolve_socket(flag: str | None = None, configured: str | None = None,
                   env: Mapping[str, str] | None = None) -> str:
    """The first candidate whose socket exists, else the first candidate (for the error message)."""
    candidates = socket_candidates(flag, configured, env)
    return next((c for c in candidates if is_socket(c)), candidates[0])
