"""flowd's Unix-socket server: connections, the handshake, dispatch and pushed events.

Everything runs on the engine's asyncio loop, so handlers call the engine directly and no lock
is needed. A client can never slow flowd down: events go into a bounded queue per connection
(dropped and replaced by one `resync` when it overflows), replies and events are written with a
drain timeout, and a client that neither reads nor says hello is disconnected.

The accept loop is flowd's own rather than asyncio's, so that every connection passes admission
(rpc/admission.py) the moment it is accepted, and so that running out of file descriptors backs
off and is logged once per interval instead of once per attempt.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import psutil

from flow.protocol import dumps, encode, error_reply

from .connection import Connection
from .peer import Peer, identify, lookup_group, peer_credentials
from .rpc.admission import Admission, Limits, Refused, Throttled
from .rpc.channel import Channel

__all__ = ["Server", "ServerError"]

log = logging.getLogger("flow.server")

QUEUE_LIMIT = 1000
WRITE_TIMEOUT = 60.0
LAG_PERIOD = 0.5
HELLO_LIMIT = 16 * 1024
"""Bytes a client may send before its hello is complete (a real hello is under 100)."""
FD_HEADROOM = 256
"""File descriptors kept for everything but clients: the database, task logs, the runner's pipes."""
ACCEPT_BACKOFF = (0.05, 1.0)
"""First and longest pause after accept() fails for want of descriptors or memory."""
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def flow_version() -> str:
    try:
        return metadata.version("flowtui")
    except metadata.PackageNotFoundError:
        return "unknown"


class ServerError(Exception):
    """flowd cannot listen on its socket; the message says why and where."""


def _answering_pid(path: str) -> int | None:
    """The pid of a server answering on `path`, 0 if one answers but its pid is unknown, None if none."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
        return peer_credentials(probe)[0]
    except (ConnectionRefusedError, FileNotFoundError):
        return None
    except TimeoutError:
        return 0  # listening, with a full backlog
    finally:
        probe.close()


def give_to_group(path: str, group_name: str) -> None:
    """chgrp `path` to the group, where flowd may (root, or a member of it); silently not otherwise."""
    group = lookup_group(group_name)
    if group is None:
        return
    if os.geteuid() == 0 or group.gid == os.getegid() or group.gid in os.getgroups():
        with suppress(PermissionError):
            os.chown(path, -1, group.gid)


def bind_socket(path: str, operator_group: str) -> tuple[socket.socket, int]:
    """A listening socket at `path`, mode 0666, group `operator_group`; returns it and its inode.

    The mode lets every local user reach the handshake, where flowd decides from the kernel's
    peer credentials: operators, viewers (another group, who could not open a 0660 socket of
    the operator group), or a one-line refusal that names the groups to ask for.

    It is bound under a temporary name with a strict umask and renamed into place, so there is no
    moment when the final path exists with looser permissions, and a stale socket is replaced
    atomically. A live flowd on the path is never replaced.
    """
    parent = os.path.dirname(path) or "."
    tmp = os.path.join(parent, f".flowd-{os.getpid()}")
    for name in (path, tmp):
        if len(os.fsencode(name)) > 107:
            raise ServerError(f"socket path {name} is too long ({len(os.fsencode(name))} bytes; "
                              "Unix sockets allow 107): set a shorter socket_path")
    try:
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o755, exist_ok=True)
            os.chmod(parent, 0o755)  # whatever the umask: clients of every user must reach the socket
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ServerError(f"cannot create the socket folder {parent}: {exc.strerror}") from None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ServerError(f"{path} exists and is not a socket: remove it or set another socket_path")
        pid = _answering_pid(path)
        if pid is not None:
            who = f" (pid {pid})" if pid else ""
            raise ServerError(f"flowd is already running on {path}{who}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        old = os.umask(0o177)
        try:
            sock.bind(tmp)
        finally:
            os.umask(old)
        os.chmod(tmp, 0o666)
        give_to_group(tmp, operator_group)
        sock.listen(128)
        os.rename(tmp, path)
        ino = os.stat(path).st_ino
    except OSError as exc:
        sock.close()
        with suppress(OSError):
            os.unlink(tmp)
        raise ServerError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock, ino


def unlink_if_ours(path: str, ino: int) -> None:
    """Remove the socket file unless another flowd has since put its own there."""
    with suppress(OSError):
        if os.lstat(path).st_ino == ino:
            os.unlink(path)


class Server:
    """The socket server flowd's main starts; `publish` is the engine's listener."""

    def __init__(self, engine: Any, settings: Any, *, sock: socket.socket | None = None,
                 queue_limit: int = QUEUE_LIMIT, hello_timeout: float | None = None,
                 write_timeout: float = WRITE_TIMEOUT, follow_interval: float = 0.2) -> None:
        self.engine = engine
        self.settings = settings
        self.published = 0
        self.queue_limit = queue_limit
        self.hello_timeout = settings.hello_timeout if hello_timeout is None else hello_timeout
        self.write_timeout = write_timeout
        self.follow_interval = follow_interval
        self.connections: set[Connection] = set()
        self._task_watchers: dict[tuple[str, str, str], set[asyncio.Event]] = {}
        self.version = flow_version()
        self.started_at = datetime.now(UTC)
        self.loop_lag_ms = 0.0
        self._sock = sock
        self._activated = sock is not None
        self._bound: tuple[str, int] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._started = time.monotonic()
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading is meaningless; start the interval now
        self.identify: Callable[..., Peer] = identify
        """How a connection learns who its peer is (tests swap in fake group tables)."""
        self.hello_limit = HELLO_LIMIT
        self.output_budget = settings.max_client_buffer
        self.throttled = Throttled(log)
        """Warnings a client can provoke at will go through this, once per interval per kind."""
        self.admission = Admission(fit_to_descriptors(limits_from(settings)), privileged=self._privileged)
        self._accepter: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def socket_path(self) -> str:
        if self._sock is not None and self._activated:
            name = self._sock.getsockname()
            return name if isinstance(name, str) and name else self.settings.socket_path
        return self.settings.socket_path

    async def start(self) -> None:
        """Listen on the socket (binding settings.socket_path unless flowd was socket-activated)."""
        if self._sock is None:
            self._sock, ino = bind_socket(self.settings.socket_path, self.settings.operator_group)
            self._bound = (self.settings.socket_path, ino)
        self._sock.setblocking(False)
        self._accepter = asyncio.create_task(self._accept_loop(self._sock), name="flowd-accept")
        self._lag_task = asyncio.create_task(self._measure_lag(), name="flowd-loop-lag")
        log.info("listening on %s", self.socket_path)

    async def stop(self) -> None:
        """Stop accepting, close every client, and remove the socket file if this server made it."""
        if self._accepter is not None:
            self._accepter.cancel()
            await asyncio.gather(self._accepter, return_exceptions=True)
            self._accepter = None
        if self._lag_task is not None:
            self._lag_task.cancel()
        conns = list(self.connections)
        for conn in conns:
            conn.abort()
        tasks = [t for t in self._handlers if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        waiting = [*tasks, *([self._lag_task] if self._lag_task else [])]
        if waiting:
            _, stuck = await asyncio.wait(waiting, timeout=10.0)
            for task in stuck:
                log.warning("a connection task did not stop: %r", task)
        if self._sock is not None and not self._activated:
            self._sock.close()
        if self._bound is not None:
            unlink_if_ours(*self._bound)
            self._bound = None

    # -- events -----------------------------------------------------------------------------

    @contextmanager
    def watch_task(self, dag_id: str, run_id: str, task_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the engine reports a state change of this task (for log follows)."""
        key = (dag_id, run_id, task_id)
        changed = asyncio.Event()
        self._task_watchers.setdefault(key, set()).add(changed)
        try:
            yield changed
        finally:
            watchers = self._task_watchers.get(key, set())
            watchers.discard(changed)
            if not watchers:
                self._task_watchers.pop(key, None)

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        """Queue an engine event for every subscriber that wants it. Never blocks or raises."""
        try:
            self.published += 1
            if kind == "ti" and self._task_watchers:
                key = (payload.get("dag_id"), payload.get("run_id"), payload.get("task_id"))
                for changed in self._task_watchers.get(key, ()):  # type: ignore[call-overload]
                    changed.set()
            subscribers = [c for c in self.connections if c.wants(kind)]
            if subscribers:
                data = dumps(payload)
                for conn in subscribers:
                    conn.push(kind, data)
        except Exception:
            log.exception("could not publish a %s event", kind)

    # -- status -----------------------------------------------------------------------------

    async def _measure_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_PERIOD)
            self.loop_lag_ms = max(0.0, (loop.time() - before - LAG_PERIOD) * 1000.0)

    def status(self) -> dict[str, Any]:
        engine = self.engine
        with self._process.oneshot():
            rss = self._process.memory_info().rss
            cpu = self._process.cpu_percent(None)
        active = [d for d in engine.dags if d not in engine.inactive]
        running = engine.running_count()
        parallelism = self.settings.parallelism
        return {
            "version": self.version,
            "pid": os.getpid(),
            "started_at": self.started_at.isoformat(),
            "uptime": round(time.monotonic() - self._started, 3),
            "rss": rss,
            "cpu_percent": cpu,
            "loop_lag_ms": round(self.loop_lag_ms, 3),
            "running": running,
            "parallelism": parallelism,
            "free_slots": max(0, parallelism - running),
            "dags": len(active),
            "paused": sum(1 for d in active if d in engine.paused),
            "import_errors": engine.import_error_count,
            "db": str(engine.store.url),
            "socket": self.socket_path,
            "dags_folder": self.settings.dags_folder,
            "connections": {"pending": self.admission.pending_count, "open": self.admission.active_count},
        }

    # -- connections ------------------------------------------------------------------------

    def _privileged(self, uid: int) -> bool:
        return uid == 0 or uid == os.geteuid()

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        pause = ACCEPT_BACKOFF[0]
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRNOS:
                    self.throttled.warning("accept", f"accepting a connection failed: {exc}")
                    await asyncio.sleep(ACCEPT_BACKOFF[0])
                    continue
                self.throttled.warning("accept resources", f"cannot accept connections: {exc.strerror} "
                                       f"({self.admission.pending_count} pending, {self.admission.active_count} "
                                       f"open); backing off up to {ACCEPT_BACKOFF[1]:g} s")
                await asyncio.sleep(pause)
                pause = min(pause * 2, ACCEPT_BACKOFF[1])
                continue
            pause = ACCEPT_BACKOFF[0]
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        """Count the newcomer in, or refuse it at once with a typed error and close it."""
        sock.setblocking(False)
        try:
            _, uid, _ = peer_credentials(sock)
            ticket = self.admission.enter(uid)
        except Refused as exc:
            self.throttled.warning(f"refused {exc.kind}", f"refused a connection from uid {uid}: {exc}")
            with suppress(OSError):
                sock.send(encode(error_reply("too_many_connections", str(exc), with_id=False)))
            sock.close()
            return
        except OSError as exc:
            self.throttled.warning("credentials", f"cannot read the credentials of a client: {exc}")
            sock.close()
            return
        task = asyncio.create_task(self._serve(sock, ticket), name="flowd-connection")
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(self, sock: socket.socket, ticket: Any) -> None:
        loop = asyncio.get_running_loop()
        channel = Channel(line_limit=self.hello_limit, budget=self.output_budget)
        try:
            await loop.connect_accepted_socket(lambda: channel, sock)
        except OSError as exc:
            ticket.release()
            sock.close()
            self.throttled.warning("attach", f"cannot serve a connection: {exc}")
            return
        conn = Connection(self, channel, ticket)
        conn.task = asyncio.current_task()
        self.connections.add(conn)
        try:
            await conn.serve()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("connection from %s failed", conn.describe())
        finally:
            self.connections.discard(conn)
            await conn.close()


def limits_from(settings: Any) -> Limits:
    return Limits(pending_total=settings.max_pending_connections, pending_per_uid=settings.max_pending_per_user,
                  active_total=settings.max_connections, active_per_uid=settings.max_connections_per_user,
                  reserve=settings.connection_reserve)


def fit_to_descriptors(limits: Limits) -> Limits:
    """The limits, made to fit flowd's file-descriptor limit with FD_HEADROOM to spare.

    The soft limit is raised towards the hard one when the limits need it (systemd's default soft
    limit is 1024 for compatibility with select(); flowd uses epoll); when even the hard limit is
    too small, the totals shrink and one warning says so.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = limits.descriptors + FD_HEADROOM
    if want > soft and (hard == resource.RLIM_INFINITY or hard > soft):
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    room = soft - FD_HEADROOM - 2 * limits.reserve
    if limits.pending_total + limits.active_total <= room:
        return limits
    share = max(2, room) / (limits.pending_total + limits.active_total)
    fitted = Limits(pending_total=max(1, int(limits.pending_total * share)),
                    pending_per_uid=max(1, min(limits.pending_per_uid, int(limits.pending_total * share))),
                    active_total=max(1, int(limits.active_total * share)),
                    active_per_uid=max(1, min(limits.active_per_uid, int(limits.active_total * share))),
                    reserve=limits.reserve)
    log.warning("the file-descriptor limit (%d) is too small for the connection limits; using "
                "max_pending_connections = %d and max_connections = %d (raise LimitNOFILE= to restore them)",
                soft, fitted.pending_total, fitted.active_total)
    return fitted
