"""What each column of the DAG list says about one DAG summary (docs/protocol.md), as Rich text.

Kept apart from the widget that draws them: the grid, the graph and the dialogs colour states the
same way, and the table compares cells to know which rows changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.cells import cell_len
from rich.text import Text

from flow.states import GLYPHS
from flow.textsafe import visible
from flow.tui.timefmt import clock, relative
from flow.tui.timefmt import parse as _parse
from flow.tui.widgets.heat import compact_bytes

COLUMNS = (("mark", "   "), ("dag_id", "DAG"), ("last_run", "Last run"), ("recent", "Recent tasks"),
           ("next_run", "Next run"), ("schedule", "Schedule"), ("owner", "Owner"), ("tags", "Tags"),
           ("paused", "Paused"), ("peak", "Peak mem"))
"""What an operator needs first comes first: at 80 columns the mark, the DAG, its last run and
that run's tasks and the next run are on screen without scrolling; the rest is a → away. The
mark's header is as wide as its widest mark, so a DAG getting one never re-lays the table out."""
KEYS = tuple(key for key, _ in COLUMNS)

STATE_STYLES = {
    "success": "green", "failed": "red", "running": "cyan", "queued": "grey62", "scheduled": "grey62",
    "up_for_retry": "yellow", "upstream_failed": "dark_orange", "skipped": "magenta", "removed": "grey42",
}

Cell = str | Text


def state_text(state: str, suffix: str = "") -> Text:
    """A state with its glyph, so NO_COLOR and colour-blind users read the same thing."""
    text = Text(f"{GLYPHS.get(state, '?')} {state}", style=STATE_STYLES.get(state, ""))
    if suffix:
        text.append(f" {suffix}", style="dim")
    return text


def last_run_text(last_run: Mapping[str, Any] | None, now: datetime) -> Text:
    if not last_run:
        return Text("never", style="dim")
    when = _parse(last_run.get("end_date")) or _parse(last_run.get("start_date")) \
        or _parse(last_run.get("logical_date"))
    return state_text(str(last_run.get("state", "none")), relative(when, now) if when else "")


def next_run_text(value: Any, utc: bool = False) -> str:
    return clock(value, utc=utc, zone=False)


def recent_text(counts: Mapping[str, int] | None) -> Text:
    text = Text()
    for state in GLYPHS:
        count = (counts or {}).get(state)
        if count:
            if text:
                text.append(" ")
            text.append(f"{GLYPHS[state]}{count}", style=STATE_STYLES.get(state, ""))
    return text


def schedule_cell(dag: Mapping[str, Any]) -> str:
    """The expression as written and flowd's reading of it: '0 9 * * 1-5 · at 09:00 on weekdays'
    (just one of them when they say the same, e.g. 'manual only')."""
    expr = dag.get("schedule")
    text = str(dag.get("schedule_text") or "")
    expr = str(expr) if isinstance(expr, str) and expr.strip() else ""
    if expr and text and expr != text:
        return f"{expr} · {text}"
    return expr or text or "manual only"


def mark_text(dag: Mapping[str, Any]) -> Text:
    """What is wrong with the DAG at a glance: ⚠ its file fails to import (the console sets
    `import_error`), ✘ its last run failed, ⏸ it is paused."""
    text = Text()
    if dag.get("import_error"):
        text.append("⚠", style="bold yellow")
    if (dag.get("last_run") or {}).get("state") == "failed":
        text.append("✘", style="bold red")
    if dag.get("is_paused"):
        text.append("⏸", style="yellow")
    return text


def row_cells(dag: Mapping[str, Any], now: datetime, utc: bool = False) -> dict[str, str | Text]:
    """The text of each column for one DAG summary (docs/protocol.md)."""
    paused = Text("⏸ paused", style="yellow") if dag.get("is_paused") else Text("● active", style="green")
    if not dag.get("is_active", True):
        paused = Text("✕ gone", style="dim")
    failed = (dag.get("last_run") or {}).get("state") == "failed" or dag.get("import_error")
    dag_id = visible(str(dag.get("dag_id", "")))
    return {
        "mark": mark_text(dag),
        "paused": paused,
        "dag_id": Text(dag_id, style="bold red") if failed else dag_id,
        "tags": visible(", ".join(str(t) for t in dag.get("tags") or [])),  # DAG authors' text: never raw
        "owner": visible(str(dag.get("owner") or "")),
        "schedule": visible(schedule_cell(dag)),
        "last_run": last_run_text(dag.get("last_run"), now),
        "peak": Text(compact_bytes(dag.get("last_run_peak_rss")), justify="right"),
        "next_run": next_run_text(dag.get("next_run"), utc=utc),
        "recent": recent_text(dag.get("recent")),
    }


def same(a: Cell, b: Cell) -> bool:
    """Would the two cells look the same? (Text's own == ignores its base style and justify.)"""
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.style == b.style and a.spans == b.spans and a.justify == b.justify
    return type(a) is type(b) and a == b


def width_of(cell: Cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(cell)
