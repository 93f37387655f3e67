"""Snapshots of the console at 80x24 and 120x40 against a real flowd with a frozen history.

Review a changed snapshot before accepting it: `pytest tests/tui/test_snapshots.py --snapshot-update`
rewrites tests/tui/__snapshots__/, and the report of a failing run shows both pictures side by side.
"""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from flow.tui.app import make_app
from flow.tui.widgets.dag_table import DagTable
from tests.daemon.conftest import Flowd

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


async def dag_list_loaded(pilot: Pilot) -> None:
    app = pilot.app
    for _ in range(600):
        tables = app.screen.query(DagTable)
        table = tables.first() if tables else None
        if table is not None and table.row_count == 2 and all(
                "ago" in str(table.get_cell(dag_id, "last_run")) for dag_id in table.dag_ids):
            break
        await pilot.pause(0.05)
    else:
        raise AssertionError("the DAG list did not load both DAGs with their last runs")
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_dag_list(snap_compare, snapshot_flowd: Flowd, frozen, size):
    assert snap_compare(make_app(snapshot_flowd.socket_path), terminal_size=size, run_before=dag_list_loaded)
