"""Airflow's cron dialect is croniter's: flow parses it and fires at the same times in UTC.

flow keeps its own iteration (DST-correct on wall clocks, see test_timezones); here the two are
cross-checked on generated expressions, where UTC has no DST to disagree about.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from croniter import croniter

from flow.schedule import ScheduleError, parse_schedule

START = datetime(2026, 1, 1, tzinfo=UTC)


def flow_fires(expr: str, n: int) -> list[datetime]:
    schedule = parse_schedule(expr, "UTC")
    out, at = [], START
    for _ in range(n):
        at = schedule.next_fire(at)
        out.append(at)
    return out


def croniter_fires(expr: str, n: int) -> list[datetime]:
    it = croniter(expr, START)
    return [it.get_next(datetime) for _ in range(n)]


@pytest.mark.parametrize("expr", [
    "0 0 L * *", "30 6 15W * *", "0 12 1W * *", "0 0 31W * *", "0 9 * * 5#2", "0 9 * * 1#1,5#3", "0 0 * * L5",
    "0 0 ? * 1", "0 0 1,L * *", "15 10 * JAN-MAR MON-FRI", "0 0 1 jan,jul *", "*/20 8-10 * * sun", "0 0 * * 7",
    "0 0 1 1 * 0",
])
def test_special_forms_fire_as_croniter(expr):
    assert flow_fires(expr, 24) == croniter_fires(expr.rsplit(" 0", 1)[0] if expr.count(" ") == 5 else expr, 24)


def test_generated_expressions_agree_with_croniter():
    rng = random.Random(14)

    def field(lo: int, hi: int) -> str:
        kind = rng.randrange(5)
        if kind == 0:
            return "*"
        if kind == 1:
            return str(rng.randint(lo, hi))
        if kind == 2:
            a = rng.randint(lo, hi - 1)
            return f"{a}-{rng.randint(a + 1, hi)}"  # croniter 2 reads "a-a" as "*"
        if kind == 3:
            return f"*/{rng.randint(2, max(2, (hi - lo) // 2))}"
        return ",".join(str(v) for v in sorted(rng.sample(range(lo, hi + 1), 3)))

    for _ in range(150):
        dom = rng.choice(["*", "L", field(1, 28)])  # croniter 2's W drops the hour field; W is checked above
        dow = rng.choice(["*", f"{rng.randint(0, 6)}#{rng.randint(1, 4)}", field(0, 6)])
        if not dom.replace("-", "").replace(",", "").replace("*/", "").isdigit() and dom != "*":
            dow = "*"  # croniter mixes L/W with a restricted weekday field inconsistently; not compared
        elif "#" in dow:
            dom = "*"
        if dom == "L":  # croniter 2 mishandles L with month, hour or minute lists and ranges: plain values
            expr = f"{rng.randint(0, 59)} {rng.randint(0, 23)} L * *"
        else:  # croniter 2 ignores the month field with D#k: those get every month
            expr = f"{field(0, 59)} {field(0, 23)} {dom} {'*' if '#' in dow else field(1, 12)} {dow}"
        assert flow_fires(expr, 12) == croniter_fires(expr, 12), expr


def test_seconds_field_other_than_zero_is_refused():
    with pytest.raises(ScheduleError, match="the sixth field \\(seconds\\) must be 0"):
        parse_schedule("0 0 * * * 30", "UTC")


@pytest.mark.parametrize("expr", ["0 0 L * *", "0 9 * * 5#2", "30 6 15W * *", "0 0 ? * 1", "0 0 * * L5"])
def test_special_forms_are_described_as_written(expr):
    assert parse_schedule(expr, "UTC").describe() in (expr, "every Monday at 00:00")
