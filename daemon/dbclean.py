"""`db.clean`: remove finished runs older than a date, with everything that hangs off them.

It runs inside flowd (which owns the database while it runs) so it can never remove a run the
engine still holds: only runs in a final state, not in the engine's memory, with a logical date
before the cut-off go. What hangs off a run is listed in RUN_CHILDREN, one line per table keyed by
`dag_run_id`; a table that does not exist in this database (an older schema) is skipped, so a
table added by a later migration is one more name here.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from .housekeeping import run_folder
from .models import dag_run
from .store_reads import chunks

RUN_CHILDREN = ("xcom", "try_resources", "task_try", "task_instance")
"""Tables whose rows belong to one run through a dag_run_id column; deleted before the run rows."""
FINISHED = ("success", "failed")


def _folder_bytes(path: str) -> tuple[int, int]:
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
                files += 1
            except OSError:
                pass
    return files, size


def select_runs(store: Any, before: datetime, busy: set[int], dag_id: str | None = None) -> list[dict[str, Any]]:
    stmt = sa.select(dag_run.c.id, dag_run.c.dag_id, dag_run.c.run_id).where(
        dag_run.c.logical_date < before, dag_run.c.state.in_(FINISHED))
    if dag_id is not None:
        stmt = stmt.where(dag_run.c.dag_id == dag_id)
    with store._read_engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(stmt)]
    return [r for r in rows if r["id"] not in busy]


def clean(store: Any, log_folder: str, before: datetime, busy: set[int], *, dry_run: bool,
          dag_id: str | None = None) -> dict[str, Any]:
    """Count (dry_run) or delete; returns {"runs", "rows": {table: n}, "log_files", "log_bytes"}.

    Rows go in one transaction per chunk of runs, children first, so an interrupted clean leaves
    whole runs, never a run without its task instances.
    """
    runs = select_runs(store, before, busy, dag_id)
    inspector = sa.inspect(store._engine)
    tables = [name for name in RUN_CHILDREN if inspector.has_table(name)]
    rows: dict[str, int] = {name: 0 for name in tables}
    rows["dag_run"] = 0
    for chunk in chunks([r["id"] for r in runs], 500):
        with store._engine.begin() as conn:
            for name in tables:
                table = sa.table(name, sa.column("dag_run_id"))
                where = table.c.dag_run_id.in_(chunk)
                if dry_run:
                    rows[name] += int(conn.execute(sa.select(sa.func.count()).select_from(table).where(where))
                                      .scalar() or 0)
                else:
                    rows[name] += int(conn.execute(sa.delete(table).where(where)).rowcount or 0)
            if dry_run:
                rows["dag_run"] += len(chunk)
            else:
                rows["dag_run"] += int(conn.execute(sa.delete(dag_run).where(dag_run.c.id.in_(chunk))).rowcount or 0)
    folders = [run_folder(log_folder, r["dag_id"], r["run_id"]) for r in runs]
    return {"runs": len(runs), "rows": rows, "folders": folders}


def remove_logs(folders: list[str], *, dry_run: bool) -> tuple[int, int]:
    """(files, bytes) under the run folders, removed unless dry_run; then empty DAG folders."""
    files = size = 0
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        n, b = _folder_bytes(folder)
        files, size = files + n, size + b
        if not dry_run:
            shutil.rmtree(folder, ignore_errors=True)
            parent = os.path.dirname(folder)
            try:
                os.rmdir(parent)
            except OSError:
                pass
    return files, size
