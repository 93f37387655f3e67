"""One function per protocol method: validated params in, a JSON-able result out.

Handlers call the same engine operations and store reads as the CLI, so an action behaves the
same from the console, the CLI and a script. They raise ProtocolError (not_found, conflict, ...)
or EngineError; the server turns either into an error reply.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flow.protocol import ProtocolError

from .handlers_detail import fit_rendered, xcom_get
from .handlers_grid import runs_grid
from .handlers_logs import logs_follow, logs_read
from .handlers_ops import db_clean, ops_status
from .handlers_resources import last_run_peaks, run_resources, run_wait_reasons, status_resources, tasks_stats

if TYPE_CHECKING:
    from .connection import Connection
    from .engine import Engine
    from .peer import Peer
    from .server import Server


@dataclass
class Call:
    """What a handler may use: the engine, the server, the connection and who is calling."""

    server: Server
    conn: Connection
    peer: Peer
    after_reply: list[Callable[[], None]] = field(default_factory=list)
    """Run once the reply is written, e.g. to start pushing log events after the follow reply."""

    @property
    def engine(self) -> Engine:
        return self.server.engine

    @property
    def actor(self) -> dict[str, Any]:
        return self.peer.actor


Handler = Callable[[Call, dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any]]]

RUN_FIELDS = ("dag_id", "run_id", "run_type", "state", "logical_date", "data_interval_start",
              "data_interval_end", "conf", "queued_at", "start_date", "end_date")
TI_FIELDS = ("task_id", "state", "try_number", "max_tries", "operator", "priority_weight", "queued_at",
             "start_date", "end_date", "duration", "hostname", "pid", "exit_code", "error", "next_retry_at")
TRY_FIELDS = ("try_number", "state", "start_date", "end_date", "duration", "exit_code", "signal", "hostname",
              "pid", "error", "rendered", "rendered_cwd")


def pick(row: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: row.get(name) for name in names}


# -- DAGs -------------------------------------------------------------------------------------


def require_dag(engine: Engine, dag_id: str) -> dict[str, Any]:
    if dag_id not in engine.dags:
        known = ", ".join(sorted(engine.dags)[:20]) or "none"
        raise ProtocolError("not_found", f"unknown DAG {dag_id!r} (known: {known})")
    return engine.dags[dag_id]


def schedule_text(ser: dict[str, Any]) -> str:
    """A human reading of the schedule; a schedule flow cannot read shows its error instead."""
    from flow.schedule import ScheduleError, parse_schedule

    value: Any = ser.get("schedule")
    if ser.get("schedule_interval_seconds") is not None:
        value = timedelta(seconds=ser["schedule_interval_seconds"])
    try:
        sched = parse_schedule(value, ser.get("timezone") or "UTC")
    except ScheduleError as exc:
        return str(exc)
    return sched.describe() if sched else "manual only"


def _recent(engine: Engine, last: dict[str, Any] | None,
            counts: dict[int, dict[str, int]] | None = None) -> dict[str, int]:
    """Task-state counts of the DAG's last run, from memory when the engine holds the run, else
    from `counts` (dags.list reads them for every DAG in one query) or the database."""
    if last is None:
        return {}
    mem = engine.runs.get(last["id"])
    if mem is not None:
        return dict(Counter(v.state.value for v in mem.tis.values()))
    if counts is None:
        counts = engine.store.ti_state_counts([last["id"]])
    return dict(counts.get(last["id"], {}))


def dag_summary(engine: Engine, row: dict[str, Any], last: dict[str, Any] | None,
                peaks: dict[str, int] | None = None, counts: dict[int, dict[str, int]] | None = None) -> dict[str, Any]:
    ser = row["serialized"]
    dag_id = row["dag_id"]
    next_run = engine.next_dagrun.get(dag_id, row.get("next_dagrun")) if dag_id in engine.dags else None
    if peaks is None:
        peaks = last_run_peaks(engine, {dag_id: last} if last else {})
    return {
        "dag_id": dag_id,
        "is_paused": dag_id in engine.paused if dag_id in engine.dags else bool(row["is_paused"]),
        "is_active": bool(row["is_active"]),
        "schedule": ser.get("schedule"),
        "schedule_text": schedule_text(ser),
        "timezone": ser.get("timezone") or row.get("timezone"),
        "owner": row.get("owner"),
        "tags": row.get("tags") or [],
        "fileloc": row["fileloc"],
        "description": row.get("description"),
        "next_run": next_run,
        "last_run": None if last is None else pick(last, ("run_id", "state", "logical_date", "start_date",
                                                          "end_date")),
        "recent": _recent(engine, last, counts),
        "last_run_peak_rss": peaks.get(dag_id),
    }


def dags_list(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    engine = call.engine
    latest = engine.store.latest_runs()
    peaks = last_run_peaks(engine, latest)
    counts = engine.store.ti_state_counts(r["id"] for r in latest.values() if r["id"] not in engine.runs)
    dags = [dag_summary(engine, row, latest.get(row["dag_id"]), peaks, counts) for row in engine.store.dags()]
    return {"dags": dags, "import_errors": len(engine.store.import_errors())}


def dags_get(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    engine = call.engine
    require_dag(engine, p["dag_id"])
    row = engine.store.dag(p["dag_id"])
    if row is None:
        raise ProtocolError("not_found", f"DAG {p['dag_id']!r} is not in the database")
    last = engine.store.runs(p["dag_id"], limit=1)
    summary = dag_summary(engine, row, last[0] if last else None)
    return {"dag": summary | {"serialized": row["serialized"]}}


def dags_pause(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    return {"changed": call.engine.set_paused(p["dag_id"], p["paused"], actor=call.actor)}


def dags_trigger(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    engine = call.engine
    made = engine.trigger(p["dag_id"], conf=p["conf"], logical_date=p["logical_date"], actor=call.actor)
    row = engine.store.run(made["dag_id"], made["run_id"])
    return {"run": pick(row, RUN_FIELDS) if row else pick(made, RUN_FIELDS)}


# -- runs and task instances ------------------------------------------------------------------


def require_run(engine: Engine, dag_id: str, run_id: str) -> dict[str, Any]:
    require_dag(engine, dag_id)
    row = engine.store.run(dag_id, run_id)
    if row is None:
        raise ProtocolError("not_found", f"DAG {dag_id!r} has no run {run_id!r}")
    return row


def runs_list(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    """One DAG's runs, newest first; without a DAG, the most recently queued runs of every DAG."""
    states = [p["state"]] if p.get("state") else None
    if p.get("dag_id") is None:
        rows = call.engine.store.recent_runs(limit=p["limit"], states=states)
    else:
        require_dag(call.engine, p["dag_id"])
        rows = call.engine.store.runs(p["dag_id"], limit=p["limit"], before=p["before"], states=states)
    return {"runs": [pick(r, RUN_FIELDS) for r in rows]}


FAILURE_FIELDS = ("dag_id", "run_id", "task_id", "state", "try_number", "max_tries", "start_date", "end_date",
                  "exit_code", "hostname", "error", "run_state")


def failures_list(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    """What went wrong lately, across DAGs: failed and up-for-retry task instances, latest first."""
    rows = call.engine.store.failures(limit=p["limit"])
    return {"failures": [pick(r, FAILURE_FIELDS) for r in rows]}


def runs_get(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    engine = call.engine
    run = require_run(engine, p["dag_id"], p["run_id"])
    tis = []
    figures = run_resources(engine, run["id"])
    waits = run_wait_reasons(engine, run["id"])
    for ti in engine.store.task_instances(run["id"]):
        tid = ti["task_id"]
        tries = engine.store.tries(run["id"], tid) if ti["try_number"] else []
        tis.append(pick(ti, TI_FIELDS) | {
            "wait_reason": waits.get(tid),
            "tries": [pick(t, TRY_FIELDS) | {"resources": figures.get((tid, t["try_number"]))} for t in tries]})
    if p["rendered"]:
        fit_rendered(tis)
    else:  # the grid refetches a run on every burst of events and draws no commands
        for attempt in (t for ti in tis for t in ti["tries"]):
            attempt.pop("rendered", None)
            attempt.pop("rendered_cwd", None)
    return {"run": pick(run, RUN_FIELDS), "task_instances": tis}


def tasks_clear(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    affected = call.engine.clear(p["dag_id"], p["run_id"], p["task_ids"], downstream=p["downstream"],
                                 upstream=p["upstream"], failed_only=p["failed_only"], dry_run=p["dry_run"],
                                 actor=call.actor)
    return {"task_instances": affected, "dry_run": p["dry_run"]}


def tasks_mark(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    affected = call.engine.mark(p["dag_id"], p["run_id"], p["task_ids"], p["state"], downstream=p["downstream"],
                                upstream=p["upstream"], dry_run=p["dry_run"], actor=call.actor)
    return {"task_instances": affected, "dry_run": p["dry_run"]}


def tasks_retry(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    affected = call.engine.retry_failed(p["dag_id"], p["run_id"], dry_run=p["dry_run"], actor=call.actor)
    return {"task_instances": affected, "dry_run": p["dry_run"]}


# -- the rest ---------------------------------------------------------------------------------


def status(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    return call.server.status() | status_resources(call) | ops_status(call.engine)


def import_errors_list(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    rows = call.engine.store.import_errors()
    return {"import_errors": [pick(r, ("filename", "message", "traceback", "timestamp")) for r in rows]}


def audit_list(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    rows = call.engine.store.audit(limit=p["limit"], dag_id=p["dag_id"])
    names = ("time", "uid", "user", "action", "dag_id", "run_id", "task_id", "params")
    return {"entries": [pick(r, names) for r in rows]}


def subscribe(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    call.conn.subscribe(p["topics"])
    return {"seq": call.conn.seq}


HANDLERS: dict[str, Handler] = {
    "status": status,
    "dags.list": dags_list,
    "dags.get": dags_get,
    "dags.pause": dags_pause,
    "dags.trigger": dags_trigger,
    "runs.list": runs_list,
    "runs.get": runs_get,
    "failures.list": failures_list,
    "runs.grid": runs_grid,
    "tasks.clear": tasks_clear,
    "tasks.mark": tasks_mark,
    "tasks.retry": tasks_retry,
    "tasks.stats": tasks_stats,
    "xcom.get": xcom_get,
    "logs.read": logs_read,
    "logs.follow": logs_follow,
    "import_errors.list": import_errors_list,
    "audit.list": audit_list,
    "db.clean": db_clean,
    "subscribe": subscribe,
}
