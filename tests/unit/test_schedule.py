"""Schedules: parsing, fire times across month/year ends and DST, descriptions, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from flow.schedule import (
    CronSchedule,
    DeltaSchedule,
    OnceSchedule,
    RunInfo,
    ScheduleError,
    parse_schedule,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local_day_fires(expr: str, tz: str, day: str) -> list[datetime]:
    """Every fire time within one local calendar day, walking forwards."""
    schedule = parse_schedule(expr, tz)
    zone = ZoneInfo(tz)
    start = datetime.fromisoformat(day).replace(tzinfo=zone).astimezone(UTC)
    end = (datetime.fromisoformat(day) + timedelta(days=1)).replace(tzinfo=zone).astimezone(UTC)
    fires, t = [], start - timedelta(microseconds=1)
    while (t := schedule.next_fire(t)) is not None and t < end:
        fires.append(t)
    return fires


def local_day_fires_backwards(expr: str, tz: str, day: str) -> list[datetime]:
    schedule = parse_schedule(expr, tz)
    zone = ZoneInfo(tz)
    start = datetime.fromisoformat(day).replace(tzinfo=zone).astimezone(UTC)
    end = (datetime.fromisoformat(day) + timedelta(days=1)).replace(tzinfo=zone).astimezone(UTC)
    fires, t = [], end
    while (t := schedule.prev_fire(t)) is not None and t >= start:
        fires.append(t)
    return fires[::-1]


# --- presets ------------------------------------------------------------------------------------

WED = utc("2026-05-13T10:17:00")


@pytest.mark.parametrize(
    ("preset", "expected_next", "expected_prev"),
    [
        pytest.param("@hourly", "2026-05-13T11:00", "2026-05-13T10:00", id="hourly"),
        pytest.param("@daily", "2026-05-14T00:00", "2026-05-13T00:00", id="daily"),
        pytest.param("@midnight", "2026-05-14T00:00", "2026-05-13T00:00", id="midnight"),
        pytest.param("@weekly", "2026-05-17T00:00", "2026-05-10T00:00", id="weekly-sunday"),
        pytest.param("@monthly", "2026-06-01T00:00", "2026-05-01T00:00", id="monthly"),
        pytest.param("@quarterly", "2026-07-01T00:00", "2026-04-01T00:00", id="quarterly"),
        pytest.param("@yearly", "2027-01-01T00:00", "2026-01-01T00:00", id="yearly"),
        pytest.param("@annually", "2027-01-01T00:00", "2026-01-01T00:00", id="annually"),
        pytest.param("@DAILY", "2026-05-14T00:00", "2026-05-13T00:00", id="case-insensitive"),
    ],
)
def test_preset_fires(preset: str, expected_next: str, expected_prev: str) -> None:
    schedule = parse_schedule(preset, "UTC")
    assert schedule.next_fire(WED) == utc(expected_next)
    assert schedule.prev_fire(WED) == utc(expected_prev)


def test_none_is_manual_only() -> None:
    assert parse_schedule(None, "Europe/Berlin") is None


# --- cron across month and year ends ------------------------------------------------------------

@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        pytest.param("59 23 31 12 *", "2026-12-31T23:59", "2027-12-31T23:59", id="new-year-eve-strictly-after"),
        pytest.param("0 0 1 * *", "2026-01-31T12:00", "2026-02-01T00:00", id="month-end-jan"),
        pytest.param("0 0 31 * *", "2026-04-15T00:00", "2026-05-31T00:00", id="skips-30-day-month"),
        pytest.param("0 12 29 2 *", "2026-03-01T00:00", "2028-02-29T12:00", id="leap-day"),
        pytest.param("*/20 * * * *", "2026-12-31T23:50", "2027-01-01T00:00", id="minute-step-over-year"),
        pytest.param("0 9 * * mon-fri", "2026-05-15T09:00", "2026-05-18T09:00", id="weekdays-over-weekend"),
        pytest.param("0 0 13 * fri", "2026-05-13T00:00", "2026-05-15T00:00", id="dom-or-dow-when-both-set"),
        pytest.param("0 0 */2 * 1", "2026-05-13T00:00", "2026-05-15T00:00", id="dom-step-is-a-list-as-in-croniter"),
        pytest.param("0 0 * * 1", "2026-05-13T00:00", "2026-05-18T00:00", id="dom-star-then-dow-only"),
        pytest.param("30 4 * * 7", "2026-05-13T00:00", "2026-05-17T04:30", id="dow-7-is-sunday"),
        pytest.param("0 0 1 jan,jul *", "2026-01-01T00:00", "2026-07-01T00:00", id="month-names"),
        pytest.param("* * * * *", "2026-05-13T10:00:30", "2026-05-13T10:01", id="seconds-round-up"),
        pytest.param("* * * * *", "2026-05-13T10:00", "2026-05-13T10:01", id="strictly-after"),
    ],
)
def test_cron_next_fire(expr: str, after: str, expected: str) -> None:
    assert parse_schedule(expr, "UTC").next_fire(utc(after)) == utc(expected)


@pytest.mark.parametrize(
    ("expr", "before", "expected"),
    [
        pytest.param("0 0 1 * *", "2026-03-01T00:00", "2026-02-01T00:00", id="strictly-before"),
        pytest.param("59 23 31 12 *", "2027-01-01T00:00", "2026-12-31T23:59", id="year-end"),
        pytest.param("0 12 29 2 *", "2028-01-01T00:00", "2024-02-29T12:00", id="leap-day"),
        pytest.param("0 0 31 * *", "2026-05-01T00:00", "2026-03-31T00:00", id="skips-30-day-month"),
        pytest.param("* * * * *", "2026-05-13T10:00:30", "2026-05-13T10:00", id="seconds-round-down"),
        pytest.param("* * * * *", "2026-05-13T10:00", "2026-05-13T09:59", id="exact-minute"),
        pytest.param("0 9 * * mon-fri", "2026-05-18T09:00", "2026-05-15T09:00", id="weekdays-over-weekend"),
    ],
)
def test_cron_prev_fire(expr: str, before: str, expected: str) -> None:
    assert parse_schedule(expr, "UTC").prev_fire(utc(before)) == utc(expected)


@pytest.mark.parametrize(
    "expr",
    ["*/7 * * * *", "5,35 */3 * * *", "0 0 28-31 * *", "15 10 1,15 * *",
     "0 22 * * 1-5", "30 2 29 2 *", "0 0 1 */3 *", "45 23 * 2 sun", "0 6-18/4 * * sat,sun"],
)
def test_cron_agrees_with_croniter_in_utc(expr: str) -> None:
    schedule = parse_schedule(expr, "UTC")
    start = utc("2026-12-30T22:13:00")
    forward, backward = croniter(expr, start), croniter(expr, start)
    t = s = start
    for _ in range(25):
        t, s = schedule.next_fire(t), schedule.prev_fire(s)
        assert t == forward.get_next(datetime)
        assert s == backward.get_prev(datetime)


# --- DST ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("expr", "tz", "day", "expected_utc"),
    [
        pytest.param("30 2 * * *", "Europe/Berlin", "2026-03-29", ["2026-03-29T01:30"], id="berlin-spring-gap-shifted"),
        pytest.param("30 2 * * *", "Europe/Berlin", "2026-03-30", ["2026-03-30T00:30"], id="berlin-day-after-spring"),
        pytest.param("30 2 * * *", "Europe/Berlin", "2026-10-25", ["2026-10-25T00:30"], id="berlin-fall-first-occurrence"),
        pytest.param("30 2 * * *", "Europe/Berlin", "2026-10-26", ["2026-10-26T01:30"], id="berlin-day-after-fall"),
        pytest.param("30 2 * * *", "America/New_York", "2026-03-08", ["2026-03-08T07:30"], id="new-york-spring-gap-shifted"),
        pytest.param("30 1 * * *", "America/New_York", "2026-11-01", ["2026-11-01T05:30"], id="new-york-fall-first"),
        pytest.param("30 2 * * *", "Asia/Seoul", "2026-03-29", ["2026-03-28T17:30"], id="seoul-no-dst"),
        pytest.param("0 9 * * *", "Europe/Berlin", "2026-03-29", ["2026-03-29T07:00"], id="berlin-after-gap-is-summer"),
        pytest.param("10,59 2,3 * * *", "Europe/Berlin", "2026-03-29", ["2026-03-29T01:10", "2026-03-29T01:59"],
                     id="shifted-gap-times-merge-with-real-ones"),
    ],
)
def test_daily_wall_clock_around_dst(expr: str, tz: str, day: str, expected_utc: list[str]) -> None:
    fires = local_day_fires(expr, tz, day)
    assert fires == [utc(t) for t in expected_utc]
    assert local_day_fires_backwards(expr, tz, day) == fires


@pytest.mark.parametrize(
    ("expr", "tz", "day", "count", "spacing"),
    [
        pytest.param("0 * * * *", "Europe/Berlin", "2026-03-29", 23, 60, id="berlin-spring-hourly"),
        pytest.param("0 * * * *", "Europe/Berlin", "2026-10-25", 25, 60, id="berlin-fall-hourly"),
        pytest.param("0 * * * *", "Europe/Berlin", "2026-05-13", 24, 60, id="berlin-ordinary-hourly"),
        pytest.param("0 * * * *", "America/New_York", "2026-03-08", 23, 60, id="new-york-spring-hourly"),
        pytest.param("0 * * * *", "America/New_York", "2026-11-01", 25, 60, id="new-york-fall-hourly"),
        pytest.param("0 * * * *", "Asia/Seoul", "2026-03-29", 24, 60, id="seoul-hourly-march"),
        pytest.param("0 * * * *", "Asia/Seoul", "2026-10-25", 24, 60, id="seoul-hourly-october"),
        pytest.param("@hourly", "Europe/Berlin", "2026-10-25", 25, 60, id="preset-hourly-berlin-fall"),
        pytest.param("*/15 * * * *", "Europe/Berlin", "2026-03-29", 92, 15, id="quarter-hours-spring"),
        pytest.param("*/15 * * * *", "America/New_York", "2026-11-01", 100, 15, id="quarter-hours-fall"),
        pytest.param("30 0-23 * * *", "Europe/Berlin", "2026-10-25", 25, 60, id="hour-range-covering-all"),
    ],
)
def test_every_real_hour_fires_across_dst(expr: str, tz: str, day: str, count: int, spacing: int) -> None:
    fires = local_day_fires(expr, tz, day)
    assert len(fires) == count
    assert {b - a for a, b in zip(fires, fires[1:], strict=False)} == {timedelta(minutes=spacing)}
    assert local_day_fires_backwards(expr, tz, day) == fires


def test_hourly_fall_back_repeats_the_local_hour() -> None:
    fires = local_day_fires("0 * * * *", "Europe/Berlin", "2026-10-25")
    berlin = ZoneInfo("Europe/Berlin")
    local = [(f.astimezone(berlin).hour, f.astimezone(berlin).utcoffset()) for f in fires]
    assert local[2:4] == [(2, timedelta(hours=2)), (2, timedelta(hours=1))]


def test_next_fire_from_inside_the_repeated_hour() -> None:
    # 02:20 CET (the second 02:20) on the fall day: the wall-clock daily job already ran at 02:30 CEST.
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
    assert schedule.next_fire(utc("2026-10-25T01:20")) == utc("2026-10-26T01:30")
    hourly = parse_schedule("30 * * * *", "Europe/Berlin")
    assert hourly.next_fire(utc("2026-10-25T01:20")) == utc("2026-10-25T01:30")


def test_run_info_is_the_interval_since_the_previous_fire() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
    assert schedule.run_info(utc("2026-03-30T00:30")) == RunInfo(
        utc("2026-03-30T00:30"), utc("2026-03-29T01:30"), utc("2026-03-30T00:30"))


# --- timedelta and @once ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("anchor", "delta", "at", "expected_next", "expected_prev"),
    [
        pytest.param("2026-01-01T00:07", timedelta(hours=2), "2026-01-01T05:00", "2026-01-01T06:07",
                     "2026-01-01T04:07", id="between-fires"),
        pytest.param("2026-01-01T00:07", timedelta(hours=2), "2026-01-01T06:07", "2026-01-01T08:07",
                     "2026-01-01T04:07", id="on-a-fire"),
        pytest.param("2026-01-01T00:07", timedelta(hours=2), "2025-12-31T23:00", "2026-01-01T00:07",
                     "2025-12-31T22:07", id="before-anchor"),
        pytest.param("2026-03-28T12:00", timedelta(days=1), "2026-03-29T06:00", "2026-03-29T12:00",
                     "2026-03-28T12:00", id="absolute-time-across-berlin-spring"),
    ],
)
def test_timedelta_fires_on_the_anchor_grid(anchor: str, delta: timedelta, at: str, expected_next: str,
                                            expected_prev: str) -> None:
    schedule = parse_schedule(delta, "Europe/Berlin").anchored(utc(anchor))
    assert schedule.next_fire(utc(at)) == utc(expected_next)
    assert schedule.prev_fire(utc(at)) == utc(expected_prev)
    fire = utc(expected_next)
    assert schedule.run_info(fire) == RunInfo(fire, fire - delta, fire)


def test_unanchored_timedelta_aligns_to_the_epoch() -> None:
    schedule = parse_schedule(timedelta(hours=6), "UTC")
    assert schedule.next_fire(utc("2026-05-13T10:17")) == utc("2026-05-13T12:00")


def test_once_fires_only_at_its_anchor() -> None:
    schedule = parse_schedule("@once", "UTC")
    assert isinstance(schedule, OnceSchedule)
    assert schedule.next_fire(WED) is None
    anchored = schedule.anchored(WED)
    assert anchored.next_fire(WED - timedelta(days=1)) == WED
    assert anchored.next_fire(WED) is None
    assert anchored.prev_fire(WED + timedelta(seconds=1)) == WED
    assert anchored.run_info(WED) == RunInfo(WED, WED, WED)


# --- zones, types and errors --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        pytest.param("+05:30", "2026-05-13T03:30", id="fixed-offset-string"),
        pytest.param(timezone(timedelta(hours=-3)), "2026-05-13T12:00", id="fixed-offset-tzinfo"),
        pytest.param(ZoneInfo("Asia/Kolkata"), "2026-05-13T03:30", id="zoneinfo-object"),
        pytest.param(UTC, "2026-05-13T09:00", id="utc-object"),
    ],
)
def test_zone_forms(tz: object, expected: str) -> None:
    assert parse_schedule("0 9 * * *", tz).next_fire(utc("2026-05-13T00:00")) == utc(expected)


@pytest.mark.parametrize(
    ("value", "tz", "message"),
    [
        pytest.param("61 * * * *", "UTC", "invalid cron expression '61 * * * *': minute 61 out of range 0-59",
                     id="minute-out-of-range"),
        pytest.param("0 24 * * *", "UTC", "hour 24 out of range 0-23", id="hour-out-of-range"),
        pytest.param("0 0 0 * *", "UTC", "day-of-month 0 out of range 1-31", id="dom-zero"),
        pytest.param("0 0 * 13 *", "UTC", "month 13 out of range 1-12", id="month-13"),
        pytest.param("0 0 * * 8", "UTC", "day-of-week 8 out of range 0-7", id="dow-8"),
        pytest.param("*/5 * * * * *", "UTC", "the sixth field (seconds) must be 0", id="six-fields-seconds"),
        pytest.param("0 0 * * * 2026", "UTC", "the sixth field (seconds) must be 0", id="sixth-field-is-seconds"),
        pytest.param("0 9 * *", "UTC", "got 4", id="four-fields"),
        pytest.param("every day", "UTC", "expected 5 fields", id="prose"),
        pytest.param("", "UTC", "got 0", id="empty"),
        pytest.param("a b c d e", "UTC", "minute value 'a' is not a number", id="nonsense"),
        pytest.param("0 0 * foo *", "UTC", "month value 'foo' is not a number or a name", id="bad-month-name"),
        pytest.param("5-1 * * * *", "UTC", "minute range '5-1' runs backwards", id="backwards-range"),
        pytest.param("*/0 * * * *", "UTC", "step '0' in minute field '*/0' must be a positive integer", id="zero-step"),
        pytest.param("1,,2 * * * *", "UTC", "empty list item", id="empty-list-item"),
        pytest.param("0 0 30 2 *", "UTC", "never fires", id="february-30"),
        pytest.param("0 0 LW * *", "UTC", "day-of-month value 'LW' is not a number", id="unsupported-LW"),
        pytest.param("@fortnightly", "UTC", "unknown schedule preset '@fortnightly'", id="unknown-preset"),
        pytest.param(timedelta(0), "UTC", "must be positive", id="zero-timedelta"),
        pytest.param(timedelta(hours=-1), "UTC", "must be positive", id="negative-timedelta"),
        pytest.param(3600, "UTC", "not int (3600)", id="int"),
        pytest.param(["0 9 * * *"], "UTC", "not list", id="list"),
        pytest.param("0 9 * * *", "Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'", id="unknown-zone"),
        pytest.param(None, "Europe/Berlín", "unknown time zone 'Europe/Berlín'", id="zone-checked-for-none"),
        pytest.param("0 9 * * *", "", "unknown time zone ''", id="empty-zone"),
        pytest.param("0 9 * * *", 5, "time zone must be an IANA name", id="zone-not-a-string"),
    ],
)
def test_parse_errors(value: object, tz: object, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(value, tz)
    assert message in str(info.value)


def test_schedule_error_is_a_value_error() -> None:
    assert issubclass(ScheduleError, ValueError)


@pytest.mark.parametrize("call", ["next_fire", "prev_fire", "run_info"])
@pytest.mark.parametrize("value", ["0 9 * * *", timedelta(hours=1), "@once"], ids=["cron", "timedelta", "once"])
def test_naive_datetimes_are_rejected(call: str, value: object) -> None:
    schedule = parse_schedule(value, "UTC")
    with pytest.raises(ValueError, match="timezone-aware"):
        getattr(schedule, call)(datetime(2026, 5, 13, 9, 0))


def test_types() -> None:
    assert isinstance(parse_schedule("0 9 * * *", "UTC"), CronSchedule)
    assert isinstance(parse_schedule(timedelta(minutes=5), "UTC"), DeltaSchedule)


# --- descriptions -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "tz", "text"),
    [
        pytest.param("* * * * *", "UTC", "every minute", id="every-minute"),
        pytest.param("* * * * *", "Europe/Berlin", "every minute", id="every-minute-zone-irrelevant"),
        pytest.param("*/15 * * * *", "UTC", "every 15 minutes", id="every-15-minutes"),
        pytest.param("0 * * * *", "UTC", "every hour at :00", id="every-hour"),
        pytest.param("@hourly", "UTC", "every hour at :00", id="preset-hourly"),
        pytest.param("5 */2 * * *", "UTC", "every 2 hours at :05", id="every-2-hours"),
        pytest.param("0 9 * * *", "UTC", "every day at 09:00", id="daily"),
        pytest.param("0 9 * * *", "Europe/Berlin", "every day at 09:00 (Europe/Berlin)", id="daily-with-zone"),
        pytest.param("30 9,17 * * *", "UTC", "every day at 09:30 and 17:30", id="twice-a-day"),
        pytest.param("0 9 * * 1", "UTC", "every Monday at 09:00", id="monday"),
        pytest.param("0 9 * * mon,fri", "UTC", "every Monday and Friday at 09:00", id="monday-friday"),
        pytest.param("0 9 * * 1-5", "UTC", "every weekday at 09:00", id="weekdays"),
        pytest.param("0 9 * * 0,6", "UTC", "every Saturday and Sunday at 09:00", id="weekend-monday-first"),
        pytest.param("@daily", "UTC", "every day at 00:00", id="preset-daily"),
        pytest.param("@weekly", "UTC", "every Sunday at 00:00", id="preset-weekly"),
        pytest.param("@monthly", "UTC", "every month on day 1 at 00:00", id="preset-monthly"),
        pytest.param("@quarterly", "UTC", "on day 1 of January, April, July and October at 00:00",
                     id="preset-quarterly"),
        pytest.param("@yearly", "UTC", "every year on 1 January at 00:00", id="preset-yearly"),
        pytest.param("5 4 1-7 * sun", "UTC", "5 4 1-7 * sun", id="complex-falls-back-to-expression"),
        pytest.param("0  9 * *  *", "UTC", "every day at 09:00", id="extra-spaces"),
        pytest.param("@once", "Europe/Berlin", "once", id="once"),
        pytest.param(timedelta(hours=2), "Europe/Berlin", "every 2 hours", id="timedelta-hours"),
        pytest.param(timedelta(minutes=90), "UTC", "every 90 minutes", id="timedelta-minutes"),
        pytest.param(timedelta(days=1), "UTC", "every day", id="timedelta-day"),
        pytest.param(timedelta(weeks=2), "UTC", "every 2 weeks", id="timedelta-weeks"),
        pytest.param(timedelta(seconds=1.5), "UTC", "every 1.5 seconds", id="timedelta-fraction"),
    ],
)
def test_describe(value: object, tz: str, text: str) -> None:
    assert parse_schedule(value, tz).describe() == text


# --- brute-force oracle around transitions ------------------------------------------------------

def brute_force_fires(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Fire times in [start, end) from first principles, minute by minute.

    Every-hour schedules: each real instant whose local wall time matches. Others: each matching
    wall minute read with fold=0 (gap times land after the gap, fold times at their first occurrence).
    """
    schedule = parse_schedule(expr, tz)
    fields, zone = schedule.fields, ZoneInfo(tz)

    def matches(wall: datetime) -> bool:
        return fields.matches_day(wall.date()) and wall.hour in fields.hours and wall.minute in fields.minutes

    fires: set[datetime] = set()
    if schedule.every_real_hour:
        t = start
        while t < end:
            if matches(t.astimezone(zone).replace(tzinfo=None)):
                fires.add(t)
            t += timedelta(minutes=1)
    else:
        wall = (start - timedelta(days=1)).astimezone(zone).replace(tzinfo=None)
        while wall < (end + timedelta(days=1)).astimezone(zone).replace(tzinfo=None):
            if matches(wall):
                instant = wall.replace(tzinfo=zone).astimezone(UTC)
                if start <= instant < end:
                    fires.add(instant)
            wall += timedelta(minutes=1)
    return sorted(fires)


@pytest.mark.parametrize("expr", ["0 * * * *", "*/20 * * * *", "30 2 * * *", "0 1-3 * * *", "15,45 2 * * 0",
                                  "59 1,2,3 * * *", "0 0 * * *"])
@pytest.mark.parametrize(
    ("tz", "day"),
    [("Europe/Berlin", "2026-03-29"), ("Europe/Berlin", "2026-10-25"), ("America/New_York", "2026-03-08"),
     ("America/New_York", "2026-11-01"), ("Asia/Seoul", "2026-10-25")],
    ids=["berlin-spring", "berlin-fall", "new-york-spring", "new-york-fall", "seoul"],
)
def test_fires_match_brute_force_around_transitions(expr: str, tz: str, day: str) -> None:
    start = utc(f"{day}T00:00") - timedelta(hours=18)
    end = start + timedelta(hours=60)
    schedule = parse_schedule(expr, tz)
    walked, t = [], start - timedelta(microseconds=1)
    while (t := schedule.next_fire(t)) is not None and t < end:
        walked.append(t)
    assert walked == brute_force_fires(expr, tz, start, end)
    backwards, t = [], end
    while (t := schedule.prev_fire(t)) is not None and t >= start:
        backwards.append(t)
    assert backwards[::-1] == walked
