"""The template and execute() context of one try, built from the JSON the engine sends.

Bash commands are rendered without importing the DAG file (flow.runtime.render_bash), Python
tasks after importing it; both go through :func:`build_context` so ``{{ ds }}`` means the same
thing in both.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import dateutil
import dateutil.relativedelta
import pendulum

from flow.xcom import RETURN_VALUE, encode_xcom


def ds_add(ds: str, days: int) -> str:
    """``macros.ds_add('2024-01-31', 1) == '2024-02-01'``."""
    return (datetime.strptime(ds, "%Y-%m-%d") + timedelta(days=days)).strftime("%Y-%m-%d")


def ds_format(ds: str, input_format: str, output_format: str) -> str:
    """``macros.ds_format('2024-01-31', '%Y-%m-%d', '%d/%m/%Y') == '31/01/2024'``."""
    return datetime.strptime(ds, input_format).strftime(output_format)


MACROS = SimpleNamespace(
    datetime=datetime, timedelta=timedelta, ds_add=ds_add, ds_format=ds_format,
    json=json, time=time, uuid=uuid, random=random.random, pendulum=pendulum, dateutil=dateutil,
)


class DagRun:
    """The run as a template sees it: ``{{ dag_run.conf }}``, ``{{ dag_run.run_id }}``."""

    def __init__(
        self, dag_id: str, run_id: str, run_type: str, conf: dict[str, Any],
        logical_date: pendulum.DateTime, data_interval_start: pendulum.DateTime,
        data_interval_end: pendulum.DateTime,
    ) -> None:
        self.dag_id = dag_id
        self.run_id = run_id
        self.run_type = run_type
        self.conf = conf
        self.logical_date = logical_date
        self.execution_date = logical_date
        self.data_interval_start = data_interval_start
        self.data_interval_end = data_interval_end

    def __repr__(self) -> str:
        return f"<DagRun {self.dag_id} @ {self.logical_date.isoformat()}: {self.run_id}>"


class TaskInstance:
    """``ti`` in templates and callables: reads the run's XComs, and records this try's pushes."""

    def __init__(
        self, dag_id: str, task_id: str, run_id: str, try_number: int, max_tries: int,
        logical_date: pendulum.DateTime, xcoms: dict[str, dict[str, Any]], task: Any = None,
    ) -> None:
        self.dag_id = dag_id
        self.task_id = task_id
        self.run_id = run_id
        self.try_number = try_number
        self.max_tries = max_tries
        self.logical_date = logical_date
        self.execution_date = logical_date
        self.task = task
        self._xcoms = xcoms
        self.pushed: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<TaskInstance: {self.dag_id}.{self.task_id} {self.run_id} [try {self.try_number}]>"

    def xcom_push(self, key: str, value: Any) -> None:
        """Checked now (JSON, at most 1 MiB) so the failure points at the line that pushed."""
        encode_xcom(self.task_id, key, value)
        self.pushed[key] = value

    def _lookup(self, task_id: str, key: str) -> Any:
        if task_id == self.task_id and key in self.pushed:
            return self.pushed[key]
        return self._xcoms.get(task_id, {}).get(key)

    def xcom_pull(
        self, task_ids: str | Iterable[str] | None = None, key: str = RETURN_VALUE,
        dag_id: str | None = None, **_ignored: Any,
    ) -> Any:
        """A str task id gives its value (None if it pushed none); a list of ids gives a list of values."""
        if dag_id is not None and dag_id != self.dag_id:
            raise ValueError(f"xcom_pull: only XComs of this run's DAG {self.dag_id!r} are available, not {dag_id!r}")
        if task_ids is None:
            found = None
            for task_id in [*self._xcoms, self.task_id]:
                value = self._lookup(task_id, key)
                if value is not None:
                    found = value
            return found
        if isinstance(task_ids, str):
            return self._lookup(task_ids, key)
        return [self._lookup(t, key) for t in task_ids]


CONTEXT_KEYS = frozenset({
    "dag", "task", "ti", "task_instance", "dag_run", "run_id", "conf", "params", "logical_date",
    "execution_date", "data_interval_start", "data_interval_end", "ds", "ds_nodash", "ts", "ts_nodash",
    "ts_nodash_with_tz", "task_instance_key_str", "try_number", "max_tries", "timezone", "macros",
    "templates_dict", "var", "prev_ds", "next_ds", "prev_ds_nodash", "next_ds_nodash", "prev_execution_date",
    "next_execution_date", "yesterday_ds", "tomorrow_ds", "yesterday_ds_nodash", "tomorrow_ds_nodash",
    "inlets", "outlets", "test_mode",
})
"""Names a Python callable may declare to receive from the context (the keys build_context fills)."""


def _parse_utc(value: Any, name: str) -> pendulum.DateTime:
    if isinstance(value, datetime):
        return pendulum.instance(value).in_tz("UTC")
    if not isinstance(value, str):
        raise ValueError(f"task context: {name} must be an ISO 8601 string, not {value!r}")
    parsed = pendulum.parse(value)
    if not isinstance(parsed, pendulum.DateTime):
        raise ValueError(f"task context: {name} {value!r} is not a date and time")
    return parsed.in_tz("UTC")


def build_context(spec: dict[str, Any], dag: Any = None, task: Any = None) -> dict[str, Any]:
    """The Airflow-shaped context for ``spec`` (a TaskSpec as JSON); dag and task when they are loaded."""
    raw: dict[str, Any] = spec.get("context") or {}
    dag_id = raw.get("dag_id") or spec.get("dag_id") or ""
    task_id = raw.get("task_id") or spec.get("task_id") or ""
    run_id = raw.get("run_id") or spec.get("run_id") or ""
    try_number = int(raw.get("try_number") or spec.get("try_number") or 1)
    max_tries = int(raw.get("max_tries") if raw.get("max_tries") is not None else getattr(task, "retries", 0))
    logical_date = _parse_utc(raw.get("logical_date") or pendulum.now("UTC"), "logical_date")
    start = _parse_utc(raw.get("data_interval_start") or logical_date, "data_interval_start")
    end = _parse_utc(raw.get("data_interval_end") or logical_date, "data_interval_end")
    if isinstance(raw.get("variables"), dict):  # flowd's Variables, handed to this try
        from flow.variables import MemoryBackend, set_backend

        set_backend(MemoryBackend(raw["variables"]))
    conf = dict(raw.get("conf") or {})
    params = dict(getattr(dag, "params", None) or {})
    params.update(getattr(task, "params", None) or {})
    params.update(raw.get("params") or {})
    params.update(conf)
    schemas = getattr(dag, "param_schemas", None)
    if schemas:
        from flow.params import resolve

        params = resolve(params, schemas)
    dag_run = DagRun(dag_id, run_id, raw.get("run_type") or "manual", conf, logical_date, start, end)
    ti = TaskInstance(dag_id, task_id, run_id, try_number, max_tries, logical_date, spec.get("xcoms") or {}, task)
    if dag is None:
        dag = SimpleNamespace(dag_id=dag_id, timezone=raw.get("timezone") or "UTC", params=params)
    if task is None and task_id:  # a DAG-level callback has no task
        task = SimpleNamespace(task_id=task_id, dag_id=dag_id, retries=max_tries)
    ds = logical_date.strftime("%Y-%m-%d")
    ds_nodash = logical_date.strftime("%Y%m%d")
    return {
        "dag": dag,
        "task": task,
        "ti": ti,
        "task_instance": ti,
        "dag_run": dag_run,
        "run_id": run_id,
        "conf": conf,
        "params": params,
        "logical_date": logical_date,
        "execution_date": logical_date,
        "data_interval_start": start,
        "data_interval_end": end,
        "ds": ds,
        "ds_nodash": ds_nodash,
        "ts": logical_date.isoformat(),
        "ts_nodash": logical_date.strftime("%Y%m%dT%H%M%S"),
        "ts_nodash_with_tz": logical_date.isoformat().replace("-", "").replace(":", ""),
        "task_instance_key_str": f"{dag_id}__{task_id}__{ds_nodash}",
        "try_number": try_number,
        "max_tries": max_tries,
        "timezone": raw.get("timezone") or getattr(dag, "timezone", "UTC"),
        "macros": MACROS,
        "var": VariableAccessor(),
        "prev_ds": _ds(raw.get("prev_logical_date")) or ds,
        "next_ds": _ds(raw.get("next_logical_date")) or ds,
        "prev_ds_nodash": (_ds(raw.get("prev_logical_date")) or ds).replace("-", ""),
        "next_ds_nodash": (_ds(raw.get("next_logical_date")) or ds).replace("-", ""),
        "prev_execution_date": _parse_opt(raw.get("prev_logical_date")),
        "next_execution_date": _parse_opt(raw.get("next_logical_date")),
        "yesterday_ds": (logical_date - timedelta(days=1)).strftime("%Y-%m-%d"),
        "tomorrow_ds": (logical_date + timedelta(days=1)).strftime("%Y-%m-%d"),
        "yesterday_ds_nodash": (logical_date - timedelta(days=1)).strftime("%Y%m%d"),
        "tomorrow_ds_nodash": (logical_date + timedelta(days=1)).strftime("%Y%m%d"),
        "inlets": list(getattr(task, "inlets", None) or []),
        "outlets": list(getattr(task, "outlets", None) or []),
        "test_mode": False,
        **(getattr(dag, "user_defined_macros", None) or {}),
    }


def _parse_opt(value: Any) -> pendulum.DateTime | None:
    return _parse_utc(value, "date") if value else None


def _ds(value: Any) -> str | None:
    parsed = _parse_opt(value)
    return parsed.strftime("%Y-%m-%d") if parsed is not None else None


class VariableAccessor:
    """``{{ var.value.key }}`` and ``{{ var.json.key }}`` in templates, read when the template renders."""

    def __init__(self) -> None:
        self.value = _VariableView(deserialize=False)
        self.json = _VariableView(deserialize=True)


class _VariableView:
    def __init__(self, *, deserialize: bool) -> None:
        self._deserialize = deserialize

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        from flow.variables import Variable

        return Variable.get(key, deserialize_json=self._deserialize)

    def get(self, key: str, default: Any = None) -> Any:
        from flow.variables import Variable

        return Variable.get(key, default, deserialize_json=self._deserialize)


_current: list[dict[str, Any]] = []
"""The context of the task running in this process (set by flow.runtime around execute())."""


def get_current_context() -> dict[str, Any]:
    """The running task's context, from anywhere in its code (Airflow's get_current_context)."""
    if not _current:
        from flow.exceptions import AirflowException

        raise AirflowException("get_current_context() was called outside a running task")
    return _current[-1]
