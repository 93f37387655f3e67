"""Turning a task instance into a TaskSpec, and where its log and status file live."""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flow.executors.base import TaskSpec

if TYPE_CHECKING:
    from .engine import Engine, RunMem


def run_id_for(run_type: str, logical_date: datetime) -> str:
    """Airflow's run id form, so people and scripts moving over recognise it."""
    return f"{run_type}__{logical_date.isoformat()}"


def _safe(part: str) -> str:
    return part.replace("/", "_").replace("\0", "_")


def log_path(log_folder: str, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
    return os.path.join(
        log_folder, f"dag_id={_safe(dag_id)}", f"run_id={_safe(run_id)}", f"task_id={_safe(task_id)}",
        f"attempt={try_number}.log",
    )


def status_path(log_file: str) -> str:
    return log_file + ".status.json"


def build_spec(engine: Engine, run: RunMem, task: dict[str, Any], try_number: int, max_tries: int) -> TaskSpec:
    dag = engine.dags[run.dag_id]
    path = log_path(engine.settings.log_folder, run.dag_id, run.run_id, task["task_id"], try_number)
    context = {
        "dag_id": run.dag_id,
        "task_id": task["task_id"],
        "run_id": run.run_id,
        "run_type": run.run_type,
        "logical_date": run.logical_date.isoformat(),
        "data_interval_start": run.data_interval_start.isoformat(),
        "data_interval_end": run.data_interval_end.isoformat(),
        "conf": run.conf,
        "params": dag.get("params") or {},
        "try_number": try_number,
        "max_tries": max_tries,
        "timezone": dag.get("timezone", "UTC"),
    }
    if _may_read_variables(task):
        context["variables"] = engine.store.variable_values()
    return TaskSpec(
        ref=f"{run.key}:{task['task_id']}:{try_number}",
        kind=task["kind"],
        dag_id=run.dag_id,
        task_id=task["task_id"],
        run_id=run.run_id,
        try_number=try_number,
        dag_file=dag["fileloc"],
        log_path=path,
        status_path=status_path(path),
        execution_timeout=task.get("execution_timeout"),
        kill_grace=engine.settings.kill_grace,
        bash_command=task.get("bash_command"),
        env=task.get("env"),
        append_env=bool(task.get("append_env")),
        cwd=task.get("cwd"),
        do_xcom_push=bool(task.get("do_xcom_push", True)),
        context=context,
        xcoms={k: dict(v) for k, v in run.xcoms.items()},
        extra=_with_smtp(engine, dict(task.get("extra") or {})),
        max_log_bytes=int(getattr(engine.settings, "max_log_bytes_per_try", 0) or 0),
    )


def _may_read_variables(task: dict[str, Any]) -> bool:
    """Python code may call Variable.get anywhere; a bash try only through {{ var.* }} in its fields."""
    if task["kind"] != "bash":
        return task["kind"] != "empty"
    return "var." in f"{task.get('bash_command') or ''} {task.get('env') or ''} {task.get('cwd') or ''}"


def _with_smtp(engine: Engine, extra: dict[str, Any]) -> dict[str, Any]:
    """An EmailOperator gets its SMTP notifier's settings (never the password: only its file)."""
    if "email_notifier" not in extra:
        return extra
    from .notifyconf import default_smtp

    notifiers = getattr(engine.settings, "notifiers", {}) or {}
    name = extra["email_notifier"]
    conf = notifiers.get(name) if name else default_smtp(notifiers)
    if conf is None or conf.kind != "smtp":
        extra["smtp_error"] = (f"EmailOperator names notifier {name!r}, which is not an SMTP notifier in "
                               f"flowd's configuration" if name else
                               "EmailOperator needs an SMTP notifier: add [notifiers.NAME] with "
                               "type = \"smtp\" to flowd.toml")
    else:
        extra["smtp"] = conf.smtp_json()
    return extra


CALLBACK_FOR_STATE = {"success": "on_success_callback", "failed": "on_failure_callback",
                      "up_for_retry": "on_retry_callback"}


def callback_spec(engine: Engine, run: RunMem, task_id: str | None, which: str, reason: str | None,
                  try_number: int = 0) -> TaskSpec:
    """A worker-process job that calls a task's (or, task_id None, the DAG's) callbacks.

    Task callbacks write into the try's own log, so their output sits next to what they react to.
    """
    dag = engine.dags[run.dag_id]
    if task_id is None:
        path = os.path.join(engine.settings.log_folder, f"dag_id={_safe(run.dag_id)}", f"run_id={_safe(run.run_id)}",
                            "dag_callbacks.log")
    else:
        path = log_path(engine.settings.log_folder, run.dag_id, run.run_id, task_id, try_number)
    return TaskSpec(
        ref=f"cb:{run.key}:{task_id or ''}:{try_number}:{which}",
        kind="callback", dag_id=run.dag_id, task_id=task_id or "", run_id=run.run_id, try_number=try_number,
        dag_file=dag["fileloc"], log_path=path, status_path=f"{path}.{which}.status.json",
        execution_timeout=float(getattr(engine.settings, "callback_timeout", CALLBACK_TIMEOUT) or CALLBACK_TIMEOUT),
        kill_grace=engine.settings.kill_grace,
        context={"dag_id": run.dag_id, "task_id": task_id, "run_id": run.run_id, "run_type": run.run_type,
                 "logical_date": run.logical_date.isoformat(),
                 "data_interval_start": run.data_interval_start.isoformat(),
                 "data_interval_end": run.data_interval_end.isoformat(), "conf": run.conf,
                 "params": dag.get("params") or {}, "try_number": try_number, "max_tries": try_number,
                 "timezone": dag.get("timezone", "UTC")},
        xcoms={k: dict(v) for k, v in run.xcoms.items()},
        extra={"which": which, "reason": reason},
        max_log_bytes=int(getattr(engine.settings, "max_log_bytes_per_try", 0) or 0),
    )


CALLBACK_TIMEOUT = 300.0
"""A callback that hangs is stopped after this long (setting callback_timeout); it holds up nothing else."""
