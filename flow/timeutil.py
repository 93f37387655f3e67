"""Time zones, UTC discipline, and cron matching on a naive wall clock.

The engine keeps every instant as an aware UTC datetime. Only cron evaluation looks at a DAG
zone's wall clock, and it does so on naive datetimes so the calendar arithmetic never mixes in
offsets; turning wall times back into instants (DST gaps and folds) is flow.schedule's job.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ScheduleError(ValueError):
    """A schedule, cron expression, time zone or schedule date that cannot be used; the message names it."""


def resolve_zone(tz: str | tzinfo) -> tuple[tzinfo, str]:
    """Return the zone and the name to show for it.

    Besides IANA names, fixed offsets such as "+05:30" are accepted because a start_date with a
    fixed-offset tzinfo serializes its zone that way.
    """
    if isinstance(tz, tzinfo):
        if tz is UTC or tz == UTC:
            return ZoneInfo("UTC"), "UTC"
        return tz, str(getattr(tz, "key", None) or getattr(tz, "name", None) or tz)
    if not isinstance(tz, str):
        raise ScheduleError(f"time zone must be an IANA name such as 'Europe/Berlin', not {type(tz).__name__}")
    name = tz.strip()
    fixed = _fixed_offset(name)
    if fixed is not None:
        return fixed, name
    try:
        return ZoneInfo(name), name
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"unknown time zone {tz!r} (expected an IANA name such as 'Europe/Berlin')") from None


_OFFSET = re.compile(r"(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?")


def _fixed_offset(name: str) -> timezone | None:
    match = _OFFSET.fullmatch(name)
    if match is None:
        return None
    sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
    if hours > 23 or minutes > 59:
        raise ScheduleError(f"unknown time zone {name!r}: offset out of range")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if sign == "-" else offset)


def as_utc(value: object, what: str) -> datetime:
    """Reject naive datetimes: guessing their zone is how schedulers end up an hour off."""
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def parse_utc(value: object, what: str) -> datetime | None:
    """Read a serialized DAG date (ISO 8601 string, datetime or None); naive strings are UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ScheduleError(f"{what} {value!r} is not an ISO 8601 date-time") from None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if isinstance(value, datetime):
        return as_utc(value, what)
    raise ScheduleError(f"{what} must be an ISO 8601 string or None, not {type(value).__name__}")


# --- cron ---------------------------------------------------------------------------------------

_MONTHS = {name: i for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_WEEKDAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _WEEKDAYS),
)
_MONTH_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
# Feb 29 recurs at most 8 years apart (2096 -> 2104); anything sparser never fires.
_SEARCH_LIMIT = timedelta(days=366 * 9)


class _FieldError(Exception):
    pass


@dataclass(frozen=True)
class CronFields:
    """A validated 5-field cron expression; `weekdays` uses 0 = Sunday (7 is folded into 0)."""

    expression: str
    raw: tuple[str, str, str, str, str]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_star: bool
    dow_star: bool
    dom_rules: tuple[tuple[str, int], ...] = ()
    """croniter's day-of-month forms: ("last", 0) for L, ("weekday", N) for NW (the weekday nearest N)."""
    dow_rules: tuple[tuple[int, int], ...] = ()
    """croniter's day-of-week forms: (weekday, k) for D#k (the k-th D of the month), (weekday, -1) for LD."""

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom_ok = day.day in self.days or any(_dom_rule(kind, n, day) for kind, n in self.dom_rules)
        dow_ok = day.isoweekday() % 7 in self.weekdays or any(_dow_rule(d, k, day) for d, k in self.dow_rules)
        # Vixie cron: when both day fields are restricted, either one may match.
        if self.dom_star or self.dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    def next_after(self, moment: datetime) -> datetime | None:
        """First matching wall minute strictly after the naive `moment` (None past year 9999)."""
        try:
            return self._scan(moment.replace(second=0, microsecond=0) + timedelta(minutes=1), forward=True)
        except OverflowError:
            return None

    def prev_before(self, moment: datetime) -> datetime | None:
        """Last matching wall minute strictly before the naive `moment` (None before year 1)."""
        end = moment.replace(second=0, microsecond=0)
        try:
            return self._scan(end - timedelta(minutes=1) if end == moment else end, forward=False)
        except OverflowError:
            return None

    def _scan(self, first: datetime, *, forward: bool) -> datetime | None:
        """Walk days from `first` (inclusive), skipping whole months the month field excludes."""
        day, bound = first.date(), (first.hour, first.minute)
        step = timedelta(days=1 if forward else -1)
        for _ in range(_SEARCH_LIMIT.days):
            if day.month not in self.months:
                if forward:
                    day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
                else:
                    day = day.replace(day=1) - timedelta(days=1)
            else:
                if self.matches_day(day):
                    found = self._first_time_from(*bound) if forward else self._last_time_until(*bound)
                    if found is not None:
                        return datetime.combine(day, found)
                day += step
            bound = (0, 0) if forward else (23, 59)
        return None

    def _first_time_from(self, hour: int, minute: int) -> time | None:
        i = bisect.bisect_left(self.hours, hour)
        if i == len(self.hours):
            return None
        if self.hours[i] == hour:
            j = bisect.bisect_left(self.minutes, minute)
            if j < len(self.minutes):
                return time(hour, self.minutes[j])
            i += 1
            if i == len(self.hours):
                return None
        return time(self.hours[i], self.minutes[0])

    def _last_time_until(self, hour: int, minute: int) -> time | None:
        i = bisect.bisect_right(self.hours, hour) - 1
        if i < 0:
            return None
        if self.hours[i] == hour:
            j = bisect.bisect_right(self.minutes, minute) - 1
            if j >= 0:
                return time(hour, self.minutes[j])
            i -= 1
            if i < 0:
                return None
        return time(self.hours[i], self.minutes[-1])


def _month_length(day: date) -> int:
    return ((day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)).day


def _dom_rule(kind: str, n: int, day: date) -> bool:
    last = _month_length(day)
    if kind == "last":
        return day.day == last
    target = day.replace(day=min(n, last))  # NW: the weekday (Mon-Fri) nearest day N, within the month
    if target.isoweekday() == 6:
        target = target - timedelta(days=1) if target.day > 1 else target + timedelta(days=2)
    elif target.isoweekday() == 7:
        target = target + timedelta(days=1) if target.day < last else target - timedelta(days=2)
    return day == target


def _dow_rule(weekday: int, k: int, day: date) -> bool:
    if day.isoweekday() % 7 != weekday:
        return False
    if k == -1:
        return day.day + 7 > _month_length(day)
    return (day.day - 1) // 7 + 1 == k


_DOM_SPECIAL = re.compile(r"^(?:(L)|(\d{1,2})W)$", re.IGNORECASE)
_DOW_SPECIAL = re.compile(r"^(?:(\w+)#([1-5])|L(\w+))$", re.IGNORECASE)


def _split_specials(text: str, pattern: re.Pattern[str]) -> tuple[str, list[re.Match[str]]]:
    """The plain part of a day field (for _parse_field) and croniter's special tokens in it."""
    plain, found = [], []
    for item in text.split(","):
        match = pattern.match(item)
        (found.append(match) if match else plain.append(item))  # type: ignore[func-returns-value]
    return ",".join(plain), found


def parse_cron(expression: str) -> CronFields:
    """Validate and expand a cron expression in croniter's dialect, which is Airflow's.

    Numbers, names, `*`, `?`, ranges, lists and steps; in day-of-month `L` (the last day) and `NW`
    (the weekday nearest day N); in day-of-week `D#k` (the k-th D of the month) and `LD` (the last
    D); a sixth field is croniter's seconds, accepted when it is 0 (flow fires on whole minutes).
    """
    parts = expression.split()
    if len(parts) == 6 and parts[5] in ("0", "00"):
        parts = parts[:5]
    elif len(parts) == 6:
        raise ScheduleError(f"invalid cron expression {expression!r}: the sixth field (seconds) must be 0; "
                            "flow fires on whole minutes")
    parts = ["*" if p == "?" and i in (2, 4) else p for i, p in enumerate(parts)]
    if len(parts) != 5:
        extra = " (seconds and year fields are not supported)" if len(parts) in (6, 7) else ""
        raise ScheduleError(
            f"invalid cron expression {expression!r}: expected 5 fields "
            f"(minute hour day-of-month month day-of-week), got {len(parts)}{extra}"
        )
    dom_plain, dom_special = _split_specials(parts[2], _DOM_SPECIAL)
    dow_plain, dow_special = _split_specials(parts[4], _DOW_SPECIAL)
    try:
        dom_rules = tuple(("last", 0) if m.group(1) else ("weekday", _value(m.group(2), "day-of-month", 1, 31, {}))
                          for m in dom_special)
        dow_rules = tuple(
            (_value(m.group(1), "day-of-week", 0, 7, _FIELDS[4][3]) % 7, int(m.group(2))) if m.group(1) is not None
            else (_value(m.group(3), "day-of-week", 0, 7, _FIELDS[4][3]) % 7, -1)
            for m in dow_special)
        fields_text = [parts[0], parts[1], dom_plain, parts[3], dow_plain]
        values = [_parse_field(text, *spec) if text else set()
                  for text, spec in zip(fields_text, _FIELDS, strict=True)]
    except _FieldError as exc:
        raise ScheduleError(f"invalid cron expression {expression!r}: {exc}") from None
    minutes, hours, days, months, weekdays = values
    weekdays = {0 if d == 7 else d for d in weekdays}
    fields = CronFields(
        expression=" ".join(parts),
        raw=(parts[0], parts[1], parts[2], parts[3], parts[4]),
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(weekdays),
        dom_star=parts[2] == "*",  # croniter (Airflow): only a bare * is unrestricted; "*/8" is a list
        dow_star=parts[4] == "*",
        dom_rules=dom_rules,
        dow_rules=dow_rules,
    )
    if fields.dow_star and days and not dom_rules and not any(min(days) <= _MONTH_DAYS[m] for m in months):
        raise ScheduleError(
            f"invalid cron expression {expression!r}: never fires "
            f"(day-of-month {parts[2]} does not occur in month {parts[3]})"
        )
    return fields


def _parse_field(text: str, name: str, lo: int, hi: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _FieldError(f"empty list item in {name} field {text!r}")
        span, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise _FieldError(f"step {step_text!r} in {name} field {text!r} must be a positive integer")
            step = int(step_text)
        if span == "*":
            first, last = lo, hi
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = _value(a, name, lo, hi, names), _value(b, name, lo, hi, names)
            if first > last:
                raise _FieldError(f"{name} range {span!r} runs backwards")
        else:
            first = _value(span, name, lo, hi, names)
            last = hi if slash else first
        values.update(range(first, last + 1, step))
    return values


def _value(token: str, name: str, lo: int, hi: int, names: dict[str, int]) -> int:
    if token.isdigit():
        number = int(token)
        if not lo <= number <= hi:
            raise _FieldError(f"{name} {number} out of range {lo}-{hi}")
        return number
    if token.lower() in names:
        return names[token.lower()]
    raise _FieldError(f"{name} value {token!r} is not a number" + (" or a name" if names else ""))


# --- human readings -----------------------------------------------------------------------------

_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December")
_UNITS = (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _every(n: int, unit: str) -> str:
    return f"every {unit}" if n == 1 else f"every {n} {unit}s"


def _step(field: str) -> int | None:
    if field.startswith("*/") and field[2:].isdigit():
        return int(field[2:])
    return None


def describe_cron(fields: CronFields) -> str:
    """Read the common shapes aloud; anything else is shown as the expression itself."""
    minute, hour, dom, month, dow = fields.raw
    if fields.dom_rules or fields.dow_rules or not fields.weekdays or not fields.days:
        return fields.expression  # L, W, # and ? are read best as written
    if (dom, month, dow) == ("*", "*", "*"):
        if hour == "*":
            step = _step(minute)
            if minute == "*":
                return "every minute"
            if step is not None and 60 % step == 0:
                return _every(step, "minute")
            if len(fields.minutes) == 1:
                return f"every hour at :{fields.minutes[0]:02d}"
        step = _step(hour)
        if step is not None and 24 % step == 0 and len(fields.minutes) == 1 and minute.isdigit():
            return f"{_every(step, 'hour')} at :{fields.minutes[0]:02d}"
    if len(fields.minutes) != 1 or not minute.isdigit() or "*" in hour or len(fields.hours) > 4:
        return fields.expression
    at = "at " + _join([f"{h:02d}:{fields.minutes[0]:02d}" for h in fields.hours])
    if (dom, month) == ("*", "*"):
        if dow == "*":
            return f"every day {at}"
        days = sorted(fields.weekdays, key=lambda d: (d + 6) % 7)
        if days == [1, 2, 3, 4, 5]:
            return f"every weekday {at}"
        return f"every {_join([_DAY_NAMES[d] for d in days])} {at}"
    if dow == "*" and dom.isdigit():
        if month == "*":
            return f"every month on day {dom} {at}"
        months = [_MONTH_NAMES[m - 1] for m in sorted(fields.months)]
        if len(months) == 1:
            return f"every year on {dom} {months[0]} {at}"
        return f"on day {dom} of {_join(months)} {at}"
    return fields.expression


def describe_delta(delta: timedelta) -> str:
    micros = delta // timedelta(microseconds=1)
    for unit, seconds in _UNITS:
        if micros % (seconds * 1_000_000) == 0:
            return _every(micros // (seconds * 1_000_000), unit)
    return f"every {delta.total_seconds():g} seconds"
