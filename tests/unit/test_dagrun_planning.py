"""Run creation: first fire, catch-up after downtime, caps, end_date, idempotence, previews."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flow.schedule import DagRunPlan, RunInfo, ScheduleError, next_runs, plan_dag_runs


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def dag(schedule: str | None = "0 0 * * *", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "dag_id": "d", "schedule": schedule, "schedule_interval_seconds": None, "timezone": "UTC",
        "start_date": None, "end_date": None, "catchup": False, "max_active_runs": 16, "tasks": [],
    }
    base.update(overrides)
    return base


def daily(day: str) -> RunInfo:
    end = utc(f"{day}T00:00")
    return RunInfo(end, end - timedelta(days=1), end)


@dataclass
class Case:
    dag: dict[str, Any]
    now: str
    create: list[RunInfo]
    next_dagrun: str | None
    stored: str | None = None
    last: str | None = None
    active: int = 0
    first_seen: str = "2026-05-01T08:00"


CASES = {
    "first-fire-after-first-seen-without-start": Case(
        dag(), now="2026-05-01T09:00", create=[], next_dagrun="2026-05-02T00:00"),
    "first-fire-is-start-date-when-on-schedule": Case(
        dag(start_date="2026-05-05T00:00:00+00:00"), now="2026-05-01T09:00", create=[],
        next_dagrun="2026-05-05T00:00"),
    "first-fire-at-or-after-start-date": Case(
        dag(start_date="2026-05-05T06:00:00Z"), now="2026-05-01T09:00", create=[], next_dagrun="2026-05-06T00:00"),
    "nothing-due-keeps-next": Case(
        dag(), stored="2026-05-14T00:00", now="2026-05-13T10:00", create=[], next_dagrun="2026-05-14T00:00"),
    "due-exactly-now": Case(
        dag(), stored="2026-05-13T00:00", now="2026-05-13T00:00", create=[daily("2026-05-13")],
        next_dagrun="2026-05-14T00:00"),
    "catchup-false-after-downtime-creates-only-latest": Case(
        dag(), stored="2026-05-10T00:00", now="2026-05-13T10:00", create=[daily("2026-05-13")],
        next_dagrun="2026-05-14T00:00"),
    "catchup-true-after-downtime-creates-each-in-order": Case(
        dag(catchup=True), stored="2026-05-10T00:00", now="2026-05-13T10:00",
        create=[daily("2026-05-10"), daily("2026-05-11"), daily("2026-05-12"), daily("2026-05-13")],
        next_dagrun="2026-05-14T00:00"),
    "catchup-true-from-past-start-date": Case(
        dag(catchup=True, start_date="2026-05-11T00:00:00Z"), now="2026-05-13T10:00",
        create=[daily("2026-05-11"), daily("2026-05-12"), daily("2026-05-13")], next_dagrun="2026-05-14T00:00"),
    "catchup-false-from-past-start-date": Case(
        dag(start_date="2026-05-11T00:00:00Z"), now="2026-05-13T10:00", create=[daily("2026-05-13")],
        next_dagrun="2026-05-14T00:00"),
    "max-active-runs-caps-catchup": Case(
        dag(catchup=True, max_active_runs=3), stored="2026-05-10T00:00", now="2026-05-13T10:00", active=1,
        create=[daily("2026-05-10"), daily("2026-05-11")], next_dagrun="2026-05-12T00:00"),
    "max-active-runs-full-creates-nothing": Case(
        dag(catchup=True, max_active_runs=2), stored="2026-05-10T00:00", now="2026-05-13T10:00", active=2,
        create=[], next_dagrun="2026-05-10T00:00"),
    "max-active-runs-full-without-catchup-waits": Case(
        dag(max_active_runs=1), stored="2026-05-10T00:00", now="2026-05-13T10:00", active=1,
        create=[], next_dagrun="2026-05-10T00:00"),
    "max-active-runs-none-is-unlimited": Case(
        dag(catchup=True, max_active_runs=None), stored="2026-05-12T00:00", now="2026-05-13T10:00", active=500,
        create=[daily("2026-05-12"), daily("2026-05-13")], next_dagrun="2026-05-14T00:00"),
    "end-date-stops-catchup": Case(
        dag(catchup=True, end_date="2026-05-11T12:00:00Z"), stored="2026-05-10T00:00", now="2026-05-13T10:00",
        create=[daily("2026-05-10"), daily("2026-05-11")], next_dagrun=None),
    "end-date-latest-before-end-without-catchup": Case(
        dag(end_date="2026-05-11T12:00:00Z"), stored="2026-05-10T00:00", now="2026-05-13T10:00",
        create=[daily("2026-05-11")], next_dagrun=None),
    "end-date-on-a-fire-is-included": Case(
        dag(end_date="2026-05-12T00:00:00Z"), stored="2026-05-12T00:00", now="2026-05-13T10:00",
        create=[daily("2026-05-12")], next_dagrun=None),
    "end-date-in-future-keeps-going": Case(
        dag(end_date="2026-06-01T00:00:00Z"), stored="2026-05-13T00:00", now="2026-05-13T10:00",
        create=[daily("2026-05-13")], next_dagrun="2026-05-14T00:00"),
    "last-logical-date-prevents-duplicates-after-crash": Case(
        dag(catchup=True), stored="2026-05-10T00:00", last="2026-05-12T00:00", now="2026-05-13T10:00",
        create=[daily("2026-05-13")], next_dagrun="2026-05-14T00:00"),
    "replay-of-a-committed-plan-creates-nothing": Case(
        dag(), stored="2026-05-10T00:00", last="2026-05-13T00:00", now="2026-05-13T10:00",
        create=[], next_dagrun="2026-05-14T00:00"),
    "stale-next-dagrun-realigned-to-new-schedule": Case(
        dag("0 6 * * *"), stored="2026-05-13T00:00", now="2026-05-13T03:00", create=[],
        next_dagrun="2026-05-13T06:00"),
    "start-date-moved-past-stored-next": Case(
        dag(start_date="2026-06-01T00:00:00Z"), stored="2026-05-13T00:00", now="2026-05-13T03:00",
        create=[], next_dagrun="2026-06-01T00:00"),
    "manual-only-dag": Case(dag(None), now="2026-05-13T10:00", create=[], next_dagrun=None),
    "timedelta-anchored-at-first-seen": Case(
        dag(None, schedule_interval_seconds=7200.0), now="2026-05-01T09:00", create=[],
        next_dagrun="2026-05-01T10:00"),
    "timedelta-anchored-at-start-date-after-downtime": Case(
        dag(None, schedule_interval_seconds=7200.0, start_date="2026-05-01T00:30:00Z"),
        stored="2026-05-01T02:30", now="2026-05-01T09:00",
        create=[RunInfo(utc("2026-05-01T08:30"), utc("2026-05-01T06:30"), utc("2026-05-01T08:30"))],
        next_dagrun="2026-05-01T10:30"),
    "once-at-first-seen": Case(
        dag("@once"), now="2026-05-01T09:00",
        create=[RunInfo(utc("2026-05-01T08:00"), utc("2026-05-01T08:00"), utc("2026-05-01T08:00"))],
        next_dagrun=None),
    "once-at-future-start-date": Case(
        dag("@once", start_date="2026-06-01T00:00:00Z"), now="2026-05-01T09:00", create=[],
        next_dagrun="2026-06-01T00:00"),
    "once-never-again": Case(
        dag("@once"), last="2026-05-01T08:00", now="2026-05-20T09:00", create=[], next_dagrun=None),
    "zone-berlin-daily-0230-on-spring-day": Case(
        dag("30 2 * * *", timezone="Europe/Berlin"), stored="2026-03-29T01:30", now="2026-03-29T02:00",
        create=[RunInfo(utc("2026-03-29T01:30"), utc("2026-03-28T01:30"), utc("2026-03-29T01:30"))],
        next_dagrun="2026-03-30T00:30"),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_plan_dag_runs(case: Case) -> None:
    plan = plan_dag_runs(
        case.dag,
        next_dagrun=utc(case.stored) if case.stored else None,
        last_logical_date=utc(case.last) if case.last else None,
        active_runs=case.active,
        now=utc(case.now),
        first_seen=utc(case.first_seen),
    )
    assert plan == DagRunPlan(case.create, utc(case.next_dagrun) if case.next_dagrun else None)


def simulate(serialized: dict[str, Any], first_seen: datetime, until: datetime, tick: timedelta) -> list[datetime]:
    """Drive plan_dag_runs the way the engine does: skip until next_dagrun is due, runs end at once.

    The clock ticks every `tick` from first_seen, with a last tick exactly at `until`.
    """
    stored: datetime | None = None
    last: datetime | None = None
    created: list[datetime] = []
    ticks = [first_seen + k * tick for k in range((until - first_seen) // tick + 1)] + [until]
    for now in ticks:
        if stored is None or stored <= now:
            plan = plan_dag_runs(serialized, next_dagrun=stored, last_logical_date=last, active_runs=0,
                                 now=now, first_seen=first_seen)
            created += [r.logical_date for r in plan.create]
            last = created[-1] if created else None
            stored = plan.next_dagrun
    return created


@pytest.mark.parametrize(
    ("tz", "first_seen", "until", "count"),
    [
        pytest.param("Europe/Berlin", "2026-10-24T21:59", "2026-10-25T22:59", 25, id="berlin-fall"),
        pytest.param("Europe/Berlin", "2026-03-28T22:59", "2026-03-29T21:59", 23, id="berlin-spring"),
        pytest.param("America/New_York", "2026-11-01T03:59", "2026-11-02T04:59", 25, id="new-york-fall"),
        pytest.param("Asia/Seoul", "2026-10-24T14:59", "2026-10-25T14:59", 24, id="seoul"),
    ],
)
def test_ticking_hourly_dag_runs_every_real_hour_once(tz: str, first_seen: str, until: str, count: int) -> None:
    """The window is one local calendar day, starting a minute before local midnight."""
    created = simulate(dag("0 * * * *", timezone=tz), utc(first_seen), utc(until), timedelta(minutes=7))
    assert len(created) == count
    assert created == sorted(set(created))
    assert {b - a for a, b in zip(created, created[1:], strict=False)} == {timedelta(hours=1)}


def test_ticking_with_catchup_matches_one_big_catchup() -> None:
    serialized = dag("*/30 * * * *", catchup=True, start_date="2026-05-01T00:00:00Z", max_active_runs=None)
    ticked = simulate(serialized, utc("2026-05-01T00:00"), utc("2026-05-02T00:00"), timedelta(minutes=13))
    at_once = plan_dag_runs(serialized, next_dagrun=None, last_logical_date=None, active_runs=0,
                            now=utc("2026-05-02T00:00"), first_seen=utc("2026-05-01T00:00"))
    assert ticked == [r.logical_date for r in at_once.create]
    assert len(ticked) == 49


@pytest.mark.parametrize(
    ("serialized", "after", "n", "first_seen", "expected"),
    [
        pytest.param(dag(), "2026-05-13T10:00", 3, None, ["2026-05-14T00:00", "2026-05-15T00:00", "2026-05-16T00:00"],
                     id="daily"),
        pytest.param(dag(start_date="2026-06-01T00:00:00Z"), "2026-05-13T10:00", 2, None,
                     ["2026-06-01T00:00", "2026-06-02T00:00"], id="future-start-date"),
        pytest.param(dag(end_date="2026-05-15T00:00:00Z"), "2026-05-13T10:00", 5, None,
                     ["2026-05-14T00:00", "2026-05-15T00:00"], id="end-date"),
        pytest.param(dag(), "2026-05-13T10:00", 0, None, [], id="zero"),
        pytest.param(dag(None), "2026-05-13T10:00", 3, None, [], id="manual-only"),
        pytest.param(dag("@once", start_date="2026-06-01T00:00:00Z"), "2026-05-13T10:00", 3, None,
                     ["2026-06-01T00:00"], id="once-at-start"),
        pytest.param(dag("@once"), "2026-05-13T10:00", 3, None, ["2026-05-13T10:00"], id="once-not-yet-seen"),
        pytest.param(dag("@once"), "2026-05-13T10:00", 3, "2026-05-01T00:00", [], id="once-already-fired"),
        pytest.param(dag(None, schedule_interval_seconds=3600.0), "2026-05-13T10:00", 2, "2026-05-13T09:20",
                     ["2026-05-13T10:20", "2026-05-13T11:20"], id="timedelta-first-seen-grid"),
        pytest.param(dag("30 2 * * *", timezone="Europe/Berlin"), "2026-03-28T12:00", 2, None,
                     ["2026-03-29T01:30", "2026-03-30T00:30"], id="berlin-spring"),
    ],
)
def test_next_runs(serialized: dict[str, Any], after: str, n: int, first_seen: str | None,
                   expected: list[str]) -> None:
    runs = next_runs(serialized, utc(after), n, first_seen=utc(first_seen) if first_seen else None)
    assert [r.logical_date for r in runs] == [utc(t) for t in expected]
    for r in runs:
        assert r.data_interval_start <= r.data_interval_end == r.logical_date


def test_next_runs_intervals_chain() -> None:
    runs = next_runs(dag("0 9 * * mon-fri"), utc("2026-05-13T10:00"), 4)
    assert [r.data_interval_start for r in runs[1:]] == [r.data_interval_end for r in runs[:-1]]
    assert runs[2].data_interval_start == utc("2026-05-15T09:00")
    assert runs[2].logical_date == utc("2026-05-18T09:00")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda: plan_dag_runs(dag(), next_dagrun=None, last_logical_date=None, active_runs=0,
                                           now=datetime(2026, 5, 13), first_seen=utc("2026-05-01T00:00")),
                     "now must be timezone-aware", id="naive-now"),
        pytest.param(lambda: plan_dag_runs(dag(), next_dagrun=datetime(2026, 5, 13), last_logical_date=None,
                                           active_runs=0, now=utc("2026-05-13T00:00"),
                                           first_seen=utc("2026-05-01T00:00")),
                     "next_dagrun must be timezone-aware", id="naive-next-dagrun"),
        pytest.param(lambda: next_runs(dag(), datetime(2026, 5, 13), 3), "after must be timezone-aware",
                     id="naive-after"),
        pytest.param(lambda: plan_dag_runs(dag(), next_dagrun=None, last_logical_date=None, active_runs=-1,
                                           now=utc("2026-05-13T00:00"), first_seen=utc("2026-05-01T00:00")),
                     "active_runs must be >= 0", id="negative-active-runs"),
    ],
)
def test_bad_arguments(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"start_date": "yesterday"}, "start_date 'yesterday' is not an ISO 8601", id="bad-start"),
        pytest.param({"timezone": "Nowhere/Town"}, "unknown time zone 'Nowhere/Town'", id="bad-zone"),
        pytest.param({"schedule": "0 25 * * *"}, "hour 25 out of range", id="bad-cron"),
        pytest.param({"schedule": None, "schedule_interval_seconds": -5.0}, "must be positive", id="bad-interval"),
    ],
)
def test_bad_serialized_dag(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        next_runs(dag(**overrides), utc("2026-05-13T00:00"), 1)
