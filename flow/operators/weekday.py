"""Branching on the calendar: BranchDayOfWeekOperator (and the WeekDay enum) and BranchDateTimeOperator.

Both decide with the current time, or with the run's logical date when
``use_task_logical_date=True``, as in Airflow; the chosen ids are followed, the others skipped.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable
from typing import Any

import pendulum

from flow.operators.python import BaseBranchOperator


class WeekDay(enum.IntEnum):
    """ISO weekday numbers, Monday = 1; Airflow's ``airflow.utils.weekday.WeekDay``."""

    MONDAY = 1
    TUESDAY = 2
    WEDNESDAY = 3
    THURSDAY = 4
    FRIDAY = 5
    SATURDAY = 6
    SUNDAY = 7

    @classmethod
    def get_weekday_number(cls, week_day_str: str) -> int:
        try:
            return cls[week_day_str.upper()].value
        except KeyError:
            raise AttributeError(f'Invalid Week Day passed: "{week_day_str}"') from None

    @classmethod
    def convert(cls, day: str | WeekDay) -> int:
        return day.value if isinstance(day, WeekDay) else cls.get_weekday_number(day)

    @classmethod
    def validate_week_day(cls, week_day: str | WeekDay | Iterable[str | WeekDay]) -> set[int]:
        if isinstance(week_day, str | WeekDay):
            return {cls.convert(week_day)}
        if isinstance(week_day, Iterable):
            return {cls.convert(day) for day in week_day}
        raise TypeError(f"Unsupported Type for week_day parameter: {type(week_day).__name__}")


def _ids(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _now(context: dict[str, Any], use_logical_date: bool) -> pendulum.DateTime:
    if use_logical_date:
        return pendulum.instance(context["logical_date"])
    return pendulum.now(getattr(context.get("dag"), "timezone", None) or "UTC")


class BranchDayOfWeekOperator(BaseBranchOperator):
    def __init__(self, *, follow_task_ids_if_true: str | Iterable[str], follow_task_ids_if_false: str | Iterable[str],
                 week_day: str | WeekDay | Iterable[str | WeekDay], use_task_logical_date: bool = False,
                 use_task_execution_day: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.follow_task_ids_if_true = _ids(follow_task_ids_if_true)
        self.follow_task_ids_if_false = _ids(follow_task_ids_if_false)
        self.week_day = week_day
        self._week_day_num = WeekDay.validate_week_day(week_day)
        self.use_task_logical_date = bool(use_task_logical_date or use_task_execution_day)

    def choose_branch(self, context: dict[str, Any]) -> list[str]:
        day = _now(context, self.use_task_logical_date).isoweekday()
        return self.follow_task_ids_if_true if day in self._week_day_num else self.follow_task_ids_if_false


class BranchDateTimeOperator(BaseBranchOperator):
    """True when ``target_lower <= now <= target_upper``; a ``time`` bound is on now's own day."""

    def __init__(self, *, follow_task_ids_if_true: str | Iterable[str], follow_task_ids_if_false: str | Iterable[str],
                 target_lower: datetime.datetime | datetime.time | None = None,
                 target_upper: datetime.datetime | datetime.time | None = None,
                 use_task_logical_date: bool = False, use_task_execution_date: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if target_lower is None and target_upper is None:
            raise TypeError(f"{self._where}: give target_lower or target_upper (or both)")
        self.follow_task_ids_if_true = _ids(follow_task_ids_if_true)
        self.follow_task_ids_if_false = _ids(follow_task_ids_if_false)
        self.target_lower = target_lower
        self.target_upper = target_upper
        self.use_task_logical_date = bool(use_task_logical_date or use_task_execution_date)

    def choose_branch(self, context: dict[str, Any]) -> list[str]:
        now = _now(context, self.use_task_logical_date)
        lower, upper = _bounds(now, self.target_lower, self.target_upper)
        inside = (lower is None or lower <= now) and (upper is None or now <= upper)
        return self.follow_task_ids_if_true if inside else self.follow_task_ids_if_false


def _aware(value: datetime.datetime, now: pendulum.DateTime) -> datetime.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=now.tzinfo)


def _bounds(now: pendulum.DateTime, lower: Any, upper: Any) -> tuple[Any, Any]:
    """Airflow's target_times_as_dates: times become datetimes on now's date; an upper before the lower is the next day."""
    if isinstance(lower, datetime.datetime) or isinstance(upper, datetime.datetime):
        return (_aware(lower, now) if isinstance(lower, datetime.datetime) else lower,
                _aware(upper, now) if isinstance(upper, datetime.datetime) else upper)
    day = now.date()
    lo = datetime.datetime.combine(day, lower, tzinfo=now.tzinfo) if lower is not None else None
    hi = datetime.datetime.combine(day, upper, tzinfo=now.tzinfo) if upper is not None else None
    if lo is not None and hi is not None and hi < lo:
        if now < lo and now <= hi:
            lo = lo - datetime.timedelta(days=1)
        else:
            hi = hi + datetime.timedelta(days=1)
    return lo, hi
