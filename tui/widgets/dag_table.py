"""The DAG table: one line per DAG, drawn with the line API.

Textual's DataTable repainted the whole widget after any `update_cell`, so each pushed change to
one DAG resent the table over the ssh link, and 1,000 `add_row`s took up to most of a second. Here
`show` keeps plain lists (the ids, each row's cells and their widths), Textual asks only for the
lines on screen, and a change to one DAG refreshes the changed cells of its one line. The header
line stays put while rows scroll under it; the pause and DAG id columns stay put while the others
scroll sideways, so a narrow terminal still shows which DAG a row is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from itertools import accumulate
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from flow.tui import timefmt
from flow.tui.widgets.dag_cells import (
    COLUMNS,
    KEYS,
    STATE_STYLES,
    Cell,
    last_run_text,
    next_run_text,
    recent_text,
    relative,
    row_cells,
    same,
    state_text,
    width_of,
)

__all__ = ["COLUMNS", "STATE_STYLES", "DagTable", "last_run_text", "next_run_text", "recent_text", "relative",
           "row_cells", "state_text"]
"""The cell texts live in dag_cells; the rest of the console (and its tests) import them from here."""

FIXED = KEYS.index("dag_id") + 1
"""Columns up to the DAG id stay on screen when the others scroll sideways."""
PAD = 1
"""Spaces either side of a cell, as DataTable's cell_padding."""


class DagTable(ScrollView, can_focus=True):
    """DAG summaries, one per line; `show` reconciles the table with a list of them.

    The look is DataTable's (its component classes renamed: header, cursor, zebra rows), so themes,
    ansi16 and NO_COLOR treat it as they treated the DataTable.
    """

    DEFAULT_CSS = """
    DagTable {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .dag-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .dag-table--header {
                background-tint: $foreground 5%;
            }
        }
        &:dark > .dag-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .dag-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .dag-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .dag-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .dag-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "dag-table--header", "dag-table--cursor", "dag-table--even-row", "dag-table--odd-row"}

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select", "Open", show=False, id="dag_table.open"),
        Binding("up,k", "move(-1)", "Up", show=False, id="dag_table.up"),
        Binding("down,j", "move(1)", "Down", show=False, id="dag_table.down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="dag_table.page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="dag_table.page_down"),
        Binding("home,ctrl+home", "first", "First DAG", show=False, id="dag_table.first"),
        Binding("end,ctrl+end", "last", "Last DAG", show=False, id="dag_table.last"),
        Binding("left", "sideways(-1)", "Scroll left", show=False, id="dag_table.left"),
        Binding("right", "sideways(1)", "Scroll right", show=False, id="dag_table.right"),
    ]

    class Selected(Message):
        """Enter, or a click on the cursor's row: open this DAG."""

        def __init__(self, table: DagTable, dag_id: str) -> None:
            super().__init__()
            self.table = table
            self.dag_id = dag_id

        @property
        def control(self) -> DagTable:
            return self.table

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self._drawn: dict[str, dict[str, Any]] = {}
        """dag_id -> the summary its row was drawn from (a copy)."""
        self._cells: dict[str, dict[str, Cell]] = {}
        self._row_widths: dict[str, tuple[int, ...]] = {}
        self._segments: dict[str, list[tuple[list[Segment], bool]]] = {}
        """dag_id -> each cell's segments (the cell's own styles only), made when the row is first drawn."""
        self._labels = [Text(label) for _, label in COLUMNS]
        self._widths = [label.cell_len for label in self._labels]
        self._shown: list[Mapping[str, Any]] = []
        self._cursor = 0

    def on_mount(self) -> None:
        self._relayout()
        if hasattr(self.app, "utc"):
            self.watch(self.app, "utc", lambda _: self.show(self._shown, refresh=True), init=False)
        self.call_after_refresh(self._scroll_to_cursor)

    @property
    def utc(self) -> bool:
        return bool(getattr(self.app, "utc", False))

    # -- what the rest of the console reads -------------------------------------------------------

    @property
    def dag_ids(self) -> list[str]:
        return list(self._ids)

    @property
    def row_count(self) -> int:
        return len(self._ids)

    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def selected_dag(self) -> str | None:
        return self._ids[self._cursor] if self._ids else None

    def get_cell(self, dag_id: str, column: str) -> Cell:
        """What the cell shows (a str or a rich Text); KeyError if there is no such row or column."""
        return self._cells[dag_id][column]

    # -- what the screen sets ---------------------------------------------------------------------

    def show(self, dags: Iterable[Mapping[str, Any]], now: datetime | None = None, refresh: bool = False) -> None:
        """Make the rows exactly `dags`, in order, keeping the cursor on the same DAG.

        With the same ids, only rows whose summary changed since they were drawn are rewritten
        (all rows if `refresh`: the relative times age, or the UTC switch flipped), and only
        their lines are repainted unless a column's width changed; nothing changed, nothing sent.
        """
        now = now or timefmt.now()
        wanted = self._shown = list(dags)
        ids = [str(d["dag_id"]) for d in wanted]
        utc = self.utc
        if ids == self._ids:
            changed: dict[str, list[int]] = {}
            for dag in wanted:
                key = str(dag["dag_id"])
                if (refresh or self._drawn.get(key) != dag) and (columns := self._set_row(key, dag, now, utc)):
                    changed[key] = columns
            if changed and not self._fit():
                for key, columns in changed.items():
                    self._refresh_row(self._index[key], columns)
            return
        keep = self.selected_dag
        self._ids, self._index = ids, {key: n for n, key in enumerate(ids)}
        self._drawn, self._cells, self._row_widths, self._segments = {}, {}, {}, {}
        for key, dag in zip(ids, wanted, strict=True):
            self._set_row(key, dag, now, utc)
        self._fit()
        self._cursor = self._index[keep] if keep in self._index else max(0, min(self._cursor, len(ids) - 1))
        self.refresh()
        self._scroll_to_cursor()

    def update_dag(self, dag: Mapping[str, Any], now: datetime | None = None) -> bool:
        """Rewrite one DAG's row and repaint its line only; False if the row is not shown."""
        key = str(dag["dag_id"])
        if key not in self._index:
            return False
        before = self._row_widths[key]
        columns = self._set_row(key, dag, now or timefmt.now(), self.utc)
        if columns:
            after = self._row_widths[key]
            if any(new > width or old == width > new for old, new, width in zip(before, after, self._widths, strict=True)):
                if self._fit():
                    return True
            self._refresh_row(self._index[key], columns)
        return True

    def move_cursor(self, *, row: int | None = None, column: int | None = None, animate: bool = False,
                    scroll: bool = True) -> None:
        """Put the cursor on `row` (DataTable's signature; there is no column cursor)."""
        if row is not None:
            self._move_to(row, scroll=scroll)

    # -- rows and widths ------------------------------------------------------------------------

    def _set_row(self, key: str, dag: Mapping[str, Any], now: datetime, utc: bool) -> list[int]:
        """Store the row's cells; the columns whose cell looks different from what was drawn (all for a new row)."""
        self._drawn[key] = dict(dag)
        cells = row_cells(dag, now, utc)
        old = self._cells.get(key)
        changed = [n for n, k in enumerate(KEYS) if old is None or not same(old[k], cells[k])]
        if not changed:
            return changed
        self._cells[key] = cells
        self._row_widths[key] = tuple(width_of(cells[k]) for k in KEYS)
        self._segments.pop(key, None)
        return changed

    def _fit(self) -> bool:
        """Column widths to the widest cell of each, in one pass; True if they changed (then all is repainted)."""
        widths = [label.cell_len for label in self._labels]
        for row in self._row_widths.values():
            widths = [max(a, b) for a, b in zip(widths, row, strict=True)]
        if widths == self._widths:
            return False
        self._widths = widths
        if not self._relayout():
            self.refresh()
        return True

    def _relayout(self) -> bool:
        """Set the virtual size; True if it changed (the reactive then repaints the whole widget).
        When the columns do not fit, room for one more on the right, so that scrolling a column at a
        time reaches the start of the last one."""
        width = sum(w + 2 * PAD for w in self._widths)
        if width > self.size.width:
            width += max((w + 2 * PAD for w in self._widths[FIXED:]), default=0)
        size = Size(width, 1 + len(self._ids))
        if size == self.virtual_size:
            return False
        self.virtual_size = size
        return True

    def _fixed_width(self, width: int) -> int:
        """Width of the columns that stay put, or 0 when they would leave less than half the line."""
        fixed = sum(w + 2 * PAD for w in self._widths[:FIXED])
        return fixed if fixed * 2 <= width else 0

    # -- cursor and scrolling -------------------------------------------------------------------

    def action_move(self, rows: int) -> None:
        self._move_to(self._cursor + rows)

    def action_page(self, pages: int) -> None:
        self._move_to(self._cursor + pages * max(1, self._page_height()))

    def action_first(self) -> None:
        self._move_to(0)

    def action_last(self) -> None:
        self._move_to(len(self._ids) - 1)

    def action_sideways(self, direction: int) -> None:
        """A whole column at a time: the first column beside the fixed ones is always whole."""
        width = self.scrollable_content_region.width
        edges = self._edges(width)
        x = self._scroll_start(width)
        if direction > 0:
            x = next((e for e in edges if e > x), x)
        else:
            x = max((e for e in edges if e < x), default=0)
        self.scroll_to(x=x, animate=False, immediate=True, force=True)

    def _edges(self, width: int) -> list[int]:
        """Where each scrolling column starts, in the scrolled part's own coordinates."""
        head = FIXED if self._fixed_width(width) else 0
        return [0, *accumulate(w + 2 * PAD for w in self._widths[head:])]

    def _scroll_start(self, width: int) -> int:
        """The scroll offset snapped down to a column's start (a mouse wheel may stop anywhere)."""
        x = self.scroll_offset.x
        return max((e for e in self._edges(width) if e <= x), default=0)

    def action_select(self) -> None:
        if self.selected_dag is not None:
            self.post_message(self.Selected(self, self.selected_dag))

    def _page_height(self) -> int:
        return self.scrollable_content_region.height - 1

    def _move_to(self, row: int, scroll: bool = True) -> None:
        row = max(0, min(row, len(self._ids) - 1))
        if row != self._cursor:
            old, self._cursor = self._cursor, row
            self._refresh_row(old)
            self._refresh_row(row)
        if scroll:
            self._scroll_to_cursor()
            self.call_after_refresh(self._scroll_to_cursor)  # again once a scrollbar that came or went is laid out

    def _scroll_to_cursor(self) -> None:
        height = self._page_height()
        if height <= 0:
            return
        y = self.scroll_offset.y
        if self._cursor < y:
            y = self._cursor
        elif self._cursor >= y + height:
            y = self._cursor - height + 1
        if y != self.scroll_offset.y:  # forced: the scrollbars are only worked out at the next layout
            self.scroll_to(y=y, animate=False, immediate=True, force=True)

    def on_resize(self, event: events.Resize) -> None:
        self._relayout()
        self._scroll_to_cursor()

    def on_click(self, event: events.Click) -> None:
        """A click puts the cursor on a row; a click on the cursor's row opens it (as DataTable did)."""
        at = event.get_content_offset(self)
        if at is None or at.y < 1:
            return
        row = at.y - 1 + self.scroll_offset.y
        if row >= len(self._ids):
            return
        event.stop()
        if row == self._cursor:
            self.action_select()
        else:
            self._move_to(row)

    # -- drawing ----------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if y == 0:
            style = self.get_component_rich_style("dag-table--header")
            labels = [self._render_cell(label) for label in self._labels]
            return self._join(self._styled(labels, [lb.cell_len for lb in self._labels], style, None), width, style)
        row = y - 1 + self.scroll_offset.y
        if not 0 <= row < len(self._ids):
            return Strip.blank(width, self.rich_style)
        key = self._ids[row]
        style = self.get_component_rich_style("dag-table--odd-row" if row % 2 else "dag-table--even-row")
        post = None
        if row == self._cursor:
            cursor = self.get_component_rich_style("dag-table--cursor")
            style, post = style + cursor, Style.from_color(cursor.color)  # the cursor's colour wins, as in DataTable
        cells = self._segments.get(key)
        if cells is None:
            cells = self._segments[key] = [self._render_cell(self._cells[key][k]) for k in KEYS]
        return self._join(self._styled(cells, self._row_widths[key], style, post), width, style)

    def _render_cell(self, cell: Cell) -> tuple[list[Segment], bool]:
        """The cell's segments in its own styles, and whether it is right-justified."""
        if isinstance(cell, str):
            return [Segment(cell)], False
        if not cell.spans:  # Text.render leaves the base style to its caller when there are no spans
            return [Segment(cell.plain, self.app.console.get_style(cell.style, default=None))], cell.justify == "right"
        return [s for s in cell.render(self.app.console) if s.text], cell.justify == "right"

    def _styled(self, cells: list[tuple[list[Segment], bool]], used: Iterable[int], style: Style,
                post: Style | None) -> list[list[Segment]]:
        """Each cell padded to its column's width on the row's style, as DataTable's Styled(Padding(cell))."""
        out = []
        pad = style + post
        for (segments, right), length, width in zip(cells, used, self._widths, strict=True):
            free = width - length
            line = [Segment(" " * (PAD + (free if right else 0)), pad)]
            line += [Segment(s.text, style + s.style + post) for s in segments if s.text]
            line.append(Segment(" " * (PAD + (0 if right else free)), pad))
            out.append(line)
        return out

    def _join(self, cells: list[list[Segment]], width: int, style: Style) -> Strip:
        """Fixed columns, then the others from the horizontal scroll offset; the row's style to the edge."""
        fixed = self._fixed_width(width)
        x = self._scroll_start(width)
        head = FIXED if fixed else 0
        left = Strip([s for cell in cells[:head] for s in cell], fixed)
        rest = Strip([s for cell in cells[head:] for s in cell]).crop_extend(x, x + width - fixed, style)
        return (Strip.join([left, rest]) if head else rest).simplify()  # one escape sequence per run of a style

    # -- repainting only what changed -------------------------------------------------------------

    def _refresh_row(self, row: int, columns: list[int] | None = None) -> None:
        """Repaint one row's line, or only the part of it from the first to the last of `columns`."""
        y = 1 + row - self.scroll_offset.y
        width = self.scrollable_content_region.width
        if not 1 <= y < self.size.height:
            return
        if not columns:
            self.refresh(Region(0, y, width, 1))
            return
        fixed, scroll_x = self._fixed_width(width), self._scroll_start(width)
        edges = [0, *accumulate(w + 2 * PAD for w in self._widths)]
        spans = []
        for column in columns:
            start, end = edges[column], edges[column + 1]
            if not (fixed and column < FIXED):  # a scrolled column, never drawn under the fixed ones
                start, end = max(start - scroll_x, fixed), min(end - scroll_x, width)
            if start < end:
                spans.append((start, end))
        if spans:
            left, right = min(a for a, _ in spans), max(b for _, b in spans)
            self.refresh(Region(left, y, right - left, 1))
