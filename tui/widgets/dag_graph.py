"""The graph: the DAG drawn by graph_layout, each box coloured and marked by its task's state.

The drawing is computed once per DAG structure; a state change only restyles one box, and only
the visible lines are turned into segments, so a 200-task DAG scrolls as cheaply as a small one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from flow.states import GLYPHS
from flow.tui.widgets.dag_table import STATE_STYLES
from flow.tui.widgets.graph_layout import BOX_HEIGHT, Layout, layout

EDGE_STYLE = Style(color="grey50")
SELECTED = Style(reverse=True, bold=True)


class DagGraph(ScrollView, can_focus=True):
    """Arrow keys follow edges: up to an upstream task, down to a downstream one, left/right in a layer."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move('up')", "Upstream", show=False, id="dag_graph.up"),
        Binding("down,j", "move('down')", "Downstream", show=False, id="dag_graph.down"),
        Binding("left,h", "move('left')", "Previous in layer", show=False, id="dag_graph.left"),
        Binding("right", "move('right')", "Next in layer", show=False, id="dag_graph.right"),
    ]

    class Moved(Message):
        """The selected task changed (the screen shows it in its footer line)."""

        def __init__(self, graph: DagGraph, task_id: str | None) -> None:
            super().__init__()
            self.graph = graph
            self.task_id = task_id

        @property
        def control(self) -> DagGraph:
            return self.graph

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layout_: Layout | None = None
        self.states: dict[str, str] = {}
        self.selected: str | None = None
        self._rows: list[list[tuple[int, int, str]]] = []
        self._styles: dict[str, Style] = {}

    def set_dag(self, order: list[str], upstream: Mapping[str, Iterable[str]]) -> None:
        self.layout_ = layout(order, upstream)
        self._rows = [[] for _ in range(self.layout_.height)]
        for node in self.layout_.nodes.values():
            if not node.dummy:
                for y in range(node.y, node.y + BOX_HEIGHT):
                    self._rows[y].append((node.x, node.x + node.width, node.id))
        for spans in self._rows:
            spans.sort()
        self.virtual_size = Size(self.layout_.width, self.layout_.height)
        if self.selected not in self.layout_.upstream:
            self.selected = order[0] if order else None
        self.refresh()

    def set_states(self, states: Mapping[str, str]) -> None:
        self.states = dict(states)
        self.refresh()

    def set_state(self, task_id: str, state: str | None) -> None:
        if self.states.get(task_id) == state:
            return
        self.states[task_id] = state or "none"
        self._refresh_node(task_id)

    def _refresh_node(self, task_id: str | None) -> None:
        if self.layout_ is None or task_id not in self.layout_.nodes:
            return
        node = self.layout_.nodes[task_id]
        self.refresh(Region(node.x, node.y, node.width, BOX_HEIGHT).translate(-self.scroll_offset))

    def _style(self, task_id: str) -> Style:
        state = self.states.get(task_id, "none")
        key = f"{state}:{task_id == self.selected}"
        style = self._styles.get(key)
        if style is None:
            style = Style.parse(STATE_STYLES.get(state, "grey50"))
            if task_id == self.selected:
                style += SELECTED
            self._styles[key] = style
        return style

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        line_no = y + scroll_y
        width = self.scrollable_content_region.width
        if self.layout_ is None or not 0 <= line_no < self.layout_.height:
            return Strip.blank(width, Style())
        text = self.layout_.lines[line_no].ljust(self.layout_.width)
        segments: list[Segment] = []
        at = 0
        for start, end, task_id in self._rows[line_no]:
            if start > at:
                segments.append(Segment(text[at:start], EDGE_STYLE))
            chunk = text[start:end]
            if line_no == self.layout_.nodes[task_id].y + 1:
                chunk = chunk[0] + GLYPHS.get(self.states.get(task_id, "none"), "?") + chunk[2:]
            segments.append(Segment(chunk, self._style(task_id)))
            at = end
        if at < len(text):
            segments.append(Segment(text[at:], EDGE_STYLE))
        # Padding with an empty style, not None: NO_COLOR's monochrome filter fails on None.
        return Strip(segments, len(text)).crop_extend(scroll_x, scroll_x + width, Style())

    # -- moving along edges ---------------------------------------------------------------------

    def select(self, task_id: str | None) -> None:
        if self.layout_ is None or task_id not in self.layout_.upstream:
            return
        old, self.selected = self.selected, task_id
        self._refresh_node(old)
        self._refresh_node(task_id)
        node = self.layout_.nodes[task_id]
        self.scroll_to_region(Region(node.x, node.y, node.width, BOX_HEIGHT), animate=False, immediate=True)
        self.post_message(self.Moved(self, task_id))

    def neighbour(self, direction: str) -> str | None:
        """The task the arrow leads to: the nearest (by column) upstream/downstream task or sibling."""
        lay, current = self.layout_, self.selected
        if lay is None or current is None:
            return None
        here = lay.nodes[current]
        if direction in ("up", "down"):
            options = lay.upstream[current] if direction == "up" else lay.downstream[current]
            return min(options, key=lambda t: abs(lay.nodes[t].center - here.center), default=None)
        row = lay.tasks_in_layer(here.layer)
        index = row.index(current) + (1 if direction == "right" else -1)
        return row[index] if 0 <= index < len(row) else None

    def action_move(self, direction: str) -> None:
        target = self.neighbour(direction)
        if target is not None:
            self.select(target)
