"""connections.toml: the hosts SSH tasks may run on, read by flowd and by `flow connections`.

One table per connection, named by the table:

    [db1]
    host = "db1.example.org"
    user = "backup"
    key_file = "~/.ssh/flow_ed25519"

The file holds paths to secrets (key_file, passphrase_file), never the secrets themselves, so
printing a Connection (its repr, `flow connections list`) cannot leak one. A mistake names the
file, the line and the key, and stops nothing but the tasks that use the broken connection.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_PORT = 22
DEFAULT_MAX_SESSIONS = 8
"""OpenSSH's MaxSessions defaults to 10; two are left for the channels that kill and probe."""


class ConnectionsError(ValueError):
    """connections.toml cannot be used as it is; the message says where and why."""


@dataclass(frozen=True)
class Connection:
    name: str
    host: str
    port: int = DEFAULT_PORT
    user: str = field(default_factory=lambda: _login_name())
    key_file: str | None = None
    passphrase_file: str | None = None
    known_hosts: str = ""
    """flow's own known-hosts file (default: known_hosts beside connections.toml)."""
    connect_timeout: float = 10.0
    keepalive_interval: float = 15.0
    max_sessions: int = DEFAULT_MAX_SESSIONS
    jump_host: str | None = None
    """The name of another connection to tunnel through."""

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name known_hosts files use: the bare host on port 22, `[host]:port` otherwise."""
        return self.host if self.port == DEFAULT_PORT else f"[{self.host}]:{self.port}"

    def describe(self) -> dict[str, Any]:
        """What may be shown: everything (paths to secrets are not secrets)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "root" if os.geteuid() == 0 else str(os.geteuid())


_TYPES: dict[str, tuple[type, ...]] = {
    "host": (str,), "port": (int,), "user": (str,), "key_file": (str,), "passphrase_file": (str,),
    "known_hosts": (str,), "connect_timeout": (int, float), "keepalive_interval": (int, float),
    "max_sessions": (int,), "jump_host": (str,),
}


def _line_of(text: str, name: str, key: str | None = None) -> int | None:
    """Where a table (or a key in it) is written: tomllib reports syntax errors only."""
    lines = text.splitlines()
    header = re.compile(r"^\s*\[\s*(\"?)" + re.escape(name) + r"\1\s*\]")
    for i, line in enumerate(lines):
        if header.match(line):
            if key is None:
                return i + 1
            for j in range(i + 1, len(lines)):
                if re.match(r"^\s*\[", lines[j]):
                    break
                if re.match(r"^\s*\"?" + re.escape(key) + r"\"?\s*=", lines[j]):
                    return j + 1
            return i + 1
    return None


def _where(path: Path, text: str, name: str, key: str | None = None) -> str:
    line = _line_of(text, name, key)
    at = f"{path}, line {line}" if line else str(path)
    return f"{at}: connection {name!r}" + (f", key {key!r}" if key else "")


def parse_connections(text: str, path: Path) -> dict[str, Connection]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConnectionsError(f"{path}: not valid TOML: {exc}") from None
    base = path.parent
    conns: dict[str, Connection] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConnectionsError(f"{_where(path, text, name)}: expected a table [{name}] with host, user, ...; "
                                   f"found a plain value (put it under a [connection] header)")
        values: dict[str, Any] = {"name": name}
        for key, value in table.items():
            if key not in _TYPES:
                raise ConnectionsError(f"{_where(path, text, name, key)}: unknown key; known: {', '.join(_TYPES)}")
            if not isinstance(value, _TYPES[key]) or isinstance(value, bool):
                want = " or ".join(t.__name__ for t in _TYPES[key])
                raise ConnectionsError(f"{_where(path, text, name, key)}: expected {want}, "
                                       f"not {type(value).__name__} {value!r}")
            values[key] = value
        if not values.get("host"):
            raise ConnectionsError(f"{_where(path, text, name)}: 'host' is required")
        port = values.get("port", DEFAULT_PORT)
        if not 0 < port < 65536:
            raise ConnectionsError(f"{_where(path, text, name, 'port')}: {port} is not a TCP port")
        for key in ("connect_timeout", "keepalive_interval"):
            if key in values and values[key] <= 0:
                raise ConnectionsError(f"{_where(path, text, name, key)}: must be a positive number of seconds")
        if "max_sessions" in values and values["max_sessions"] < 1:
            raise ConnectionsError(f"{_where(path, text, name, 'max_sessions')}: must be at least 1")
        for key in ("key_file", "passphrase_file", "known_hosts"):
            if key in values:
                values[key] = str((base / Path(values[key]).expanduser()).absolute())
        values.setdefault("known_hosts", str((base / "known_hosts").absolute()))
        values["connect_timeout"] = float(values.get("connect_timeout", 10.0))
        values["keepalive_interval"] = float(values.get("keepalive_interval", 15.0))
        conns[name] = Connection(**values)
    for conn in conns.values():
        if conn.jump_host is not None:
            if conn.jump_host not in conns:
                raise ConnectionsError(f"{_where(path, text, conn.name, 'jump_host')}: no connection named "
                                       f"{conn.jump_host!r} in this file")
            seen, hop = {conn.name}, conns[conn.jump_host]
            while hop is not None:
                if hop.name in seen:
                    raise ConnectionsError(f"{_where(path, text, conn.name, 'jump_host')}: jump hosts form a loop "
                                           f"through {hop.name!r}")
                seen.add(hop.name)
                hop = conns.get(hop.jump_host) if hop.jump_host else None
    return conns


def load_connections(path: str | Path) -> dict[str, Connection]:
    """Every connection in the file; a missing file is no connections, not an error."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConnectionsError(f"cannot read connections file {path}: {exc}") from None
    return parse_connections(text, path)


def read_passphrase(conn: Connection) -> str | None:
    """The key's passphrase: the first line of its file, read when connecting and never kept."""
    if not conn.passphrase_file:
        return None
    try:
        with open(conn.passphrase_file, encoding="utf-8") as fh:
            return fh.readline().rstrip("\r\n")
    except OSError as exc:
        raise ConnectionsError(f"connection {conn.name!r}: cannot read passphrase_file "
                               f"{conn.passphrase_file}: {exc.strerror}") from None
