"""Sizes and durations as people write them ("512MiB", "1G", "10m", "10%"), and back.

One parser for DAG authors (memory_limit, cpu_time_limit) and for flowd's settings
(min_free_memory), so "1G" means the same thing in a DAG file and in flowd.toml. Decimal and
binary prefixes are both accepted and both read as binary (1 G = 1 GiB): an operator writing
"memory_limit=1G" means the figure top shows, and top counts in KiB.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_SCALE = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$", re.IGNORECASE)
_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size(value: Any, what: str) -> int:
    """Bytes from an int or a string like "512MiB", "1G", "200 MB", "4096"; ValueError names `what`."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a size such as '512MiB' or a number of bytes, not {value!r}")
    if isinstance(value, int | float):
        size = int(value)
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(float(m.group(1)) * _SCALE[m.group(2).lower()])
    else:
        raise ValueError(f"{what}: expected a size such as '512MiB', '1G' or a number of bytes, not {value!r}")
    if size <= 0:
        raise ValueError(f"{what}: must be more than 0 bytes, not {value!r}")
    return size


def parse_duration(value: Any, what: str) -> float:
    """Seconds from a number, a timedelta or a string like "10m", "90s", "1.5h"."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected seconds or a duration such as '10m', not {value!r}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        unit = m.group(2).lower() if m.group(2) else None
        seconds = float(m.group(1)) * _SECONDS[unit]
    else:
        raise ValueError(f"{what}: expected seconds or a duration such as '10m' or '90s', not {value!r}")
    if seconds <= 0:
        raise ValueError(f"{what}: must be more than 0 seconds, not {value!r}")
    return seconds


def parse_threshold(value: Any, what: str) -> tuple[str, float]:
    """("percent", 10.0) for "10%", ("bytes", n) for a size; for settings like min_free_memory."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            percent = float(value.strip()[:-1])
        except ValueError:
            raise ValueError(f"{what}: expected a percentage such as '10%' or a size such as '2GiB', "
                             f"not {value!r}") from None
        if not 0 < percent <= 100:
            raise ValueError(f"{what}: a percentage must be above 0 and at most 100, not {value!r}")
        return "percent", percent
    return "bytes", float(parse_size(value, what))


def format_bytes(n: float | None) -> str:
    """'231 MiB', '1.5 GiB', '512 B': short and in the units top and free use."""
    if n is None:
        return "-"
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


def format_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s" if s < 10 else f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
