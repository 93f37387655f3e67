"""When a DAG fires: cron, presets, fixed intervals and @once, time zones and DST done right.

Everything here is pure: the caller passes the clock (`now`, `first_seen`) and the stored state
(`next_dagrun`, `last_logical_date`), so run creation can be tested with tables and replayed after
a crash without creating a run twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from flow.timeutil import (
    CronFields,
    ScheduleError,
    as_utc,
    describe_cron,
    describe_delta,
    parse_cron,
    parse_utc,
    resolve_zone,
)

__all__ = [
    "CronSchedule",
    "DagRunPlan",
    "DeltaSchedule",
    "OnceSchedule",
    "PRESETS",
    "RunInfo",
    "Schedule",
    "ScheduleError",
    "dag_schedule",
    "next_runs",
    "parse_schedule",
    "plan_dag_runs",
]

PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_TICK = timedelta(microseconds=1)
_DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RunInfo:
    """One scheduled run: the fire time and the data interval it covers (all UTC)."""

    logical_date: datetime
    data_interval_start: datetime
    data_interval_end: datetime


@dataclass(frozen=True)
class DagRunPlan:
    """Runs to create now, and the fire time to store as the DAG's next_dagrun (None = no more)."""

    create: list[RunInfo]
    next_dagrun: datetime | None


class Schedule(ABC):
    """A set of fire instants; `next_fire`/`prev_fire` take and return aware datetimes in UTC."""

    @abstractmethod
    def next_fire(self, after: datetime) -> datetime | None:
        """First fire time strictly after `after`, None when there is none."""

    @abstractmethod
    def prev_fire(self, before: datetime) -> datetime | None:
        """Last fire time strictly before `before`, None when there is none."""

    @abstractmethod
    def describe(self) -> str:
        """A short English reading for the console and `flow dags list`."""

    @abstractmethod
    def run_info(self, fire: datetime) -> RunInfo:
        """The data interval of the run that fires at `fire`."""

    def anchored(self, anchor: datetime) -> Schedule:
        """The schedule with its anchor (start_date or first_seen) set; only intervals and @once use one."""
        return self


@dataclass(frozen=True, repr=False)
class CronSchedule(Schedule):
    """Cron evaluated on the wall clock of `zone`.

    Most schedules map each matching wall time to one instant: a time in a spring-forward gap is
    moved forward by the gap, an ambiguous fall-back time fires at its first occurrence. When the
    hour field covers every hour, the schedule instead fires at every real instant whose wall time
    matches, so an hourly job runs 23 times on the spring day and 25 times on the autumn day.

    ``data_intervals`` is Airflow 2's reading (Airflow 3's ``create_cron_data_intervals``): the run
    that fires at the end of an interval has the interval's *start* as its logical date, so a
    ``@daily`` run firing on D+1 has ``ds`` D. Otherwise (the default, Airflow 3's trigger reading)
    the logical date is the fire time itself.
    """

    fields: CronFields
    zone: tzinfo
    zone_name: str
    preset: str | None = None
    data_intervals: bool = False

    @property
    def every_real_hour(self) -> bool:
        return len(self.fields.hours) == 24

    def __repr__(self) -> str:
        return f"CronSchedule({self.preset or self.fields.expression!r}, {self.zone_name!r})"

    def _instants(self, wall: datetime) -> list[datetime]:
        if not self.every_real_hour:
            return [wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)]
        out: list[datetime] = []
        for fold in (0, 1):
            instant = wall.replace(tzinfo=self.zone, fold=fold).astimezone(UTC)
            if instant.astimezone(self.zone).replace(tzinfo=None) == wall and instant not in out:
                out.append(instant)
        return out

    def _offset_bounds(self, instant: datetime) -> tuple[timedelta, timedelta]:
        """The smallest and largest UTC offset within a day of `instant`.

        Wall times are not monotonic in real time around a transition (a gap time is moved
        forward past later wall times; a fold repeats an hour), so searches scan a window of
        wall times wide enough to see every candidate, which is empty away from transitions.
        """
        offsets = []
        for shift in (-_DAY, timedelta(0), _DAY):
            try:
                offsets.append((instant + shift).astimezone(self.zone).utcoffset() or timedelta(0))
            except OverflowError:
                continue
        return min(offsets), max(offsets)

    def next_fire(self, after: datetime) -> datetime | None:
        after = as_utc(after, "after")
        try:
            return self._next(after)
        except OverflowError:
            return None

    def prev_fire(self, before: datetime) -> datetime | None:
        before = as_utc(before, "before")
        try:
            return self._prev(before)
        except OverflowError:
            return None

    def _next(self, after: datetime) -> datetime | None:
        low, _ = self._offset_bounds(after)
        wall = after.replace(tzinfo=None) + low
        best: datetime | None = None
        best_high = timedelta(0)
        while True:
            wall = self.fields.next_after(wall)
            if wall is None or (best is not None and wall - best_high > best.replace(tzinfo=None)):
                return best
            for instant in self._instants(wall):
                if instant > after and (best is None or instant < best):
                    best, best_high = instant, self._offset_bounds(instant)[1]

    def _prev(self, before: datetime) -> datetime | None:
        _, high = self._offset_bounds(before)
        wall = before.replace(tzinfo=None) + high
        best: datetime | None = None
        best_low = timedelta(0)
        while True:
            wall = self.fields.prev_before(wall)
            if wall is None or (best is not None and wall - best_low < best.replace(tzinfo=None)):
                return best
            for instant in self._instants(wall):
                if instant < before and (best is None or instant > best):
                    best, best_low = instant, self._offset_bounds(instant)[0]

    def run_info(self, fire: datetime) -> RunInfo:
        fire = as_utc(fire, "fire")
        start = self.prev_fire(fire) or fire
        return RunInfo(start if self.data_intervals else fire, start, fire)

    def describe(self) -> str:
        text = describe_cron(self.fields)
        if self.zone_name != "UTC" and text != "every minute":
            text += f" ({self.zone_name})"
        return text


@dataclass(frozen=True)
class DeltaSchedule(Schedule):
    """Fires at anchor + k*delta in absolute time, so DST never stretches or shrinks an interval.

    Unanchored (straight from parse_schedule), the grid is aligned to the Unix epoch.
    """

    delta: timedelta
    anchor: datetime | None = None

    def anchored(self, anchor: datetime) -> DeltaSchedule:
        return DeltaSchedule(self.delta, as_utc(anchor, "anchor"))

    def next_fire(self, after: datetime) -> datetime | None:
        after = as_utc(after, "after")
        base = self.anchor or _EPOCH
        try:
            return base + ((after - base) // self.delta + 1) * self.delta
        except OverflowError:
            return None

    def prev_fire(self, before: datetime) -> datetime | None:
        before = as_utc(before, "before")
        base = self.anchor or _EPOCH
        try:
            return base + (-((base - before) // self.delta) - 1) * self.delta
        except OverflowError:
            return None

    def run_info(self, fire: datetime) -> RunInfo:
        fire = as_utc(fire, "fire")
        return RunInfo(fire, fire - self.delta, fire)

    def describe(self) -> str:
        return describe_delta(self.delta)


@dataclass(frozen=True)
class OnceSchedule(Schedule):
    """@once: a single run at the anchor (start_date, else when the DAG was first seen)."""

    at: datetime | None = None

    def anchored(self, anchor: datetime) -> OnceSchedule:
        return OnceSchedule(as_utc(anchor, "anchor"))

    def next_fire(self, after: datetime) -> datetime | None:
        after = as_utc(after, "after")
        return self.at if self.at is not None and self.at > after else None

    def prev_fire(self, before: datetime) -> datetime | None:
        before = as_utc(before, "before")
        return self.at if self.at is not None and self.at < before else None

    def run_info(self, fire: datetime) -> RunInfo:
        fire = as_utc(fire, "fire")
        return RunInfo(fire, fire, fire)

    def describe(self) -> str:
        return "once"


def parse_schedule(value: Any, tz: str | tzinfo = "UTC") -> Schedule | None:
    """Validate a DAG's `schedule` argument; None means the DAG only runs when triggered."""
    zone, zone_name = resolve_zone(tz)
    if value is None:
        return None
    if isinstance(value, Schedule):
        return value
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ScheduleError(f"schedule timedelta must be positive, got {value!r}")
        return DeltaSchedule(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("@"):
            key = text.lower()
            if key == "@once":
                return OnceSchedule()
            if key == "@continuous":
                raise ScheduleError("flow does not support the '@continuous' schedule (a new run as soon as the "
                                    "last one ends); use a short cron interval such as '*/5 * * * *'")
            if key not in PRESETS:
                known = ", ".join(["@once", *PRESETS])
                raise ScheduleError(f"unknown schedule preset {value!r} (known: {known})")
            return CronSchedule(parse_cron(PRESETS[key]), zone, zone_name, preset=key)
        return CronSchedule(parse_cron(text), zone, zone_name)
    raise ScheduleError(
        f"schedule must be a cron expression, a preset such as '@daily', a timedelta or None, "
        f"not {type(value).__name__} ({value!r})"
    )


def dag_schedule(dag: dict, first_seen: datetime | None = None) -> Schedule | None:
    """The schedule of a serialized DAG, anchored at its start_date (else at `first_seen`)."""
    interval = dag.get("schedule_interval_seconds")
    raw: Any = dag.get("schedule")
    if raw is None and interval is not None:
        if not isinstance(interval, int | float) or isinstance(interval, bool):
            raise ScheduleError(f"schedule_interval_seconds must be a number, not {type(interval).__name__}")
        raw = timedelta(seconds=interval)
    schedule = parse_schedule(raw, dag.get("timezone") or "UTC")
    if isinstance(schedule, CronSchedule) and dag.get("create_cron_data_intervals"):
        schedule = replace(schedule, data_intervals=True)
    anchor = parse_utc(dag.get("start_date"), "start_date") or first_seen
    if schedule is not None and anchor is not None:
        schedule = schedule.anchored(anchor)
    return schedule


def _window(dag: dict) -> tuple[datetime | None, datetime | None]:
    start = parse_utc(dag.get("start_date"), "start_date")
    end = parse_utc(dag.get("end_date"), "end_date")
    return start, end


def next_runs(serialized_dag: dict, after: datetime, n: int, *,
              first_seen: datetime | None = None) -> list[RunInfo]:
    """Preview the next `n` runs after `after`, within start_date/end_date.

    A DAG without a start_date anchors intervals and @once at `first_seen`; when that is unknown
    too, the preview assumes the DAG is first seen at `after`.
    """
    after = as_utc(after, "after")
    seen = as_utc(first_seen, "first_seen") if first_seen is not None else None
    schedule = dag_schedule(serialized_dag, seen or after)
    start, end = _window(serialized_dag)
    if schedule is None or n <= 0:
        return []
    threshold = after
    if start is not None and start - _TICK > after:
        threshold = start - _TICK
    elif start is None and seen is None and isinstance(schedule, OnceSchedule):
        threshold = after - _TICK
    out: list[RunInfo] = []
    fire = schedule.next_fire(threshold)
    while fire is not None and start is not None and schedule.run_info(fire).logical_date < start:
        fire = schedule.next_fire(fire)
    while fire is not None and len(out) < n and (end is None or fire <= end):
        out.append(schedule.run_info(fire))
        fire = schedule.next_fire(fire)
    return out


def plan_dag_runs(dag: dict, *, next_dagrun: datetime | None, last_logical_date: datetime | None,
                  active_runs: int, now: datetime, first_seen: datetime) -> DagRunPlan:
    """Decide which scheduled runs to create at `now`, and the next fire time to store.

    A stored next_dagrun that is no longer on the schedule (the DAG file changed its schedule or
    start_date) is moved to the first fire time at or after it. Nothing at or before
    last_logical_date is created again, which makes replaying a plan after a crash harmless.
    max_active_runs caps creation in both catchup modes, as in Airflow: with catchup=False the
    due run waits, and when a slot frees up the latest fire time due by then is created.
    """
    now = as_utc(now, "now")
    first_seen = as_utc(first_seen, "first_seen")
    stored = as_utc(next_dagrun, "next_dagrun") if next_dagrun is not None else None
    last = as_utc(last_logical_date, "last_logical_date") if last_logical_date is not None else None
    if active_runs < 0:
        raise ValueError(f"active_runs must be >= 0, got {active_runs}")
    schedule = dag_schedule(dag, first_seen)
    if schedule is None:
        return DagRunPlan([], None)
    start, end = _window(dag)
    cap = dag.get("max_active_runs", 16)

    if stored is not None:
        fire = schedule.next_fire(stored - _TICK)
    elif start is not None or isinstance(schedule, OnceSchedule):
        fire = schedule.next_fire((start or first_seen) - _TICK)
    else:
        fire = schedule.next_fire(first_seen)
    if fire is not None and start is not None and fire < start:
        fire = schedule.next_fire(start - _TICK)
    while fire is not None and start is not None and schedule.run_info(fire).logical_date < start:
        fire = schedule.next_fire(fire)  # data intervals: the first run covers the interval from start_date
    if fire is not None and last is not None and fire <= last:
        fire = schedule.next_fire(last)
    while fire is not None and last is not None and schedule.run_info(fire).logical_date <= last:
        fire = schedule.next_fire(fire)  # data intervals: the run of `last` fired one interval after it

    create: list[RunInfo] = []
    horizon = now if end is None else min(now, end)

    def room() -> bool:
        return cap is None or active_runs + len(create) < cap

    if dag.get("catchup", False):
        while fire is not None and fire <= horizon and room():
            create.append(schedule.run_info(fire))
            fire = schedule.next_fire(fire)
    elif fire is not None and fire <= horizon and room():
        latest = schedule.prev_fire(horizon + _TICK) or fire
        create.append(schedule.run_info(max(latest, fire)))
        fire = schedule.next_fire(max(latest, fire))
    if fire is not None and end is not None and fire > end:
        fire = None
    return DagRunPlan(create, fire)
