"""Applying what the executor reports: a try started, a try ended (with its XComs and branch choice).

Also follows tries that an earlier flowd left running, until their exit record appears.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flow.dagindex import branch_skips, short_circuit_skips
from flow.executors.base import MAX_CWD_BYTES, MAX_RENDERED_BYTES, TaskSpec, cap_text
from flow.planner import on_try_finished
from flow.states import TaskState

from .alerts import alert_for
from .specs import CALLBACK_FOR_STATE, log_path

if TYPE_CHECKING:
    from flow.executors.base import TaskResult

    from .engine import Engine


class ResultsMixin:
    """Mixed into Engine; `self` is the engine."""

    def _check_orphans(self: Engine) -> None:
        for ref, orphan in list(self.orphans.items()):
            result = orphan.poll(ref)
            if isinstance(result, TaskSpec):  # committed, never handed to a runner: hand it over now
                del self.orphans[ref]
                self.resubmit.append(result)
            elif result is not None:
                del self.orphans[ref]
                self._events.append(("finished", result))

    def kill_try(self: Engine, ref: str, reason: str) -> None:
        """Stop a try, whether this flowd's runner started it or an earlier one did."""
        orphan = self.orphans.get(ref)
        if orphan is None:
            self.executor.kill(ref, reason)
            return
        orphan.kill_reason = reason
        orphan.kill(signal.SIGTERM)
        try:
            asyncio.get_running_loop().call_later(self.settings.kill_grace, orphan.kill, signal.SIGKILL)
        except RuntimeError:  # no loop: a foreground command; TERM is all it can do
            pass

    def _queue_alert(self: Engine, run: Any, task_id: str, state: str, error: str | None, try_number: int,
                     ended: datetime) -> None:
        """E-mail and notifiers the task asks for; delivered after the commit, off the loop."""
        if self.notifications is None:
            return
        task = self.task_rows[run.dag_id].get(task_id)
        if task is None:
            return
        alert = alert_for(run.dag_id, run.run_id, task, state, try_number=try_number,
                          max_tries=run.extra[task_id].max_tries, error=error, ended=ended, hostname=self.hostname,
                          log_path=log_path(self.settings.log_folder, run.dag_id, run.run_id, task_id, try_number))
        if alert is not None:
            self.alerts.append(alert)

    def _apply_started(self: Engine, tx: Any, ref: str, pid: int, rendered: Any, now: datetime) -> None:
        """`now`: when the executor reported the start, not when this iteration began."""
        loc = self.refs.get(ref)
        if loc is None or loc[0] not in self.runs:
            return
        run = self.runs[loc[0]]
        extra = run.extra[loc[1]]
        if extra.ref != ref or run.tis[loc[1]].state != TaskState.QUEUED:
            return
        extra.pid, extra.start_date = pid, now
        self.monitor.started(ref)
        try_number = run.tis[loc[1]].try_number
        self._set_ti(tx, run, loc[1], TaskState.RUNNING, now, pid=pid, start_date=now, replan=False)
        tx.update_try(run.key, loc[1], try_number, state=TaskState.RUNNING.value, pid=pid, start_date=now,
                      **_rendered_columns(rendered))

    def _apply_finished(self: Engine, tx: Any, result: TaskResult, now: datetime) -> None:
        loc = self.refs.pop(result.ref, None)
        if loc is None:
            return
        run_key, task_id = loc
        run = self.runs.get(run_key)
        try_number = int(result.ref.rsplit(":", 1)[1])
        ended = _parse_time(result.ended_at) or now
        started = _parse_time(result.started_at)
        duration = (ended - started).total_seconds() if started else None
        current = run is not None and run.extra[task_id].ref == result.ref
        limit_hit = self.monitor.limit_reason(result.ref)
        figures = self.monitor.finish(result.ref, result.rusage, duration)
        self.monitor.footprint.log_written(
            log_path(self.settings.log_folder, run.dag_id, run.run_id, task_id, try_number) if run else "")
        if figures is not None:
            tx.put_try_resources(run_key, task_id, try_number, figures)
        if limit_hit and result.killed == limit_hit:
            result.error = limit_hit  # the limit, its value and the figure reached, not "killed: ..."
        note = result.log_incomplete
        new_problem = self.housekeeping is not None and self.housekeeping.logs.record(
            f"{run.dag_id if run else '?'}.{task_id} try {try_number}", note, now)
        if not current:
            # The try was cleared or marked while it ran: record how it ended, change nothing else.
            tx.update_try(run_key, task_id, try_number, state=TaskState.FAILED.value, end_date=ended,
                          duration=duration, exit_code=result.exit_code, signal=result.signal,
                          error=_with_note(result.killed or result.error, note))
            return
        assert run is not None
        task = self.defs[run.dag_id].tasks[task_id]
        extra = run.extra[task_id]
        extra.ref = None
        # Tries granted by a clear are counted from where the clear left off.
        offset = extra.max_tries - (task.retries + 1)
        retryable = not (result.killed and result.killed.startswith("dagrun_timeout")) and result.outcome != "no_retry"
        state, retry_at = on_try_finished(task, try_number - offset, result.ok, ended, retryable=retryable)
        if result.ok and result.outcome == "skipped":  # AirflowSkipException, skip_on_exit_code: RUNNING -> SKIPPED
            state = TaskState.SKIPPED
        error = None if result.ok else (result.error or "failed")
        self._set_ti(tx, run, task_id, state, now, end_date=ended, duration=duration, exit_code=result.exit_code,
                     error=error, next_retry_at=retry_at, pid=result.pid, reason=error or "")
        try_state = TaskState.FAILED if state == TaskState.UP_FOR_RETRY else state
        tx.update_try(run_key, task_id, try_number, state=try_state.value, end_date=ended, duration=duration,
                      exit_code=result.exit_code, signal=result.signal, error=_with_note(error, note), pid=result.pid,
                      **({"start_date": started} if started else {}))
        if new_problem:
            self._queue_alert(run, task_id, "log_incomplete", note, try_number, ended)
        which = CALLBACK_FOR_STATE.get(state.value)
        if which:
            self._queue_callback(run, task_id, which, error, try_number)
            self._queue_alert(run, task_id, state.value, error, try_number, ended)
        if result.ok and result.xcom:
            for key, value in result.xcom.items():
                tx.set_xcom(run_key, task_id, key, value)
            run.xcoms.setdefault(task_id, {}).update(result.xcom)
        if result.ok:
            dag = self.defs[run.dag_id]
            skips: set[str] = set()
            if result.branch is not None:
                skips = branch_skips(dag, task_id, result.branch)
            elif result.skip_downstream:
                skips = short_circuit_skips(dag, task_id)
            for tid in sorted(skips, key=dag.index.position.__getitem__):  # topological: readable events
                if run.tis[tid].state in (TaskState.NONE, TaskState.SCHEDULED):
                    self._set_ti(tx, run, tid, TaskState.SKIPPED, now, reason=f"skipped by {task_id}")



def _with_note(error: str | None, note: str | None) -> str | None:
    """The try's error line, with "log incomplete: ..." after it (or alone, on a try that succeeded):
    where `flow runs show` and the console's task detail already look."""
    if not note:
        return error
    return f"{error}; {note}" if error else note


def _rendered_columns(rendered: Any) -> dict[str, str | None]:
    """The executor's rendered_record as task_try columns; capped again, as it crossed a socket."""
    if not isinstance(rendered, dict) or not isinstance(rendered.get("command"), str):
        return {}
    cwd = rendered.get("cwd")
    return {"rendered": cap_text(rendered["command"], MAX_RENDERED_BYTES, "the rendered command"),
            "rendered_cwd": cap_text(cwd, MAX_CWD_BYTES, "cwd") if isinstance(cwd, str) and cwd else None}


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
