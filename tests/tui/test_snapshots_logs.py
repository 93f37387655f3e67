"""Snapshots of the log screen: a finished try of the frozen history at 80x24 and 120x40."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from flow.tui.app import make_app
from flow.tui.screens.logs import LogScreen
from flow.tui.widgets.log_view import LogView
from tests.daemon.conftest import Flowd
from tests.tui.snapshots import DAY

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
RUN = f"manual__{DAY.isoformat()}"


async def open_log(pilot: Pilot) -> None:
    app = pilot.app
    for _ in range(600):
        if app.client.connected:
            break
        await pilot.pause(0.05)
    app.open_logs("diamond", RUN, "extract")
    for _ in range(600):
        screen = app.screen
        views = screen.query(LogView) if isinstance(screen, LogScreen) else []
        if views and "rows=42" in views.first().lines:
            break
        await pilot.pause(0.05)
    else:
        raise AssertionError("the log of diamond.extract did not show its output")
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_log_screen(snap_compare, snapshot_flowd: Flowd, frozen, size):
    assert snap_compare(make_app(snapshot_flowd.socket_path), terminal_size=size, run_before=open_log)
