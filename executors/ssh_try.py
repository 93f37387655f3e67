"""One remote try, from its own thread: render, wait for a session, stream output, judge the end.

Both output streams are read in the same loop as they arrive, so a command that fills stderr
while flow waits on stdout cannot stall (the deadlock of reading one pipe to its end first).
The log and the exit record are the same files the local runner writes, so following a log,
reading a try's result and a restarted flowd's recovery work the same for remote tries.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import paramiko

from . import ssh_remote
from .base import TaskResult, TaskSpec, rendered_record
from .logsink import LastLine, TaskLog, incomplete_note, write_status
from .ssh_config import Connection, ConnectionsError
from .ssh_pool import SSHConnectError, classify

if TYPE_CHECKING:
    from .ssh_pool import Pool

READ_SIZE = 1 << 16
POLL = 0.1
HEAD_LIMIT = 1 << 16
"""Bytes of stdout searched for the wrapper's pgid line (a noisy login script may print first)."""
AFTER_KILL_WAIT = 5.0
"""After SIGKILL, how long the channel may stay open (a process outside the group holding the
output open) before flow stops waiting for it."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def render(spec: TaskSpec) -> tuple[str, dict[str, str] | None, str | None]:
    """The command, env and cwd with templates rendered, exactly as a local bash try's."""
    from .child import StartRefused, _needs_rendering

    data = spec.to_json()
    if not _needs_rendering(data):
        return spec.bash_command or "", spec.env, spec.cwd
    from flow.runtime import TemplateError, render_bash

    try:
        return render_bash(data)
    except TemplateError as exc:
        raise StartRefused(str(exc)) from None


class RemoteTry:
    def __init__(self, spec: TaskSpec, pool: Pool, on_started: Callable[[str, int, dict[str, Any] | None], None],
                 on_finished: Callable[[TaskResult], None]) -> None:
        self.spec = spec
        self.pool = pool
        self.on_started = on_started
        self.on_finished = on_finished
        self.stop = threading.Event()
        self.killed: str | None = None
        self.timed_out = False
        self.pgid: int | None = None
        self.conn: Connection | None = None
        self.tag = ssh_remote.try_tag(spec.log_path)
        self.rendered: dict[str, Any] | None = None
        """What the try runs once its templates are rendered: reported with `started`."""
        self.thread = threading.Thread(target=self.run, name=f"ssh-try {spec.ref}", daemon=True)

    def request_kill(self, reason: str) -> None:
        if self.killed is None and not self.timed_out:
            self.killed = reason
        self.stop.set()

    # -- the thread -------------------------------------------------------------------------

    def run(self) -> None:
        spec = self.spec
        started_at, t0 = _now(), time.monotonic()
        try:
            log = TaskLog(spec.log_path)
        except OSError as exc:
            self._finish(None, TaskResult(ref=spec.ref, pid=None, ok=False, error=f"cannot open log file "
                                          f"{spec.log_path}: {exc.strerror}", started_at=started_at))
            return
        result = TaskResult(ref=spec.ref, pid=None, ok=False, started_at=started_at)
        try:
            self._run(log, result, t0)
        except Exception as exc:  # a bug here must still end the try with a record
            result.error = result.error or f"ssh executor failed: {type(exc).__name__}: {exc}"
            log.note(result.error)
        self._finish(log, result)

    def _run(self, log: TaskLog, result: TaskResult, t0: float) -> None:
        spec = self.spec
        name = spec.extra.get("ssh_conn_id")
        who = f"{spec.dag_id}.{spec.task_id} try {spec.try_number}"
        if spec.kind != "bash":
            result.error = (f"ssh_conn_id {name!r} is set on a {spec.kind} task; only bash commands "
                            f"(BashOperator, SSHOperator) run on remote hosts")
            log.note(result.error)
            return
        from .child import StartRefused

        try:
            conn = self.conn = self.pool.connection(str(name))
            command, env, cwd = render(spec)
            remote = ssh_remote.wrap(command, env, cwd, self.tag)
            self.rendered = rendered_record(command, cwd)
        except (ConnectionsError, StartRefused, ValueError) as exc:
            result.error = str(exc)
            log.note(result.error)
            return
        log.note(f"{who} on ssh connection '{conn.name}' ({conn.address}): waiting for a session")
        try:
            with self.pool.session(conn, self.stop) as chan:
                if chan is None:
                    result.error = f"killed: {self.killed}" if self.killed else "stopped before it started"
                    result.killed = self.killed
                    log.note(f"{result.error} (it had not started)")
                    return
                chan.exec_command(remote)
                self._stream(chan, conn, log, result, t0)
        except (SSHConnectError, paramiko.SSHException, EOFError, OSError) as exc:
            err = classify(conn, exc)
            result.error = str(err)
            log.note(result.error)
            if isinstance(exc, paramiko.SSHException | EOFError | OSError):
                self.pool.drop(conn)

    def _stream(self, chan: paramiko.Channel, conn: Connection, log: TaskLog, result: TaskResult,
                t0: float) -> None:
        spec = self.spec
        last = LastLine()
        head = bytearray()
        timeout = spec.execution_timeout
        exec_t0 = time.monotonic()
        term_at: float | None = None
        kill_at: float | None = None
        while True:
            got = False
            while chan.recv_ready():
                data = chan.recv(READ_SIZE)
                if not data:
                    break
                got = True
                if self.pgid is None and head is not None:
                    head += data
                    data = self._take_head(head, conn, log)
                    if data is None:
                        continue
                    head = None  # type: ignore[assignment]
                log.write(data)
                if spec.do_xcom_push:
                    last.feed(data)
            while chan.recv_stderr_ready():
                data = chan.recv_stderr(READ_SIZE)
                if not data:
                    break
                got = True
                log.write(data)
            if chan.exit_status_ready() or chan.closed:
                if not chan.recv_ready() and not chan.recv_stderr_ready() and (chan.eof_received or chan.closed):
                    break
            now = time.monotonic()
            if timeout is not None and not self.timed_out and now - exec_t0 >= timeout and self.killed is None:
                self.timed_out = True
                self.stop.set()
            if self.stop.is_set():
                if term_at is None:
                    term_at = now
                    what = (f"timed out after {timeout:g}s" if self.timed_out
                            else f"kill requested ({self.killed})")
                    self._signal(conn, log, 15, f"{what}: sent SIGTERM to the remote process group, "
                                 f"SIGKILL after {spec.kill_grace:g}s")
                elif kill_at is None and now - term_at >= spec.kill_grace:
                    kill_at = now
                    self._signal(conn, log, 9, "grace period over: sent SIGKILL to the remote process group")
                elif kill_at is not None and now - kill_at >= AFTER_KILL_WAIT:
                    log.note("the channel stayed open after SIGKILL; flow stopped waiting for it")
                    break
            if not got:
                select.select([chan], [], [], POLL)
        self._judge(chan, conn, log, result, last, t0)

    def _take_head(self, head: bytearray, conn: Connection, log: TaskLog) -> bytes | None:
        """Find the wrapper's pgid line; return the output after it, or None while still looking."""
        while (nl := head.find(b"\n")) >= 0:
            line = bytes(head[:nl])
            del head[:nl + 1]
            m = ssh_remote.PGID_LINE.match(line)
            if m:
                self.pgid = int(m.group(1))
                log.note(f"started {_now()} on {conn.address} (connection '{conn.name}') as remote "
                         f"process group {self.pgid}")
                self.on_started(self.spec.ref, self.pgid, self.rendered)
                return bytes(head)
            log.write(line + b"\n")
        if len(head) > HEAD_LIMIT:
            log.note("the remote wrapper did not report its process group (is the login shell noisy?)")
            self.pgid = 0
            return bytes(head)
        return None

    def _signal(self, conn: Connection, log: TaskLog, sig: int, note: str) -> None:
        log.note(note)
        try:
            status, out = self.pool.run(conn, ssh_remote.kill_script(self.tag, sig), conn.connect_timeout)
        except SSHConnectError as exc:
            log.note(f"could not send the signal: {exc}; it is sent when the host can be reached again")
            self.pool.defer_kill(conn, self.tag, self.spec.kill_grace)
            return
        if status not in (0, ssh_remote.NOTHING_LEFT):
            log.note(f"the remote kill said (status {status}): {out.strip()[:200]}")

    def _judge(self, chan: paramiko.Channel, conn: Connection, log: TaskLog, result: TaskResult, last: LastLine,
               t0: float) -> None:
        spec = self.spec
        elapsed = time.monotonic() - t0
        code = chan.recv_exit_status() if chan.exit_status_ready() else -1
        sig = ssh_remote.signal_number(getattr(chan, "flow_exit_signal", None))
        result.pid = self.pgid or None
        result.timed_out, result.killed = self.timed_out, self.killed
        if sig is not None:
            result.signal = sig
            log.note(f"killed by SIG{chan.flow_exit_signal} on {conn.host} after {elapsed:.2f}s")  # type: ignore[attr-defined]
        elif code >= 0:
            result.exit_code = code
            log.note(f"exited with status {code} after {elapsed:.2f}s")
        if self.timed_out:
            result.error = f"timed out after {spec.execution_timeout:g}s"
        elif self.killed is not None:
            result.error = f"killed: {self.killed}"
        elif sig is not None:
            result.error = f"killed by SIG{chan.flow_exit_signal} on {conn.host}"  # type: ignore[attr-defined]
        elif code < 0:
            result.error = (f"ssh {conn.name} ({conn.address}): connection lost while the task ran; "
                            f"its remote process group {self.pgid or '?'} is killed when the host answers again")
            log.note(result.error)
            self.pool.drop(conn)
            self.pool.defer_kill(conn, self.tag, spec.kill_grace)
        elif code != 0:
            result.error = f"exit status {code}"
        else:
            result.ok = True
        if result.ok and spec.do_xcom_push:
            line, too_long = last.finish()
            if too_long:
                log.note("the last stdout line is over 1 MiB: not pushed as XCom")
            elif line is not None:
                result.xcom = {"return_value": line}

    def _finish(self, log: TaskLog | None, result: TaskResult) -> None:
        result.ended_at = _now()
        if log is not None:
            log.close()
            result.log_incomplete = log.incomplete
        record: dict[str, Any] = result.to_json() | {"log_path": self.spec.log_path}
        if (problem := write_status(self.spec.status_path, record)) is not None:
            result.log_incomplete = result.log_incomplete or incomplete_note(problem.errno, problem.text)
        self.on_finished(result)
