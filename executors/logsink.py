"""What a try leaves behind: its log file, the last stdout line BashOperator pushes as XCom, the
result a forked child reports about itself, and the status file judged from all of them.

The log and the last line are fed chunk by chunk as the runner reads the pipes, so nothing is
held until the end and a task that prints gigabytes costs the runner no more memory than one line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
from dataclasses import dataclass
from typing import Any

from flow import filemodes

FORKED_KINDS = ("python", "callback")
"""Kinds whose process is a fork of the runner running our own code: only their reported result
says whether they succeeded (a Python task's exit status 0 alone proves nothing)."""

XCOM_LINE_LIMIT = 1 << 20
"""The runtime refuses XCom values over 1 MiB; a longer last line is reported, not pushed."""


class LastLine:
    """The last non-blank stdout line, kept without keeping the output."""

    __slots__ = ("_partial", "_partial_long", "_last", "_last_long")

    def __init__(self) -> None:
        self._partial = bytearray()
        self._partial_long = False
        self._last: bytes | None = None
        self._last_long = False

    def feed(self, data: bytes) -> None:
        nl = data.rfind(b"\n")
        if nl < 0:
            self._extend_partial(data)
            return
        end = nl
        while True:
            start = data.rfind(b"\n", 0, end) + 1
            if start == 0:
                if self._partial_long:
                    self._keep(b"", True)
                elif self._partial.strip() or data[:end].strip():
                    self._keep(bytes(self._partial) + data[:end], False)
                break
            if data[start:end].strip():
                self._keep(data[start:end], False)
                break
            end = start - 1
        self._partial = bytearray()
        self._partial_long = False
        self._extend_partial(data[nl + 1:])

    def _extend_partial(self, data: bytes) -> None:
        if self._partial_long:
            return
        self._partial += data
        if len(self._partial) > XCOM_LINE_LIMIT:
            self._partial = bytearray()
            self._partial_long = True

    def _keep(self, line: bytes, too_long: bool) -> None:
        too_long = too_long or len(line) > XCOM_LINE_LIMIT
        self._last = None if too_long else line
        self._last_long = too_long

    def finish(self) -> tuple[str | None, bool]:
        """At EOF: (the line, decoded and right-stripped, or None; whether it was too long to keep)."""
        if self._partial_long:
            self._keep(b"", True)
        elif self._partial.strip():
            self._keep(bytes(self._partial), False)
        self._partial = bytearray()
        self._partial_long = False
        if self._last is None:
            return None, self._last_long
        return self._last.decode("utf-8", errors="replace").rstrip(), False


class TaskLog:
    """A try's log file, opened once in append mode; stdout and stderr land in arrival order.

    With `max_bytes` (max_log_bytes_per_try) the file keeps the head and the tail of a chatty try:
    the first half of the budget is written as it comes; past that, one `[flow]` line says output
    is held back, and the latest bytes go to a ring file of the other half's size next to the log
    (`<log>.tail.<pid>`). When the try ends, a marker line saying how many bytes were cut and the
    ring's contents are appended. The log only ever grows, so a reader following it by offset keeps
    working; it sees the head live and the tail when the try ends.
    """

    def __init__(self, path: str, max_bytes: int = 0) -> None:
        parent = os.path.dirname(path)
        if parent:
            filemodes.makedirs(parent)
        self.path = path
        self.fd = filemodes.open_file(path, os.O_RDWR | os.O_APPEND)
        self.error: str | None = None
        """Why writing stopped (disk full...): the task keeps running, its output is dropped."""
        self.errno: int | None = None
        size = os.fstat(self.fd).st_size
        self._at_line_start = size == 0 or os.pread(self.fd, 1, size - 1) == b"\n"
        self.max_bytes = max(0, int(max_bytes or 0))
        self._head_left = self.max_bytes - self.max_bytes // 2 if self.max_bytes else -1
        self._ring_cap = self.max_bytes // 2
        self._ring_fd = -1
        self._ring_total = 0
        """Bytes that went past the head: the ring keeps the last _ring_cap of them."""

    def write(self, data: bytes) -> None:
        if not data or self.error is not None or self.fd < 0:
            return
        if self._head_left >= 0:
            if self._head_left < len(data):
                head, rest = data[:self._head_left], data[self._head_left:]
                self._append(head)
                self._head_left = 0
                self._hold(rest)
                return
            self._head_left -= len(data)
        self._append(data)

    def _append(self, data: bytes) -> None:
        if not data:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            self.error = f"cannot write log file {self.path}: {exc.strerror}"
            self.errno = exc.errno
            return
        self._at_line_start = data.endswith(b"\n")

    def _hold(self, data: bytes) -> None:
        if self._ring_fd < 0:
            prefix = b"" if self._at_line_start else b"\n"
            self._append(prefix + (f"[flow] this try's log reached {self.max_bytes - self.max_bytes // 2} bytes, "
                                   f"half of max_log_bytes_per_try ({self.max_bytes}): further output is held "
                                   f"back and its last {self._ring_cap} bytes are written when the try ends\n"
                                   ).encode())
            try:
                self._ring_fd = os.open(f"{self.path}.tail.{os.getpid()}",
                                        os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                self.error = f"cannot open the tail file next to {self.path}: {exc.strerror}"
                self.errno = exc.errno
                return
        cap = self._ring_cap
        if cap <= 0:
            self._ring_total += len(data)
            return
        start = self._ring_total
        self._ring_total += len(data)
        if len(data) > cap:
            start += len(data) - cap
            data = data[-cap:]
        try:
            pos = start % cap
            first = data[:cap - pos]
            os.pwrite(self._ring_fd, first, pos)
            if len(first) < len(data):
                os.pwrite(self._ring_fd, data[len(first):], 0)
        except OSError as exc:
            self.error = f"cannot write the tail file next to {self.path}: {exc.strerror}"
            self.errno = exc.errno

    def _flush_tail(self) -> None:
        """Append the cut marker and the ring's bytes, oldest first; then forget the ring."""
        if self._ring_fd < 0:
            return
        cap, total = self._ring_cap, self._ring_total
        kept = min(total, cap)
        try:
            if kept:
                start = total % cap if total > cap else 0
                tail = os.pread(self._ring_fd, cap - start, start) + os.pread(self._ring_fd, start, 0) \
                    if total > cap else os.pread(self._ring_fd, kept, 0)
            else:
                tail = b""
        except OSError as exc:
            self.error = f"cannot read the tail file next to {self.path}: {exc.strerror}"
            tail = b""
        os.close(self._ring_fd)
        self._ring_fd = -1
        try:
            os.unlink(f"{self.path}.tail.{os.getpid()}")
        except OSError:
            pass
        nl = tail.find(b"\n", 0, 4096) if total > kept else -1
        if nl >= 0 and nl + 1 < len(tail):  # start the tail on a whole line
            tail = tail[nl + 1:]
            kept = len(tail)
        self._append(b"" if self._at_line_start else b"\n")
        self._append(f"[flow] log cut: {total - kept} bytes cut here (max_log_bytes_per_try = {self.max_bytes}); "
                     f"the last {kept} bytes follow\n".encode())
        self._append(tail)

    def note(self, text: str) -> None:
        """One `[flow] ...` line of our own, always starting on a fresh line.

        Past the head it joins the held-back tail, so the order of lines is kept."""
        if self._ring_fd >= 0 or self._head_left == 0:
            line = f"[flow] {text}\n".encode("utf-8", errors="replace")
            self._hold(line if self._ring_total == 0 or self._ring_ends_line() else b"\n" + line)
            return
        prefix = "" if self._at_line_start else "\n"
        self.write(f"{prefix}[flow] {text}\n".encode("utf-8", errors="replace"))

    def _ring_ends_line(self) -> bool:
        if self._ring_fd < 0 or self._ring_cap <= 0 or self._ring_total == 0:
            return True
        try:
            return os.pread(self._ring_fd, 1, (self._ring_total - 1) % self._ring_cap) == b"\n"
        except OSError:
            return True

    def close(self) -> None:
        if self.fd >= 0:
            self._flush_tail()
            os.close(self.fd)
            self.fd = -1

    @property
    def incomplete(self) -> str | None:
        """The note a try whose output was (partly) lost carries: None when the log is whole."""
        return incomplete_note(self.errno, self.error) if self.error else None


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
LOG_FOLDER_FULL = "log folder full"


def incomplete_note(err: int | None, detail: str) -> str:
    """"log incomplete: log folder full (cannot write ...)": one line, the same for every writer."""
    why = LOG_FOLDER_FULL if err in FULL_ERRNOS else "log not written"
    return f"log incomplete: {why} ({detail})"


@dataclass(frozen=True)
class WriteProblem:
    """Why a record was not written; `errno` says whether the disk is full."""

    text: str
    errno: int | None = None

    def __str__(self) -> str:
        return self.text


def write_status(path: str, record: dict[str, Any]) -> WriteProblem | None:
    """tmp + rename, so a reader (a restarted flowd) sees the whole record or none. Returns a problem."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        parent = os.path.dirname(path)
        if parent:
            filemodes.makedirs(parent)
        filemodes.write_file(tmp, json.dumps(record).encode())
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError) as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # a half-written tmp file on a full disk must not linger
        return WriteProblem(f"cannot write the exit record {path}: {getattr(exc, 'strerror', None) or exc}",
                            getattr(exc, "errno", None))
    return None


def result_path(status_path: str) -> str:
    """Where a forked child writes what it has to say about itself (its result, its exception)."""
    return status_path + ".result"


def read_result(status_path: str) -> dict[str, Any] | None:
    """What the child reported (a Python task's or a callback's result), consumed once."""
    path = result_path(status_path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    return data if isinstance(data, dict) else None


def outcome(spec: dict[str, Any], code: int, *, timed_out: bool, killed: str | None,
            reported: dict[str, Any] | None) -> tuple[bool, str | None]:
    """(ok, the one-line reason when not): `code` is waitstatus_to_exitcode's (negative = signal).

    The operator reads the most specific cause: our own timeout or kill first, then what the task
    said about itself (the exception), then how the process ended.
    """
    ok = code == 0 and not timed_out and killed is None
    if spec["kind"] in FORKED_KINDS:
        ok = ok and bool(reported and reported.get("ok"))
    if ok:
        return True, None
    if timed_out:
        return False, f"timed out after {spec['execution_timeout']:g}s"
    if killed is not None:
        return False, f"killed: {killed}"
    if reported and reported.get("error"):
        return False, str(reported["error"]).strip().splitlines()[-1]
    if code < 0:
        return False, f"killed by {signal.Signals(-code).name}"
    if code != 0:
        return False, f"exit status {code}"
    return False, "the task process exited without reporting a result"
