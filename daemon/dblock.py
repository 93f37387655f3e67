"""One flowd per socket and per database: a second one would run every task twice.

`refuse_if_running` catches a second flowd on the same socket before the database is touched;
`DatabaseLock` catches one on the same database, whatever its socket. SQLite: an exclusive `flock` on `<database>.flowd-lock` beside the file, which
also records who holds it. PostgreSQL: a session advisory lock keyed by the schema flow uses,
held on one connection that carries flowd's pid and host as its application_name, so the refusal
can say who holds it. Both vanish with the process that holds them (a SIGKILL included), so a
crashed flowd never blocks the next one. The lock is taken before migrations run.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from pathlib import Path
from typing import Any

import sqlalchemy as sa

PG_LOCK_CLASS = 0x666C6F77
"""First key of the advisory lock ('flow'); the second is hashtext(current_schema())."""


class NotAlone(Exception):
    """Another flowd holds the database (or answers on the socket); the message says which."""


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


class DatabaseLock:
    """Held from `acquire` until `release` (or the process ends)."""

    def __init__(self, release: Any = None) -> None:
        self._release = release

    @classmethod
    def acquire(cls, url: sa.URL, socket_path: str) -> DatabaseLock:
        if url.get_backend_name() == "sqlite":
            return cls._sqlite(url, socket_path)
        if url.get_backend_name() == "postgresql":
            return cls._postgresql(url)
        return cls()

    @classmethod
    def _sqlite(cls, url: sa.URL, socket_path: str) -> DatabaseLock:
        if not url.database or url.database == ":memory:":
            return cls()
        path = Path(url.database + ".flowd-lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # who holds it: nobody else's business
        except OSError as exc:
            raise NotAlone(f"cannot open the database at {url.database}: cannot create its lock file "
                                f"{path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another flowd"
            os.close(fd)
            raise NotAlone(f"the database {url.database} is in use by {holder}; two flowds on one "
                                "database would run every task twice: stop that one first, or give this "
                                "one its own --db") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{_who()} (socket {socket_path})\n".encode(), 0)

        def release() -> None:
            os.close(fd)  # closing drops the lock; the file stays, empty of meaning until locked again
        return cls(release)

    @classmethod
    def _postgresql(cls, url: sa.URL) -> DatabaseLock:
        args: dict[str, Any] = {"application_name": _who()[:63]}
        if "connect_timeout" not in url.query:
            args["connect_timeout"] = 10
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT", connect_args=args)
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            raise NotAlone(f"cannot connect to {url} to take flowd's lock: "
                                f"{' '.join(str(exc.orig).split())}") from None
        key = sa.text("SELECT pg_try_advisory_lock(:k, hashtext(current_schema()))")
        if not conn.execute(key, {"k": PG_LOCK_CLASS}).scalar():
            holder = conn.execute(sa.text(
                "SELECT a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.classid = :k AND l.objid = hashtext(current_schema())::oid "
                "AND l.objsubid = 2 AND l.granted"), {"k": PG_LOCK_CLASS}).first()
            schema = conn.execute(sa.text("SELECT current_database() || '.' || current_schema()")).scalar()
            conn.close()
            engine.dispose()
            who = (holder[0] or "another client") + (f" from {holder[1]}" if holder and holder[1] else "") \
                if holder else "another flowd"
            raise NotAlone(f"the database {schema} at {url.host or 'localhost'} is in use by {who}; two "
                                "flowds on one database would run every task twice: stop that one first, or "
                                "give this one its own db_url") from None

        def release() -> None:
            try:
                conn.close()  # ending the session releases the advisory lock
            finally:
                engine.dispose()
        return cls(release)

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release()
