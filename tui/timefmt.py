"""How the console shows times: local zone with its abbreviation by default, UTC on request.

Every screen formats times through here so the app-wide UTC switch changes all of them at once.
The protocol carries ISO 8601 strings in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def now() -> datetime:
    """The console's clock: every relative time asks here, so snapshot tests can freeze it."""
    return datetime.now(UTC)


def parse(value: Any) -> datetime | None:
    """An aware datetime from the protocol's ISO string, or None for absent/garbled values."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def clock(value: Any, utc: bool = False, seconds: bool = False, zone: bool = True) -> str:
    """'2026-11-22 09:00 KST' (local) or '2026-11-22 00:00 UTC'; '—' when there is no time."""
    when = parse(value)
    if when is None:
        return "—"
    shown = when.astimezone(UTC) if utc else when.astimezone()
    text = shown.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{text} {shown.tzname() or ''}".rstrip() if zone else text


def relative(when: datetime, now: datetime) -> str:
    """'5s ago', '3m ago', '2h ago', '4d ago': enough to tell fresh from stale at a glance."""
    seconds = int((now - when).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def duration(seconds: Any) -> str:
    """'850ms', '42s', '3m05s', '2h04m': compact enough for a grid header."""
    if not isinstance(seconds, int | float) or seconds < 0:
        return "—"
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
