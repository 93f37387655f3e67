"""Who is on the other end of a connection, and what they may do.

The kernel tells us the peer's uid, gid and pid (SO_PEERCRED), so nobody can claim to be
someone else. The role decision itself is a pure function over user and group tables, so it
can be tested with made-up users without being root.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

_CRED = struct.Struct("3i")


@dataclass(frozen=True)
class Group:
    name: str
    gid: int
    members: frozenset[str]
    """User names listed as supplementary members (grp's gr_mem)."""


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    user: str
    role: str | None
    """"operator", "viewer", or None when the peer may not use flowd at all."""

    @property
    def actor(self) -> dict[str, object]:
        """What the engine's operations write to the audit log."""
        return {"uid": self.uid, "user": self.user}


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    pid, uid, gid = _CRED.unpack(raw)
    return pid, uid, gid


def user_name(uid: int) -> str:
    """The login name, or the number itself for a uid with no passwd entry (e.g. in a container)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def primary_gid(user: str) -> int | None:
    try:
        return pwd.getpwnam(user).pw_gid
    except KeyError:
        return None


def lookup_group(name: str) -> Group | None:
    if not name:
        return None
    try:
        entry = grp.getgrnam(name)
    except KeyError:
        return None
    return Group(entry.gr_name, entry.gr_gid, frozenset(entry.gr_mem))


def _member(group: Group | None, user: str, gids: set[int]) -> bool:
    return group is not None and (group.gid in gids or user in group.members)


def decide_role(uid: int, gid: int, user: str, *, server_uid: int, operator: Group | None,
                viewer: Group | None, user_primary_gid: int | None = None) -> str | None:
    """operator: root, flowd's own user, members of the operator group; viewer: members of the
    viewer group; None: anyone else. Membership counts the peer's gid, the user's primary gid
    from passwd, and the group's member list."""
    if uid == 0 or uid == server_uid:
        return "operator"
    gids = {gid} if user_primary_gid is None else {gid, user_primary_gid}
    if _member(operator, user, gids):
        return "operator"
    if _member(viewer, user, gids):
        return "viewer"
    return None


def forbidden_message(user: str, uid: int, operator_group: str, viewer_group: str) -> str:
    return (f"user {user} (uid {uid}) may not use flowd: ask to be added to group {operator_group!r} "
            f"(operate) or {viewer_group!r} (read only)")


GroupLookup = Callable[[str], Group | None]


def identify(sock: socket.socket, operator_group: str, viewer_group: str, *,
             server_uid: int | None = None, groups: GroupLookup = lookup_group) -> Peer:
    """Read the peer's credentials and decide its role (groups are looked up per connection, so a
    user added to a group needs no flowd restart)."""
    pid, uid, gid = peer_credentials(sock)
    user = user_name(uid)
    role = decide_role(uid, gid, user, server_uid=os.geteuid() if server_uid is None else server_uid,
                       operator=groups(operator_group), viewer=groups(viewer_group),
                       user_primary_gid=primary_gid(user))
    return Peer(pid, uid, gid, user, role)
