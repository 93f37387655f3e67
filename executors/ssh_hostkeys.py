"""Host-key verification: flow's own known-hosts file first, then the system's, and nothing else.

paramiko's AutoAddPolicy (trust on first use, silently) is what makes remote execution unsafe in
many tools; here an unknown or changed key fails the try and names the command that trusts it,
and only `flow connections trust` ever writes to flow's file, after a person has seen the key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import paramiko

from .ssh_config import Connection

SYSTEM_FILES = ("~/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts")


class HostKeyProblem(Exception):
    kind = "host key problem"


class HostKeyUnknown(HostKeyProblem):
    kind = "host key unknown"


class HostKeyChanged(HostKeyProblem):
    kind = "host key changed"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's form (`ssh-keygen -lf`), so it can be compared with what the host's admin reads."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _files(conn: Connection) -> list[str]:
    return [conn.known_hosts, *(os.path.expanduser(p) for p in SYSTEM_FILES)]


def known_keys(conn: Connection) -> list[tuple[str, paramiko.PKey]]:
    """(file, key) for every key any of the files holds for this host and port."""
    found = []
    for path in _files(conn):
        if not os.path.isfile(path):
            continue
        hk = paramiko.HostKeys()
        try:
            hk.load(path)
        except (OSError, paramiko.SSHException, ValueError):
            continue  # an unreadable system file must not hide flow's own
        entry = hk.lookup(conn.known_hosts_name)
        if entry:
            found.extend((path, key) for key in entry.values())
    return found


def preferred_types(conn: Connection) -> list[str]:
    """Key types already known for the host, so the server is asked for one we can check."""
    seen: list[str] = []
    for _path, key in known_keys(conn):
        if key.get_name() not in seen:
            seen.append(key.get_name())
    return seen


def verify(conn: Connection, key: paramiko.PKey) -> None:
    """Return if the key is known for this host; raise HostKeyUnknown or HostKeyChanged otherwise."""
    known = known_keys(conn)
    if any(k.get_name() == key.get_name() and k.asbytes() == key.asbytes() for _p, k in known):
        return
    offered = f"{key.get_name()} {fingerprint(key)}"
    if not known:
        raise HostKeyUnknown(
            f"host key of {conn.known_hosts_name} is not known ({offered}); if that is the host's key, "
            f"trust it with: flow connections trust {conn.name}")
    path, old = known[0]
    raise HostKeyChanged(
        f"host key of {conn.known_hosts_name} has CHANGED: it now offers {offered}, but {path} holds "
        f"{old.get_name()} {fingerprint(old)}. Someone may be intercepting the connection; if the host was "
        f"reinstalled, remove the old line from {path} and run: flow connections trust {conn.name}")


def trust(conn: Connection, key: paramiko.PKey) -> Path:
    """Append the key to flow's known-hosts file (created 0600 with its folder when missing)."""
    path = Path(conn.known_hosts)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"{conn.known_hosts_name} {key.get_name()} {key.get_base64()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        if fh.tell() and not _ends_with_newline(path):
            fh.write("\n")
        fh.write(line)
    return path


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
