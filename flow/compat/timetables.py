"""``airflow.timetables.*``: Airflow's built-in timetables, as the schedules flow already has.

A timetable object stands for a flow schedule: ``flow_schedule`` is the cron string, preset or
timedelta that ``DAG(schedule=...)`` takes, and ``flow_timezone`` the zone its cron is read in.
Timetables that flow has no equivalent for fail when they are built, naming themselves.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from flow.exceptions import NotSupportedByFlow


class Timetable:
    """The base: a schedule flow can run (``flow_schedule``), read in ``flow_timezone`` when given."""

    flow_schedule: str | _dt.timedelta | None = None
    flow_timezone: str | None = None
    flow_data_intervals: bool | None = None
    description = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.flow_schedule!r})"


def _zone(timezone: Any) -> str | None:
    if timezone is None:
        return None
    if isinstance(timezone, str):
        return timezone
    return getattr(timezone, "name", None) or getattr(timezone, "key", None) or str(timezone)


class CronTriggerTimetable(Timetable):
    """Airflow 3's default cron reading: the logical date is the fire time."""

    flow_data_intervals = False

    def __init__(self, cron: str, *, timezone: Any = None, interval: _dt.timedelta | Any = _dt.timedelta(),
                 run_immediately: bool | _dt.timedelta = False) -> None:
        self.flow_schedule = cron
        self.flow_timezone = _zone(timezone)
        self.interval = interval


class CronDataIntervalTimetable(Timetable):
    """Airflow 2's cron reading: the logical date is the start of the interval the run covers."""

    flow_data_intervals = True

    def __init__(self, cron: str, timezone: Any = None) -> None:
        self.flow_schedule = cron
        self.flow_timezone = _zone(timezone)


class DeltaDataIntervalTimetable(Timetable):
    def __init__(self, delta: _dt.timedelta) -> None:
        if not isinstance(delta, _dt.timedelta):
            raise NotSupportedByFlow("DeltaDataIntervalTimetable: flow supports a timedelta here, not a relativedelta")
        self.flow_schedule = delta


class DeltaTriggerTimetable(DeltaDataIntervalTimetable):
    def __init__(self, delta: _dt.timedelta, *, interval: Any = _dt.timedelta()) -> None:
        super().__init__(delta)


class NullTimetable(Timetable):
    flow_schedule = None


class OnceTimetable(Timetable):
    flow_schedule = "@once"


class _NotSupported(Timetable):
    feature = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotSupportedByFlow(f"{type(self).__name__}: flow does not support {self.feature}")


class ContinuousTimetable(_NotSupported):
    feature = "continuous schedules (@continuous); use a short cron interval"


class MultipleCronTriggerTimetable(_NotSupported):
    feature = "several cron expressions in one schedule yet; use one DAG per expression"


class EventsTimetable(_NotSupported):
    feature = "event-list timetables yet; use a cron schedule or trigger the runs"


class CronPartitionTimetable(_NotSupported):
    feature = "partitioned timetables"


DataInterval = tuple

__all__ = [
    "ContinuousTimetable", "CronDataIntervalTimetable", "CronPartitionTimetable", "CronTriggerTimetable",
    "DataInterval", "DeltaDataIntervalTimetable", "DeltaTriggerTimetable", "EventsTimetable",
    "MultipleCronTriggerTimetable", "NullTimetable", "OnceTimetable", "Timetable",
]
