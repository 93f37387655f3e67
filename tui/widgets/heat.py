"""The grid's heat view and its flags, as plain functions of the loaded cells (no Textual here).

A shade says "heavy for this page", not an absolute figure: levels are quarters of the largest
value among the runs on screen, so a DAG of one-second tasks and one of one-hour tasks both use
the whole ramp. Shades are characters (░▒▓█) as well as colours, so NO_COLOR reads the same.
A flag compares a try with the same task's previous tries: a task that suddenly takes three times
its usual memory or time is what an operator wants to see before the host runs out of it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flow.tui.timefmt import duration

MODES = ("state", "duration", "memory")
FIELDS = {"duration": "duration", "memory": "peak_rss"}
"""The cell field each heat mode shades."""
SHADES = "░▒▓█"
SHADE_STYLES = ("green", "yellow", "dark_orange", "red")
HISTORY = 10
"""How many previous tries of a task a flag compares with."""
FACTOR = 3.0
MIN_HISTORY = 3
"""Fewer previous tries than this make a median too noisy to flag against."""
FLOORS = {"duration": 1.0, "memory": 8 * 2**20}
"""Under these (1 s, 8 MiB) nothing is flagged: a 14 ms try being 3.7x a 4 ms median is noise."""


def compact_bytes(value: float | int | None) -> str:
    """'231M', '1.5G', '812K': four characters or fewer, in the binary units top uses."""
    if value is None:
        return "—"
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= scale:
            size = value / scale
            return f"{size:.1f}{unit}" if size < 10 else f"{size:.0f}{unit}"
    return f"{int(value)}B"


def show(mode: str, value: float | None) -> str:
    """A figure of this mode as text: a duration or a size."""
    return compact_bytes(value) if mode == "memory" else duration(value)


@dataclass(frozen=True)
class Scale:
    """Quarters of the largest value on the page; level 0 (░) to 3 (█)."""

    top: float

    def level(self, value: float) -> int:
        if self.top <= 0:
            return 0
        return max(0, min(len(SHADES) - 1, int(value / self.top * len(SHADES))))

    def legend(self, mode: str) -> str:
        steps = len(SHADES)
        bounds = " ".join(f"{shade} ≤{show(mode, self.top * (i + 1) / steps)}" for i, shade in enumerate(SHADES))
        what = "duration" if mode == "duration" else "peak memory"
        return f"{what}: {bounds} · no figure · ⚠ over {FACTOR:g}× the median of the previous {HISTORY} tries"


def scale_of(values: Iterable[float | None]) -> Scale | None:
    top = max((float(v) for v in values if isinstance(v, int | float)), default=None)
    return None if top is None else Scale(top)


def flags(mode: str, values: Sequence[float | None]) -> dict[int, str]:
    """{index: why} for each value over FACTOR x the median of the HISTORY non-null values before it.

    `values` are one task's figures in run order, oldest first (the last try of each run).
    """
    out: dict[int, str] = {}
    seen: list[float] = []
    for index, value in enumerate(values):
        if not isinstance(value, int | float):
            continue
        history = seen[-HISTORY:]
        if len(history) >= MIN_HISTORY:
            median = statistics.median(history)
            if median > 0 and value > FACTOR * median and value >= FLOORS.get(mode, 0):
                what = "took" if mode == "duration" else "peak memory"
                out[index] = (f"⚠ {what} {show(mode, value)} is {value / median:.1f}× the median "
                              f"{show(mode, median)} of its previous {len(history)} tries")
        seen.append(float(value))
    return out
