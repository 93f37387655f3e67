"""Settling a remote (SSH) try that an earlier flowd left in flight: kill it, record it.

A remote try's output and exit status travel over a channel that dies with the flowd that opened
it, so a new flowd cannot re-attach to it. A flowd that stops cleanly kills its remote tries and
writes their records itself (executors/ssh.py); this covers the flowd that crashed. The try's log
names its connection, and its processes carry a tag (executors/ssh_remote.py), so the new flowd
connects, TERMs then KILLs what is left of it, checks that nothing remains, and records the try
as failed with what it found. Normal retries then apply.
"""

from __future__ import annotations

import re
import signal
import threading
import time

from flow.executors.base import TaskResult

HEAD = 16384
_CONN = re.compile(rb"^\[flow\] .* on ssh connection '([^']+)' \(([^)]*)\)")
_PGID = re.compile(rb"^\[flow\] started .* as remote process group (\d+)$")


def remote_marks(log_file: str) -> tuple[str, int | None] | None:
    """(connection name, remote pgid or None) when the log is a remote try's, else None."""
    try:
        with open(log_file, "rb") as fh:
            head = fh.read(HEAD)
    except OSError:
        return None
    lines = head.split(b"\n", 3)
    m = _CONN.match(lines[0])
    if m is None:  # the first line is the executor's own: a local try's says "started ... pid N"
        return None
    pg = next((p for p in map(_PGID.match, lines[1:3]) if p), None)
    return m.group(1).decode(errors="replace"), int(pg.group(1)) if pg else None


class RemoteOrphan:
    """Kills a crashed flowd's remote try in a thread; poll() gives its record once that is done."""

    def __init__(self, connections_file: str, conn_name: str, pgid: int | None, log_file: str, grace: float):
        self.connections_file = connections_file
        self.conn_name = conn_name
        self.pgid = pgid
        self.log_file = log_file
        self.grace = grace
        self.kill_reason: str | None = None
        self._result: str | None = None
        self._thread: threading.Thread | None = None

    def poll(self, ref: str) -> TaskResult | None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._settle, name=f"ssh-recover {ref}", daemon=True)
            self._thread.start()
        if self._result is None:
            return None
        return TaskResult(ref=ref, pid=self.pgid, ok=False, error=self._result, killed=self.kill_reason)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """It is being killed already; a clear or mark only changes the reason it is recorded with."""

    def _settle(self) -> None:
        try:
            self._result = self._kill_remote()
        except Exception as exc:  # whatever happens, the try must get a record
            self._result = f"lost: flowd stopped while it ran remotely, and settling it failed: {exc}"

    def _kill_remote(self) -> str:
        from flow.executors import ssh_remote
        from flow.executors.logsink import TaskLog
        from flow.executors.ssh_config import ConnectionsError
        from flow.executors.ssh_pool import Pool, SSHConnectError

        group = f"remote process group {self.pgid}" if self.pgid else "remote command"
        where = f"connection '{self.conn_name}'"
        tag = ssh_remote.try_tag(self.log_file)
        pool = Pool(self.connections_file)
        try:
            conn = pool.connection(self.conn_name)
            where = f"{conn.address} ({where})"
            status, _ = pool.run(conn, ssh_remote.kill_script(tag, signal.SIGTERM), conn.connect_timeout)
            if status == ssh_remote.NOTHING_LEFT:
                outcome = f"its {group} on {where} had already ended; its exit status is unknown"
            else:
                deadline = time.monotonic() + self.grace
                left = ""
                while time.monotonic() < deadline:
                    _, left = pool.run(conn, ssh_remote.survivors_script(tag), conn.connect_timeout)
                    if not left.strip():
                        break
                    time.sleep(0.2)
                if left.strip():
                    pool.run(conn, ssh_remote.kill_script(tag, signal.SIGKILL), conn.connect_timeout)
                outcome = f"its {group} on {where} was killed"
        except (SSHConnectError, ConnectionsError) as exc:
            outcome = f"its {group} on {where} could not be reached to kill it ({exc})"
        finally:
            pool.close()
        message = f"lost: flowd stopped while it ran remotely; {outcome}"
        try:
            log = TaskLog(self.log_file)
            log.note(message)
            log.close()
        except OSError:
            pass
        return message
