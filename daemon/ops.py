"""Operator actions on the engine: trigger, pause, clear, mark, retry, backfill.

flowd's socket server, the CLI and the console all call these same methods, so an action
behaves the same wherever it comes from. Every mutating action is written to the audit log;
every action that changes task instances has a dry run that returns exactly what it would change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from flow.dagindex import relatives
from flow.states import ACTIVE, RunState, TaskState

if TYPE_CHECKING:
    from .engine import Engine, RunMem

MAX_BACKFILL_RUNS = 10_000


class EngineError(Exception):
    """An operation cannot be done; `code` is one of not_found, bad_request, conflict."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


Actor = dict[str, Any]  # {"uid": int, "user": str}


def check_params(dag_id: str, ser: dict[str, Any], conf: dict[str, Any]) -> None:
    """A run's params (the DAG's defaults, overridden by conf) against the DAG's Param schemas, at trigger time."""
    from flow.exceptions import ParamValidationError
    from flow.params import resolve

    schemas = ser.get("params_schema") or {}
    if not schemas:
        return
    try:
        resolve(ser.get("params") or {}, schemas, conf)
    except ParamValidationError as exc:
        raise EngineError("bad_request", f"DAG {dag_id!r}: {exc}") from None


class Operations:
    """Mixed into Engine; `self` is the engine."""

    def _dag(self: Engine, dag_id: str) -> dict[str, Any]:
        if dag_id not in self.dags:
            known = ", ".join(sorted(self.dags)[:20]) or "none"
            raise EngineError("not_found", f"unknown DAG {dag_id!r} (known: {known})")
        return self.dags[dag_id]

    def _audit(self: Engine, tx: Any, actor: Actor | None, action: str, **params: Any) -> None:
        actor = actor or {}
        tx.add_audit(time=self.clock(), uid=actor.get("uid"), user=actor.get("user"), action=action,
                     dag_id=params.pop("dag_id", None), run_id=params.pop("run_id", None),
                     task_id=params.pop("task_id", None), params=params or None)

    def trigger(self: Engine, dag_id: str, *, conf: Any = None, logical_date: datetime | None = None,
                run_id: str | None = None, actor: Actor | None = None, unpause_run: bool = False) -> dict[str, Any]:
        """Create a manual run now (or at `logical_date`). `unpause_run` lets it run on a paused DAG."""
        self._dag(dag_id)
        if dag_id in self.inactive:
            raise EngineError("conflict", f"DAG {dag_id!r} is no longer in the DAG folder; it cannot be triggered")
        if conf is None:
            conf = {}
        if not isinstance(conf, dict):
            raise EngineError("bad_request", f"conf must be a JSON object, not {type(conf).__name__}")
        check_params(dag_id, self.dags[dag_id], conf)
        now = self.clock()
        when = _aware(logical_date) if logical_date else now
        from .specs import run_id_for

        rid = run_id or run_id_for("manual", when)
        if self.store.run(dag_id, rid) is not None:
            raise EngineError("conflict", f"DAG {dag_id!r} already has a run {rid!r}")
        with self.store.begin() as tx:
            run = self._new_run(tx, dag_id, "manual", when, when, when, conf, now, run_id=rid)
            self._audit(tx, actor, "trigger", dag_id=dag_id, run_id=rid, conf=conf)
        if unpause_run:
            self.unpaused_runs.add(run.key)
        self._flush_notes()
        self.wake()
        return self._run_payload(run) | {"key": run.key}

    def set_paused(self: Engine, dag_id: str, paused: bool, *, actor: Actor | None = None) -> bool:
        """Pause or unpause; returns whether anything changed."""
        self._dag(dag_id)
        if (dag_id in self.paused) == paused:
            return False
        with self.store.begin() as tx:
            tx.set_paused(dag_id, paused)
            self._audit(tx, actor, "pause" if paused else "unpause", dag_id=dag_id)
        (self.paused.add if paused else self.paused.discard)(dag_id)
        self.note("dag", {"dag_id": dag_id, "is_paused": paused})
        self._flush_notes()
        self.wake()
        return True

    def _run_for_action(self: Engine, dag_id: str, run_id: str) -> RunMem:
        self._dag(dag_id)
        for run in self.runs.values():
            if run.dag_id == dag_id and run.run_id == run_id:
                return run
        row = self.store.run(dag_id, run_id)
        if row is None:
            raise EngineError("not_found", f"DAG {dag_id!r} has no run {run_id!r}")
        return self._mem_from_row(row, self.store.task_instances(row["id"]))

    def _select(self: Engine, run: RunMem, task_ids: list[str] | None, downstream: bool,
                upstream: bool) -> list[str]:
        dag = self.defs[run.dag_id]
        if task_ids:
            unknown = [t for t in task_ids if t not in run.tis]
            if unknown:
                raise EngineError("not_found", f"run {run.run_id!r} of DAG {run.dag_id!r} has no task "
                                  f"{', '.join(map(repr, unknown))}")
            chosen = set(task_ids) | relatives(dag, task_ids, downstream=downstream, upstream=upstream)
        else:
            chosen = set(run.tis)
        order = list(dag.tasks) + [t for t in run.tis if t not in dag.tasks]
        return [t for t in order if t in chosen and t in run.tis]

    def clear(self: Engine, dag_id: str, run_id: str, task_ids: list[str] | None = None, *,
              downstream: bool = False, upstream: bool = False, failed_only: bool = False,
              dry_run: bool = False, actor: Actor | None = None) -> list[dict[str, Any]]:
        """Reset task instances to be run again (killing any that run). Returns what was (or would be) cleared."""
        run = self._run_for_action(dag_id, run_id)
        failed = (TaskState.FAILED, TaskState.UPSTREAM_FAILED)
        selected = [
            t for t in self._select(run, task_ids, downstream, upstream)
            if run.tis[t].state != TaskState.NONE and (not failed_only or run.tis[t].state in failed)
        ]
        affected = [{"task_id": t, "state": run.tis[t].state.value, "try_number": run.tis[t].try_number}
                    for t in selected]
        if dry_run or not selected:
            return affected
        self._change(run, selected, TaskState.NONE, "clear", actor,
                     params={"tasks": selected, "downstream": downstream, "upstream": upstream,
                             "failed_only": failed_only})
        return affected

    def mark(self: Engine, dag_id: str, run_id: str, task_ids: list[str] | None, state: str, *,
             downstream: bool = False, upstream: bool = False, dry_run: bool = False,
             actor: Actor | None = None) -> list[dict[str, Any]]:
        """Set task instances to success or failed by hand (killing any that run)."""
        try:
            target = TaskState(state)
        except ValueError:
            target = None
        if target not in (TaskState.SUCCESS, TaskState.FAILED):
            raise EngineError("bad_request", f"can only mark success or failed, not {state!r}")
        run = self._run_for_action(dag_id, run_id)
        selected = [t for t in self._select(run, task_ids, downstream, upstream) if run.tis[t].state != target]
        affected = [{"task_id": t, "state": run.tis[t].state.value, "try_number": run.tis[t].try_number}
                    for t in selected]
        if dry_run or not selected:
            return affected
        self._change(run, selected, target, f"mark_{target.value}", actor,
                     params={"tasks": selected, "downstream": downstream, "upstream": upstream})
        return affected

    def retry_failed(self: Engine, dag_id: str, run_id: str, *, dry_run: bool = False,
                     actor: Actor | None = None) -> list[dict[str, Any]]:
        """Clear the failed and upstream-failed tasks of a run so they run again."""
        return self.clear(dag_id, run_id, None, failed_only=True, dry_run=dry_run, actor=actor)

    def _change(self: Engine, run: RunMem, task_ids: list[str], target: TaskState, action: str,
                actor: Actor | None, params: dict[str, Any]) -> None:
        now = self.clock()
        kills = []
        if run.key not in self.runs:
            self.runs[run.key] = run
        with self.store.begin() as tx:
            for task_id in task_ids:
                view, extra = run.tis[task_id], run.extra[task_id]
                if view.state in ACTIVE and extra.ref:
                    kills.append(extra.ref)
                    extra.ref = None  # its result, when it comes, no longer decides the state
                fields: dict[str, Any] = {"next_retry_at": None}
                if target == TaskState.NONE:
                    task = self.defs[run.dag_id].tasks.get(task_id)
                    extra.max_tries = view.try_number + (task.retries if task else 0) + 1
                    fields |= {"max_tries": extra.max_tries, "start_date": None, "end_date": None,
                               "duration": None, "error": None, "exit_code": None}
                else:
                    fields |= {"end_date": now}
                self._set_ti(tx, run, task_id, target, now, operator=True, reason=action, **fields)
            if target == TaskState.NONE:
                tx.delete_xcoms(run.key, task_ids)
                for task_id in task_ids:
                    run.xcoms.pop(task_id, None)
            if run.state.finished:
                # A finished run goes back to the planner: QUEUED after a clear, RUNNING after a mark
                # (so its state is recomputed from its leaves at once).
                run.state = RunState.QUEUED if target == TaskState.NONE else RunState.RUNNING
                tx.update_run(run.key, state=run.state.value, end_date=None)
                self.note("run", self._run_payload(run))
            self._audit(tx, actor, action, dag_id=run.dag_id, run_id=run.run_id, **params)
        self.dirty.add(run.key)
        self._flush_notes()
        for ref in kills:
            self.kill_try(ref, f"{action} by operator")
        self.wake()

    def backfill(self: Engine, dag_id: str, start: datetime, end: datetime, *, conf: Any = None,
                 dry_run: bool = False, actor: Actor | None = None) -> list[dict[str, Any]]:
        """Create a run for every fire time in [start, end] that has no run yet."""
        from flow.schedule import next_runs

        ser = self._dag(dag_id)
        start, end = _aware(start), _aware(end)
        if end < start:
            raise EngineError("bad_request", f"backfill end {end.isoformat()} is before start {start.isoformat()}")
        if ser.get("schedule") is None and ser.get("schedule_interval_seconds") is None:
            raise EngineError("bad_request", f"DAG {dag_id!r} has no schedule, so it has no intervals to backfill")
        if conf is not None and not isinstance(conf, dict):
            raise EngineError("bad_request", "conf must be a JSON object")
        infos = [i for i in next_runs(ser, start - timedelta(microseconds=1), MAX_BACKFILL_RUNS + 1,
                                   first_seen=self.first_seen.get(dag_id))
                 if i.logical_date <= end]
        if len(infos) > MAX_BACKFILL_RUNS:
            raise EngineError("bad_request", f"backfill would create more than {MAX_BACKFILL_RUNS} runs")
        existing = {r["logical_date"] for r in self.store.runs(dag_id, limit=None,
                                                                before=end + timedelta(microseconds=1))}
        todo = [i for i in infos if i.logical_date not in existing]
        planned = [{"logical_date": i.logical_date.isoformat(), "run_id": f"backfill__{i.logical_date.isoformat()}"}
                   for i in todo]
        if dry_run or not todo:
            return planned
        now = self.clock()
        with self.store.begin() as tx:
            for info in todo:
                self._new_run(tx, dag_id, "backfill", info.logical_date, info.data_interval_start,
                              info.data_interval_end, conf or {}, now)
            self._audit(tx, actor, "backfill", dag_id=dag_id, start=start.isoformat(), end=end.isoformat(),
                        runs=len(todo))
        self._flush_notes()
        self.wake()
        return planned


def _aware(dt: datetime) -> datetime:
    """A plain stdlib UTC datetime (pendulum's subclass drops a stdlib tzinfo in arithmetic)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return datetime.fromtimestamp(dt.timestamp(), UTC)
