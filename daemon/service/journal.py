"""flowd's log lines into the systemd journal over its native protocol, with fields.

Under systemd, stderr already reaches the journal, but only as text with a priority prefix. The
native socket (/run/systemd/journal/socket) takes one datagram per entry of `FIELD=value` lines,
so a line about a task carries DAG_ID=, TASK_ID=, RUN_ID= and TRY= and `journalctl -u flowd
DAG_ID=etl` finds it. The protocol is documented at systemd.io/JOURNAL_NATIVE_PROTOCOL: a value
holding a newline is sent as the name, a newline, its length as 64-bit little-endian and the raw
bytes; an entry too big for one datagram goes in a sealed memfd passed with SCM_RIGHTS.

Sends never block the engine's loop: if the journal cannot take an entry right now, that entry
goes to stderr instead (which systemd also sends to the journal), so nothing is lost.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import struct
import sys
import traceback
from collections.abc import Mapping

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "flowd"
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
FIELDS = {"dag_id": "DAG_ID", "task_id": "TASK_ID", "run_id": "RUN_ID", "try_number": "TRY"}
"""LogRecord attributes (pass them with `extra=`) and the journal fields they become."""


def encode_field(name: str, value: object) -> bytes:
    data = str(value).encode("utf-8", "replace")
    if b"\n" in data:
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


def journal_wanted(environ: Mapping[str, str], stderr_fd: int, socket_path: str) -> bool:
    """True when flowd runs under systemd and the journal's socket is there.

    Under systemd means stderr is the journal stream $JOURNAL_STREAM names (device:inode, as
    sd_journal_stream_fd documents it) or, for a unit whose stderr goes elsewhere, that systemd
    started this service ($INVOCATION_ID).
    """
    if not os.path.exists(socket_path):
        return False
    stream = environ.get("JOURNAL_STREAM", "")
    if stream:
        try:
            st = os.fstat(stderr_fd)
            dev, ino = (int(part) for part in stream.split(":", 1))
            if (st.st_dev, st.st_ino) == (dev, ino):
                return True
        except (OSError, ValueError):
            pass
    return bool(environ.get("INVOCATION_ID"))


class JournalHandler(logging.Handler):
    """A logging handler that writes entries to the journal's native socket."""

    def __init__(self, socket_path: str = JOURNAL_SOCKET, *, identifier: str = IDENTIFIER,
                 fallback: logging.Handler | None = None) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.identifier = identifier
        self.fallback = fallback
        """Where an entry goes when the journal cannot take it (stderr)."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)

    def entry(self, record: logging.LogRecord) -> bytes:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        parts = [
            encode_field("MESSAGE", message),
            encode_field("PRIORITY", PRIORITY.get(record.levelno, 6)),
            encode_field("SYSLOG_IDENTIFIER", self.identifier),
            encode_field("LOGGER", record.name),
            encode_field("CODE_FILE", record.pathname),
            encode_field("CODE_LINE", record.lineno),
            encode_field("CODE_FUNC", record.funcName),
        ]
        for attr, name in FIELDS.items():
            value = getattr(record, attr, None)
            if value is not None and value != "":
                parts.append(encode_field(name, value))
        return b"".join(parts)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.entry(record)
            try:
                self.sock.sendto(data, self.socket_path)
            except OSError as exc:
                if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                    raise
                self._send_memfd(data)
        except (BlockingIOError, OSError):
            if self.fallback is not None:
                self.fallback.handle(record)
        except Exception:
            self.handleError(record)

    def _send_memfd(self, data: bytes) -> None:
        fd = os.memfd_create("flowd-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
            self.sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))], 0,
                              self.socket_path)
        finally:
            os.close(fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        super().close()


def journal_handler(environ: Mapping[str, str] | None = None,
                    fallback: logging.Handler | None = None) -> JournalHandler | None:
    """The handler flowd's main installs when it runs under systemd, else None.

    $FLOW_JOURNAL_SOCKET names another socket path (a container with the journal socket mounted
    elsewhere; the tests).
    """
    env = os.environ if environ is None else environ
    path = env.get("FLOW_JOURNAL_SOCKET") or JOURNAL_SOCKET
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no stderr at all
        stderr_fd = -1
    if not journal_wanted(env, stderr_fd, path):
        return None
    return JournalHandler(path, fallback=fallback)
