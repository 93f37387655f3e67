"""Snapshots of the console at 80x24 and 120x40 against a real flowd with a frozen history.

Review a changed snapshot before accepting it: `pytest tests/tui/test_snapshots.py --snapshot-update`
rewrites tests/tui/__snapshots__/, and the report of a failing run shows both pictures side by side.
"""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from flow.tui.app import make_app
from flow.tui.dialogs.clear import ClearDialog
from flow.tui.screens.dag_view import DagViewScreen
from flow.tui.widgets.dag_graph import DagGraph
from flow.tui.widgets.dag_table import DagTable
from flow.tui.widgets.run_grid import RunGrid
from tests.daemon.conftest import Flowd

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


async def dag_list_loaded(pilot: Pilot) -> None:
    app = pilot.app
    for _ in range(600):
        tables = app.screen.query(DagTable)
        table = tables.first() if tables else None
        banner = app.screen.query("#import-errors")
        if table is not None and table.row_count == 2 and all(
                "ago" in str(table.get_cell(dag_id, "last_run")) for dag_id in table.dag_ids) \
                and banner and banner.first().display:
            break
        await pilot.pause(0.05)
    else:
        raise AssertionError("the DAG list did not load both DAGs with their last runs")
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_dag_list(snap_compare, snapshot_flowd: Flowd, frozen, size):
    assert snap_compare(make_app(snapshot_flowd.socket_path), terminal_size=size, run_before=dag_list_loaded)


async def _until(pilot: Pilot, check, what: str) -> None:
    for _ in range(600):
        if check():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def diamond_grid(pilot: Pilot) -> None:
    """The diamond DAG's view with its three runs; the cursor on the newest (failed) run's first task."""
    app = pilot.app
    await _until(pilot, lambda: app.client.connected, "the connection")
    app.open_dag("diamond")
    await _until(pilot, lambda: isinstance(app.screen, DagViewScreen) and len(app.screen.grid.runs) == 3
                 and all(app.screen.grid.header(r).startswith(("✔", "✘")) for r in app.screen.grid.runs),
                 "the grid's three finished runs")
    await pilot.pause()


async def diamond_graph(pilot: Pilot) -> None:
    await diamond_grid(pilot)
    await pilot.press("g")
    await _until(pilot, lambda: pilot.app.focused is pilot.app.screen.query_one(DagGraph), "the graph")
    await pilot.pause()


async def clear_dialog(pilot: Pilot) -> None:
    """Clear `clean` of the failed run with downstream on: the dry run lists clean and load."""
    await diamond_grid(pilot)
    grid = pilot.app.screen.query_one(RunGrid)
    grid.select(grid.runs[-1], "clean")
    await pilot.press("c")
    await _until(pilot, lambda: isinstance(pilot.app.screen, ClearDialog), "the clear dialog")
    dialog = pilot.app.screen
    await _until(pilot, lambda: dialog.affected is not None, "the first dry run")
    await pilot.press("d")
    await _until(pilot, lambda: dialog.shown_for == dialog.current_params()
                 and [ti["task_id"] for ti in dialog.affected or []] == ["clean", "load"], "the downstream dry run")
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_dag_view_grid(snap_compare, snapshot_flowd: Flowd, frozen, size):
    assert snap_compare(make_app(snapshot_flowd.socket_path), terminal_size=size, run_before=diamond_grid)


@pytest.mark.parametrize("size", SIZES)
def test_dag_view_graph(snap_compare, snapshot_flowd: Flowd, frozen, size):
    assert snap_compare(make_app(snapshot_flowd.socket_path), terminal_size=size, run_before=diamond_graph)


@pytest.mark.parametrize("size", SIZES)
def test_clear_dialog(snap_compare, snapshot_flowd: Flowd, frozen, size):
    assert snap_compare(make_app(snapshot_flowd.socket_path), terminal_size=size, run_before=clear_dialog)
