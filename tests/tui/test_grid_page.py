"""New runs on the newest page: a column's bytes each while the page fits the screen; when it no
longer does, the oldest half-screen makes room at once (one repaint), never the run under the
cursor. RunGrid alone, headless."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult
from textual.geometry import Region

from flow.tui.widgets.run_grid import CELL, RunGrid

TASKS = [f"t{i:02d}" for i in range(10)]


class Host(App):
    def compose(self) -> ComposeResult:
        yield RunGrid()


def run(i: int) -> dict:
    return {"run_id": f"r{i:02d}", "run_type": "manual", "state": "running"}


def with_grid(body, size=(80, 24)) -> None:
    async def main() -> None:
        app = Host()
        async with app.run_test(size=size) as pilot:
            grid = app.query_one(RunGrid)
            grid.show(TASKS, [run(0), run(1)], {})
            await pilot.pause()
            await body(grid, pilot)
    asyncio.run(main())


def recording(grid: RunGrid) -> list[tuple[Region, ...]]:
    calls: list[tuple[Region, ...]] = []
    real = grid.refresh
    grid.refresh = lambda *regions, **kw: (calls.append(regions), real(*regions, **kw))[1]  # type: ignore[method-assign]
    return calls


def test_runs_that_fit_paint_their_own_column_and_the_size_stays():
    async def body(grid: RunGrid, pilot) -> None:
        fits = grid.fits()
        label = len("t00") + 2
        assert fits == (grid.scrollable_content_region.width - label) // CELL and fits > 5
        size, calls = grid.virtual_size, recording(grid)
        for i in range(2, fits):
            grid.add_run(run(i))
            assert grid.trim() == []
            assert calls[-1] == (Region(label + i * CELL, 0, CELL, grid.size.height),), f"run {i}"
            await pilot.pause()
        assert grid.virtual_size == size, "no layout: the width was the screen's all along"
        assert len(grid.runs) == fits and grid.scroll_offset.x == 0
    with_grid(body)


def test_the_run_that_does_not_fit_drops_the_oldest_half_screen_once():
    async def body(grid: RunGrid, pilot) -> None:
        fits = grid.fits()
        for i in range(2, fits):
            grid.add_run(run(i))
        grid.select(f"r{fits - 1:02d}", "t03")
        calls = recording(grid)
        grid.add_run(run(fits))
        dropped = grid.trim()
        assert dropped == [f"r{i:02d}" for i in range(fits // 2)]
        assert grid.runs[0] == f"r{fits // 2:02d}" and grid.runs[-1] == f"r{fits:02d}"
        assert grid.selected == (f"r{fits - 1:02d}", "t03"), "the cursor stays on its run"
        assert () in calls, "one whole repaint"
        await pilot.pause()
        assert grid.scroll_offset.x == 0 and "r00" not in grid.cells and "r00" not in grid.run_info
        calls.clear()
        grid.add_run(run(fits + 1))
        assert grid.trim() == [] and calls == [(Region(5 + (len(grid.runs) - 1) * CELL, 0, CELL,
                                                        grid.size.height),)], "room again: one column"
    with_grid(body)


def test_the_cursor_on_the_oldest_run_keeps_it_and_the_page_scrolls_instead():
    async def body(grid: RunGrid, pilot) -> None:
        fits = grid.fits()
        for i in range(2, fits + 3):
            grid.add_run(run(i))
            grid.select("r00", "t00")
            assert grid.trim() == []
        assert len(grid.runs) == fits + 3 and grid.selected == ("r00", "t00")
        await pilot.pause()
        assert grid.virtual_size.width > grid.scrollable_content_region.width, "the page scrolls sideways"
    with_grid(body)
