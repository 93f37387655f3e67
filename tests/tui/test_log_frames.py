"""A streaming log is painted in frames: the first chunk at once, the rest of a burst together
at most LIVE_FRAME later, scrolled to the end once (LogView alone, headless)."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult

from flow.tui.widgets.log_view import LIVE_FRAME, LogView


class Host(App):
    def compose(self) -> ComposeResult:
        yield LogView()


def test_a_burst_of_live_chunks_is_one_frame_and_the_view_ends_on_the_last_line():
    async def main() -> None:
        app = Host()
        async with app.run_test(size=(80, 12)) as pilot:
            view = app.query_one(LogView)
            view.replace(0, "".join(f"old {i}\n" for i in range(30)), 0)
            view.end = sum(len(f"old {i}\n") for i in range(30))
            view.go_end()
            await pilot.pause()
            paints: list[int] = []
            real = view.refresh
            view.refresh = lambda *a, **k: (paints.append(1), real(*a, **k))[1]  # type: ignore[method-assign]
            offset = view.end
            for i in range(20):
                chunk = f"new {i}\n"
                view.append(offset, chunk, offset + len(chunk), live=True)
                offset += len(chunk)
                view.go_end()
            assert view.end == offset and view.lines[-1] == "new 19", "the text is in at once"
            first = len(paints)
            assert first >= 1, "the first chunk is painted at once"
            await asyncio.sleep(LIVE_FRAME / 2)
            assert len(paints) == first, "nothing more within the frame"
            await asyncio.sleep(LIVE_FRAME)
            await pilot.pause()
            assert len(paints) > first, "the frame painted the rest"
            assert len(paints) - first <= 3, f"one frame, not a paint per chunk ({len(paints) - first})"
            assert view.scroll_y == view.max_scroll_y > 0
            bottom = "".join(s.text for s in view.render_line(view.scrollable_content_region.height - 1))
            assert bottom.startswith("new 19")
    asyncio.run(main())
