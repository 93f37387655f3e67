"""One flowd per socket and per database: a second one would run every task twice.

`refuse_if_running` catches a second flowd on the same socket before the database is touched;
`DatabaseLock` catches one on the same database, whatever its socket. SQLite: an exclusive `flock` on `<database>.flowd-lock` beside the file, which
also records who holds it. PostgreSQL: a session advisory lock keyed by the schema flow uses,
held on one connection that carries flowd's pid and host as its application_name, so the refusal
can say who holds it. Both vanish with the process that holds them (a SIGKILL included), so a
crashed flowd never blocks the next one. The lock is taken before migrations run.

Both can also vanish while flowd runs: someone deletes the lock file, or terminates the lock's
PostgreSQL backend (`pg_terminate_backend`, a server restart, `idle_session_timeout`). So the
lock is watched (`DatabaseLock.check`, every LOCK_CHECK_PERIOD seconds, off the event loop):
while it is lost flowd starts no task and tries to take it back; when another flowd has it,
this one stops. The watch is not what keeps tasks from running twice, only what notices soon:
the lease epoch that every write transaction checks (`Store.begin`) is the fence, because a
check every second always leaves a second in which two flowds can both believe they hold it.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

log = logging.getLogger("flow.dblock")

LOCK_CHECK_PERIOD = 1.0
"""Seconds between two checks of the lock (and of the SQLite file's identity)."""
CHECK_PATIENCE = 10.0
"""A check that has not answered after this many seconds counts as a lost lock."""

PG_LOCK_CLASS = 0x666C6F77
"""First key of the advisory lock ('flow'); the second is hashtext(current_schema())."""


class NotAlone(Exception):
    """Another flowd holds the database (or answers on the socket); the message says which."""


class LockUnavailable(NotAlone):
    """The lock cannot be taken for now (its file cannot be created, the server cannot be reached):
    at start that is a refusal like NotAlone; while running, the lock is only lost, not taken."""


def refuse_if_running(path: str) -> None:
    """Refuse to start before touching the database when a flowd already answers on our socket.

    The server checks again when it binds; checking first means a second flowd never loads (and
    starts settling) the runs the first one is still running.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
        pid, _, _ = struct.unpack("3i", probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    except TimeoutError:
        pid = 0
    except OSError:
        return
    finally:
        probe.close()
    raise NotAlone(f"flowd is already running on {path}" + (f" (pid {pid})" if pid else ""))


def _who() -> str:
    return f"flowd pid {os.getpid()} on {socket.gethostname()}"


class DatabaseGone(Exception):
    """The SQLite file flowd opened was deleted or replaced; writing on would lose everything."""


@dataclass(frozen=True)
class LockCheck:
    """What one look at the lock found."""

    lost: str | None = None
    """Why the lock is not held right now (None: it is held)."""
    regained: str | None = None
    """The lock had been lost (this says how) and this check took it back."""


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class _FileLock:
    """SQLite: flock on `<database>.flowd-lock`; the file itself names the holder."""

    def __init__(self, database: str, socket_path: str) -> None:
        self.database = database
        self.path = database + ".flowd-lock"
        self.socket_path = socket_path
        self.fd = self._take()
        self.pinned: tuple[int, int] | None = None

    def _take(self) -> int:
        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # who holds it: nobody else's business
        except OSError as exc:
            raise LockUnavailable(f"cannot open the database at {self.database}: cannot create its lock file "
                           f"{path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another flowd"
            os.close(fd)
            raise NotAlone(f"the database {self.database} is in use by {holder}; two flowds on one "
                           "database would run every task twice: stop that one first, or give this "
                           "one its own --db") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{_who()} (socket {self.socket_path})\n".encode(), 0)
        except OSError:  # a full disk: the flock is what matters, the name is for the refusal's line
            pass
        return fd

    def pin(self) -> None:
        self.pinned = _file_id(self.database)

    def check(self) -> LockCheck:
        if self.pinned is not None:
            now = _file_id(self.database)
            if now != self.pinned:
                how = "deleted" if now is None else f"replaced (inode {self.pinned[1]}, now {now[1]})"
                raise DatabaseGone(
                    f"the database file {self.database} was {how} while flowd ran; stopping, because what it "
                    "wrote from now on would go to a file no one can open again. Put the file back (or start "
                    "flowd on the new one)")
        st = os.fstat(self.fd)
        if _file_id(self.path) == (st.st_dev, st.st_ino):
            return LockCheck()
        how = f"its lock file {self.path} was deleted or replaced"
        try:
            fd = self._take()  # NotAlone: another flowd has already locked the new file
        except LockUnavailable as exc:
            return LockCheck(lost=f"{how}; {exc}")
        os.close(self.fd)
        self.fd = fd
        return LockCheck(regained=how)

    def release(self) -> None:
        os.close(self.fd)  # closing drops the lock; the file stays, empty of meaning until locked again


class _AdvisoryLock:
    """PostgreSQL: a session advisory lock on one connection whose application_name names flowd."""

    def __init__(self, url: sa.URL) -> None:
        self.url = url
        self.why = "its PostgreSQL session ended"
        """How the lock was lost, for the line that says it was taken back."""
        args: dict[str, Any] = {"application_name": _who()[:63],
                                # A silently dropped network must fail the check, not hang it.
                                "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                                "keepalives_count": 3, "tcp_user_timeout": 10000}
        if "connect_timeout" not in url.query:
            args["connect_timeout"] = 10
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT",
                                       connect_args=args)
        try:
            self.conn: sa.Connection | None = self._take()
        except BaseException:
            self.engine.dispose()
            raise

    def _take(self) -> sa.Connection:
        url = self.url
        try:
            conn = self.engine.connect()
        except sa.exc.DBAPIError as exc:
            raise LockUnavailable(f"cannot connect to {url} to take flowd's lock: "
                           f"{' '.join(str(exc.orig).split())}") from None
        key = sa.text("SELECT pg_try_advisory_lock(:k, hashtext(current_schema()))")
        if conn.execute(key, {"k": PG_LOCK_CLASS}).scalar():
            return conn
        holder = conn.execute(sa.text(
            "SELECT a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.classid = :k AND l.objid = hashtext(current_schema())::oid "
            "AND l.objsubid = 2 AND l.granted"), {"k": PG_LOCK_CLASS}).first()
        schema = conn.execute(sa.text("SELECT current_database() || '.' || current_schema()")).scalar()
        conn.close()
        who = (holder[0] or "another client") + (f" from {holder[1]}" if holder and holder[1] else "") \
            if holder else "another flowd"
        raise NotAlone(f"the database {schema} at {url.host or 'localhost'} is in use by {who}; two "
                       "flowds on one database would run every task twice: stop that one first, or "
                       "give this one its own db_url")

    def pin(self) -> None:
        pass

    def check(self) -> LockCheck:
        """`SELECT 1` on the lock's connection: a session lock lives exactly as long as its session."""
        if self.conn is not None:
            try:
                self.conn.execute(sa.text("SELECT 1"))
                return LockCheck()
            except sa.exc.DBAPIError as exc:
                self.why = f"its PostgreSQL session ended ({' '.join(str(exc.orig).split())[:200]})"
                self._drop()
        try:
            self.conn = self._take()
        except LockUnavailable as exc:
            return LockCheck(lost=f"{self.why}; {exc}")
        return LockCheck(regained=self.why)

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:  # the session is gone already; nothing is left to release
                pass

    def release(self) -> None:
        try:
            self._drop()  # ending the session releases the advisory lock
        finally:
            self.engine.dispose()


class DatabaseLock:
    """Held from `acquire` until `release` (or the process ends); `check` says whether it still is."""

    def __init__(self, holder: _FileLock | _AdvisoryLock | None = None) -> None:
        self._holder = holder

    @classmethod
    def acquire(cls, url: sa.URL, socket_path: str) -> DatabaseLock:
        if url.get_backend_name() == "sqlite":
            if not url.database or url.database == ":memory:":
                return cls()
            return cls(_FileLock(url.database, socket_path))
        if url.get_backend_name() == "postgresql":
            return cls(_AdvisoryLock(url))
        return cls()

    def pin(self) -> None:
        """Remember the identity of the SQLite file just opened, so `check` sees it deleted or replaced."""
        if self._holder is not None:
            self._holder.pin()

    def check(self) -> LockCheck:
        """Blocking (a round trip on PostgreSQL): run it in a thread. Takes a lost lock back when it can.

        Raises NotAlone when another flowd holds the lock now, DatabaseGone when the SQLite file
        was deleted or replaced.
        """
        return self._holder.check() if self._holder is not None else LockCheck()

    def release(self) -> None:
        if self._holder is not None:
            holder, self._holder = self._holder, None
            holder.release()


async def watch(lock: DatabaseLock, store: Any, hold: Callable[[str | None], None],
                fail: Callable[[str], None], *, period: float = LOCK_CHECK_PERIOD) -> None:
    """Check the lock every `period` s: hold task starts while it is lost, `fail` when flowd must stop.

    `store` is the engine's Store: after taking a lost lock back, its lease must still carry our
    epoch, otherwise another flowd held the database in between and may have run our tasks.
    """
    lost: str | None = None
    pending: asyncio.Future[LockCheck] | None = None
    while True:
        await asyncio.sleep(period)
        if store.lost is not None:
            fail(str(store.lost))
            return
        if pending is None:  # a check still hanging (a dead network) is waited for, never doubled
            pending = asyncio.ensure_future(asyncio.to_thread(lock.check))
        done, _ = await asyncio.wait({pending}, timeout=CHECK_PATIENCE)
        try:
            if not done:
                raise TimeoutError
            future, pending = pending, None
            state = future.result()
        except TimeoutError:
            state = LockCheck(lost=f"checking it has not answered for {CHECK_PATIENCE:g} s")
        except NotAlone as exc:
            fail(f"lost the database lock and another flowd took it: {exc}")
            return
        except DatabaseGone as exc:
            fail(str(exc))
            return
        except Exception as exc:  # a bug here must not stop scheduling; the fence still holds
            log.exception("checking the database lock failed")
            state = LockCheck(lost=f"checking it failed: {exc}")
        if state.lost is not None:
            if lost is None:
                log.error("lost the database lock: %s; starting no task until it is held again", state.lost)
                hold(f"lost the database lock: {state.lost}")
            lost = state.lost
            continue
        if state.regained is not None or lost is not None:
            try:
                row = await asyncio.to_thread(store.lease)
            except Exception as exc:
                lost = f"cannot read the lease: {exc}"
                hold(f"lost the database lock: {lost}")
                continue
            if row is None or row["epoch"] != store.fence_epoch:
                from .store import describe_lease

                fail(f"lost the database lock ({state.regained or lost}) and another flowd held the database "
                     f"in between: {describe_lease(row) if row else 'the lease row is gone'}; stopping so that "
                     "no task runs twice")
                return
            log.warning("took the database lock back (%s); starting tasks again", state.regained or lost)
            hold(None)
            lost = None


_FULL = ("database or disk is full", "no space left on device", "could not extend file", "disk full")
_STALLED = ("database is locked", "lock timeout", "canceling statement due to lock timeout", "database table is locked")
RETRY_FIRST, RETRY_MAX = 0.5, 5.0
"""Seconds before the first retry of a failed write, and the most the backoff grows to."""


def disk_full(database: str | None) -> bool:
    """True when the filesystem holding this SQLite file has no block left for an ordinary user.

    SQLite says "disk I/O error" rather than "database or disk is full" when it cannot even create
    its -shm file, so the filesystem is asked directly. (PostgreSQL's disk is the server's: its
    "could not extend file" message is all flowd gets.)
    """
    if not database:
        return False
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(database)))
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


class DatabaseHealth:
    """Whether flowd can write its database, kept in memory so that `status` can say so when the
    database itself cannot answer: "database full", "database stalled" (a lock held elsewhere
    beyond the store's lock_wait), or another write error, since when, and the retry backoff."""

    def __init__(self, database: str | None = None) -> None:
        self.database = database
        """The SQLite file (None on PostgreSQL), whose filesystem tells a full disk apart."""
        self.problem: str | None = None
        self.detail: str | None = None
        self.since: float | None = None
        self.since_wall: str | None = None
        self.failures = 0

    def classify(self, exc: BaseException) -> tuple[str, str]:
        """(problem, the database's message on one line) for a failed statement."""
        text = " ".join(str(getattr(exc, "orig", None) or exc).split())
        low = text.lower()
        return ("database full" if any(k in low for k in _FULL) or disk_full(self.database) else
                "database stalled" if any(k in low for k in _STALLED) else "database write failed"), text

    def failed(self, exc: BaseException) -> float:
        """Record a failed write; returns the seconds to wait before trying again."""
        problem, text = self.classify(exc)
        if self.problem is None:
            from datetime import UTC, datetime

            self.since, self.since_wall = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
            log.error("%s (%s): starting no task; retrying the write with backoff, nothing is lost", problem,
                      text[:300])
        elif problem != self.problem:
            log.error("%s (%s)", problem, text[:300])
        self.problem, self.detail = problem, text[:500]
        self.failures += 1
        return min(RETRY_MAX, RETRY_FIRST * 2 ** (self.failures - 1))

    def recovered(self) -> None:
        if self.problem is not None:
            log.warning("%s is over after %.0f s (%d failed writes); starting tasks again", self.problem,
                        time.monotonic() - (self.since or time.monotonic()), self.failures)
        self.problem = self.detail = self.since = self.since_wall = None
        self.failures = 0

    def hold(self) -> str | None:
        return f"{self.problem}: {self.detail}" if self.problem else None

    def status(self) -> dict[str, Any]:
        seconds = round(time.monotonic() - self.since, 1) if self.since is not None else None
        return {"problem": self.problem, "detail": self.detail, "since": self.since_wall, "for_seconds": seconds,
                "failed_writes": self.failures}
