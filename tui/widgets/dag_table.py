"""The DAG table: one row per DAG keyed by dag_id, cells rewritten in place.

Rows are only added or removed when the set of visible DAGs changes (a filter, a new DAG);
otherwise each refresh rewrites just the cells whose text changed, so the cursor, the scroll
position and the terminal traffic over a thin SSH link all stay put.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from flow.states import GLYPHS
from flow.tui import timefmt
from flow.tui.timefmt import clock, relative
from flow.tui.timefmt import parse as _parse
from flow.tui.widgets.heat import compact_bytes

COLUMNS = (("paused", "Paused"), ("dag_id", "DAG"), ("tags", "Tags"), ("owner", "Owner"),
           ("schedule", "Schedule"), ("last_run", "Last run"), ("peak", "Peak mem"), ("next_run", "Next run"),
           ("recent", "Recent tasks"))

STATE_STYLES = {
    "success": "green", "failed": "red", "running": "cyan", "queued": "grey62", "scheduled": "grey62",
    "up_for_retry": "yellow", "upstream_failed": "dark_orange", "skipped": "magenta", "removed": "grey42",
}


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


def row_cells(dag: Mapping[str, Any], now: datetime, utc: bool = False) -> dict[str, str | Text]:
    """The text of each column for one DAG summary (docs/protocol.md)."""
    paused = Text("⏸ paused", style="yellow") if dag.get("is_paused") else Text("● active", style="green")
    if not dag.get("is_active", True):
        paused = Text("✕ gone", style="dim")
    return {
        "paused": paused,
        "dag_id": str(dag.get("dag_id", "")),
        "tags": ", ".join(str(t) for t in dag.get("tags") or []),
        "owner": str(dag.get("owner") or ""),
        "schedule": str(dag.get("schedule_text") or dag.get("schedule") or "manual only"),
        "last_run": last_run_text(dag.get("last_run"), now),
        "peak": Text(compact_bytes(dag.get("last_run_peak_rss")), justify="right"),
        "next_run": next_run_text(dag.get("next_run"), utc=utc),
        "recent": recent_text(dag.get("recent")),
    }


class DagTable(DataTable):
    """A DataTable that shows DAG summaries; `show` reconciles it with a list of them."""

    def on_mount(self) -> None:
        self._drawn: dict[str, dict[str, Any]] = {}
        self.cursor_type = "row"
        self.zebra_stripes = True
        self._shown: list[Mapping[str, Any]] = []
        for key, label in COLUMNS:
            self.add_column(label, key=key)
        if hasattr(self.app, "utc"):
            self.watch(self.app, "utc", lambda _: self.show(self._shown, refresh=True), init=False)

    @property
    def utc(self) -> bool:
        return bool(getattr(self.app, "utc", False))

    @property
    def dag_ids(self) -> list[str]:
        return [str(row.key.value) for row in self.ordered_rows]

    @property
    def selected_dag(self) -> str | None:
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return str(row_key.value)

    def show(self, dags: Iterable[Mapping[str, Any]], now: datetime | None = None, refresh: bool = False) -> None:
        """Make the rows exactly `dags`, in order, keeping the cursor on the same DAG.

        Rows whose summary has not changed since it was drawn are skipped unless `refresh` (the
        relative times age, or the UTC switch flipped), so a keystroke in the filter over 1,000
        DAGs costs little.
        """
        now = now or timefmt.now()
        wanted = self._shown = list(dags)
        ids = [str(d["dag_id"]) for d in wanted]
        if ids == self.dag_ids:
            for dag in wanted:
                if refresh or self._drawn.get(str(dag["dag_id"])) != dag:
                    self.update_dag(dag, now)
            return
        keep = self.selected_dag
        self.clear()
        self._drawn.clear()
        for dag in wanted:
            cells = row_cells(dag, now, self.utc)
            self.add_row(*(cells[key] for key, _ in COLUMNS), key=str(dag["dag_id"]))
            self._drawn[str(dag["dag_id"])] = dict(dag)
        if keep in ids:
            self.move_cursor(row=ids.index(keep))

    def update_dag(self, dag: Mapping[str, Any], now: datetime | None = None) -> bool:
        """Rewrite the cells of one DAG's row that changed; False if the row is not shown."""
        key = str(dag["dag_id"])
        try:
            self.get_row_index(key)
        except RowDoesNotExist:
            return False
        for column, value in row_cells(dag, now or timefmt.now(), self.utc).items():
            if str(self.get_cell(key, column)) != str(value):
                self.update_cell(key, column, value, update_width=True)
        self._drawn[key] = dict(dag)
        return True
