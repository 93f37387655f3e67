"""The store's read side: each method takes a short connection of its own and returns plain dicts.

Every query here is shaped to be answered from an index (see ``models.py``), so the console stays
quick with a million task instances; ``tests/store`` checks the query plans on both backends.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .models import audit_log, dag, dag_run, import_error, task_instance, task_try, xcom

T = TypeVar("T")

UNFINISHED_RUN_STATES = ("queued", "running")
CHUNK = 500
"""Most values bound in one IN (...) list; well below SQLite's and PostgreSQL's parameter limits."""


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def execute(conn: Connection, stmt: sa.Executable, params: Any = None) -> sa.CursorResult[Any]:
    """Run a statement; bad input comes back as the plain ValueError/TypeError it is.

    SQLAlchemy wraps what a bind processor raises (a naive datetime, a value that is not JSON)
    in a StatementError full of SQL; the caller needs only the reason and the parameter's name.
    """
    try:
        return conn.execute(stmt, params)
    except sa.exc.StatementError as exc:
        if isinstance(exc, sa.exc.DBAPIError) or not isinstance(exc.orig, ValueError | TypeError):
            raise
        rows = params if isinstance(params, list) else [params or {}]
        naive = sorted(
            {k for row in rows for k, v in row.items() if isinstance(v, datetime) and v.tzinfo is None}
        )
        where = f" (parameter {', '.join(naive)})" if naive else ""
        raise type(exc.orig)(f"{exc.orig}{where}") from None


def _dicts(conn: Connection, stmt: sa.Executable, params: Any = None) -> list[dict[str, Any]]:
    return [dict(row) for row in execute(conn, stmt, params).mappings()]


def _one(conn: Connection, stmt: sa.Executable) -> dict[str, Any] | None:
    row = execute(conn, stmt).mappings().first()
    return dict(row) if row is not None else None


def _newest_first(table: sa.Table, column: str) -> tuple[sa.ColumnElement[Any], ...]:
    return (table.c[column].desc(), table.c.id.desc())


class StoreReads:
    """Read methods of :class:`flow.daemon.store.Store`."""

    _read_engine: Engine
    dialect: str

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._read_engine.connect() as conn:
            yield conn

    # -- DAGs -------------------------------------------------------------------------------

    def dags(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return _dicts(conn, sa.select(dag).order_by(dag.c.dag_id))

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            return _one(conn, sa.select(dag).where(dag.c.dag_id == dag_id))

    def import_errors(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return _dicts(conn, sa.select(import_error).order_by(import_error.c.filename))

    # -- runs -------------------------------------------------------------------------------

    def runs(
        self,
        dag_id: str,
        *,
        limit: int | None = 25,
        before: datetime | None = None,
        states: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first (by logical date); ``before`` pages back to runs logically before it.

        ``limit=None`` returns them all.
        """
        stmt = sa.select(dag_run).where(dag_run.c.dag_id == dag_id)
        if before is not None:
            stmt = stmt.where(dag_run.c.logical_date < before)
        if states is not None:
            stmt = stmt.where(dag_run.c.state.in_([getattr(s, "value", s) for s in states]))
        stmt = stmt.order_by(*_newest_first(dag_run, "logical_date")).limit(limit)
        with self._read() as conn:
            return _dicts(conn, stmt)

    def recent_runs(self, *, limit: int = 25, states: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Runs of every DAG, the most recently queued first (`flow runs list` without a DAG)."""
        stmt = sa.select(dag_run)
        if states is not None:
            stmt = stmt.where(dag_run.c.state.in_([getattr(s, "value", s) for s in states]))
        stmt = stmt.order_by(*_newest_first(dag_run, "queued_at")).limit(limit)
        with self._read() as conn:
            return _dicts(conn, stmt)

    def failures(self, *, limit: int = 100, states: Sequence[str] = ("failed", "up_for_retry")) -> list[dict[str, Any]]:
        """Failed and up-for-retry task instances of every DAG, the latest to end first, with their
        run's id: what the console's failures view and an operator's first question need."""
        ended = sa.func.coalesce(task_instance.c.end_date, task_instance.c.start_date, dag_run.c.queued_at)
        stmt = (sa.select(task_instance.c.dag_id, task_instance.c.task_id, task_instance.c.state,
                          task_instance.c.try_number, task_instance.c.max_tries, task_instance.c.start_date,
                          task_instance.c.end_date, task_instance.c.error, task_instance.c.exit_code,
                          task_instance.c.hostname, dag_run.c.run_id, dag_run.c.state.label("run_state"))
                .join(dag_run, dag_run.c.id == task_instance.c.dag_run_id)
                .where(task_instance.c.state.in_(list(states)))
                .order_by(ended.desc(), task_instance.c.id.desc()).limit(limit))
        with self._read() as conn:
            return _dicts(conn, stmt)

    def run(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            stmt = sa.select(dag_run).where(dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id)
            return _one(conn, stmt)

    def run_by_key(self, key: int) -> dict[str, Any] | None:
        with self._read() as conn:
            return _one(conn, sa.select(dag_run).where(dag_run.c.id == key))

    def unfinished_runs(self) -> list[dict[str, Any]]:
        """QUEUED and RUNNING runs, oldest first, each with its task instances under "tis"."""
        stmt = (
            sa.select(dag_run)
            .where(dag_run.c.state.in_(UNFINISHED_RUN_STATES))
            .order_by(dag_run.c.logical_date, dag_run.c.id)
        )
        tis_of = (
            sa.select(task_instance)
            .where(task_instance.c.dag_run_id.in_(sa.bindparam("keys", expanding=True)))
            .order_by(task_instance.c.dag_run_id, task_instance.c.id)
        )
        with self._read() as conn:
            runs = _dicts(conn, stmt)
            by_key = {run["id"]: run for run in runs}
            for run in runs:
                run["tis"] = []
            # Fetched by key, not by run state: a run that finishes between the two queries
            # must still arrive with its task instances.
            for keys in chunks(list(by_key)):
                for ti in _dicts(conn, tis_of, {"keys": keys}):
                    by_key[ti["dag_run_id"]]["tis"].append(ti)
        return runs

    def previous_run(self, dag_id: str, logical_date: datetime) -> dict[str, Any] | None:
        """The latest run of the DAG whose logical date is strictly earlier."""
        with self._read() as conn:
            return self._previous_run(conn, dag_id, logical_date)

    @staticmethod
    def _previous_run(conn: Connection, dag_id: str, logical_date: datetime) -> dict[str, Any] | None:
        stmt = (
            sa.select(dag_run)
            .where(dag_run.c.dag_id == dag_id, dag_run.c.logical_date < logical_date)
            .order_by(*_newest_first(dag_run, "logical_date"))
            .limit(1)
        )
        return _one(conn, stmt)

    def previous_tis(self, dag_id: str, logical_date: datetime) -> dict[str, str] | None:
        """Task states of :meth:`previous_run` (for depends_on_past); None if there is no such run."""
        with self._read() as conn:
            prev = self._previous_run(conn, dag_id, logical_date)
            if prev is None:
                return None
            stmt = sa.select(task_instance.c.task_id, task_instance.c.state).where(
                task_instance.c.dag_run_id == prev["id"]
            )
            return {task_id: state for task_id, state in execute(conn, stmt)}

    def last_logical_date(self, dag_id: str, run_type: str | None = "scheduled") -> datetime | None:
        """The newest logical date among the DAG's runs of this type (any type if None)."""
        stmt = sa.select(sa.func.max(dag_run.c.logical_date)).where(dag_run.c.dag_id == dag_id)
        if run_type is not None:
            stmt = stmt.where(dag_run.c.run_type == getattr(run_type, "value", run_type))
        with self._read() as conn:
            return execute(conn, stmt).scalar()

    def latest_runs(self) -> dict[str, dict[str, Any]]:
        """The newest run of every DAG that has one: one query, one index probe per DAG."""
        newest = (
            sa.select(dag_run)
            .where(dag_run.c.dag_id == dag.c.dag_id)
            .order_by(*_newest_first(dag_run, "logical_date"))
            .limit(1)
        )
        if self.dialect == "postgresql":
            # Spelled out as LATERAL: given a correlated subquery in the join condition, the
            # planner may hash-join the whole dag_run table instead.
            lateral = newest.lateral("newest")
            stmt = sa.select(lateral).select_from(dag).join(lateral, sa.true())
        else:
            pick = newest.with_only_columns(dag_run.c.id).correlate(dag).scalar_subquery()
            stmt = sa.select(dag_run).select_from(dag).join(dag_run, dag_run.c.id == pick)
        with self._read() as conn:
            return {row["dag_id"]: row for row in _dicts(conn, stmt)}

    # -- task instances, tries, XComs ---------------------------------------------------------

    def task_instances(self, run_key: int) -> list[dict[str, Any]]:
        """In creation order, which is the DAG's topological order for tasks created with the run."""
        stmt = (
            sa.select(task_instance).where(task_instance.c.dag_run_id == run_key).order_by(task_instance.c.id)
        )
        with self._read() as conn:
            return _dicts(conn, stmt)

    def ti_state_counts(self, run_keys: Iterable[int]) -> dict[int, dict[str, int]]:
        """{run key: {state: count of its task instances}}, one grouped query per 500 runs."""
        keys = list(run_keys)
        counts: dict[int, dict[str, int]] = {}
        for at in range(0, len(keys), 500):
            stmt = (sa.select(task_instance.c.dag_run_id, task_instance.c.state, sa.func.count())
                    .where(task_instance.c.dag_run_id.in_(keys[at:at + 500]))
                    .group_by(task_instance.c.dag_run_id, task_instance.c.state))
            with self._read() as conn:
                for run_key, state, n in conn.execute(stmt):
                    counts.setdefault(run_key, {})[state] = n
        return counts

    def task_instance(self, run_key: int, task_id: str) -> dict[str, Any] | None:
        stmt = sa.select(task_instance).where(
            task_instance.c.dag_run_id == run_key, task_instance.c.task_id == task_id
        )
        with self._read() as conn:
            return _one(conn, stmt)

    def tries(self, run_key: int, task_id: str) -> list[dict[str, Any]]:
        stmt = (
            sa.select(task_try)
            .where(task_try.c.dag_run_id == run_key, task_try.c.task_id == task_id)
            .order_by(task_try.c.try_number)
        )
        with self._read() as conn:
            return _dicts(conn, stmt)

    def xcoms(self, run_key: int) -> dict[str, dict[str, Any]]:
        """{task_id: {key: value}}."""
        stmt = sa.select(xcom.c.task_id, xcom.c.key, xcom.c.value).where(xcom.c.dag_run_id == run_key)
        out: dict[str, dict[str, Any]] = {}
        with self._read() as conn:
            for task_id, key, value in execute(conn, stmt):
                out.setdefault(task_id, {})[key] = value
        return out

    def task_xcoms(self, run_key: int, task_id: str, key: str | None = None) -> dict[str, Any]:
        """{key: value} of one task instance (only `key`'s, if given), by key; a primary-key range."""
        stmt = sa.select(xcom.c.key, xcom.c.value).where(xcom.c.dag_run_id == run_key, xcom.c.task_id == task_id)
        if key is not None:
            stmt = stmt.where(xcom.c.key == key)
        with self._read() as conn:
            return {k: v for k, v in execute(conn, stmt.order_by(xcom.c.key))}

    # -- audit ------------------------------------------------------------------------------

    def audit(self, *, limit: int = 100, dag_id: str | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        stmt = sa.select(audit_log)
        if dag_id is not None:
            stmt = stmt.where(audit_log.c.dag_id == dag_id)
        stmt = stmt.order_by(*_newest_first(audit_log, "time")).limit(limit)
        with self._read() as conn:
            return _dicts(conn, stmt)
