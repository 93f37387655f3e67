"""The JSON form of a DAG: all the scheduler process ever sees (docs/design.md section 1)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from flow.dag import DAG, DagDefinitionError
from flow.operators.base import BaseOperator
from flow.operators.bash import BashOperator
from flow.operators.empty import EmptyOperator
from flow.operators.python import callable_name
from flow.params import dump_schemas
from flow.xcom import XComArg


def task_kind(task: BaseOperator) -> str:
    """"bash" only when BashOperator.execute is untouched: then the runner can exec bash directly."""
    cls = type(task)
    if isinstance(task, BashOperator) and cls.execute is BashOperator.execute:
        return "bash"
    if isinstance(task, EmptyOperator) and cls.execute is EmptyOperator.execute:
        return "empty"
    return "python"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _check_json(value: Any, what: str) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise DagDefinitionError(f"{what} must be JSON-serialisable ({e})") from None
    return value


def _as_templates(value: Any) -> Any:
    """An XComArg in a field the executor renders becomes its pull template (Airflow's str(XComArg))."""
    if isinstance(value, XComArg):
        return str(value)
    if isinstance(value, dict):
        return {k: _as_templates(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_templates(v) for v in value]
    return value


def serialize_task(task: BaseOperator, kind: str | None = None) -> dict[str, Any]:
    kind = kind or task_kind(task)
    where = f"DAG {task.dag_id!r}, task {task.task_id!r}"
    fn = getattr(task, "python_callable", None)
    return {
        "task_id": task.task_id,
        "operator": getattr(type(task), "operator_name", None) or type(task).__name__,
        "kind": kind,
        "upstream": [],
        "downstream": [],
        "trigger_rule": task.trigger_rule,
        "retries": task.retries,
        "retry_delay": task.retry_delay,
        "retry_exponential_backoff": task.retry_exponential_backoff,
        "max_retry_delay": task.max_retry_delay,
        "execution_timeout": task.execution_timeout,
        "memory_limit": task.memory_limit,
        "cpu_time_limit": task.cpu_time_limit,
        "depends_on_past": task.depends_on_past,
        "priority_weight": task.priority_weight,
        "owner": task.owner,
        "do_xcom_push": task.do_xcom_push,
        "is_branch": bool(task.is_branch),
        "is_short_circuit": bool(task.is_short_circuit),
        "bash_command": task.bash_command if kind == "bash" else None,  # type: ignore[attr-defined]
        "env": _check_json(_as_templates(dict(task.env)), f"{where}: env") if task.env is not None else None,
        "append_env": bool(getattr(task, "append_env", False)),
        "cwd": task.cwd,
        "callable": callable_name(fn) if kind == "python" and fn is not None else None,
        "has_on_success_callback": bool(task.on_success_callback),
        "has_on_failure_callback": bool(task.on_failure_callback),
        "has_on_retry_callback": bool(task.on_retry_callback),
        "email": list(task.email),
        "email_on_failure": task.email_on_failure,
        "email_on_retry": task.email_on_retry,
        "notify_on_failure": list(task.notify_on_failure),
        "notify_on_retry": list(task.notify_on_retry),
        "notify_on_success": list(task.notify_on_success),
        "doc": task.doc,
        "extra": _check_json(task.serialize_extra(), f"{where}: extra"),
        "display_name": task.task_display_name,
    }


def serialize_dag(dag: DAG) -> dict[str, Any]:
    """Validate ``dag`` (links, cycles) and return its JSON form with tasks in topological order."""
    dag.validate()
    ordered = dag.topological_sort()
    position = {t.task_id: i for i, t in enumerate(ordered)}
    tasks = []
    for task in ordered:
        data = serialize_task(task)
        data["upstream"] = sorted(task.upstream_task_ids, key=position.__getitem__)
        data["downstream"] = sorted(task.downstream_task_ids, key=position.__getitem__)
        tasks.append(data)
    owners = sorted({t.owner for t in ordered}) or [str(dag.default_args.get("owner", "flow"))]
    schedule = dag.schedule
    interval = schedule.total_seconds() if isinstance(schedule, timedelta) else None
    return {
        "dag_id": dag.dag_id,
        "fileloc": dag.fileloc,
        "schedule": schedule if isinstance(schedule, str) else None,
        "schedule_interval_seconds": interval,
        "timezone": dag.timezone,
        "start_date": _iso(dag.start_date),
        "end_date": _iso(dag.end_date),
        "catchup": dag.catchup,
        "is_paused_upon_creation": dag.is_paused_upon_creation,
        "tags": list(dag.tags),
        "owner": ", ".join(owners),
        "description": dag.description,
        "doc_md": dag.doc_md,
        "params": _check_json(dict(dag.params), f"DAG {dag.dag_id!r}: params"),
        "max_active_runs": dag.max_active_runs,
        "max_active_tasks": dag.max_active_tasks,
        "dagrun_timeout": dag.dagrun_timeout,
        "has_on_success_callback": bool(dag.on_success_callback),
        "has_on_failure_callback": bool(dag.on_failure_callback),
        "tasks": tasks,
        "params_schema": dump_schemas(dag.param_schemas),
        "display_name": dag.dag_display_name,
        "edge_labels": [[up, down, text] for (up, down), text in sorted(dag.edge_labels.items())],
        "warnings": list(dag.warnings),
        "create_cron_data_intervals": dag.create_cron_data_intervals,
    }
