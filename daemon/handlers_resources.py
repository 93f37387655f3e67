"""Resource figures and wait reasons in protocol replies (runs.get, dags.*, status, tasks.stats)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flow.protocol import ProtocolError
from flow.waitreasons import WaitReasons

from .footprint import resource_status
from .store_resources import as_figures

if TYPE_CHECKING:
    from .engine import Engine
    from .handlers import Call

STATS_TRY_FIELDS = ("run_id", "logical_date", "try_number", "state", "start_date", "end_date", "duration",
                    "exit_code", "error", "hostname", "pid")


def run_resources(engine: Engine, run_key: int) -> dict[tuple[str, int], dict[str, Any]]:
    """Stored figures of a run's finished tries, overlaid with the live figures of its running ones."""
    out = engine.store.try_resources(run_key)
    run = engine.runs.get(run_key)
    if run is not None:
        for task_id, extra in run.extra.items():
            if extra.ref is not None and (live := engine.monitor.live(extra.ref)) is not None:
                out[(task_id, run.tis[task_id].try_number)] = live
    return out


def run_wait_reasons(engine: Engine, run_key: int) -> dict[str, str]:
    """{task_id: why it waits} for a run the engine holds; a finished run has nothing waiting."""
    if run_key not in engine.runs:
        return {}
    snapshot = engine._snapshot()
    view = next((r for r in snapshot.runs if r.key == run_key), None)
    return WaitReasons(snapshot).for_run(view) if view is not None else {}


def last_run_peaks(engine: Engine, latest: dict[str, dict[str, Any]]) -> dict[str, int]:
    """{dag_id: max peak RSS of its last run's tries}, in one query for every DAG."""
    by_key = {row["id"]: dag_id for dag_id, row in latest.items()}
    peaks = engine.store.peak_rss_of_runs(by_key)
    for run_key in [k for k in by_key if k in engine.runs]:  # still running: live figures count too
        for res in run_resources(engine, run_key).values():
            if res.get("peak_rss") is not None:
                peaks[run_key] = max(peaks.get(run_key, 0), int(res["peak_rss"]))
    return {by_key[k]: v for k, v in peaks.items()}


def tasks_stats(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    engine = call.engine
    dag = engine.dags.get(p["dag_id"])
    if dag is None:
        known = ", ".join(sorted(engine.dags)[:20]) or "none"
        raise ProtocolError("not_found", f"unknown DAG {p['dag_id']!r} (known: {known})")
    if all(t["task_id"] != p["task_id"] for t in dag["tasks"]):
        raise ProtocolError("not_found", f"DAG {p['dag_id']!r} has no task {p['task_id']!r}")
    rows = engine.store.task_stats(p["dag_id"], p["task_id"], limit=p["limit"])
    tries = []
    for row in rows:
        res = as_figures(row)
        if row["state"] in ("queued", "running"):
            run = engine.runs.get(row["dag_run_id"])
            extra = run.extra.get(p["task_id"]) if run is not None else None
            if extra is not None and extra.ref and extra.ref.endswith(f":{row['try_number']}"):
                res = engine.monitor.live(extra.ref) or res
        tries.append({name: row.get(name) for name in STATS_TRY_FIELDS} | {"resources": res})
    return {"dag_id": p["dag_id"], "task_id": p["task_id"], "tries": tries}


def status_resources(call: Call) -> dict[str, Any]:
    return resource_status(call.engine)

