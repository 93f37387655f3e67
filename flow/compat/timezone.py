"""``airflow.utils.timezone`` / ``airflow.sdk.timezone``: aware-datetime helpers, all in pendulum."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum

utc = pendulum.UTC


def utcnow() -> pendulum.DateTime:
    return pendulum.now("UTC")


def datetime(*args: Any, tzinfo: Any = None, **kwargs: Any) -> dt.datetime:
    """Airflow's timezone.datetime: like datetime.datetime, but UTC when no tzinfo is given."""
    return dt.datetime(*args, tzinfo=tzinfo or utc, **kwargs)


def is_localized(value: dt.datetime) -> bool:
    return value.utcoffset() is not None


def is_naive(value: dt.datetime) -> bool:
    return value.utcoffset() is None


def make_aware(value: dt.datetime, timezone: Any = None) -> dt.datetime:
    if value.utcoffset() is not None:
        raise ValueError(f"make_aware expects a naive datetime, got {value}")
    zone = pendulum.timezone(timezone) if isinstance(timezone, str) else (timezone or utc)
    return pendulum.instance(value, tz=zone)


def make_naive(value: dt.datetime, timezone: Any = None) -> dt.datetime:
    zone = pendulum.timezone(timezone) if isinstance(timezone, str) else (timezone or utc)
    return value.astimezone(zone).replace(tzinfo=None)


def convert_to_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.utcoffset() is None:
        value = value.replace(tzinfo=utc)
    return pendulum.instance(value).in_tz("UTC")


def coerce_datetime(value: dt.datetime | None, tz: Any = None) -> pendulum.DateTime | None:
    if value is None:
        return None
    if value.utcoffset() is None:
        value = value.replace(tzinfo=tz or utc)
    return pendulum.instance(value)


def parse(string: str, timezone: Any = None) -> pendulum.DateTime:
    return pendulum.parse(string, tz=timezone or utc)  # type: ignore[return-value]


def local_timezone() -> Any:
    return pendulum.local_timezone()


__all__ = ["coerce_datetime", "convert_to_utc", "datetime", "is_localized", "is_naive", "local_timezone",
           "make_aware", "make_naive", "parse", "utc", "utcnow"]
