"""The grid: runs as columns (oldest left, newest right), tasks as rows, drawn with the line API.

A DataTable repaints every visible cell after any update_cell, so a page of 25 x 50 took half a
second to draw and as long again for 50 pushed changes. Here Textual asks only for the lines on
screen, each drawn from plain dicts, and a pushed `ti` event refreshes the region of one cell:
the terminal receives a few bytes per change. Task ids are a fixed left column and the two header
lines stay put while the cells scroll under them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from flow.states import GLYPHS
from flow.tui.timefmt import duration, parse
from flow.tui.widgets import heat
from flow.tui.widgets.dag_table import STATE_STYLES

COLUMN_WIDTH = 5
"""Wide enough for the longest duration text ('2m05s'); with a space either side a run takes 7."""
CELL = COLUMN_WIDTH + 2
HEADER = 2
MAX_LABEL = 28
RUN_TYPES = {"scheduled": "S", "manual": "M", "backfill": "B"}
SELECTED = Style(reverse=True, bold=True)
CURRENT = Style(bold=True, underline=True)
DIM = Style(dim=True)
PLAIN = Style()
"""For padding: NO_COLOR's monochrome filter fails on a segment whose style is None."""


def run_duration(run: Mapping[str, Any]) -> str:
    start, end = parse(run.get("start_date")), parse(run.get("end_date"))
    if start is None:
        return "—"
    if end is None:
        return "…"
    return duration((end - start).total_seconds())


def header_lines(run: Mapping[str, Any]) -> tuple[str, str]:
    """State glyph and run type (S scheduled, M manual, B backfill) over the run's duration."""
    state = str(run.get("state") or "queued")
    kind = RUN_TYPES.get(str(run.get("run_type")), "?")
    return f"{GLYPHS.get(state, '?')} {kind}", run_duration(run)


def page_size(width: int) -> int:
    """How many runs fit beside the task labels at this terminal width (at least 5, at most 50)."""
    return max(5, min(50, (width - 24) // CELL))


class RunGrid(ScrollView, can_focus=True):
    """`show` sets a page; `set_state`, `set_cell`, `set_run` change one cell or header in place."""

    # j/k move between tasks; runs move with the arrows only, since `l` opens the selected try's log.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(0, -1)", "Up", show=False, id="run_grid.up"),
        Binding("down,j", "move(0, 1)", "Down", show=False, id="run_grid.down"),
        Binding("left", "move(-1, 0)", "Older run", show=False, id="run_grid.left"),
        Binding("right", "move(1, 0)", "Newer run", show=False, id="run_grid.right"),
        Binding("home", "move(-10000, 0)", "Oldest run", show=False, id="run_grid.oldest"),
        Binding("end", "move(10000, 0)", "Newest run", show=False, id="run_grid.newest"),
    ]

    class Moved(Message):
        """The cursor is on another cell (the screen describes it in its footer line)."""

        def __init__(self, grid: RunGrid) -> None:
            super().__init__()
            self.grid = grid

        @property
        def control(self) -> RunGrid:
            return self.grid

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tasks: list[str] = []
        self.runs: list[str] = []
        self.run_info: dict[str, Mapping[str, Any]] = {}
        """run id -> a copy of the run as last drawn (the screen's own dicts change under us)."""
        self.cells: dict[str, dict[str, dict[str, Any]]] = {}
        """run id -> task id -> {"state", "duration", "peak_rss", ...}."""
        self.mode = "state"
        self.column, self.row = 0, 0
        self._dim: set[str] = set()
        self._scale: heat.Scale | None = None
        self._flags: dict[tuple[str, str], str] = {}
        self._label = 4
        self._styles: dict[tuple[str, bool], Style] = {}

    # -- what the screen sets ---------------------------------------------------------------------

    def show(self, tasks: list[str], runs: Iterable[Mapping[str, Any]],
             cells: Mapping[str, Mapping[str, Any]], keep: tuple[str | None, str | None] = (None, None)) -> None:
        """Draw this page: runs oldest first, cells[run_id][task_id] a cell dict (or just a state)."""
        run_list = list(runs)
        self.tasks = list(tasks)
        self._dim = set()
        self.runs = [str(r["run_id"]) for r in run_list]
        self.run_info = {str(r["run_id"]): dict(r) for r in run_list}
        self.cells = {run_id: {task: dict(cell) if isinstance(cell, Mapping) else {"state": cell}
                               for task, cell in (cells.get(run_id) or {}).items()} for run_id in self.runs}
        self.column = min(self.column, max(0, len(self.runs) - 1))
        self.row = min(self.row, max(0, len(self.tasks) - 1))
        self._relayout()
        self._rescale()
        self._flags = {}
        self._reflag(self.tasks)
        run_id, task_id = keep
        self.select(run_id or (self.runs[-1] if self.runs else None), task_id)
        self.refresh()

    def add_task(self, task_id: str) -> None:
        """A task the DAG no longer has but an old run does: a new, dimmed row at the bottom."""
        self.tasks.append(task_id)
        self._dim.add(task_id)
        self._relayout()
        self.refresh()

    def add_run(self, run: Mapping[str, Any], cells: Mapping[str, Any] | None = None) -> None:
        """A new run: a new column at the right; while the page fits the screen only it is drawn."""
        run_id = str(run["run_id"])
        self.runs.append(run_id)
        self.run_info[run_id] = dict(run)
        self.cells[run_id] = {t: dict(c) if isinstance(c, Mapping) else {"state": c} for t, c in (cells or {}).items()}
        before = self.virtual_size
        self._relayout()
        if self.virtual_size == before:  # the width is the screen's: the columns before it stay put
            x = self._label + (len(self.runs) - 1) * CELL - self.scroll_offset.x
            self.refresh(Region(x, 0, CELL, self.size.height))

    def fits(self) -> int:
        """How many run columns fit beside the task labels without scrolling (at least 1)."""
        return max(1, (self.scrollable_content_region.width - self._label) // CELL)

    def trim(self) -> list[str]:
        """Drop the oldest runs when the page no longer fits: half a screen at once, so the next
        runs land in empty columns (a cell's bytes each) instead of shifting every column (a whole
        repaint) each time. Never drops the run under the cursor. Returns the dropped run ids."""
        if not self.scrollable_content_region.width:  # not on screen (the graph is shown): no width to fit
            return []
        excess = len(self.runs) - self.fits()
        drop = min(max(excess, self.fits() // 2), self.column) if excess > 0 else 0
        if drop <= 0:
            return []
        dropped, self.runs = self.runs[:drop], self.runs[drop:]
        for run_id in dropped:
            self.run_info.pop(run_id, None)
            self.cells.pop(run_id, None)
        self.column -= drop
        self._relayout()
        self._rescale()
        self._flags = {}
        self._reflag(self.tasks)
        self.scroll_to(x=0, animate=False, immediate=True)
        self._scroll_to_cursor()
        self.refresh()
        return dropped

    def set_state(self, run_id: str, task_id: str, state: str | None) -> bool:
        return self.set_cell(run_id, task_id, {"state": state})

    def set_cell(self, run_id: str, task_id: str, fields: Mapping[str, Any]) -> bool:
        """Change one cell; only its region is repainted unless the page's heat scale moved."""
        if run_id not in self.cells or task_id not in self.tasks:
            return False
        cell = self.cells[run_id].setdefault(task_id, {})
        changed = {k: v for k, v in fields.items() if cell.get(k) != v}
        if not changed:
            return True
        drawn = self._cell(run_id, task_id)
        cell.update(changed)
        if changed.keys() & {"duration", "peak_rss"}:
            before, flags = self._scale, {r: self._flags.get((r, task_id)) for r in self.runs}
            self._rescale()
            self._reflag([task_id])
            if self.mode != "state" and self._scale != before:
                self.refresh()
                return True
            for other in [r for r in self.runs if r != run_id and self._flags.get((r, task_id)) != flags[r]]:
                self._refresh_cell(other, task_id)  # a flag moved to or from a neighbouring cell
        if self._cell(run_id, task_id) != drawn:
            self._refresh_cell(run_id, task_id)
        return True

    def set_run(self, run: Mapping[str, Any]) -> bool:
        """Rewrite one run's header (its state, type or duration changed)."""
        run_id = str(run.get("run_id"))
        if run_id not in self.run_info:
            return False
        old = header_lines(self.run_info[run_id]), self.run_info[run_id].get("state")
        self.run_info[run_id] = dict(run)  # a copy: the caller updates its dict in place, then tells us
        if (header_lines(run), run.get("state")) != old:
            self._refresh_header(run_id)
        return True

    def set_mode(self, mode: str) -> None:
        self.mode = mode if mode in heat.MODES else "state"
        self._rescale()
        self.refresh()

    # -- what the screen reads ------------------------------------------------------------------

    @property
    def selected(self) -> tuple[str | None, str | None]:
        """(run_id, task_id) under the cursor."""
        if not self.runs or not self.tasks:
            return None, None
        return self.runs[self.column], self.tasks[self.row]

    def select(self, run_id: str | None, task_id: str | None = None) -> None:
        column = self.runs.index(run_id) if run_id in self.runs else max(0, len(self.runs) - 1)
        row = self.tasks.index(task_id) if task_id in self.tasks else self.row
        self._move_to(column, row)

    def cell_text(self, run_id: str, task_id: str) -> str:
        """What the cell shows, without its padding ('' when there is no such cell)."""
        if run_id not in self.cells or task_id not in self.tasks:
            return ""
        return self._cell(run_id, task_id)[0].strip()

    def header(self, run_id: str) -> str:
        """The run's two header lines, e.g. '✔ M\\n42s'."""
        return "\n".join(header_lines(self.run_info[run_id])) if run_id in self.run_info else ""

    def flag(self, run_id: str | None, task_id: str | None) -> str | None:
        return self._flags.get((run_id or "", task_id or ""))

    def legend(self) -> str:
        if self.mode == "state":
            return ""
        if self._scale is None:
            return f"{self.mode}: no figures recorded on this page"
        return self._scale.legend(self.mode)

    # -- cursor and scrolling -------------------------------------------------------------------

    def action_move(self, columns: int, rows: int) -> None:
        self._move_to(self.column + columns, self.row + rows)

    def _move_to(self, column: int, row: int) -> None:
        column = max(0, min(column, len(self.runs) - 1))
        row = max(0, min(row, len(self.tasks) - 1))
        old_run, old_task = self.selected
        self.column, self.row = column, row
        run_id, task_id = self.selected
        if (old_run, old_task) != (run_id, task_id):
            for task in {old_task, task_id} - {None}:
                self._refresh_row(str(task))
            for run in {old_run, run_id} - {None}:
                self._refresh_header(str(run))
        self._scroll_to_cursor()
        self.post_message(self.Moved(self))

    def _scroll_to_cursor(self) -> None:
        area_w, area_h = self.scrollable_content_region.width - self._label, self.size.height - HEADER
        if area_w <= 0 or area_h <= 0:
            return
        x, y = self.scroll_offset
        left = self.column * CELL
        if left < x:
            x = left
        elif left + CELL > x + area_w:
            x = left + CELL - area_w
        if self.row < y:
            y = self.row
        elif self.row >= y + area_h:
            y = self.row - area_h + 1
        if (x, y) != tuple(self.scroll_offset):
            self.scroll_to(x=x, y=y, animate=False, immediate=True)

    def on_resize(self, event: events.Resize) -> None:
        self._relayout()
        self._scroll_to_cursor()

    def on_mount(self) -> None:
        self.call_after_refresh(self._scroll_to_cursor)

    def on_click(self, event: events.Click) -> None:
        at = event.get_content_offset(self)
        if at is None or at.y < HEADER or at.x < self._label:
            return
        x, y = self.scroll_offset
        self._move_to((at.x - self._label + x) // CELL, at.y - HEADER + y)

    # -- drawing ----------------------------------------------------------------------------------

    def _relayout(self) -> None:
        self._label = min(MAX_LABEL, max((len(t) for t in self.tasks), default=4)) + 2
        # At least the screen's width: a run added to a page that still fits leaves the size alone,
        # and so repaints its own column instead of the whole widget.
        width = max(self._label + len(self.runs) * CELL, self.scrollable_content_region.width)
        self.virtual_size = Size(width, HEADER + len(self.tasks))

    def _rescale(self) -> None:
        field = heat.FIELDS.get(self.mode)
        self._scale = None if field is None else heat.scale_of(
            c.get(field) for cells in self.cells.values() for c in cells.values())

    def _reflag(self, tasks: Iterable[str]) -> None:
        for task in tasks:
            for run_id in self.runs:
                self._flags.pop((run_id, task), None)
            for mode, field in heat.FIELDS.items():
                values = [(self.cells[r].get(task) or {}).get(field) for r in self.runs]
                for index, why in heat.flags(mode, values).items():
                    key = (self.runs[index], task)
                    self._flags[key] = f"{self._flags[key]}; {why}" if key in self._flags else why

    def _cell(self, run_id: str, task_id: str) -> tuple[str, str]:
        """The cell's seven characters and its style name."""
        cell = self.cells[run_id].get(task_id) or {}
        mark = "⚠" if (run_id, task_id) in self._flags else " "
        field = heat.FIELDS.get(self.mode)
        if field is None:
            state = str(cell.get("state") or "none")
            return f"   {GLYPHS.get(state, '?')} {mark} ", STATE_STYLES.get(state, "grey50")
        value = cell.get(field)
        if not isinstance(value, int | float) or self._scale is None:
            return f"   · {mark} ", "grey50"
        level = self._scale.level(value)
        return f" {heat.SHADES[level] * 4}{mark} ", heat.SHADE_STYLES[level]

    def _style(self, name: str, selected: bool) -> Style:
        style = self._styles.get((name, selected))
        if style is None:
            style = Style.parse(name) + (SELECTED if selected else Style())
            self._styles[(name, selected)] = style
        return style

    def _visible_columns(self, width: int) -> range:
        x = self.scroll_offset.x
        return range(x // CELL, min(len(self.runs), (x + width) // CELL + 1))

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        area = max(0, width - self._label)
        if y < HEADER:
            label: list[Segment] = [Segment(" " * self._label, PLAIN)]
            segments = [self._header_segment(self.runs[c], y) for c in self._visible_columns(area)]
        else:
            row = y - HEADER + self.scroll_offset.y
            if not 0 <= row < len(self.tasks):
                return Strip.blank(width, PLAIN)
            task = self.tasks[row]
            style = CURRENT if row == self.row else (DIM if task in self._dim else Style(bold=True))
            text = task if len(task) <= MAX_LABEL else task[:MAX_LABEL - 1] + "…"
            label = [Segment(" " + text.ljust(self._label - 1), style)]
            segments = []
            for c in self._visible_columns(area):
                chars, name = self._cell(self.runs[c], task)
                segments.append(Segment(chars, self._style(name, c == self.column and row == self.row)))
        columns = self._visible_columns(area)
        offset = self.scroll_offset.x - (columns.start * CELL if columns else 0)
        body = Strip(segments).crop_extend(offset, offset + area, PLAIN)
        return Strip.join([Strip(label, self._label), body]).crop_extend(0, width, PLAIN)

    def _header_segment(self, run_id: str, line: int) -> Segment:
        run = self.run_info[run_id]
        text = header_lines(run)[line].center(COLUMN_WIDTH)
        state = str(run.get("state") or "queued")
        name = STATE_STYLES.get(state, "") if line == 0 else "dim"
        style = self._style(name, False)
        if run_id == self.selected[0]:
            style += CURRENT
        return Segment(f" {text} ", style)

    # -- repainting only what changed -------------------------------------------------------------

    def _refresh_cell(self, run_id: str, task_id: str) -> None:
        row, column = self.tasks.index(task_id), self.runs.index(run_id)
        x, y = self.scroll_offset
        self.refresh(Region(self._label + column * CELL - x, HEADER + row - y, CELL, 1))

    def _refresh_row(self, task_id: str) -> None:
        if task_id in self.tasks:
            self.refresh(Region(0, HEADER + self.tasks.index(task_id) - self.scroll_offset.y, self.size.width, 1))

    def _refresh_header(self, run_id: str) -> None:
        if run_id in self.runs:
            x = self._label + self.runs.index(run_id) * CELL - self.scroll_offset.x
            self.refresh(Region(x, 0, CELL, HEADER))
