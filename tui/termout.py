"""Send the terminal only the changed part of a line, not the line up to the change.

Textual repaints a partial update chop by chop, where a chop is the stretch of a line one widget
covers. Its `ChopsUpdate.render_segments` crops a chop at the right edge of the changed span but
starts writing at the chop's left edge, so a cell that changed at column 90 of the grid resends
columns 0-89 too: ~600 bytes instead of ~30 for a state change on a 120-column terminal, which is
most of what an ssh link carries while tasks run. `install()` swaps in a subclass that also skips
the segments ending before the span, so the write starts at (or just before) the changed cell.

Only the rendering of partial updates changes: full repaints, inline mode and the `__rich_console__`
path (already tight) are Textual's own. `install()` does nothing, and returns False, if this
version of Textual has no `ChopsUpdate` of the expected shape; tests/tui/test_termout.py says so.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.control import Control
from rich.segment import Segment
from textual.strip import Strip

try:
    from textual import _compositor
except ImportError:  # pragma: no cover - a Textual without the module
    _compositor = None  # type: ignore[assignment]

_STOCK: Any = getattr(_compositor, "ChopsUpdate", None)


def _skip_to(strip: Strip, x: int, x1: int) -> tuple[int, list[Segment]]:
    """Drop the whole segments that end at or before x1; return where the rest starts."""
    segments = list(strip)
    for index, segment in enumerate(segments):
        width = cell_len(segment.text)
        if x + width > x1:
            return x, segments[index:]
        x += width
    return x, []


if _STOCK is not None:

    class TightChopsUpdate(_STOCK):  # type: ignore[misc,valid-type]
        """ChopsUpdate whose terminal output starts at the changed span, not at the chop."""

        def render_segments(self, console: Console) -> str:
            try:
                return self._tight(console)
            except (AttributeError, TypeError, ValueError, IndexError):  # a Textual whose update changed shape
                return super().render_segments(console)

        def _tight(self, console: Console) -> str:
            sequences: list[str] = []
            append = sequences.append
            move_to = Control.move_to
            chops, chop_ends = self.chops, self.chop_ends
            last_y = self.spans[-1][0]
            for y, x1, x2 in self.spans:
                for end, (x, strip) in zip(chop_ends[y], chops[y].items(), strict=False):
                    if strip is None or x > x2 or end <= x1:
                        continue
                    if x < x1:
                        x, segments = _skip_to(strip, x, x1)
                        strip = Strip(segments)
                        if not segments:
                            continue
                    strip = strip.crop(0, min(end, x2) - x)
                    append(move_to(x, y).segment.text)
                    append(strip.render(console))
                if y != last_y:
                    append("\n")
            return "".join(sequences)
else:  # pragma: no cover
    TightChopsUpdate = None  # type: ignore[assignment,misc]


def install() -> bool:
    """Make Textual's compositor build TightChopsUpdate; True when it is in place."""
    if TightChopsUpdate is None or not all(hasattr(_STOCK, name) for name in ("render_segments", "__init__")):
        return False
    if not hasattr(_compositor.Compositor, "render_partial_update"):
        return False
    _compositor.ChopsUpdate = TightChopsUpdate
    return True


def installed() -> bool:
    return TightChopsUpdate is not None and getattr(_compositor, "ChopsUpdate", None) is TightChopsUpdate
