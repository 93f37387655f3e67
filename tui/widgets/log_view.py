"""A scrolling view over a bounded window of one log file, drawn line by line.

A task may write gigabytes, so the view never holds the file: it holds at most `limit` bytes
of it as a list of lines, each with its byte offset in the file, and forgets from the far end
when more arrives. Only the rows on screen are rendered (Textual's line API), so a window of
tens of thousands of lines costs the same to draw as ten. Whoever feeds it (the log screen)
decides what to load; the view says when the user reached an edge or scrolled away from the end.
"""

from __future__ import annotations

import bisect
import re
import time
from datetime import UTC, datetime
from typing import NamedTuple

from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer

from flow.textsafe import visible

WINDOW = 4 * 1024 * 1024
"""Bytes of log held in memory; the rest stays in the file and is read again when scrolled to."""
STAMP_WIDTH = 9
LIVE_FRAME = 0.5
"""While a log streams in, the view repaints at most this often (seconds). A repaint of a scrolled
log resends the whole view (Textual cannot tell the terminal to scroll a region), so a task writing
50 lines a second cost ~66 KiB/s on a 120x40 terminal when every chunk was painted; two frames a
second cost ~20 KiB/s, at most half a second behind (docs/benchmarks.md, "Console")."""
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
"""Colour and bold: common in logs and harmless, so dropped; every other control is shown."""


def clean(line: str) -> str:
    """What a terminal may safely show: no escape sequences, tabs expanded, a `\\r` progress bar
    shown as its last state."""
    if "\r" in line:
        line = line.rstrip("\r").rsplit("\r", 1)[-1]
    if "\x1b" in line:
        line = _SGR.sub("", line)
    return visible(line.expandtabs(4))  # `\x1b]2;…` is drawn as `^[]2;…`, never obeyed


class Match(NamedTuple):
    line: int
    start: int
    end: int


class LogView(ScrollView, can_focus=True):
    """Lines of one log between byte offsets `first` and `end`, with wrap, search and arrival times."""

    BINDINGS = [
        Binding("j", "scroll_down", "Down", show=False, id="logs.down"),
        Binding("k", "scroll_up", "Up", show=False, id="logs.up"),
    ]
    COMPONENT_CLASSES = {"logview--match", "logview--current", "logview--stamp"}
    DEFAULT_CSS = """
    LogView { height: 1fr; scrollbar-size-horizontal: 0; }
    LogView > .logview--match { text-style: reverse; }
    LogView > .logview--current { text-style: bold reverse; color: $warning; }
    LogView > .logview--stamp { color: $text-muted; }
    """

    class ScrolledAway(Message):
        """The user moved up: whoever follows the log should stop."""

    class Edge(Message):
        """The view shows its first or last row: load more from that side if the file has it."""

        def __init__(self, top: bool) -> None:
            super().__init__()
            self.top = top

    def __init__(self, *, limit: int = WINDOW, id: str | None = None) -> None:
        super().__init__(id=id)
        self.limit = limit
        self.lines: list[str] = []
        self.starts: list[int] = []
        self.stamps: dict[int, float] = {}
        """Arrival time of lines that came in live, by the line's offset: the file itself has no times."""
        self.first = 0
        self.end = 0
        self.open_tail = False
        self.held = 0
        self.wrap = False
        self.show_times = False
        self.utc = False
        self.needle = ""
        self.matches: list[Match] = []
        self.current = -1
        self._rows: list[tuple[int, int, int]] = []
        self._line_row: list[int] = []
        self.stick_end = False
        self._unpainted = False
        """Live lines were added but not laid out yet (at most LIVE_FRAME ago)."""
        self._painted_at = 0.0
        self._frame: Timer | None = None

    # -- content -----------------------------------------------------------------------------

    def replace(self, first: int, data: str, end: int) -> None:
        """Show exactly [first, end); a chunk that starts mid-file starts at its first whole line."""
        self._cancel_frame()
        self.lines, self.starts, self.stamps = [], [], {}
        self.open_tail, self.held = False, 0
        if first > 0:
            data, first = _from_line_start(data, first)
        self.first = self.end = first
        self._extend(data, None)
        self.end = max(end, self.first)
        self.current = -1
        self._changed()

    def append(self, offset: int, data: str, end: int, live: bool = False) -> None:
        """Add [offset, end), which must continue the window (offset == self.end)."""
        if offset != self.end:
            return
        if not data:
            self.end = max(self.end, end)
            return
        stamp = time.time() if live else None
        self._extend(data, stamp)
        self.end = end
        if live and time.monotonic() - self._painted_at < LIVE_FRAME:
            # Lines only go on the end here; the rows laid out so far stay valid until the frame.
            self._unpainted = True
            if self._frame is None:
                self._frame = self.set_timer(self._painted_at + LIVE_FRAME - time.monotonic(), self.flush)
            return
        self.flush(force=True)

    def flush(self, force: bool = False) -> None:
        """Lay out and paint what came in since the last frame."""
        self._cancel_frame()
        if not (self._unpainted or force):
            return
        self._unpainted = False
        self._painted_at = time.monotonic()
        removed = self._trim_top()
        self._changed(shift=-removed)
        if self.stick_end:
            self.scroll_end(animate=False, x_axis=False, force=True, immediate=True)

    def _cancel_frame(self) -> None:
        if self._frame is not None:
            self._frame.stop()
            self._frame = None

    def prepend(self, offset: int, data: str) -> None:
        """Add [offset, self.first) before the window, forgetting from the bottom to stay bounded."""
        self.flush()
        if offset > 0:
            data, offset = _from_line_start(data, offset)
        if not data or offset >= self.first:
            return
        lines, starts, pos = [], [], offset
        for part in (data[:-1] if data.endswith("\n") else data).split("\n"):
            lines.append(clean(part))
            starts.append(pos)
            pos += len(part.encode()) + 1
        self.lines[:0], self.starts[:0] = lines, starts
        self.first = offset
        self.held += len(data.encode())
        while self.held > self.limit and len(self.lines) > 1:
            self.end = self.starts.pop()
            self.held -= len(self.lines.pop().encode()) + 1
            self.open_tail = False
        if self.current >= 0:
            self.current = -1
        self._changed(shift=len(lines))

    def _extend(self, data: str, stamp: float | None) -> None:
        pos = self.end
        if self.open_tail and self.lines:
            nl = data.find("\n")
            head = data if nl < 0 else data[:nl]
            self.lines[-1] = clean(self.lines[-1] + head)
            if nl < 0:
                self.held += len(head.encode())
                return
            self.held += len(head.encode()) + 1
            pos += len(head.encode()) + 1
            data = data[nl + 1:]
            self.open_tail = False
        if not data:
            return
        parts = data.split("\n")
        self.open_tail = parts[-1] != ""
        if not self.open_tail:
            parts.pop()
        for part in parts:
            self.starts.append(pos)
            self.lines.append(clean(part))
            if stamp is not None:
                self.stamps[pos] = stamp
            size = len(part.encode()) + 1
            pos += size
            self.held += size

    def _trim_top(self) -> int:
        removed = 0
        while self.held > self.limit and len(self.lines) > 1:
            self.held -= len(self.lines[removed].encode()) + 1
            removed += 1
            if self.held <= self.limit:
                break
        if removed:
            for start in self.starts[:removed]:
                self.stamps.pop(start, None)
            del self.lines[:removed], self.starts[:removed]
            self.first = self.starts[0]
        return removed

    # -- layout ------------------------------------------------------------------------------

    def _gutter(self) -> int:
        return STAMP_WIDTH if self.show_times else 0

    def _changed(self, shift: int = 0) -> None:
        """Recompute rows and matches; `shift` lines were added (+) or removed (-) above the view."""
        old_rows = self._line_row[:]
        top_line = self._line_at(int(self.scroll_y), old_rows)
        width = max(1, self.scrollable_content_region.width - self._gutter()) if self.wrap else 0
        rows: list[tuple[int, int, int]] = []
        line_row: list[int] = []
        widest = 0
        for i, line in enumerate(self.lines):
            line_row.append(len(rows))
            if width and len(line) > width:
                rows.extend((i, a, min(a + width, len(line))) for a in range(0, len(line), width))
            else:
                rows.append((i, 0, len(line)))
                widest = max(widest, len(line))
        self._rows, self._line_row = rows, line_row
        self._search()
        self.virtual_size = Size(0 if self.wrap else widest + self._gutter(), len(rows))
        if shift and top_line is not None and line_row:
            target = min(max(0, top_line + shift), len(line_row) - 1)
            self.scroll_to(y=line_row[target], animate=False, immediate=True, force=True)
        self.refresh()

    @staticmethod
    def _line_at(row: int, line_row: list[int]) -> int | None:
        if not line_row:
            return None
        lo, hi = 0, len(line_row) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if line_row[mid] <= row:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def on_resize(self) -> None:
        if self.wrap:
            self._changed()
        if self.stick_end:
            self.go_end()

    def go_end(self) -> None:
        """Show the last row, and keep showing it if the view changes size before the user moves."""
        self.stick_end = True
        if not self._unpainted:  # otherwise the coming frame scrolls, once
            self.scroll_end(animate=False, x_axis=False, force=True, immediate=True)

    def go_home(self) -> None:
        self.stick_end = False
        self.scroll_home(animate=False, immediate=True, force=True)

    def set_options(self, *, wrap: bool | None = None, show_times: bool | None = None,
                    utc: bool | None = None) -> None:
        top = self._line_at(int(self.scroll_y), self._line_row)
        self.wrap = self.wrap if wrap is None else wrap
        self.show_times = self.show_times if show_times is None else show_times
        self.utc = self.utc if utc is None else utc
        self._changed()
        if top is not None and self._line_row:
            self.scroll_to(y=self._line_row[top], animate=False, immediate=True, force=True)

    @property
    def at_bottom(self) -> bool:
        return self.scroll_y >= self.max_scroll_y

    def top_line(self) -> int:
        return self._line_at(int(self.scroll_y), self._line_row) or 0

    # -- search ------------------------------------------------------------------------------

    def search(self, needle: str) -> int:
        self.needle, self.current = needle, -1
        self._search()
        self.refresh()
        return len(self.matches)

    def _search(self) -> None:
        keep = self.matches[self.current] if 0 <= self.current < len(self.matches) else None
        self.matches = []
        needle = self.needle.lower()
        if not needle:
            self.current = -1
            return
        for i, line in enumerate(self.lines):
            low = line.lower()
            at = low.find(needle)
            while at >= 0:
                self.matches.append(Match(i, at, at + len(needle)))
                at = low.find(needle, at + len(needle))
        self.current = self.matches.index(keep) if keep in self.matches else -1

    def next_match(self, forward: bool = True) -> Match | None:
        """Move to the next (or previous) match, from the top of the view the first time."""
        if not self.matches:
            return None
        if self.current < 0:
            top = self.top_line()
            after = [n for n, m in enumerate(self.matches) if m.line >= top]
            before = [n for n, m in enumerate(self.matches) if m.line <= top]
            self.current = (after[0] if after else 0) if forward else (before[-1] if before else -1)
            self.current %= len(self.matches)
        else:
            self.current = (self.current + (1 if forward else -1)) % len(self.matches)
        match = self.matches[self.current]
        self.stick_end = False
        row = self._line_row[match.line]
        if self.wrap:
            row += next((n for n, r in enumerate(self._rows[row:]) if r[0] != match.line or r[2] > match.start), 0)
        if not (self.scroll_y <= row < self.scroll_y + self.scrollable_content_region.height):
            self.scroll_to(y=max(0, row - self.scrollable_content_region.height // 2), animate=False,
                           immediate=True)
        self.refresh()
        return match

    # -- drawing -----------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        row = scroll_y + y
        if row >= len(self._rows):
            return Strip.blank(width, self.rich_style)
        index, a, b = self._rows[row]
        line = self.lines[index]
        text = Text(line[a:b], no_wrap=True, end="")
        if self.matches:
            match_style = self.get_component_rich_style("logview--match", partial=True)
            current_style = self.get_component_rich_style("logview--current", partial=True)
            current = self.matches[self.current] if self.current >= 0 else None
            for m in self._matches_on(index):
                lo, hi = max(m.start, a), min(m.end, b)
                if lo < hi:
                    text.stylize(current_style if m == current else match_style, lo - a, hi - a)
        if self.show_times:
            stamp = self.stamps.get(self.starts[index]) if a == 0 else None
            shown = self._stamp(stamp) if a == 0 else ""
            text = Text.assemble((shown.ljust(STAMP_WIDTH), self.get_component_rich_style("logview--stamp")),
                                 text, no_wrap=True, end="")
        segments = list(text.render(self.app.console))
        strip = Strip(segments).crop(scroll_x, scroll_x + width) if not self.wrap else Strip(segments)
        return strip.extend_cell_length(width, self.rich_style).crop(0, width).apply_style(self.rich_style)

    def _stamp(self, stamp: float | None) -> str:
        if stamp is None:
            return "--:--:--"
        when = datetime.fromtimestamp(stamp, UTC)
        return (when if self.utc else when.astimezone()).strftime("%H:%M:%S")

    def _matches_on(self, line: int) -> list[Match]:
        lo = bisect.bisect_left(self.matches, Match(line, -1, -1))
        out = []
        while lo < len(self.matches) and self.matches[lo].line == line:
            out.append(self.matches[lo])
            lo += 1
        return out

    def plain_rows(self) -> list[str]:
        """The rows on screen as text (what a user reads), for tests and screen readers."""
        top = int(self.scroll_y)
        return ["".join(s.text for s in self.render_line(y)).rstrip()
                for y in range(min(self.scrollable_content_region.height, max(0, len(self._rows) - top)))]

    # -- telling the screen what the user did --------------------------------------------------

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if round(old_value) != round(new_value):
            if new_value <= 0:
                self.post_message(self.Edge(top=True))
            elif new_value >= self.max_scroll_y:
                self.post_message(self.Edge(top=False))

    def _away(self) -> None:
        self.stick_end = False
        self.post_message(self.ScrolledAway())

    def action_scroll_up(self) -> None:
        self._away()
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self._away()
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self._away()
        self.go_home()

    def action_scroll_end(self) -> None:
        self.go_end()

    def _on_mouse_scroll_up(self, event) -> None:  # noqa: ANN001 (Textual's private hook)
        self._away()
        super()._on_mouse_scroll_up(event)


def _from_line_start(data: str, offset: int) -> tuple[str, int]:
    """Drop a partial first line (a chunk read from the middle of a file starts anywhere)."""
    nl = data.find("\n")
    if nl < 0:
        return data, offset
    return data[nl + 1:], offset + len(data[:nl + 1].encode())

