"""A screen covered by another holds its updates (they would repaint the screen on top) and
catches up, once, when it is shown again. Against a real flowd."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from flow.tui.app import FlowTUI
from flow.tui.screens.dag_list import DagListScreen
from flow.tui.screens.dag_view import DagViewScreen
from flow.tui.widgets.run_grid import RunGrid
from tests.daemon.conftest import Flowd
from tests.tui.test_dag_list import cell, copy_examples, until
from tests.tui.test_dag_view import call, finished_run, open_view, run_app


def counting(app: FlowTUI) -> list[str]:
    """Every method the console calls from now on, in order."""
    calls: list[str] = []
    original = app.client.call

    async def call_and_count(method: str, **params: Any) -> dict[str, Any]:
        calls.append(method)
        return await original(method, **params)

    app.client.call = call_and_count  # type: ignore[method-assign]
    return calls


def test_the_dag_list_under_a_dag_view_waits_and_catches_up_when_shown(flowd: Flowd):
    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        home = app.screen
        assert isinstance(home, DagListScreen)
        view = await open_view(pilot, app, "example_xcom")
        assert not home.shown and view.shown
        calls = counting(app)
        repaints: list[int] = []
        table = home.query_one("#dags")
        original_refresh = table.refresh
        table.refresh = lambda *a, **k: repaints.append(1) or original_refresh(*a, **k)  # type: ignore[method-assign]

        run_id = await finished_run(pilot, app, flowd, "example_xcom")
        await pilot.pause(0.3)
        assert "dags.get" not in calls and "dags.list" not in calls, calls  # only the view asked
        assert repaints == [], "the covered DAG list repainted"
        assert cell(app, "example_xcom", "last_run") == ""  # (cell() reads the screen on top)
        assert home.query_one("#dags").get_cell("example_xcom", "last_run").plain == "never"

        await pilot.press("escape")
        await until(pilot, lambda: app.screen is home and "success" in cell(app, "example_xcom", "last_run"),
                    "the list to catch up with the run that finished while it was covered")
        assert calls.count("dags.get") == 1, calls  # one request for the burst of events
        assert call(flowd, "runs.get", dag_id="example_xcom", run_id=run_id)["run"]["state"] == "success"
    run_app(flowd, body)


def test_a_dag_view_under_the_log_screen_reloads_its_page_once_when_shown(flowd: Flowd):
    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        view = await open_view(pilot, app, "example_xcom")
        first = await finished_run(pilot, app, flowd, "example_xcom")
        grid = view.query_one(RunGrid)
        await pilot.press("l")
        await until(pilot, lambda: app.screen is not view, "the log screen")
        assert not view.shown
        calls = counting(app)
        second = call(flowd, "dags.trigger", dag_id="example_xcom")["run"]["run_id"]
        await until(pilot, lambda: call(flowd, "runs.get", dag_id="example_xcom", run_id=second)["run"]["state"]
                    == "success", "the second run to finish")
        await pilot.pause(0.3)
        assert grid.runs == [first], "the covered grid changed"
        assert "runs.grid" not in calls and "runs.get" not in calls, calls

        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DagViewScreen) and grid.runs == [first, second],
                    "the grid to show the run that came while it was covered")
        await until(pilot, lambda: grid.header(second).startswith("✔"), "the second run's header")
        assert calls.count("runs.grid") == 1, calls
    run_app(flowd, body)
