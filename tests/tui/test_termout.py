"""The tight partial update: the same screen as Textual's own, in far fewer bytes.

Each case plays an old screen into a real VT emulator (pyte), then the partial update that
Textual's compositor would send for a changed span, once as Textual writes it and once as
flow.tui.termout writes it, and compares what the two terminals show.
"""

from __future__ import annotations

import io

import pyte
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from flow.tui import termout
from flow.tui.app import FlowTUI
from flow.tui.client import FlowClient

WIDTH = 60
STYLES = [Style(), Style(bold=True), Style(color="green"), Style(color="red", reverse=True), Style(dim=True)]
GLYPHS = "abc✔▶◌○·x "


def console() -> Console:
    return Console(file=io.StringIO(), width=WIDTH, color_system="256", force_terminal=True, legacy_windows=False)


def screen_after(*writes: str, height: int = 3) -> list[str]:
    screen = pyte.Screen(WIDTH, height)
    stream = pyte.Stream(screen)
    for text in writes:
        stream.feed(text)
    return list(screen.display)


def full(lines: list[Strip], con: Console) -> str:
    return "".join(f"\x1b[{y + 1};1H" + strip.render(con) for y, strip in enumerate(lines))


def line(cells: list[tuple[str, int]]) -> Strip:
    return Strip([Segment(text, STYLES[style]) for text, style in cells])


cell = st.tuples(st.text(GLYPHS, min_size=1, max_size=7), st.integers(0, len(STYLES) - 1))


@st.composite
def case(draw):
    """An old and a new screen line of WIDTH columns in two chops, and the span that changed."""
    cells = draw(st.lists(cell, min_size=1, max_size=20))
    text = "".join(t for t, _ in cells)
    cells.append((" " * (WIDTH - len(text)), 0) if len(text) < WIDTH else ("", 0))
    old = line(cells).crop(0, WIDTH)
    x1 = draw(st.integers(0, WIDTH - 1))
    x2 = draw(st.integers(x1 + 1, WIDTH))
    new_text = draw(st.text(GLYPHS, min_size=x2 - x1, max_size=x2 - x1))
    new = Strip.join([old.crop(0, x1), Strip([Segment(new_text, STYLES[2])]), old.crop(x2, WIDTH)])
    cut = draw(st.integers(1, WIDTH - 1))  # two widgets side by side: two chops on the line
    return old, new, x1, x2, cut


@settings(max_examples=150, deadline=None)
@given(case())
def test_tight_update_shows_what_textuals_own_shows(data) -> None:
    old, new, x1, x2, cut = data
    con = console()
    chops = [{0: new.crop(0, cut), cut: new.crop(cut, WIDTH)}]
    args = (chops, [(0, x1, x2)], [[cut, WIDTH]])
    stock = termout._STOCK(*args).render_segments(con)
    tight = termout.TightChopsUpdate(*args).render_segments(con)
    before = full([old], con)
    assert screen_after(before, tight, height=1) == screen_after(before, stock, height=1) == \
        screen_after(full([new], con), height=1)
    assert len(tight) <= len(stock)


def test_a_changed_cell_at_the_right_costs_its_cell_not_its_line() -> None:
    """A grid row of 7 seven-column cells; the last changes: Textual resends the 6 before it."""
    con = console()
    cells = [Segment("   ✔   ", STYLES[2]) for _ in range(7)]
    row = Strip([Segment(" task ", STYLES[1]), *cells, Segment(" " * (WIDTH - 6 - 49))])
    changed = Strip([Segment(" task ", STYLES[1]), *cells[:6], Segment("   ▶   ", STYLES[3]),
                     Segment(" " * (WIDTH - 6 - 49))])
    x1 = 6 + 6 * 7
    args = ([{0: changed}], [(0, x1, x1 + 7)], [[WIDTH]])
    stock = termout._STOCK(*args).render_segments(con)
    tight = termout.TightChopsUpdate(*args).render_segments(con)
    assert tight.startswith(f"\x1b[1;{x1 + 1}H")
    assert "task" in stock and "task" not in tight
    assert len(tight) * 4 < len(stock)
    assert screen_after(full([row], con), tight, height=1) == screen_after(full([changed], con), height=1)


def test_the_console_installs_it() -> None:
    FlowTUI(FlowClient("/nonexistent/flowd.sock"))
    assert termout.installed()
    from textual import _compositor

    assert _compositor.ChopsUpdate is termout.TightChopsUpdate


def test_an_update_of_another_shape_falls_back_to_textuals_own_rendering() -> None:
    """A later Textual whose chops differ must still paint (its own way), never crash the console."""
    con = console()
    update = termout.TightChopsUpdate([{0: Strip([Segment("abc")])}], [(0, 1, 2)], [[WIDTH]])
    update.chop_ends = None  # type: ignore[assignment]  # what the tight path reads, gone
    calls: list[str] = []
    real = termout._STOCK.render_segments
    termout._STOCK.render_segments = lambda self, c: calls.append("stock") or "x"  # type: ignore[method-assign]
    try:
        assert update.render_segments(con) == "x" and calls == ["stock"]
    finally:
        termout._STOCK.render_segments = real  # type: ignore[method-assign]
