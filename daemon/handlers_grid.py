"""`runs.grid`: a page of runs with every cell the console's grid draws, in two queries.

Opening a DAG used to cost one `runs.get` per run (200 round trips and 200 reads of tries and
figures); the grid needs only each task instance's state, try, duration and last peak RSS, so
one query over the page's runs answers it, however many runs and tasks the page holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .handlers import Call

CELL_FIELDS = ("state", "try_number", "max_tries", "duration", "peak_rss")


def runs_grid(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    # handlers.py registers this module, so its helpers are imported when the method is called
    from .handlers import RUN_FIELDS, pick, require_dag

    engine = call.engine
    require_dag(engine, p["dag_id"])
    rows = engine.store.runs(p["dag_id"], limit=p["limit"], before=p["before"])
    by_key = {row["id"]: str(row["run_id"]) for row in rows}
    cells: dict[str, dict[str, dict[str, Any]]] = {run_id: {} for run_id in by_key.values()}
    for ti in engine.store.grid_cells(by_key):
        cells[by_key[ti["dag_run_id"]]][ti["task_id"]] = {name: ti.get(name) for name in CELL_FIELDS}
    for key in by_key:  # a running try has no stored figures yet: its live peak so far
        run = engine.runs.get(key)
        for task_id, extra in (run.extra.items() if run is not None else ()):
            live = engine.monitor.live(extra.ref) if extra.ref is not None else None
            cell = cells[by_key[key]].get(task_id)
            if cell is not None and cell["peak_rss"] is None and live and live.get("peak_rss") is not None:
                cell["peak_rss"] = int(live["peak_rss"])
    return {"runs": [pick(row, RUN_FIELDS) for row in rows], "cells": cells}
