"""Storing and reading what tries cost (the ``try_resources`` table); mixed into Tx and Store."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .models import dag_run, task_instance, task_try, try_resources

FIGURES = ("cpu_user", "cpu_system", "peak_rss", "avg_cpu_percent", "peak_cpu_percent", "read_bytes",
           "write_bytes", "wall", "max_procs", "max_threads", "series")
"""The protocol's names for a try's figures, which are also the table's columns."""
_DELETE_TRY_RESOURCES = sa.delete(try_resources).where(
    try_resources.c.dag_run_id == sa.bindparam("k_run"), try_resources.c.task_id == sa.bindparam("k_task"),
    try_resources.c.try_number == sa.bindparam("k_try"))
_TRY_BRIEF = tuple(c for c in task_try.c if c.name not in ("rendered", "rendered_cwd"))
"""A try's columns without the rendered command, which can be 64 KiB and tasks.stats does not show."""


def as_figures(row: dict[str, Any]) -> dict[str, Any] | None:
    """The protocol's `resources` dict from a row (None for a try with no figures)."""
    if row.get("wall") is None and row.get("peak_rss") is None:
        return None
    return {name: row.get(name) for name in FIGURES}


class ResourceTx:
    """Write side, mixed into store_tx.Tx."""

    _exec: Callable[..., sa.CursorResult[Any]]  # Tx's

    def put_try_resources(self, run_key: int, task_id: str, try_number: int, figures: dict[str, Any]) -> None:
        """Insert or replace a try's figures (a re-reported end replaces, never duplicates)."""
        self.put_try_resources_bulk({(run_key, task_id, try_number): figures})

    def put_try_resources_bulk(self, figures: dict[tuple[int, str, int], dict[str, Any]]) -> None:
        """put_try_resources for many tries at once, {(run_key, task_id, try_number): figures}: two
        executemany statements in all."""
        if not figures:
            return
        keys = [{"k_run": r, "k_task": t, "k_try": n} for r, t, n in figures]
        self._exec(_DELETE_TRY_RESOURCES, keys)
        self._exec(sa.insert(try_resources), [
            {"dag_run_id": r, "task_id": t, "try_number": n} | {name: f.get(name) for name in FIGURES}
            for (r, t, n), f in figures.items()])


class ResourceReads:
    """Read side, mixed into store.Store."""

    _read: Callable[[], AbstractContextManager[Connection]]  # StoreReads'

    def try_resources(self, run_key: int) -> dict[tuple[str, int], dict[str, Any]]:
        """{(task_id, try_number): figures} of every try of a run that has them."""
        stmt = sa.select(try_resources).where(try_resources.c.dag_run_id == run_key)
        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        return {(r["task_id"], r["try_number"]): f for r in rows if (f := as_figures(r)) is not None}

    def task_stats(self, dag_id: str, task_id: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """A task's tries across runs, newest run first (then newest try), each with its figures."""
        stmt = (
            sa.select(dag_run.c.run_id, dag_run.c.logical_date, *_TRY_BRIEF, *[try_resources.c[n] for n in FIGURES])
            .select_from(dag_run)
            .join(task_try, task_try.c.dag_run_id == dag_run.c.id)
            .outerjoin(try_resources, sa.and_(
                try_resources.c.dag_run_id == task_try.c.dag_run_id, try_resources.c.task_id == task_try.c.task_id,
                try_resources.c.try_number == task_try.c.try_number))
            .where(dag_run.c.dag_id == dag_id, task_try.c.task_id == task_id)
            .order_by(dag_run.c.logical_date.desc(), dag_run.c.id.desc(), task_try.c.try_number.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def peak_rss_of_runs(self, run_keys: Iterable[int]) -> dict[int, int]:
        """{run_key: the largest peak RSS among its tries}, for runs with any figures."""
        keys = list(run_keys)
        out: dict[int, int] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            stmt = (sa.select(try_resources.c.dag_run_id, sa.func.max(try_resources.c.peak_rss))
                    .where(try_resources.c.dag_run_id.in_(chunk)).group_by(try_resources.c.dag_run_id))
            with self._read() as conn:
                out.update({k: int(v) for k, v in conn.execute(stmt) if v is not None})
        return out

    def grid_cells(self, run_keys: Iterable[int]) -> list[dict[str, Any]]:
        """Every task instance of these runs with its last try's peak RSS, in one query.

        Joined on the task instance's own try_number, so an older try's figures never stand in
        for the current one; the console's grid needs nothing else to draw a page.
        """
        keys = list(run_keys)
        if not keys:
            return []
        ti = task_instance.c
        stmt = (
            sa.select(ti.dag_run_id, ti.task_id, ti.state, ti.try_number, ti.max_tries, ti.duration,
                      try_resources.c.peak_rss)
            .select_from(task_instance)
            .outerjoin(try_resources, sa.and_(
                try_resources.c.dag_run_id == ti.dag_run_id, try_resources.c.task_id == ti.task_id,
                try_resources.c.try_number == ti.try_number))
            .where(ti.dag_run_id.in_(keys))
            .order_by(ti.dag_run_id, ti.id)
        )
        with self._read() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]
