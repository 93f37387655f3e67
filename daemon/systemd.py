"""The three systemd protocols flowd speaks, with plain sockets (no libsystemd binding needed).

- sd_notify: datagrams of "KEY=VALUE" lines to $NOTIFY_SOCKET (READY, RELOADING, STOPPING,
  STATUS, WATCHDOG). A path starting with "@" is in the abstract namespace.
- the watchdog: systemd sets $WATCHDOG_USEC (and $WATCHDOG_PID); the service pings at half that.
- socket activation: $LISTEN_FDS sockets handed over from fd 3 on, meant for $LISTEN_PID.

Every reader takes the environment as a mapping so tests can pass a plain dict, and can remove
the variables it consumed: the runner and the tasks flowd starts inherit its environment, and a
task must not be able to notify systemd, nor believe it was socket-activated.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping
from dataclasses import dataclass

log = logging.getLogger("flow.systemd")

SD_LISTEN_FDS_START = 3


def _env(environ: MutableMapping[str, str] | None) -> MutableMapping[str, str]:
    return os.environ if environ is None else environ


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it in MONOTONIC_USEC."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends sd_notify messages; does nothing (and costs nothing) when not run by systemd.

    Sends never block: a datagram socket whose reader is slow would otherwise stall flowd's
    event loop, and a lost STATUS or WATCHDOG is better than a frozen scheduler.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._target: str | bytes | None = None
        self._sock: socket.socket | None = None
        if address:
            self._target = b"\0" + address[1:].encode() if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True) -> Notifier:
        env = _env(environ)
        address = env.get("NOTIFY_SOCKET") or None
        if unset:
            env.pop("NOTIFY_SOCKET", None)
        if address and not address.startswith(("/", "@")):
            log.warning("ignoring NOTIFY_SOCKET=%r: not an absolute path or an @abstract name", address)
            address = None
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram of `lines` ("READY=1", "STATUS=..."); True if it was sent."""
        if self._sock is None or self._target is None:
            return False
        payload = "\n".join(lines).encode()
        try:
            self._sock.sendto(payload, self._target)
        except OSError as exc:
            log.debug("sd_notify %r to %s failed: %s", lines, self.address, exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: MutableMapping[str, str] | None = None, *, pid: int | None = None,
                      unset: bool = True) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), or None when no watchdog is asked for.

    $WATCHDOG_PID, when set, names the process the watchdog is meant for; any other process
    (a child that inherited the environment) must not ping.
    """
    env = _env(environ)
    usec, wpid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if unset:
        env.pop("WATCHDOG_USEC", None)
        env.pop("WATCHDOG_PID", None)
    if not usec:
        return None
    pid = os.getpid() if pid is None else pid
    try:
        if wpid and int(wpid) != pid:
            return None
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r / WATCHDOG_PID=%r: not numbers", usec, wpid)
        return None
    if value <= 0:
        return None
    return value / 2 / 1_000_000


@dataclass
class ListenSocket:
    fd: int
    name: str


def listen_fds(environ: MutableMapping[str, str] | None = None, *, pid: int | None = None,
               unset: bool = True) -> list[ListenSocket]:
    """File descriptors passed by socket activation, from fd 3 on, with their $LISTEN_FDNAMES names.

    Empty unless $LISTEN_PID is this process: the variables may have been inherited by
    accident, and then the fds are not ours to take. Each fd is made close-on-exec, so the
    listening socket never leaks into the runner or a task.
    """
    env = _env(environ)
    fds, lpid, names = env.get("LISTEN_FDS"), env.get("LISTEN_PID"), env.get("LISTEN_FDNAMES")
    if unset:
        for var in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(var, None)
    if not fds or not lpid:
        return []
    pid = os.getpid() if pid is None else pid
    try:
        if int(lpid) != pid:
            return []
        count = int(fds)
    except ValueError:
        log.warning("ignoring LISTEN_FDS=%r / LISTEN_PID=%r: not numbers", fds, lpid)
        return []
    name_list = names.split(":") if names else []
    out = []
    for i in range(max(0, count)):
        fd = SD_LISTEN_FDS_START + i
        try:
            os.set_inheritable(fd, False)
        except OSError as exc:
            log.warning("socket activation: fd %d is not usable: %s", fd, exc)
            continue
        out.append(ListenSocket(fd, name_list[i] if i < len(name_list) else "unknown"))
    return out


def activated_socket(environ: MutableMapping[str, str] | None = None, *,
                     pid: int | None = None) -> socket.socket | None:
    """The listening Unix stream socket systemd handed us, or None when not socket-activated.

    A unit that passes more than one fd is a configuration mistake for flowd; the first
    listening stream socket is used and the others are closed, so they do not linger.
    """
    chosen: socket.socket | None = None
    for item in listen_fds(environ, pid=pid):
        try:
            sock = socket.socket(fileno=item.fd)
        except OSError as exc:
            log.warning("socket activation: fd %d (%s) is not a socket: %s", item.fd, item.name, exc)
            continue
        usable = (sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM
                  and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        if chosen is None and usable:
            chosen = sock
            continue
        log.warning("socket activation: ignoring fd %d (%s): flowd listens on one Unix stream socket",
                    item.fd, item.name)
        sock.close()
    return chosen
