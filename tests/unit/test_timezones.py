"""Time zones end to end through the planner: DAG zones from pendulum start dates, the default zone,
and DST transitions for daily and hourly schedules.

The rule, as flow implements it (flow/schedule.py) and docs/design.md states it:
- cron fields are read on the DAG zone's wall clock;
- a wall time that does not exist (spring-forward gap) fires once, shifted forward by the gap
  (a daily 02:30 in Berlin runs at 03:30 CEST on that day);
- a wall time that happens twice (fall-back overlap) fires once for daily-style schedules, at
  its first occurrence; schedules that fire every hour fire every real hour, so the repeated
  hour runs twice (25 runs that day) and the skipped hour not at all (23 runs);
- logical dates, run ids and everything stored stay UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pendulum
import pytest

from flow import DAG
from flow.daemon.specs import run_id_for
from flow.operators import EmptyOperator
from flow.schedule import plan_dag_runs
from flow.serialize import serialize_dag


def runs_on_local_day(schedule: str, tz: str, day: str) -> list[datetime]:
    """Every run the planner creates for one local calendar day, catching up from the day before."""
    y, m, d = map(int, day.split("-"))
    start = pendulum.datetime(y, m, d, tz=tz).subtract(days=1)
    with DAG(f"tz_{abs(hash((schedule, tz, day)))}", schedule=schedule, start_date=start, catchup=True,
             max_active_runs=1000) as dag:
        EmptyOperator(task_id="t")
    ser = serialize_dag(dag)
    assert ser["timezone"] == tz
    now = pendulum.datetime(y, m, d, tz=tz).add(days=1, minutes=-1).in_timezone("UTC")
    plan = plan_dag_runs(ser, next_dagrun=None, last_logical_date=None, active_runs=0, now=now,
                         first_seen=now)
    zone = ZoneInfo(tz)
    fires = [r.logical_date for r in plan.create]
    assert all(f.tzinfo is UTC or f.utcoffset().total_seconds() == 0 for f in fires)
    return [f for f in fires if f.astimezone(zone).date().isoformat() == day]


def local(fires: list[datetime], tz: str) -> list[str]:
    return [f.astimezone(ZoneInfo(tz)).strftime("%H:%M%z") for f in fires]


def test_seoul_has_no_dst_and_a_daily_job_runs_at_nine_local_which_is_midnight_utc():
    for day in ("2026-03-29", "2026-10-25", "2026-11-01"):
        [fire] = runs_on_local_day("0 9 * * *", "Asia/Seoul", day)
        assert local([fire], "Asia/Seoul") == ["09:00+0900"]
        assert fire.astimezone(UTC).hour == 0
    [fire] = runs_on_local_day("0 9 * * *", "Asia/Seoul", "2026-03-02")
    assert run_id_for("scheduled", fire) == "scheduled__2026-03-02T00:00:00+00:00"
    assert len(runs_on_local_day("0 * * * *", "Asia/Seoul", "2026-10-25")) == 24


@pytest.mark.parametrize(("tz", "day", "expected"), [
    ("Europe/Berlin", "2026-03-29", ["03:30+0200"]),       # 02:30 does not exist: once, an hour later
    ("Europe/Berlin", "2026-10-25", ["02:30+0200"]),       # 02:30 happens twice: once, the first time
    ("America/New_York", "2026-03-08", ["03:30-0400"]),
    ("America/New_York", "2026-11-01", ["02:30-0500"]),    # 02:30 is after New York's repeated hour
])
def test_daily_0230_runs_exactly_once_on_dst_days(tz, day, expected):
    assert local(runs_on_local_day("30 2 * * *", tz, day), tz) == expected


def test_daily_0130_in_new_yorks_repeated_hour_runs_once_at_the_first_occurrence():
    assert local(runs_on_local_day("30 1 * * *", "America/New_York", "2026-11-01"), "America/New_York") == [
        "01:30-0400"]


@pytest.mark.parametrize(("tz", "day", "count", "repeated", "missing"), [
    ("Europe/Berlin", "2026-03-29", 23, None, "02:00"),
    ("Europe/Berlin", "2026-10-25", 25, "02:00", None),
    ("America/New_York", "2026-03-08", 23, None, "02:00"),
    ("America/New_York", "2026-11-01", 25, "01:00", None),
])
def test_hourly_runs_every_real_hour_on_dst_days(tz, day, count, repeated, missing):
    fires = runs_on_local_day("@hourly", tz, day)
    assert len(fires) == count
    hours = [f.astimezone(ZoneInfo(tz)).strftime("%H:%M") for f in fires]
    if repeated:
        both = [f for f in fires if f.astimezone(ZoneInfo(tz)).strftime("%H:%M") == repeated]
        assert len(both) == 2 and (both[1] - both[0]).total_seconds() == 3600
    if missing:
        assert missing not in hours
    assert len(set(fires)) == len(fires) and fires == sorted(fires)


def test_a_dag_without_its_own_zone_uses_default_timezone(monkeypatch):
    monkeypatch.setenv("FLOW_DEFAULT_TIMEZONE", "Asia/Seoul")
    with DAG("naive", schedule="0 9 * * *", start_date=datetime(2026, 3, 1)) as dag:
        EmptyOperator(task_id="t")
    ser = serialize_dag(dag)
    assert ser["timezone"] == "Asia/Seoul"
    assert ser["start_date"] == "2026-02-28T15:00:00+00:00"
    with DAG("own_zone", schedule="0 9 * * *", start_date=pendulum.datetime(2026, 3, 1, tz="Europe/Berlin")) as own:
        EmptyOperator(task_id="t")
    assert serialize_dag(own)["timezone"] == "Europe/Berlin"


def test_cli_shows_times_in_the_zone_with_its_name():
    from flow.daemon.cli import show_time

    instant = datetime(2026, 3, 2, 0, 0, 5, tzinfo=UTC)
    assert show_time(instant, "Asia/Seoul") == "2026-03-02 09:00:05 KST"
    assert show_time(instant, "UTC") == "2026-03-02 00:00:05 UTC"
    assert show_time(datetime(2026, 7, 1, 12, tzinfo=UTC), "Europe/Berlin") == "2026-07-01 14:00:00 CEST"
    assert show_time(datetime(2026, 1, 1, 12, tzinfo=UTC), "America/New_York") == "2026-01-01 07:00:00 EST"
