"""``airflow.utils.*``: dates, trigger rules, edge labels, helpers, states, context, weekday."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pendulum

from flow.compat import timezone
from flow.context import get_current_context
from flow.edges import Label
from flow.operators.base import TriggerRule, chain, cross_downstream
from flow.operators.weekday import WeekDay
from flow.states import RunState as DagRunState
from flow.states import TaskState as TaskInstanceState

EdgeModifier = Label
Context = dict
State = TaskInstanceState


def days_ago(n: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0) -> pendulum.DateTime:
    """Midnight UTC ``n`` days ago (Airflow 2's airflow.utils.dates.days_ago)."""
    today = pendulum.now("UTC").replace(hour=hour, minute=minute, second=second, microsecond=microsecond)
    return today - _dt.timedelta(days=n)


def apply_defaults(func: Any) -> Any:
    """Airflow 1's decorator for operator __init__; flow (like Airflow 2) applies default_args itself."""
    return func


cron_presets: dict[str, str] = {
    "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *", "@quarterly": "0 0 1 */3 *", "@yearly": "0 0 1 1 *",
}


def infer_time_unit(time_seconds_arr: list[float]) -> str:
    if not time_seconds_arr:
        return "hours"
    top = max(time_seconds_arr)
    return "minutes" if top <= 60 * 2 else "hours" if top <= 60 * 60 * 2 else "days"


def merge_dicts(dict1: dict[str, Any], dict2: dict[str, Any]) -> dict[str, Any]:
    merged = dict1.copy()
    for key, value in dict2.items():
        merged[key] = merge_dicts(merged[key], value) if isinstance(merged.get(key), dict) and isinstance(value, dict) else value
    return merged


__all__ = [
    "Context", "DagRunState", "apply_defaults", "EdgeModifier", "Label", "State", "TaskInstanceState", "TriggerRule", "WeekDay",
    "chain", "cron_presets", "cross_downstream", "days_ago", "get_current_context", "infer_time_unit",
    "merge_dicts", "timezone",
]
