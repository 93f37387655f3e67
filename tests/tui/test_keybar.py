"""The one-line key hints: what they show, when they repaint, and that a click presses the key."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Input

from flow.tui.widgets.keybar import KeyBar


class Host(App):
    BINDINGS = [Binding("x", "boom", "Explode"), Binding("y", "ping", "Ping"),
                Binding("z", "hidden", "Hidden", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self.pinged = 0
        self.armed = False

    def compose(self) -> ComposeResult:
        yield Input(id="box")
        yield KeyBar()

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "boom":
            return True if self.armed else None  # None: shown, but disabled (dimmed)
        return True

    def action_ping(self) -> None:
        self.pinged += 1


def test_hints_show_the_active_bindings_dim_the_disabled_and_a_click_presses():
    async def main() -> None:
        app = Host()
        async with app.run_test(size=(80, 5)) as pilot:
            bar = app.query_one(KeyBar)
            app.set_focus(None)
            await pilot.pause()
            assert " x Explode " in bar.hints and " y Ping " in bar.hints
            assert "Hidden" not in bar.hints
            line = "".join(s.text for s in bar.render_line(0))
            assert line.rstrip().endswith("^p palette"), line
            dimmed = [span for span in bar._text.spans if span.style.dim]
            assert dimmed and all(bar._text.plain[s.start:s.end].strip() in ("x", "Explode") for s in dimmed)
            repaints: list[int] = []
            real = bar.refresh
            bar.refresh = lambda *a, **k: (repaints.append(1), real(*a, **k))[1]  # type: ignore[method-assign]
            bar.rebuild()
            assert repaints == [], "the same hints repaint nothing"
            app.armed = True
            app.refresh_bindings()
            await pilot.pause()
            assert repaints and not any(span.style.dim for span in bar._text.spans)
            start = bar.hints.index(" y Ping")
            await pilot.click(KeyBar, offset=(start + 2, 0))
            assert app.pinged == 1
    asyncio.run(main())
