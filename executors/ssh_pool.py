"""One SSH connection per host, shared by every try on it, with a cap on concurrent sessions.

A connection costs a TCP handshake, a key exchange and an authentication (tens of milliseconds,
more through a jump host); a session on a live connection costs one round trip. So the first
try on a host connects and later ones open channels on the same transport. A transport that
died (sshd restarted, network cut) is noticed when the next try asks for it and replaced.

Everything here blocks, and runs in the SSH executor's threads, never on flowd's event loop.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko

from . import ssh_hostkeys
from .ssh_config import Connection, ConnectionsError, load_connections, read_passphrase
from .ssh_remote import record_exit_signals

DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")


class SSHConnectError(Exception):
    """A connection could not be made or was lost; `kind` is the short class the try's error starts with."""

    def __init__(self, conn: Connection | None, kind: str, detail: str) -> None:
        where = f"ssh {conn.name} ({conn.address})" if conn is not None else "ssh"
        super().__init__(f"{where}: {kind}: {detail}" if detail else f"{where}: {kind}")
        self.kind = kind


def classify(conn: Connection, exc: BaseException) -> SSHConnectError:
    """One short, stable reason per way a connection fails, for the try's error and for retries."""
    if isinstance(exc, SSHConnectError):
        return exc
    if isinstance(exc, ssh_hostkeys.HostKeyProblem):
        return SSHConnectError(conn, exc.kind, str(exc))
    if isinstance(exc, ConnectionRefusedError):
        return SSHConnectError(conn, "connection refused", "nothing listens on that port (is sshd running?)")
    if isinstance(exc, socket.gaierror):
        return SSHConnectError(conn, "unknown host", f"cannot resolve {conn.host!r}: {exc.strerror}")
    if isinstance(exc, TimeoutError | socket.timeout):
        return SSHConnectError(conn, "timed out", f"no answer within {conn.connect_timeout:g}s")
    if isinstance(exc, paramiko.AuthenticationException):
        return SSHConnectError(conn, "auth failed", f"{exc} (key {conn.key_file or 'default keys / agent'})")
    if isinstance(exc, paramiko.PasswordRequiredException):
        return SSHConnectError(conn, "auth failed", f"key {conn.key_file} is encrypted and no passphrase_file is set")
    if isinstance(exc, ConnectionsError):
        return SSHConnectError(conn, "bad configuration", str(exc))
    if isinstance(exc, OSError):
        return SSHConnectError(conn, "unreachable", exc.strerror or str(exc))
    if isinstance(exc, EOFError):
        return SSHConnectError(conn, "connection closed", "the server hung up during the handshake")
    text = str(exc)
    if "banner" in text.lower() or "timeout" in text.lower():
        return SSHConnectError(conn, "timed out", text)
    return SSHConnectError(conn, "ssh error", text or type(exc).__name__)


def _load_keys(conn: Connection) -> list[paramiko.PKey]:
    passphrase = read_passphrase(conn)
    if conn.key_file:
        return [paramiko.PKey.from_path(conn.key_file, password=passphrase)]
    keys = []
    for path in DEFAULT_KEYS:
        full = os.path.expanduser(path)
        if os.path.isfile(full):
            try:
                keys.append(paramiko.PKey.from_path(full, password=passphrase))
            except (paramiko.SSHException, OSError, ValueError):
                continue
    return keys


def open_transport(conn: Connection, sock: socket.socket | paramiko.Channel | None = None, *,
                   verify: bool = True) -> paramiko.Transport:
    """Connect (through `sock` when a jump host gives one), check the host key, authenticate."""
    if sock is None:
        sock = socket.create_connection((conn.host, conn.port), timeout=conn.connect_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small requests must not wait 40 ms for an ACK
    transport = paramiko.Transport(sock)
    record_exit_signals(transport)
    try:
        transport.banner_timeout = transport.auth_timeout = conn.connect_timeout
        transport.handshake_timeout = conn.connect_timeout
        # Ask for a key type we already know first (OpenSSH does the same): a host with RSA and
        # Ed25519 keys, of which only RSA is known, would otherwise offer Ed25519 and look "unknown".
        known = ssh_hostkeys.preferred_types(conn)
        if known:
            opts = transport.get_security_options()
            opts.key_types = [t for t in known if t in opts.key_types] + [
                t for t in opts.key_types if t not in known]
        transport.start_client(timeout=conn.connect_timeout)
        if not verify:
            return transport
        ssh_hostkeys.verify(conn, transport.get_remote_server_key())
        keys = _load_keys(conn)
        if not keys and conn.key_file is None:
            agent_keys = paramiko.Agent().get_keys()
            keys = list(agent_keys)
        last: Exception = paramiko.AuthenticationException("no key to offer (set key_file)")
        for key in keys:
            try:
                transport.auth_publickey(conn.user, key)
                break
            except paramiko.AuthenticationException as exc:
                last = exc
        else:
            raise last
        transport.set_keepalive(max(1, int(conn.keepalive_interval)))
        return transport
    except BaseException:
        transport.close()
        raise


class HostLink:
    """The shared transport of one connection, and the sessions allowed on it at once."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(conn.max_sessions)
        self.transport: paramiko.Transport | None = None
        self.pending: list[tuple[str, float]] = []
        """Tries to kill once the host can be reached again: (tag, grace) of tries whose
        connection was lost while they ran, so nothing they started lives on unwatched."""


class Pool:
    def __init__(self, connections_file: str | Path | None) -> None:
        self.file = Path(connections_file) if connections_file else None
        self._stamp: tuple[float, int] | None = None
        self._conns: dict[str, Connection] = {}
        self._error: str | None = None
        self._links: dict[str, HostLink] = {}
        self._lock = threading.Lock()

    # -- configuration ----------------------------------------------------------------------

    def connection(self, name: str) -> Connection:
        """The named connection, re-reading the file when it changed (no restart needed to add a host)."""
        with self._lock:
            self._refresh()
            if self._error is not None:
                raise ConnectionsError(self._error)
            conn = self._conns.get(name)
        if conn is None:
            known = ", ".join(sorted(self._conns)) or "none"
            where = self.file or "no connections file configured"
            raise ConnectionsError(f"no connection named {name!r} in {where} (known: {known})")
        return conn

    def _refresh(self) -> None:
        if self.file is None:
            return
        try:
            st = self.file.stat()
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp and (self._conns or self._error or stamp is None):
            return
        self._stamp = stamp
        try:
            self._conns, self._error = load_connections(self.file), None
        except ConnectionsError as exc:
            self._conns, self._error = {}, str(exc)

    def link(self, conn: Connection) -> HostLink:
        with self._lock:
            link = self._links.get(conn.name)
            if link is None or link.conn != conn:
                if link is not None:
                    self._close_link(link)
                link = self._links[conn.name] = HostLink(conn)
            return link

    # -- transports -------------------------------------------------------------------------

    def transport(self, conn: Connection) -> paramiko.Transport:
        """The connection's live transport, made now if there is none; raises SSHConnectError."""
        link = self.link(conn)
        with link.lock:
            if link.transport is not None and link.transport.is_active():
                return link.transport
            if link.transport is not None:
                link.transport.close()
                link.transport = None
            try:
                sock = None
                if conn.jump_host:
                    jump = self.transport(self.connection(conn.jump_host))
                    sock = jump.open_channel("direct-tcpip", (conn.host, conn.port), ("127.0.0.1", 0),
                                             timeout=conn.connect_timeout)
                link.transport = open_transport(conn, sock)
            except Exception as exc:
                raise classify(conn, exc) from None
            transport = link.transport
        if link.pending:
            self._run_pending(link)
        return transport

    def drop(self, conn: Connection, transport: paramiko.Transport | None = None) -> None:
        """Forget a transport that failed, so the next try connects afresh."""
        link = self.link(conn)
        with link.lock:
            if link.transport is not None and (transport is None or link.transport is transport):
                link.transport.close()
                link.transport = None

    def defer_kill(self, conn: Connection, tag: str, grace: float = 5.0) -> None:
        """Kill a try's remote group as soon as its host can be reached again (see HostLink.pending)."""
        link = self.link(conn)
        with link.lock:
            link.pending.append((tag, grace))

    def _run_pending(self, link: HostLink) -> None:
        from .ssh_remote import kill_script

        with link.lock:
            pending, link.pending = link.pending, []
        conn = link.conn
        for tag, grace in pending:
            try:
                self.run(conn, kill_script(tag, 15), conn.connect_timeout)
            except SSHConnectError:
                self.defer_kill(conn, tag, grace)
                continue
            timer = threading.Timer(grace, self._kill_quietly, (conn, kill_script(tag, 9)))
            timer.daemon = True
            timer.start()

    def _kill_quietly(self, conn: Connection, script: str) -> None:
        try:
            self.run(conn, script, conn.connect_timeout)
        except SSHConnectError:
            pass

    def open_channel(self, conn: Connection) -> paramiko.Channel:
        """A session channel; a transport that looked alive but is not gets one fresh attempt."""
        for attempt in (1, 2):
            transport = self.transport(conn)
            try:
                return transport.open_session(timeout=conn.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                self.drop(conn, transport)
                if attempt == 2:
                    raise classify(conn, exc) from None
        raise AssertionError("unreachable")

    @contextmanager
    def session(self, conn: Connection, cancelled: threading.Event) -> Iterator[paramiko.Channel | None]:
        """A channel within the connection's session limit; None if `cancelled` was set while waiting."""
        slots = self.link(conn).slots
        while not slots.acquire(timeout=0.2):
            if cancelled.is_set():
                yield None
                return
        try:
            chan = self.open_channel(conn)
            try:
                yield chan
            finally:
                chan.close()
        finally:
            slots.release()

    def run(self, conn: Connection, command: str, timeout: float) -> tuple[int, str]:
        """A short control command (a kill, a probe) outside the session limit: (status, output)."""
        return _collect(self.open_channel(conn), command, timeout)

    def run_if_free(self, conn: Connection, command: str, timeout: float) -> tuple[int, str] | None:
        """A command within the session limit, or None when that would cost a task anything.

        For the resource sampler: it runs only on a connection that is already up (never waiting on
        a reconnect to a host that went away) and only when a session slot is free this instant, so
        it never takes a session a try is waiting for; the caller skips that tick instead.
        """
        with self._lock:
            link = self._links.get(conn.name)
        if link is None or link.conn != conn:
            return None
        transport = link.transport
        if transport is None or not transport.is_active() or not link.slots.acquire(blocking=False):
            return None
        try:
            return _collect(transport.open_session(timeout=timeout), command, timeout)
        except (paramiko.SSHException, EOFError, OSError):
            return None
        finally:
            link.slots.release()

    def close(self) -> None:
        with self._lock:
            for link in self._links.values():
                self._close_link(link)
            self._links.clear()

    @staticmethod
    def _close_link(link: HostLink) -> None:
        if link.transport is not None:
            link.transport.close()
            link.transport = None


def _collect(chan: paramiko.Channel, command: str, timeout: float) -> tuple[int, str]:
    """Run `command` on a fresh channel and read all it prints within `timeout`: (status, output)."""
    try:
        chan.settimeout(timeout)
        chan.set_combine_stderr(True)
        chan.exec_command(command)
        out = bytearray()
        deadline = time.monotonic() + timeout
        while not chan.closed or chan.recv_ready():
            try:
                data = chan.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            out += data
            if time.monotonic() > deadline:
                break
        status = chan.recv_exit_status() if chan.status_event.wait(max(0.0, deadline - time.monotonic())) else -1
        return status, out.decode("utf-8", errors="replace")
    finally:
        chan.close()
