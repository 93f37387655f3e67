"""Host-key verification: flow's own known-hosts file first, then the system's, and nothing else.

paramiko's AutoAddPolicy (trust on first use, silently) is what makes remote execution unsafe in
many tools; here an unknown or changed key fails the try and names the command that trusts it,
and only `flow connections trust` ever writes to flow's file, after a person has seen the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import paramiko

from .ssh_config import Connection

SYSTEM_FILES = ("~/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts")
log = logging.getLogger(__name__)


class HostKeyProblem(Exception):
    kind = "host key problem"


class HostKeyUnknown(HostKeyProblem):
    kind = "host key unknown"


class HostKeyChanged(HostKeyProblem):
    kind = "host key changed"


class HostKeyRevoked(HostKeyProblem):
    kind = "host key revoked"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's form (`ssh-keygen -lf`), so it can be compared with what the host's admin reads."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _files(conn: Connection) -> list[str]:
    return [conn.known_hosts, *(os.path.expanduser(p) for p in SYSTEM_FILES)]


KEY_ALGORITHMS = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
    "ssh-dss": ("ssh-dss",),
}
"""Host-key algorithms that prove a key of each type. An RSA key's type is `ssh-rsa`, but servers
sign with `rsa-sha2-*` (OpenSSH refuses SHA-1 `ssh-rsa` signatures by default); other types sign
under their own name."""


@dataclass(frozen=True)
class KnownKey:
    """One usable line of a known-hosts file that names this host."""

    path: str
    line: int
    key: paramiko.PKey
    revoked: bool
    """`@revoked`: this key must never be accepted, for this host or any other it names."""


_warned: set[tuple[str, int, str]] = set()
"""(file, line, why) already warned about, so a bad line is reported once, not per connection."""


def _warn_once(path: str, line: int, why: str) -> None:
    if (path, line, why) not in _warned:
        _warned.add((path, line, why))
        log.warning("%s line %d: %s", path, line, why)


def _glob(pattern: str) -> re.Pattern[str]:
    """OpenSSH patterns know only `*` and `?`: `[host]:port` is a literal name, not a set."""
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), re.IGNORECASE)


def _matches(patterns: str, host: str) -> bool:
    """OpenSSH's host field: comma-separated names, `|1|salt|hash` hashed names, `*`/`?` wildcards,
    and `!pattern` negations (a negated match excludes the host whatever else matches)."""
    hit = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern.startswith("|1|"):
            try:
                found = paramiko.HostKeys.hash_host(host, pattern) == pattern
            except (ValueError, AssertionError, binascii.Error):
                found = False
        else:
            found = _glob(pattern).fullmatch(host) is not None
        if found and negated:
            return False
        hit = hit or found
    return hit


def _read_file(path: str, host: str) -> list[KnownKey]:
    """The keys one file holds for `host`, read line by line so one bad line loses only itself."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []  # an unreadable system file must not hide flow's own
    found = []
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split()
        marker = fields.pop(0) if fields[0].startswith("@") else None
        if marker == "@cert-authority":
            _warn_once(path, number, "@cert-authority lines are not supported (flow does not check host "
                                     "certificates); skipped")
            continue
        if marker not in (None, "@revoked"):
            _warn_once(path, number, f"unknown marker {marker!r}; line skipped")
            continue
        if len(fields) < 3:
            _warn_once(path, number, "expected: hosts key-type base64-key; line skipped")
            continue
        if not _matches(fields[0], host):
            continue
        try:
            key = paramiko.PKey.from_type_string(fields[1], base64.b64decode(fields[2], validate=True))
        except (binascii.Error, ValueError, paramiko.SSHException) as exc:
            _warn_once(path, number, f"cannot read the {fields[1]} key ({exc}); line skipped")
            continue
        found.append(KnownKey(path, number, key, marker == "@revoked"))
    return found


def _all_known(conn: Connection) -> list[KnownKey]:
    return [k for path in _files(conn) for k in _read_file(path, conn.known_hosts_name)]


def _same(a: paramiko.PKey, b: paramiko.PKey) -> bool:
    return a.get_name() == b.get_name() and a.asbytes() == b.asbytes()


def known_keys(conn: Connection) -> list[tuple[str, paramiko.PKey]]:
    """(file, key) for every key any of the files trusts for this host and port (not the revoked)."""
    known = _all_known(conn)
    revoked = [k.key for k in known if k.revoked]
    return [(k.path, k.key) for k in known if not k.revoked and not any(_same(k.key, r) for r in revoked)]


def preferred_types(conn: Connection) -> list[str]:
    """Host-key algorithms for the key types already known for the host, so that, as OpenSSH does,
    the server is asked first for a key we can check (not its newest type we have never seen)."""
    seen: list[str] = []
    for _path, key in known_keys(conn):
        for algorithm in KEY_ALGORITHMS.get(key.get_name(), (key.get_name(),)):
            if algorithm not in seen:
                seen.append(algorithm)
    return seen


def verify(conn: Connection, key: paramiko.PKey) -> None:
    """Return if the key is known for this host; raise HostKeyRevoked, HostKeyChanged (a different
    key of the same type is known) or HostKeyUnknown (no key of this type is known) otherwise."""
    everything = _all_known(conn)
    offered = f"{key.get_name()} {fingerprint(key)}"
    for k in everything:
        if k.revoked and _same(k.key, key):
            raise HostKeyRevoked(
                f"host key of {conn.known_hosts_name} is REVOKED ({offered}, @revoked in {k.path} line "
                f"{k.line}): the connection is refused; the host must offer another key")
    known = known_keys(conn)
    if any(_same(k, key) for _p, k in known):
        return
    same_type = [(p, k) for p, k in known if k.get_name() == key.get_name()]
    if same_type:
        path, old = same_type[0]
        raise HostKeyChanged(
            f"host key of {conn.known_hosts_name} has CHANGED: it now offers {offered}, but {path} holds "
            f"{old.get_name()} {fingerprint(old)}. Someone may be intercepting the connection; if the host was "
            f"reinstalled, remove the old line from {path} and run: flow connections trust {conn.name}")
    others = sorted({k.get_name() for _p, k in known})
    also = f"; keys of other types are known ({', '.join(others)}) but the host did not offer them" \
        if others else ""
    raise HostKeyUnknown(
        f"host key of {conn.known_hosts_name} is not known ({offered}){also}; if that is the host's key, "
        f"trust it with: flow connections trust {conn.name}")


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
