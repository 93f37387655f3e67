"""The engine: the in-memory view of unfinished runs, fed to the pure planner, committed to the store.

One iteration (`tick`) applies what the executor reported, creates the runs that are due,
asks `plan(snapshot, now)` what to do, writes all of it in one transaction, and only then
hands new tries to the executor. Committing before spawning is what makes a crash safe: a
try the store does not know about has never been started.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from flow.executors.base import Executor, TaskResult, TaskSpec
from flow.planner import plan
from flow.plantypes import DagDef, Decisions, RunChange, RunView, Snapshot, TIView
from flow.runindex import RunIndex
from flow.schedule import plan_dag_runs
from flow.states import ACTIVE, RunState, TaskState, check_run_transition, check_task_transition

from . import faults
from .dblock import DatabaseHealth
from .loop import LoopMixin
from .ops import Operations
from .recovery import Orphan, Unstarted, settle_orphans
from .resources import ResourceMonitor
from .results import ResultsMixin
from .specs import CALLBACK_FOR_STATE, build_spec, callback_spec, run_id_for
from .store import LeaseLost, Store
from .writebuf import WriteBuffer

if TYPE_CHECKING:
    from .recovery_remote import RemoteOrphan

log = logging.getLogger("flow.engine")

Listener = Callable[[str, dict[str, Any]], None]

FIRE_BUDGET = 0.02
"""Seconds of run creation per iteration; the rest of a large fire follows in the next ones."""


@dataclass
class TIExtra:
    max_tries: int
    ref: str | None = None
    pid: int | None = None
    start_date: datetime | None = None


@dataclass
class RunMem:
    key: int
    dag_id: str
    run_id: str
    run_type: str
    state: RunState
    logical_date: datetime
    data_interval_start: datetime
    data_interval_end: datetime
    conf: dict[str, Any]
    queued_at: datetime
    start_date: datetime | None
    tis: dict[str, TIView]
    extra: dict[str, TIExtra]
    xcoms: dict[str, dict[str, Any]] = field(default_factory=dict)
    index: RunIndex | None = None
    """Summaries of ``tis`` for the planner, updated with every state change (flow/runindex.py)."""
    changed: set[str] | None = None
    """Tasks whose state changed since the run was last planned; None: plan all of it next time."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Engine(Operations, ResultsMixin, LoopMixin):
    def __init__(
        self,
        store: Store,
        executor: Executor,
        settings: Any,
        *,
        clock: Callable[[], datetime] = utcnow,
        schedule: bool = True,
        listener: Listener | None = None,
    ):
        self.store = store
        self.executor = executor
        self.settings = settings
        self.clock = clock
        self.schedule = schedule
        self.listener = listener
        self.hostname = socket.gethostname()
        self.dags: dict[str, dict[str, Any]] = {}
        self.defs: dict[str, DagDef] = {}
        self.task_rows: dict[str, dict[str, dict[str, Any]]] = {}
        """Each DAG's serialized tasks by task id."""
        self.paused: set[str] = set()
        self.past_dags: set[str] = set()
        self._plan_wake: datetime | None = None
        """DAGs with a depends_on_past task: only their runs need the previous run's states."""
        self.inactive: set[str] = set()
        self.next_dagrun: dict[str, datetime | None] = {}
        self.first_seen: dict[str, datetime] = {}
        self.runs: dict[int, RunMem] = {}
        self.refs: dict[str, tuple[int, str]] = {}
        self.dirty: set[int] = set()
        self.unpaused_runs: set[int] = set()
        self.logged_errors: dict[str, str] = {}
        """File -> the import error last written to flowd's log: each new or changed one is logged once."""
        self._events: list[tuple[str, Any]] = []
        self._notes: list[tuple[str, dict[str, Any]]] = []
        self._wake: asyncio.Event | None = None
        self.orphans: dict[str, Orphan | Unstarted | RemoteOrphan] = {}
        self.resubmit: list[TaskSpec] = []
        """Tries committed as QUEUED by an earlier flowd that never reached a runner."""
        self.callbacks: list[TaskSpec] = []
        self.callbacks_inflight: set[str] = set()
        self.notifications: Any = None
        """flowd's Notifications (alerts by e-mail and webhook); None in foreground commands."""
        self.alerts: list[dict[str, Any]] = []
        self.housekeeping: Any = None
        """flowd's log retention sweep and storage figures (daemon/housekeeping.py)."""
        self.monitor = ResourceMonitor(settings)
        self.health = DatabaseHealth(store.url.database if store.dialect == "sqlite" else None)
        """Failed writes (database full, stalled): starts are held and the tick retried with backoff."""
        self.retry_writes = False
        """flowd sets it; a foreground command (`flow dags test`) fails on a write error instead."""
        self._retry_at: datetime | None = None
        self._reload_pending = False
        self.hold_reason: str | None = None
        """Why no task may start now whatever the host's resources (the database lock is lost);
        set by flowd's lock watch, shown by the planner's hold."""
        self.superseded = False
        """flowd stops because it may not go on with this database: running tries are left as they are."""
        self.import_error_count = 0
        """Kept in memory for `status`, which must answer while the database does not."""

    # -- loading ---------------------------------------------------------------------------

    def load(self, *, run_keys: set[int] | None = None) -> None:
        """Read DAGs and unfinished runs from the store (all of them, or only `run_keys`)."""
        self.import_error_count = len(self.store.import_errors())
        for row in self.store.dags():
            self._remember_dag(row)
        for row in self.store.unfinished_runs():
            if run_keys is None or row["id"] in run_keys:
                self._adopt(self._mem_from_row(row, row["tis"]))

    def _remember_dag(self, row: dict[str, Any]) -> None:
        dag_id = row["dag_id"]
        if dag_id not in self.defs or self.dags.get(dag_id) != row["serialized"]:
            self.dags[dag_id] = row["serialized"]
            self.defs[dag_id] = DagDef.from_serialized(row["serialized"])
            self.task_rows[dag_id] = {t["task_id"]: t for t in row["serialized"]["tasks"]}
            for run in self.runs.values():
                if run.dag_id == dag_id:
                    self._reindex(run)
        (self.past_dags.add if any(t.depends_on_past for t in self.defs[dag_id].tasks.values())
         else self.past_dags.discard)(dag_id)
        self.next_dagrun[dag_id] = row.get("next_dagrun")
        self.first_seen[dag_id] = row.get("first_seen") or self.clock()
        (self.paused.add if row.get("is_paused") else self.paused.discard)(dag_id)
        (self.inactive.discard if row.get("is_active", True) else self.inactive.add)(dag_id)

    def _mem_from_row(self, row: dict[str, Any], tis: list[dict[str, Any]]) -> RunMem:
        views, extra = {}, {}
        for ti in tis:
            views[ti["task_id"]] = TIView(
                ti["task_id"], TaskState(ti["state"]), ti["try_number"], ti.get("next_retry_at")
            )
            extra[ti["task_id"]] = TIExtra(ti["max_tries"], pid=ti.get("pid"), start_date=ti.get("start_date"))
        run = RunMem(
            key=row["id"], dag_id=row["dag_id"], run_id=row["run_id"], run_type=row["run_type"],
            state=RunState(row["state"]), logical_date=row["logical_date"],
            data_interval_start=row["data_interval_start"], data_interval_end=row["data_interval_end"],
            conf=row.get("conf") or {}, queued_at=row["queued_at"], start_date=row.get("start_date"),
            tis=views, extra=extra, xcoms=self.store.xcoms(row["id"]),
        )
        self._reindex(run)
        return run

    def _reindex(self, run: RunMem) -> None:
        """Summaries built afresh (a new run, a changed DAG, added tasks); the next plan covers all of it."""
        dag = self.defs.get(run.dag_id)
        run.index = RunIndex(dag, run.tis) if dag is not None else None
        run.changed = None

    def _adopt(self, run: RunMem) -> None:
        """Take over a run left unfinished by an earlier flowd; tries it had in flight are settled."""
        self.runs[run.key] = run
        self.dirty.add(run.key)
        settle_orphans(self, run)

    def sync_dags(self, upserts: list[dict], deactivated: list[str], errors: dict, parsed: list[str]) -> None:
        """Record a parse: new or changed DAGs, DAGs whose file is gone, and import errors."""
        now = self.clock()
        with self.store.begin() as tx:
            for ser in upserts:
                tx.upsert_dag(ser, now=now, paused_default=self.settings.paused_at_creation)
            if deactivated:
                tx.deactivate_dags(deactivated)
            tx.replace_import_errors(parsed, errors, now)
        self.import_error_count = len(self.store.import_errors())
        self._log_import_errors(parsed, errors)
        for dag_id in {s["dag_id"] for s in upserts} | set(deactivated):
            row = self.store.dag(dag_id)
            if row:
                changed = self.dags.get(dag_id) != row["serialized"]
                self._remember_dag(row)
                if changed:
                    self._add_new_tasks(dag_id)
        self.note("dags", {"upserted": [s["dag_id"] for s in upserts], "deactivated": deactivated,
                           "import_errors": len(errors)})
        self.wake()

    def _log_import_errors(self, parsed: list[str], errors: dict) -> None:
        """Under systemd the journal is where an operator looks first; a file failing the same way
        at every re-parse is logged once, and again only when its error changes."""
        from flow.textsafe import visible

        for filename in parsed:
            if filename not in errors:
                self.logged_errors.pop(filename, None)
        for filename, pair in errors.items():
            message = str(pair[0] if isinstance(pair, tuple | list) and pair else pair)
            if self.logged_errors.get(filename) != message:
                self.logged_errors[filename] = message
                line = message.strip().splitlines()[-1] if message.strip() else "unknown error"
                log.warning("DAG file %s failed to import: %s", visible(filename), visible(line[:500]))

    def _add_new_tasks(self, dag_id: str) -> None:
        """A task added to a DAG file joins the unfinished runs of that DAG."""
        for run in self.runs.values():
            if run.dag_id != dag_id:
                continue
            missing = [t for t in self.dags[dag_id]["tasks"] if t["task_id"] not in run.tis]
            if not missing:
                continue
            with self.store.begin() as tx:
                for t in missing:
                    tries = int(t.get("retries", 0)) + 1
                    tx.add_ti(run.key, t["task_id"], t["operator"], t["priority_weight"], tries, "none")
                    run.tis[t["task_id"]] = TIView(t["task_id"], TaskState.NONE)
                    run.extra[t["task_id"]] = TIExtra(tries)
            self._reindex(run)
            self.dirty.add(run.key)

    # -- executor events --------------------------------------------------------------------

    def _on_started(self, ref: str, pid: int, rendered: dict[str, Any] | None = None) -> None:
        self._events.append(("started", (ref, pid, rendered, self.clock())))
        self.wake()

    def _on_finished(self, result: TaskResult) -> None:
        if result.ref.startswith("cb:"):
            self.callbacks_inflight.discard(result.ref)
            if not result.ok:
                log.warning("callback %s failed: %s", result.ref, result.error)
            self.wake()
            return
        self._events.append(("finished", result))
        self.wake()

    def set_hold(self, reason: str | None) -> None:
        """Start no task while `reason` holds (None: start them again); results are still recorded."""
        self.hold_reason = reason
        self.wake()

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def note(self, kind: str, payload: dict[str, Any]) -> None:
        """Queue an event for the listener; delivered after the transaction that caused it commits."""
        if self.listener is not None:
            self._notes.append((kind, payload))

    def _flush_notes(self) -> None:
        notes, self._notes = self._notes, []
        for kind, payload in notes:
            try:
                self.listener(kind, payload)  # type: ignore[misc]
            except Exception:  # a listener's bug must not stop scheduling
                log.exception("event listener failed on %s", kind)

    # -- one iteration ----------------------------------------------------------------------

    def waiting_to_retry(self) -> bool:
        """True while a failed write's backoff runs (events then wait for the retry)."""
        return self._retry_at is not None and self._retry_at > self.clock()

    def tick(self) -> datetime | None:
        """One iteration, unless the database cannot be written: then memory (which is ahead of the
        database by the failed transaction) is reloaded from the database as a restart would, no
        task starts, and the iteration is retried with backoff. Nothing is lost: what the failed
        transaction held comes back from the exit records and logs, as after a crash."""
        if self.waiting_to_retry():
            return self._retry_at
        try:
            if self._reload_pending:
                self._reload()
            wake_at = self._tick()
        except LeaseLost:
            raise
        except sa.exc.OperationalError as exc:
            if not self.retry_writes:
                raise
            self._reload_pending = True
            self._retry_at = self.clock() + timedelta(seconds=self.health.failed(exc))
            return self._retry_at
        if self._retry_at is not None:
            self._retry_at = None
            self.health.recovered()
        return wake_at

    def _reload(self) -> None:
        # Tries this process handed to its executor are still its executor's: it reports their
        # end, so recovery must not treat them as an earlier flowd's (a remote one would be killed).
        ours = set(self.refs) - set(self.orphans)
        for name in ("runs", "refs", "orphans", "unpaused_runs", "dirty"):
            getattr(self, name).clear()
        self.resubmit, self.callbacks, self.alerts, self._notes, self._events = [], [], [], [], []
        self._plan_wake = None
        self.load()
        for ref in ours & set(self.orphans):
            del self.orphans[ref]
        self._reload_pending = False

    def _tick(self) -> datetime | None:
        """Apply events, create due runs, plan until stable, commit, then spawn. Returns wake_at."""
        now = self.clock()
        if self.orphans:
            self._check_orphans()
        submit: list[TaskSpec] = []
        kills: list[tuple[str, str]] = []
        wake_at: datetime | None = None
        events, self._events = self._events, []
        with self.store.begin() as raw:
            tx = WriteBuffer(raw)
            for kind, data in events:
                if kind == "started":
                    self._apply_started(tx, *data)
                else:
                    self._apply_finished(tx, data, now)
            if self.schedule:
                wake_at = self._create_due_runs(tx, now)
            timer_due = self._plan_wake is not None and self._plan_wake <= now
            if self.dirty or timer_due or not events:
                self._plan_wake = None
                for _ in range(50):
                    decisions = plan(self._snapshot(), now)
                    for key in self.dirty:
                        if key in self.runs:
                            self.runs[key].changed = set()
                    self.dirty.clear()
                    self._apply(tx, decisions, now, submit, kills)
                    if decisions.wake_at and (self._plan_wake is None or decisions.wake_at < self._plan_wake):
                        self._plan_wake = decisions.wake_at
                    if not decisions.runs:
                        break  # plan() cascades task changes itself; only run changes can unlock more
            # else: only QUEUED -> RUNNING happened, which frees no slot and unblocks nothing.
            if self._plan_wake and (wake_at is None or self._plan_wake < wake_at):
                wake_at = self._plan_wake
            tx.flush()
        for run in [r for r in self.runs.values() if r.state.finished]:
            if any(v.state in ACTIVE for v in run.tis.values()):
                continue  # a try killed with its run still has to report how it ended
            del self.runs[run.key]
            self.unpaused_runs.discard(run.key)
        self._flush_notes()
        if self.orphans:
            soon = now + timedelta(seconds=1)
            wake_at = soon if wake_at is None or soon < wake_at else wake_at
        for ref, reason in kills:
            self.kill_try(ref, reason)
        callbacks, self.callbacks = self.callbacks, []
        resubmit, self.resubmit = ([], self.resubmit) if self.hold_reason else (self.resubmit, [])
        for spec in resubmit + submit + callbacks:
            self.executor.submit(spec)
        self.callbacks_inflight.update(c.ref for c in callbacks)
        alerts, self.alerts = self.alerts, []
        for alert in alerts:
            try:
                self.notifications.submit(alert)
            except Exception:  # alerting must never stop scheduling
                log.exception("could not hand an alert over for delivery: %s", alert.get("task_id"))
        return wake_at

    def _snapshot(self) -> Snapshot:
        views = []
        for run in self.runs.values():
            if run.state.finished:
                continue
            prev = self._prev_tis(run) if self._uses_past(run.dag_id) else None
            changed = None if run.changed is None else frozenset(run.changed)
            views.append(RunView(run.key, run.dag_id, run.run_id, run.state, run.logical_date, run.queued_at,
                                 run.start_date, run.tis, prev, changed, run.index))
        paused = frozenset(d for d in self.paused if d in self.dags) - {
            self.runs[k].dag_id for k in self.unpaused_runs if k in self.runs
        }
        return Snapshot(self.defs, tuple(views), self.settings.parallelism, paused, frozenset(self.dirty),
                        hold=self.hold_reason or self.health.hold() or self.monitor.hold())

    def _uses_past(self, dag_id: str) -> bool:
        return dag_id in self.past_dags

    def _prev_tis(self, run: RunMem) -> dict[str, TaskState] | None:
        earlier = [r for r in self.runs.values() if r.dag_id == run.dag_id and r.logical_date < run.logical_date]
        if earlier:
            prev = max(earlier, key=lambda r: r.logical_date)
            return {t: v.state for t, v in prev.tis.items()}
        states = self.store.previous_tis(run.dag_id, run.logical_date)
        return {t: TaskState(s) for t, s in states.items()} if states is not None else None

    def _create_due_runs(self, tx: Any, now: datetime) -> datetime | None:
        """Create the runs that are due, earliest fire first, for at most FIRE_BUDGET seconds.

        What is left is due at once: the loop ticks again right away, after serving the socket and
        the executor, so a thousand DAGs firing together never hold it for long.
        """
        earliest: datetime | None = None
        due: list[tuple[datetime | None, str, dict[str, Any]]] = []
        for dag_id, ser in self.dags.items():
            if dag_id in self.paused or dag_id in self.inactive:
                continue
            if ser.get("schedule") is None and ser.get("schedule_interval_seconds") is None:
                continue
            nxt = self.next_dagrun.get(dag_id)
            if nxt is not None and nxt > now:
                earliest = nxt if earliest is None or nxt < earliest else earliest
                continue
            due.append((nxt, dag_id, ser))
        if not due:
            return earliest
        due.sort(key=lambda d: (d[0] is not None, d[0] or now, d[1]))
        active = Counter(r.dag_id for r in self.runs.values() if r.run_type == "scheduled")
        stop_at = time.monotonic() + FIRE_BUDGET
        for n, (nxt, dag_id, ser) in enumerate(due):
            if n and time.monotonic() >= stop_at:
                return now
            result = plan_dag_runs(
                ser, next_dagrun=nxt, last_logical_date=self.store.last_logical_date(dag_id),
                active_runs=active[dag_id], now=now, first_seen=self.first_seen.get(dag_id, now),
            )
            for info in result.create:
                self._new_run(tx, dag_id, "scheduled", info.logical_date, info.data_interval_start,
                              info.data_interval_end, {}, now)
                faults.point("after_run_insert")  # the run exists only in this uncommitted transaction
            if result.next_dagrun != nxt:
                tx.set_next_dagrun(dag_id, result.next_dagrun)
                self.next_dagrun[dag_id] = result.next_dagrun
            if result.next_dagrun is not None and (earliest is None or result.next_dagrun < earliest):
                earliest = result.next_dagrun
        return earliest

    def _new_run(self, tx: Any, dag_id: str, run_type: str, logical_date: datetime, start: datetime,
                 end: datetime, conf: dict[str, Any], now: datetime, run_id: str | None = None) -> RunMem:
        ser = self.dags[dag_id]
        run_id = run_id or run_id_for(run_type, logical_date)
        tasks = [
            {"task_id": t["task_id"], "operator": t["operator"], "priority_weight": t["priority_weight"],
             "max_tries": int(t.get("retries", 0)) + 1}
            for t in ser["tasks"]
        ]
        key = tx.create_run(dag_id=dag_id, run_id=run_id, run_type=run_type, logical_date=logical_date,
                            data_interval_start=start, data_interval_end=end, conf=conf,
                            state=RunState.QUEUED.value, queued_at=now, tasks=tasks)
        run = RunMem(key, dag_id, run_id, run_type, RunState.QUEUED, logical_date, start, end, conf, now, None,
                     {t["task_id"]: TIView(t["task_id"], TaskState.NONE) for t in tasks},
                     {t["task_id"]: TIExtra(t["max_tries"]) for t in tasks})
        self._reindex(run)
        self.runs[key] = run
        self.dirty.add(key)
        self.note("run", self._run_payload(run))
        return run

    # -- applying decisions and results ------------------------------------------------------

    def _apply(self, tx: Any, d: Decisions, now: datetime, submit: list[TaskSpec],
               kills: list[tuple[str, str]]) -> None:
        # Runs that start are recorded before their tasks, runs that finish after them, so the
        # events read in the order things happened.
        for rc in [c for c in d.runs if c.new == RunState.RUNNING]:
            self._apply_run(tx, rc, now)
        for ch in d.tis:
            if ch.new == TaskState.QUEUED:
                continue  # SCHEDULED -> QUEUED comes with its Start, which records it with the new try
            self._set_ti(tx, self.runs[ch.run_key], ch.task_id, ch.new, now, reason=ch.reason)
        for st in d.start:
            submit.append(self._start(tx, self.runs[st.run_key], st.task_id, now))
        for k in d.kill:
            ref = self.runs[k.run_key].extra[k.task_id].ref
            if ref:
                kills.append((ref, k.reason))
        for rc in [c for c in d.runs if c.new != RunState.RUNNING]:
            self._apply_run(tx, rc, now)

    def _apply_run(self, tx: Any, rc: RunChange, now: datetime) -> None:
        run = self.runs[rc.key]
        check_run_transition(run.state, rc.new)
        fields: dict[str, Any] = {"state": rc.new.value}
        at = self.clock()  # when it happens, not when the iteration began
        if rc.new == RunState.RUNNING:  # QUEUED -> RUNNING
            run.start_date = fields["start_date"] = at
        else:  # RUNNING -> SUCCESS / FAILED
            fields["end_date"] = at
        run.state = rc.new
        tx.update_run(run.key, **fields)
        if rc.new.finished:
            self._queue_callback(run, None, CALLBACK_FOR_STATE[rc.new.value], rc.reason or None)
        self.dirty.add(run.key)
        self.note("run", {**self._run_payload(run), "reason": rc.reason})

    def _set_ti(self, tx: Any, run: RunMem, task_id: str, new: TaskState, now: datetime, *,
                reason: str = "", operator: bool = False, replan: bool = True, **fields: Any) -> None:
        view = run.tis[task_id]
        check_task_transition(view.state, new, operator=operator)
        if new == TaskState.SCHEDULED and view.state == TaskState.UP_FOR_RETRY:
            view = replace(view, next_retry_at=None)
            fields.setdefault("next_retry_at", None)
        if new in (TaskState.SKIPPED, TaskState.UPSTREAM_FAILED) or (new.finished and view.state == TaskState.NONE):
            fields.setdefault("end_date", now)
            if reason:
                fields.setdefault("error", reason if new == TaskState.UPSTREAM_FAILED else None)
        old = run.tis[task_id]
        run.tis[task_id] = replace(view, state=new, next_retry_at=fields.get("next_retry_at", view.next_retry_at))
        if run.index is not None:
            run.index.update(task_id, old, run.tis[task_id])
        tx.update_ti(run.key, task_id, state=new.value, **fields)
        if replan:
            self.dirty.add(run.key)
            if run.changed is not None:
                run.changed.add(task_id)
        if new.finished and self._uses_past(run.dag_id):
            self.dirty.update(r.key for r in self.runs.values() if r.dag_id == run.dag_id)
        self.note("ti", {"dag_id": run.dag_id, "run_id": run.run_id, "task_id": task_id, "state": new.value,
                         "try_number": run.tis[task_id].try_number, "reason": reason})

    def _start(self, tx: Any, run: RunMem, task_id: str, now: datetime) -> TaskSpec:
        view = run.tis[task_id]
        try_number = view.try_number + 1
        run.tis[task_id] = replace(view, try_number=try_number)
        extra = run.extra[task_id]
        task = self.task_rows[run.dag_id][task_id]
        spec = build_spec(self, run, task, try_number, extra.max_tries)
        extra.ref, extra.pid = spec.ref, None
        self.refs[spec.ref] = (run.key, task_id)
        self._set_ti(tx, run, task_id, TaskState.QUEUED, now, try_number=try_number, queued_at=now,
                     hostname=self.hostname, pid=None, exit_code=None, error=None)
        tx.insert_try(run.key, task_id, try_number, state=TaskState.QUEUED.value, start_date=now,
                      hostname=self.hostname, pid=None, log_path=spec.log_path)
        return spec

    def _queue_callback(self, run: RunMem, task_id: str | None, which: str, reason: str | None,
                        try_number: int = 0) -> None:
        """Callbacks run in a worker process after the commit; the scheduler never runs user code."""
        owner = self.dags[run.dag_id] if task_id is None else self.task_rows[run.dag_id].get(task_id, {})
        if owner.get(f"has_{which}"):
            self.callbacks.append(callback_spec(self, run, task_id, which, reason, try_number))

    def _run_payload(self, run: RunMem) -> dict[str, Any]:
        return {"dag_id": run.dag_id, "run_id": run.run_id, "run_type": run.run_type, "state": run.state.value,
                "logical_date": run.logical_date.isoformat()}
