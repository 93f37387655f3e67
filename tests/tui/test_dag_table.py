"""The DAG list's table drawn with the line API: one row's line per change, 1,000 rows, the keys.

These fail with Textual's DataTable behind the list: its `update_cell` repaints the whole widget,
its columns all scroll away sideways, and it binds neither j/k nor home/end to rows.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.pilot import Pilot

from flow.tui.app import FlowTUI
from flow.tui.screens.dag_list import DagListScreen
from flow.tui.screens.dag_view import DagViewScreen
from flow.tui.widgets.dag_table import DagTable
from tests.daemon.conftest import Flowd
from tests.tui.partb import call
from tests.tui.test_dag_list import FAILING, cell, copy_examples, rows, run_app, table, until

MANY = """
    from flow import DAG
    from flow.operators import EmptyOperator

    for i in range(60):
        with DAG(f"dag_{i:04d}", schedule=None, tags=["bulk"]) as d:
            EmptyOperator(task_id="only")
        globals()[d.dag_id] = d
"""
NOW = datetime(2026, 1, 3, 9, 30, tzinfo=UTC)


def record_refreshes(widget: DagTable) -> list[tuple[Region, ...]]:
    """Every call of the widget's `refresh`, as the regions it was given (() for the whole widget)."""
    calls: list[tuple[Region, ...]] = []
    original = widget.refresh

    def refresh(*regions: Region, **options: Any) -> DagTable:
        calls.append(regions)
        return original(*regions, **options)

    widget.refresh = refresh  # type: ignore[method-assign]
    return calls


async def settle(pilot: Pilot, calls: list[tuple[Region, ...]], quiet: float = 0.5, timeout: float = 20.0) -> None:
    """Wait until the table went `quiet` seconds without a repaint (flowd's first listings are done)."""
    deadline = time.monotonic() + timeout
    while True:
        calls.clear()
        await pilot.pause(quiet)
        if not calls:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the DAG table kept repainting: {calls}")


def test_a_pushed_change_to_one_dag_repaints_only_its_line_and_an_unchanged_show_nothing(flowd: Flowd):
    copy_examples(flowd, "example_xcom")
    flowd.add_dag("always_fails.py", FAILING)  # both manual only: nothing changes unless we change it

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: rows(app) == ["always_fails", "example_xcom"], "both rows")
        await until(pilot, lambda: cell(app, "example_xcom", "paused") == "● active", "the active cell")
        screen = app.screen
        assert isinstance(screen, DagListScreen)
        grid = table(app)
        calls = record_refreshes(grid)
        await settle(pilot, calls)

        screen._render_rows()
        screen._render_rows(refresh=True)  # what the 30-second tick does: the texts did not change
        await pilot.pause()
        assert calls == [], "showing the same DAGs again repainted the table"

        await asyncio.to_thread(call, flowd, "dags.pause", dag_id="example_xcom", paused=True)  # as `flow pause` would
        await until(pilot, lambda: cell(app, "example_xcom", "paused") == "⏸ paused", "the pushed pause")
        await pilot.pause(0.2)
        y = 1 + grid.dag_ids.index("example_xcom") - grid.scroll_offset.y
        assert len(calls) == 1 and len(calls[0]) == 1, calls  # that row's line only (its ⏸ mark and Paused cell)
        assert calls[0][0].y == y and calls[0][0].height == 1, calls
        assert "⏸ paused" in grid.render_line(y).text and "example_xcom" in grid.render_line(y).text

        calls.clear()
        assert grid.update_dag({**screen.dags["example_xcom"], "tags": ["a-tag-wider-than-any-before"]})
        assert calls == [()], calls  # a column grew: the whole table once
        assert "a-tag-wider-than-any-before" in grid.render_line(y).text
    run_app(flowd, body)


def summaries(n: int) -> list[dict[str, Any]]:
    """DAG summaries as flowd's `dags.list` sends them (docs/protocol.md)."""
    return [{"dag_id": f"dag_{i:04d}", "is_paused": i % 7 == 0, "is_active": True, "tags": ["bulk", f"team{i % 5}"],
             "owner": "ops", "schedule_text": "every day at 00:00", "next_run": (NOW + timedelta(hours=i)).isoformat(),
             "last_run": {"state": "failed" if i % 3 else "success", "end_date": (NOW - timedelta(minutes=i)).isoformat()},
             "last_run_peak_rss": 1_000_000 + i, "recent": {"success": 3, "failed": i % 3}} for i in range(n)]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield DagTable(id="dags")


def test_a_thousand_dags_are_all_reachable_and_the_dag_id_stays_on_screen_when_scrolled_sideways():
    async def main() -> None:
        app = TableApp()
        async with app.run_test(size=(80, 24)) as pilot:
            grid = app.query_one(DagTable)
            grid.focus()
            grid.show(summaries(1000), NOW)
            await pilot.pause()
            assert grid.row_count == 1000 and grid.dag_ids[-1] == "dag_0999"
            header, first = grid.render_line(0).text, grid.render_line(1).text
            assert header.split()[:2] == ["DAG", "Last"], header
            assert "dag_0000" in first and "⏸" in first and "✔ success" in first, first
            assert "dag_0000" in app.export_screenshot()

            await pilot.press("ctrl+end")
            await pilot.pause()
            assert grid.cursor_row == 999 and grid.selected_dag == "dag_0999"
            bottom = grid.scrollable_content_region.height - 1
            assert "dag_0999" in grid.render_line(bottom).text
            assert "dag_0998" in grid.render_line(bottom - 1).text
            assert grid.render_line(0).text == header, "the header line scrolled away"

            assert grid.virtual_size.width > grid.scrollable_content_region.width, "wider than 80 columns"
            for _ in range(200):
                before = grid.scroll_offset.x
                await pilot.press("right")
                await pilot.pause()
                if grid.scroll_offset.x == before:
                    break
            assert grid.scroll_offset.x > 0
            line = grid.render_line(bottom).text
            peak = str(grid.get_cell("dag_0999", "peak"))
            assert "dag_0999" in line and line.rstrip().endswith(peak), line  # the id stays, the last column came in
            assert "DAG" in grid.render_line(0).text and "Peak mem" in grid.render_line(0).text

            await pilot.press("ctrl+home")
            await pilot.pause()
            assert grid.selected_dag == "dag_0000" and "dag_0000" in grid.render_line(1).text
    asyncio.run(main())


def test_sideways_scrolling_moves_whole_columns_so_no_piece_of_one_shows_beside_the_dag_column():
    """Scrolling by 8 cells once showed `example_ssh      , ssh` (the tail of a tags cell) and a
    header `le` over cells ` only`: the first column beside the fixed ones must always be whole."""
    from flow.tui.widgets.dag_table import COLUMNS, FIXED

    labels = [label for _, label in COLUMNS[FIXED:]]

    async def main() -> None:
        app = TableApp()
        async with app.run_test(size=(80, 24)) as pilot:
            grid = app.query_one(DagTable)
            grid.focus()
            dags = summaries(5)
            dags[1]["tags"] = ["example", "ssh"]
            grid.show(dags, NOW)
            await pilot.pause()
            fixed = grid._fixed_width(grid.scrollable_content_region.width)
            assert fixed > 0
            seen = []
            for _ in range(len(labels) + 2):
                header = grid.render_line(0).text
                scrolled = header[fixed:]
                assert scrolled.startswith(" ") and any(scrolled[1:].startswith(label) for label in labels), header
                seen.append(scrolled.split("  ")[0].strip())
                for y in range(1, 6):
                    line = grid.render_line(y).text[fixed:]
                    assert not line.startswith(" , ") and not line.startswith(","), line
                await pilot.press("right")
                await pilot.pause()
            assert len(set(seen)) > 2, seen  # it did scroll, column by column
            await pilot.press(*["left"] * (len(labels) + 2))
            await pilot.pause()
            assert grid.scroll_offset.x == 0
    asyncio.run(main())


def test_keys_move_the_cursor_by_row_page_and_to_the_ends_and_enter_opens_the_dag_once(flowd: Flowd):
    flowd.add_dag("many.py", MANY)

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: len(rows(app)) == 60, "60 rows", timeout=60)
        grid = table(app)
        ids = grid.dag_ids
        page = grid.scrollable_content_region.height - 1
        assert 0 < page < 59 and grid.cursor_row == 0

        def rows_on_screen() -> int:
            """Now, not at the start: the horizontal scrollbar comes and goes as column widths settle."""
            return grid.scrollable_content_region.height - 1

        async def press(key: str, row: int | None = None, pages: int = 0) -> None:
            if row is None:
                row = max(0, min(59, grid.cursor_row + pages * rows_on_screen()))
            await pilot.press(key)
            assert grid.cursor_row == row and grid.selected_dag == ids[row], (key, grid.cursor_row, row)
            y = grid.scroll_offset.y
            assert y <= row < y + rows_on_screen(), f"the cursor is off screen ({key}: row {row}, top {y})"

        await press("pagedown", pages=1)
        await press("pagedown", 59)
        await press("pageup", pages=-1)
        await press("home", 0)
        await press("end", 59)
        await press("ctrl+home", 0)
        await press("j", 1)
        await press("down", 2)
        await press("k", 1)
        await press("ctrl+end", 59)
        await press("up", 58)
        await press("home", 0)

        await pilot.click(DagTable, offset=(4, 1 + 3))
        assert grid.selected_dag == ids[3] and isinstance(app.screen, DagListScreen), "a click opened the DAG"

        opened: list[str] = []
        original = app.open_dag
        app.open_dag = lambda dag_id, run_id=None: (opened.append(dag_id), original(dag_id, run_id))[1]  # type: ignore[method-assign]
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DagViewScreen), "the DAG view")
        await pilot.pause(0.3)
        assert opened == [ids[3]] and app.screen.dag_id == ids[3]
        assert sum(isinstance(s, DagViewScreen) for s in app.screen_stack) == 1

        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DagListScreen), "back to the list")
        assert grid.selected_dag == ids[3]
        await pilot.click(DagTable, offset=(4, 1 + 3))  # a click on the selected row opens it
        await until(pilot, lambda: isinstance(app.screen, DagViewScreen), "the DAG view from a click")
        assert opened == [ids[3], ids[3]]
    run_app(flowd, body)
