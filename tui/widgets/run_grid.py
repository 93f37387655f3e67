"""The grid: runs as columns (oldest left, newest right), tasks as rows, one state glyph per cell.

Columns are keyed by run id and rows by task id, so a pushed `ti` or `run` event rewrites exactly
one cell or one header in place; the table is rebuilt only when the user pages to other runs.
Tasks are row labels, so they stay put while the runs scroll sideways under the cursor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from flow.states import GLYPHS
from flow.tui.timefmt import duration, parse
from flow.tui.widgets.dag_table import STATE_STYLES

COLUMN_WIDTH = 5
"""Wide enough for the longest duration text ('2m05s'); with padding a run takes 7 cells."""
RUN_TYPES = {"scheduled": "S", "manual": "M", "backfill": "B"}


def cell_text(state: str | None) -> Text:
    state = state or "none"
    return Text(GLYPHS.get(state, "?").center(COLUMN_WIDTH), style=STATE_STYLES.get(state, "grey50"))


def run_duration(run: Mapping[str, Any]) -> str:
    start, end = parse(run.get("start_date")), parse(run.get("end_date"))
    if start is None:
        return "—"
    if end is None:
        return "…"
    return duration((end - start).total_seconds())


def header_text(run: Mapping[str, Any]) -> Text:
    """Two lines: state glyph and run type (S scheduled, M manual, B backfill), then the duration."""
    state = str(run.get("state") or "queued")
    kind = RUN_TYPES.get(str(run.get("run_type")), "?")
    text = Text(f"{GLYPHS.get(state, '?')} {kind}".center(COLUMN_WIDTH), style=STATE_STYLES.get(state, ""))
    text.append("\n" + run_duration(run).center(COLUMN_WIDTH), style="dim")
    return text


def page_size(width: int) -> int:
    """How many runs fit beside the task labels at this terminal width (at least 5, at most 50)."""
    return max(5, min(50, (width - 24) // (COLUMN_WIDTH + 2)))


class RunGrid(DataTable):
    """A DataTable of task states; `show` sets the runs, `set_state`/`set_run` update in place."""

    # j/k move between tasks; runs move with the arrows only, since `l` opens the selected try's log.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "cursor_up", "Up", show=False, id="run_grid.up"),
        Binding("j", "cursor_down", "Down", show=False, id="run_grid.down"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="cell", header_height=2, zebra_stripes=False, **kwargs)
        self.tasks: list[str] = []
        self.runs: list[str] = []

    @property
    def selected(self) -> tuple[str | None, str | None]:
        """(run_id, task_id) under the cursor."""
        if not self.runs or not self.tasks:
            return None, None
        row, column = self.cursor_coordinate
        if not (0 <= row < len(self.tasks) and 0 <= column < len(self.runs)):
            return None, None
        return self.runs[column], self.tasks[row]

    def show(self, tasks: list[str], runs: Iterable[Mapping[str, Any]],
             states: Mapping[str, Mapping[str, str]], keep: tuple[str | None, str | None] = (None, None)) -> None:
        """Rebuild for these tasks and runs (oldest first); states[run_id][task_id] -> state."""
        run_list = list(runs)
        self.clear(columns=True)
        self.tasks = list(tasks)
        self.runs = [str(r["run_id"]) for r in run_list]
        for run in run_list:
            self.add_column(header_text(run), width=COLUMN_WIDTH, key=str(run["run_id"]))
        for task in self.tasks:
            cells = [cell_text((states.get(run_id) or {}).get(task)) for run_id in self.runs]
            self.add_row(*cells, key=task, label=Text(task, style="bold"))
        run_id, task_id = keep
        self.select(run_id or (self.runs[-1] if self.runs else None), task_id)

    def select(self, run_id: str | None, task_id: str | None = None) -> None:
        column = self.runs.index(run_id) if run_id in self.runs else max(0, len(self.runs) - 1)
        row = self.tasks.index(task_id) if task_id in self.tasks else self.cursor_coordinate.row
        self.move_cursor(row=min(row, max(0, len(self.tasks) - 1)), column=column, scroll=True)

    def add_task(self, task_id: str) -> None:
        """A task the DAG no longer has but an old run does: a new row at the bottom."""
        self.tasks.append(task_id)
        self.add_row(*(cell_text(None) for _ in self.runs), key=task_id, label=Text(task_id, style="dim"))

    def add_run(self, run: Mapping[str, Any], states: Mapping[str, str] | None = None) -> None:
        """A new run: a new column at the right, every cell filled."""
        run_id = str(run["run_id"])
        self.add_column(header_text(run), width=COLUMN_WIDTH, key=run_id, default=cell_text(None))
        self.runs.append(run_id)
        for task, state in (states or {}).items():
            self.set_state(run_id, task, state)

    def set_state(self, run_id: str, task_id: str, state: str | None) -> bool:
        if run_id not in self.runs or task_id not in self.tasks:
            return False
        new = cell_text(state)
        if str(self.get_cell(task_id, run_id)) != str(new) or self.get_cell(task_id, run_id).style != new.style:
            self.update_cell(task_id, run_id, new)
        return True

    def set_run(self, run: Mapping[str, Any]) -> bool:
        """Rewrite one run's header (its state, type or duration changed)."""
        key = ColumnKey(str(run.get("run_id")))
        column = self.columns.get(key)
        if column is None:
            return False
        label = header_text(run)
        if column.label.plain != label.plain or column.label.style != label.style:
            column.label = label
            self._update_count += 1  # the header is cached by this counter: bump it to redraw
            self.refresh()
        return True
