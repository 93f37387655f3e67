"""The state store: one small interface over SQLite or PostgreSQL (SQLAlchemy Core + Alembic).

Writes happen in :class:`Tx` objects from :meth:`Store.begin` (one transaction each, committed on
exit); reads are methods on :class:`Store` (see ``store_reads.py``) that each take a short
connection of their own. Rows come back as plain dicts keyed by column name, JSON decoded and
datetimes aware UTC, so callers never see SQLAlchemy types.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from .models import HEAD_REVISION, VERSION_TABLE, lease
from .store_reads import StoreReads
from .store_resources import ResourceReads
from .store_tx import DuplicateRunError, StoreError, Tx
from .store_variables import VariableReads

__all__ = ["DuplicateRunError", "LeaseLost", "Store", "StoreError", "Tx"]


class LeaseLost(StoreError):
    """Another flowd took the database over (the lease's epoch moved on): this one must stop.

    Raised by :meth:`Store.begin` before the transaction's body runs, so the transaction rolls
    back with nothing written; the message names the flowd that holds the lease now.
    """


_LEASE_ROW = sa.select(lease).where(lease.c.id == 1)
# SQLite: begin() is BEGIN IMMEDIATE, so the write lock already keeps the epoch still until the
# commit. PostgreSQL: FOR SHARE makes a takeover's UPDATE wait for this transaction to end, and
# makes this read wait for (and then see) a takeover already under way.
_FENCE = _LEASE_ROW.with_for_update(read=True)


def describe_lease(row: Any) -> str:
    """`flowd pid 12 on host (socket /run/flowd/flowd.sock), epoch 3 since 2026-12-04T18:00:00+00:00`."""
    return (f"flowd pid {row['pid']} on {row['host']} (socket {row['socket']}), epoch {row['epoch']} "
            f"since {row['acquired_at'].isoformat(timespec='seconds')}")


_SQLITE_PRAGMAS = ("busy_timeout=10000", "journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
_PG_MIGRATION_LOCK = 0x666C6F77  # "flow": serialises concurrent upgrades of one PostgreSQL database


def parse_url(url: str | URL) -> URL:
    """Accept the spellings users write and pin the driver flow is tested with."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        masked = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))
        raise StoreError(f"invalid database URL {masked!r}: {exc}") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend in ("postgresql", "postgres"):
        if parsed.drivername not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise StoreError(
                f"unsupported PostgreSQL driver in {parsed}: use postgresql:// or postgresql+psycopg://"
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver != "pysqlite":
            raise StoreError(f"unsupported SQLite driver in {parsed}: use sqlite:////absolute/path.db")
        if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
            example = "sqlite:////var/lib/flow/flow.db"
            raise StoreError(f"the database URL {parsed} names no file: flow needs a file, e.g. {example}")
        return parsed
    raise StoreError(f"unsupported database URL {parsed}: use sqlite:////path/to/flow.db or postgresql://...")


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # sqlite3 must not issue its own BEGIN: _on_sqlite_begin decides the kind of transaction.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    for pragma in _SQLITE_PRAGMAS:
        _pragma(cursor, pragma)
    cursor.close()


def _pragma(cursor: Any, pragma: str, patience: float = 10.0) -> None:
    """Run a PRAGMA, waiting out a lock: switching a new file to WAL needs an exclusive lock,
    and SQLite may refuse it at once (busy_timeout does not always apply) while another
    connection opening the same new database holds a shared one."""
    deadline = time.monotonic() + patience
    while True:
        try:
            cursor.execute(f"PRAGMA {pragma}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _busy_timeout(seconds: float) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA busy_timeout={int(seconds * 1000)}")
    return on_connect


def _lock_timeout(seconds: float) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {int(seconds * 1000)}")
        dbapi_conn.commit()
    return on_connect


def _on_sqlite_begin(conn: Connection) -> None:
    """Writers take the write lock up front so a busy database makes them wait, not fail.

    With a deferred BEGIN, two transactions that read and then write deadlock on the lock
    upgrade, and SQLite answers one of them "database is locked" at once, ignoring busy_timeout.
    Readers use a deferred BEGIN: under WAL they never block a writer.
    """
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("flow_read") else "BEGIN IMMEDIATE")


def _reason(exc: BaseException, url: URL) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    reason = " ".join(line.strip() for line in text.splitlines() if line.strip())
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return reason


class Store(StoreReads, ResourceReads, VariableReads):
    """A connection pool to one flow database, plus its schema version.

    Use :meth:`open`; the constructor takes an engine already configured for flow.
    """

    def __init__(self, engine: Engine, url: URL) -> None:
        self._engine = engine
        self._read_engine = engine.execution_options(flow_read=True)
        self.url: URL = url
        """The database URL; ``str(store.url)`` masks the password."""
        self.dialect: str = engine.dialect.name
        self.fence_epoch: int | None = None
        """The lease epoch this process took (:meth:`take_lease`); every write transaction then checks it."""
        self.lost: LeaseLost | None = None
        """Set the first time a write transaction found the lease taken by another flowd."""

    @classmethod
    def open(cls, url: str | URL, *, migrate: bool = True, lock_wait: float | None = None) -> Store:
        """Connect, refuse a schema newer than this code, and (if ``migrate``) bring it up to date.

        ``migrate=False`` still opens an empty or older database, so ``flow db upgrade`` can open
        and then call :meth:`upgrade` itself. ``lock_wait`` bounds how long a statement waits for
        a lock another connection holds (SQLite's busy_timeout, PostgreSQL's lock_timeout;
        default 10 s and none): flowd's loop must not block for long on a stalled database.
        """
        parsed = parse_url(url)
        if parsed.get_backend_name() == "sqlite":
            try:
                Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot open the database at {parsed}: {exc}") from None
            engine = sa.create_engine(parsed)
            event.listen(engine, "connect", _on_sqlite_connect)
            if lock_wait is not None:
                event.listen(engine, "connect", _busy_timeout(lock_wait))
            event.listen(engine, "begin", _on_sqlite_begin)
        else:
            # A firewalled host would otherwise hang the open forever instead of failing with a reason.
            connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
            engine = sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
            if lock_wait is not None:
                event.listen(engine, "connect", _lock_timeout(lock_wait))
        store = cls(engine, parsed)
        try:
            current = store.revision()
            if current != HEAD_REVISION:
                store._refuse_unknown(current)
                if migrate:
                    store.upgrade()
        except BaseException:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.url}>"

    # -- schema -----------------------------------------------------------------------------

    def revision(self) -> str:
        """The database's Alembic revision, or "" when it has no flow schema yet."""
        try:
            conn = self._read_engine.connect()
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"cannot open the database at {self.url}: {_reason(exc, self.url)}") from None
        with conn:
            if not sa.inspect(conn).has_table(VERSION_TABLE):
                return ""
            return conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar() or ""

    def upgrade(self) -> None:
        """Apply every migration this code ships that the database lacks (idempotent)."""
        from alembic import command

        self._refuse_unknown(self.revision())
        config = self._alembic_config()
        with self._engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def _alembic_config(self) -> Any:
        from alembic.config import Config

        config = Config()
        folder = str(Path(__file__).with_name("migrations"))
        config.set_main_option("script_location", folder.replace("%", "%%"))
        return config

    def _refuse_unknown(self, current: str) -> None:
        if not current or current == HEAD_REVISION:
            return
        from alembic.script import ScriptDirectory

        scripts = ScriptDirectory.from_config(self._alembic_config())
        known = {script.revision for script in scripts.walk_revisions()}
        if current not in known:
            raise StoreError(
                f"the database at {self.url} is at schema revision {current}, newer than this flow "
                f"(knows up to {HEAD_REVISION}): upgrade flow"
            )

    # -- writes -----------------------------------------------------------------------------

    @contextmanager
    def begin(self) -> Iterator[Tx]:
        """One write transaction: committed when the block ends, rolled back if it raises.

        Once this process holds the lease (:meth:`take_lease`), the transaction first checks the
        lease's epoch: one primary-key read per transaction, the fence that keeps a flowd which
        lost its lock from committing anything after another one took the database over.
        """
        with self._engine.begin() as conn:
            if self.fence_epoch is not None:
                row = conn.execute(_FENCE).mappings().first()
                if row is None or row["epoch"] != self.fence_epoch:
                    self.lost = self.lost or LeaseLost(
                        f"another flowd took the database {self.url} over: "
                        f"{describe_lease(row) if row else 'the lease row is gone'} (this flowd had epoch "
                        f"{self.fence_epoch}); stopping so that no task runs twice")
                    raise self.lost
            yield Tx(conn, self.dialect)

    # -- the lease ------------------------------------------------------------------------------

    def take_lease(self, host: str, pid: int, socket_path: str, now: Any) -> int:
        """Become the database's holder: increment the epoch (1 for the first flowd) and fence
        every later write transaction of this store by it. Call with the database lock held."""
        values = {"host": host[:255], "pid": pid, "socket": socket_path, "acquired_at": now}
        with self._engine.begin() as conn:
            row = conn.execute(_LEASE_ROW.with_for_update()).mappings().first()
            epoch = (row["epoch"] if row else 0) + 1
            if row is None:
                conn.execute(sa.insert(lease).values(id=1, epoch=epoch, **values))
            else:
                conn.execute(sa.update(lease).where(lease.c.id == 1).values(epoch=epoch, **values))
        self.fence_epoch = epoch
        return epoch

    def lease(self) -> dict[str, Any] | None:
        """The lease row (epoch, host, pid, socket, acquired_at), or None before any flowd took it."""
        with self._read() as conn:
            row = conn.execute(_LEASE_ROW).mappings().first()
            return dict(row) if row else None
