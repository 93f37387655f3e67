"""The DAG view against a real flowd: grid, live cells, trigger, clear, retry, graph, conf, viewer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot

from flow.daemon.client import Client
from flow.tui.app import FlowTUI, make_app
from flow.tui.dialogs.clear import ClearDialog
from flow.tui.dialogs.conf_editor import ConfEditor
from flow.tui.dialogs.confirm import ConfirmDialog
from flow.tui.screens.dag_view import DagViewScreen
from flow.tui.screens.task_detail import TaskDetailScreen, definition_text
from flow.tui.widgets.dag_graph import DagGraph
from flow.tui.widgets.run_grid import RunGrid
from tests.daemon.conftest import Flowd
from tests.tui.test_dag_list import copy_examples, rows, select, until

# Fails until a marker file exists, so a test can make its retry succeed.
FLAKY = """
    import pendulum
    from flow import DAG
    from flow.operators import BashOperator

    with DAG(dag_id="needs_marker", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        first = BashOperator(task_id="first", bash_command="echo first")
        check = BashOperator(task_id="check", bash_command="test -e {marker}")
        after = BashOperator(task_id="after", bash_command="echo after")
        first >> check >> after
"""


def run_app(flowd: Flowd, body: Callable[[FlowTUI, Pilot], Awaitable[None]],
            size: tuple[int, int] = (120, 40)) -> None:
    async def main() -> None:
        app = make_app(flowd.socket_path)
        async with app.run_test(size=size) as pilot:
            await body(app, pilot)
    asyncio.run(main())


def call(flowd: Flowd, method: str, **params) -> dict:
    with Client.connect(flowd.socket_path) as client:
        return client.call(method, **params)


def wait_dag(flowd: Flowd, dag_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while dag_id not in {d["dag_id"] for d in call(flowd, "dags.list")["dags"]}:
        assert time.monotonic() < deadline, f"flowd did not load {dag_id} within {timeout:g}s"
        time.sleep(0.1)


def view(app: FlowTUI) -> DagViewScreen:
    assert isinstance(app.screen, DagViewScreen), f"the DAG view is not on top ({app.screen!r})"
    return app.screen


def state(app: FlowTUI, run_id: str | None, task_id: str) -> str:
    """The glyph the grid shows for (run, task), '' when there is no such cell (yet)."""
    if not isinstance(app.screen, DagViewScreen) or run_id is None:
        return ""
    return app.screen.query_one(RunGrid).cell_text(run_id, task_id)


def tries(flowd: Flowd, dag_id: str, run_id: str) -> dict[str, int]:
    got = call(flowd, "runs.get", dag_id=dag_id, run_id=run_id)["task_instances"]
    return {ti["task_id"]: ti["try_number"] for ti in got}


async def open_view(pilot: Pilot, app: FlowTUI, dag_id: str) -> DagViewScreen:
    await until(pilot, lambda: dag_id in rows(app), f"{dag_id}'s row")
    await select(pilot, app, dag_id)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, DagViewScreen), "the DAG view")
    await until(pilot, lambda: view(app).tasks != [], "the DAG's tasks")
    return view(app)


def test_enter_opens_the_grid_and_t_triggers_a_run_that_succeeds_cell_by_cell(flowd: Flowd):
    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        screen = await open_view(pilot, app, "example_xcom")
        grid = screen.query_one(RunGrid)
        assert grid.tasks == ["add1", "add2", "dot"] and grid.runs == []
        assert "no runs yet" in str(screen.query_one("#cell-info").render())
        await pilot.press("t")
        await until(pilot, lambda: len(grid.runs) == 1, "the new run's column")
        run_id = grid.runs[0]
        await until(pilot, lambda: all(state(app, run_id, t) == "✔" for t in grid.tasks), "three ✔ cells")
        await until(pilot, lambda: grid.header(grid.runs[0]).startswith("✔ M"),
                    "the header to show a successful manual run")
        assert grid.selected == (run_id, grid.selected[1])
        info = str(screen.query_one("#cell-info").render())
        assert run_id in info and "success" in info
        assert call(flowd, "runs.get", dag_id="example_xcom", run_id=run_id)["run"]["state"] == "success"
    run_app(flowd, body)


async def finished_run(pilot: Pilot, app: FlowTUI, flowd: Flowd, dag_id: str, glyph: str = "✔") -> str:
    """Trigger through the protocol (as another operator would) and wait for the grid to show it done."""
    run_id = call(flowd, "dags.trigger", dag_id=dag_id)["run"]["run_id"]
    grid = view(app).query_one(RunGrid)
    await until(pilot, lambda: grid.header(grid.runs[-1]).startswith(glyph)
                if run_id in grid.runs else False, f"the pushed run {run_id} to finish with {glyph}")
    return run_id


def test_c_with_downstream_lists_the_dry_run_then_reruns_exactly_those_task_instances(flowd: Flowd):
    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        screen = await open_view(pilot, app, "example_xcom")
        run_id = await finished_run(pilot, app, flowd, "example_xcom")
        before = tries(flowd, "example_xcom", run_id)
        assert before == {"add1": 1, "add2": 1, "dot": 1}
        grid = screen.query_one(RunGrid)
        grid.select(run_id, "add1")
        await until(pilot, lambda: grid.selected == (run_id, "add1"), "the cursor on add1")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ClearDialog), "the clear dialog")
        dialog = app.screen
        await until(pilot, lambda: dialog.affected is not None, "the first dry run")
        assert [ti["task_id"] for ti in dialog.affected] == ["add1"]
        await pilot.press("d")
        await until(pilot, lambda: [ti["task_id"] for ti in dialog.affected or []] == ["add1", "dot"]
                    and dialog.shown_for == dialog.current_params(), "the dry run with downstream")
        listed = str(dialog.query_one("#dry-run-list").render())
        assert "add1" in listed and "dot" in listed and "add2" not in listed
        assert tries(flowd, "example_xcom", run_id) == before, "a dry run changed nothing"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DagViewScreen), "the dialog to close")
        await until(pilot, lambda: tries(flowd, "example_xcom", run_id) == {"add1": 2, "add2": 1, "dot": 2},
                    "add1 and dot to run a second time, add2 not")
        await until(pilot, lambda: all(state(app, run_id, t) == "✔" for t in grid.tasks), "all ✔ again")
        await until(pilot, lambda: screen.tis[run_id]["dot"].get("try_number") == 2, "the grid's try of dot")
        assert screen.tis[run_id]["add2"]["try_number"] == 1
        assert any("2 task instances cleared: add1, dot" in str(n.message) for n in app._notifications)
    run_app(flowd, body)


def test_r_retries_the_failed_tasks_of_a_run_after_confirming_the_list(flowd: Flowd, tmp_path: Path):
    marker = tmp_path / "marker"
    flowd.add_dag("needs_marker.py", FLAKY.format(marker=marker))

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        screen = await open_view(pilot, app, "needs_marker")
        run_id = await finished_run(pilot, app, flowd, "needs_marker", glyph="✘")
        await until(pilot, lambda: [state(app, run_id, t) for t in ("first", "check", "after")] == ["✔", "✘", "⊘"],
                    "first ✔, check ✘, after ⊘")
        marker.write_text("")
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the retry dialog")
        dialog = app.screen
        await until(pilot, lambda: dialog.affected is not None, "the dry run")
        assert [(ti["task_id"], ti["state"]) for ti in dialog.affected] == \
            [("check", "failed"), ("after", "upstream_failed")]
        await pilot.press("enter")
        await until(pilot, lambda: [state(app, run_id, t) for t in ("first", "check", "after")] == ["✔"] * 3,
                    "the retried run to succeed in the grid")
        assert tries(flowd, "needs_marker", run_id) == {"first": 1, "check": 2, "after": 1}
        assert call(flowd, "runs.get", dag_id="needs_marker", run_id=run_id)["run"]["state"] == "success"
        await until(pilot, lambda: screen.query_one(RunGrid).header(run_id).startswith("✔"),
                    "the run header to show success")
    run_app(flowd, body)


def test_a_viewer_cannot_clear_mark_or_retry_and_is_told_why(flowd: Flowd):
    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await open_view(pilot, app, "example_xcom")
        run_id = await finished_run(pilot, app, flowd, "example_xcom")
        app.client.hello = {**app.client.hello, "role": "viewer"}
        await pilot.press("c", "m", "r")
        assert isinstance(app.screen, DagViewScreen), "no dialog opened for a viewer"
        said = [str(n.message) for n in app._notifications if n.title == "Not allowed"]
        assert len(said) == 3 and all("viewer" in s for s in said)
        assert "clear" in said[0] and "mark" in said[1] and "retry" in said[2]
        assert tries(flowd, "example_xcom", run_id) == {"add1": 1, "add2": 1, "dot": 1}
    run_app(flowd, body)


def test_graph_at_80x24_draws_every_task_and_arrows_follow_edges(flowd: Flowd):
    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        screen = await open_view(pilot, app, "example_xcom")
        run_id = await finished_run(pilot, app, flowd, "example_xcom")
        await pilot.press("g")
        graph = screen.query_one(DagGraph)
        await until(pilot, lambda: app.focused is graph, "the graph")
        shown = "\n".join("".join(seg.text for seg in graph.render_line(y)) for y in range(graph.size.height))
        for task in ("add1", "add2", "dot"):
            assert f"✔ {task}" in shown, shown
        assert graph.states == {"add1": "success", "add2": "success", "dot": "success"}
        assert screen.graph_run == run_id
        graph.select("add1")
        await pilot.press("down")
        assert graph.selected == "dot"
        await pilot.press("up")
        assert graph.selected in ("add1", "add2")
        graph.select("add1")
        await pilot.press("right")
        assert graph.selected == "add2"
        await pilot.press("right")
        assert graph.selected == "add2", "no sibling to the right of the last one"
        await pilot.press("left", "up")
        assert graph.selected == "add1", "add1 has no upstream"
        assert "add1" in str(screen.query_one("#cell-info").render())
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TaskDetailScreen), "the task detail")
        assert (app.screen.run_id, app.screen.task_id) == (run_id, "add1")
        await pilot.press("escape", "g")
        assert screen.query_one(RunGrid).selected == (run_id, "add1"), "the grid takes the graph's selection"
    run_app(flowd, body, size=(80, 24))


def test_conf_editor_refuses_bad_json_inline_and_triggers_with_a_valid_object(flowd: Flowd):
    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        screen = await open_view(pilot, app, "example_xcom")
        await pilot.press("T")
        await until(pilot, lambda: isinstance(app.screen, ConfEditor), "the conf editor")
        editor = app.screen
        area = editor.query_one("#conf-text")
        assert area.text.replace(" ", "").replace("\n", "") == '{"x":2}', "starts from the DAG's params"
        error = editor.query_one("#conf-error")
        area.text = '{"x": 5,'
        await pilot.press("ctrl+s")
        await until(pilot, lambda: error.display, "the parse error")
        assert "not JSON" in str(error.render()) and "line 1" in str(error.render())
        area.text = "[1, 2]"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "must be a JSON object" in str(error.render()), "the not-an-object error")
        assert isinstance(app.screen, ConfEditor) and area.text == "[1, 2]", "nothing typed is lost"
        assert call(flowd, "runs.list", dag_id="example_xcom")["runs"] == []
        area.text = '{"x": 5}'
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, DagViewScreen), "the editor to close")
        grid = screen.query_one(RunGrid)
        await until(pilot, lambda: len(grid.runs) == 1 and grid.selected[0] == grid.runs[0], "the new run selected")
        run = call(flowd, "runs.get", dag_id="example_xcom", run_id=grid.runs[0])["run"]
        assert run["conf"] == {"x": 5}
    run_app(flowd, body)


def test_t_on_the_dag_list_opens_the_dag_view_on_the_new_run(flowd: Flowd):
    copy_examples(flowd, "example_xcom", "example_branch")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: "example_xcom" in rows(app), "the row")
        await select(pilot, app, "example_xcom")
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, DagViewScreen), "the DAG view")
        screen = view(app)
        assert screen.dag_id == "example_xcom"
        await until(pilot, lambda: bool(screen.query(RunGrid)), "the grid mounted")  # pushed is not composed
        grid = screen.query_one(RunGrid)
        runs = call(flowd, "runs.list", dag_id="example_xcom")["runs"]
        assert len(runs) == 1
        await until(pilot, lambda: grid.selected[0] == runs[0]["run_id"], "the new run selected")
    run_app(flowd, body)


def test_pages_of_runs_load_with_before_and_new_runs_appear_only_on_the_newest_page(flowd: Flowd):
    copy_examples(flowd, "example_xcom")
    wait_dag(flowd, "example_xcom")
    call(flowd, "dags.pause", dag_id="example_xcom", paused=True)  # the runs stay queued: no churn
    made = [call(flowd, "dags.trigger", dag_id="example_xcom", logical_date=f"2025-01-{day:02d}T00:00:00+00:00")
            ["run"]["run_id"] for day in range(1, 12)]

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        screen = await open_view(pilot, app, "example_xcom")
        grid = screen.query_one(RunGrid)
        await until(pilot, lambda: len(grid.runs) == 8, "a page of 8 runs at 80 columns")
        assert grid.runs == made[-8:], "oldest left, newest right"
        assert grid.selected[0] == made[-1]
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: grid.runs == made[:3], "the older page")
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: any(n.title == "Oldest" for n in app._notifications), "no older runs")
        assert grid.runs == made[:3]
        newest = call(flowd, "dags.trigger", dag_id="example_xcom")["run"]["run_id"]
        await pilot.pause(0.5)
        assert newest not in grid.runs, "an older page does not grow"
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: grid.runs == [*made[-7:], newest], "the newest page again")
        later = call(flowd, "dags.trigger", dag_id="example_xcom")["run"]["run_id"]
        await until(pilot, lambda: grid.runs[-1] == later, "a pushed run as a new column at the right")
        assert len(grid.runs) == 9
    run_app(flowd, body, size=(80, 24))


def test_task_detail_shows_every_try_its_rendered_command_xcom_and_resources_only_where_recorded(flowd: Flowd):
    copy_examples(flowd, "example_pipeline")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        screen = await open_view(pilot, app, "example_pipeline")
        run_id = await finished_run(pilot, app, flowd, "example_pipeline")
        grid = screen.query_one(RunGrid)
        grid.select(run_id, "flaky_fetch")
        await until(pilot, lambda: grid.selected == (run_id, "flaky_fetch"), "the cursor on flaky_fetch")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TaskDetailScreen), "the task detail")
        detail = app.screen
        table = detail.query_one("#tries")
        await until(pilot, lambda: table.row_count == 2, "both tries of flaky_fetch")
        assert [str(table.get_cell(k, "state")) for k in ("1", "2")] == ["✘ failed", "✔ success"]
        assert [str(table.get_cell(k, "exit")) for k in ("1", "2")] == ["1", "0"]
        assert all(str(table.get_cell(k, "pid")).isdigit() for k in ("1", "2"))
        def definition() -> str:
            return str(detail.query_one("#ti-definition").render())
        await until(pilot, lambda: "command (rendered for try 2):" in definition(), "try 2's rendered command")
        assert "BashOperator" in definition() and 'if [ "2" -lt 2 ]' in definition()
        assert "ti.try_number" not in definition() and "template" not in definition()
        await until(pilot, lambda: 'return_value = "try 2: fetched orders"' in str(detail.query_one("#ti-xcom").render()),
                    "the XCom flaky_fetch pushed")
        await pilot.press("up")
        await until(pilot, lambda: "command (rendered for try 1):" in definition(), "try 1's rendered command")
        assert 'if [ "1" -lt 2 ]; then echo "try 1: source not ready" >&2; exit 1; fi' in definition()
        unrecorded = str(definition_text(detail.definition, detail.ti, {"try_number": 1}))
        assert "command template (try 1 has no rendered command recorded):" in unrecorded
        assert 'if [ "{{ ti.try_number }}" -lt 2 ]' in unrecorded
        await pilot.press("down")
        with Client.connect(flowd.socket_path) as client:
            got = client.call("runs.get", dag_id="example_pipeline", run_id=run_id)
        recorded = next(ti for ti in got["task_instances"] if ti["task_id"] == "flaky_fetch")["tries"][-1]["resources"]
        await until(pilot, lambda: "try 2 resources:" in str(detail.query_one("#ti-resources").render()),
                    "the figures flowd recorded for try 2")
        figures = str(detail.query_one("#ti-resources").render())
        assert f"peak rss {recorded['peak_rss'] / 1048576:.1f} MiB" in figures
        detail._show_resources({"try_number": 2, "resources": {
            "cpu_user": 1.5, "cpu_system": 0.25, "peak_rss": 50 * 1024 * 1024, "avg_cpu_percent": 40,
            "peak_cpu_percent": 95, "read_bytes": 2048, "write_bytes": 0, "wall": 3.2, "max_procs": 2,
            "series": {"t": [0, 1, 2], "cpu": [10, 95, 15], "rss": [1e6, 5e7, 2e7]}}})
        figures = str(detail.query_one("#ti-resources").render())
        assert "cpu user 1.50s" in figures and "peak rss 50.0 MiB" in figures and "peak 95%" in figures
        assert detail.query_one("#cpu-spark").display and list(detail.query_one("#cpu-spark").data) == [10, 95, 15]
        await pilot.press("l")
        if getattr(app, "open_logs", None) is None:
            assert any(n.message == "logs screen not available" for n in app._notifications)
        else:
            await until(pilot, lambda: app.screen is not detail, "the logs screen")
            await pilot.press("escape")
        await until(pilot, lambda: app.screen is detail, "the task detail again")
        await pilot.press("escape")
        assert app.screen is screen
    run_app(flowd, body)


def test_a_run_triggered_while_the_grid_is_shown_gets_its_final_header_on_screen(flowd: Flowd):
    """The grid once kept the screen's own run dict, so set_run compared a dict with itself and
    never repainted the header: `▶ M …` stayed on screen after the run had succeeded."""
    from tests.tui.test_console_views import screen_text

    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        screen = await open_view(pilot, app, "example_xcom")
        grid = screen.query_one(RunGrid)
        run_id = call(flowd, "dags.trigger", dag_id="example_xcom")["run"]["run_id"]
        await until(pilot, lambda: run_id in grid.runs, "the pushed run's column")
        await until(pilot, lambda: call(flowd, "runs.get", dag_id="example_xcom", run_id=run_id)["run"]["state"]
                    == "success", "the run to succeed")
        await until(pilot, lambda: "✔ M" in screen_text(app), "the final header on screen")
        assert "▶ M" not in screen_text(app) and "◌ M" not in screen_text(app)
    run_app(flowd, body, size=(80, 24))


def test_clear_and_mark_dialogs_show_each_option_by_glyph_not_only_colour(flowd: Flowd):
    """Every checkbox read `▐X▌` on or off and both radio buttons `▐●▌`: under NO_COLOR nothing told them apart."""
    from tests.tui.test_console_views import screen_text

    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await open_view(pilot, app, "example_xcom")
        await finished_run(pilot, app, flowd, "example_xcom")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ClearDialog) and "[ ] downstream (d)" in screen_text(app),
                    "the clear dialog's boxes")
        assert "[ ] upstream (u)" in screen_text(app) and "▐X▌" not in screen_text(app)
        await pilot.press("d")
        await until(pilot, lambda: "[x] downstream (d)" in screen_text(app), "the ticked box")
        await pilot.press("escape", "m")
        await until(pilot, lambda: "(•) ✔ success (s)" in screen_text(app), "the mark dialog's radio buttons")
        assert "( ) ✘ failed (x)" in screen_text(app) and "▐●▌" not in screen_text(app)
        await pilot.press("x")
        await until(pilot, lambda: "(•) ✘ failed (x)" in screen_text(app) and "( ) ✔ success (s)" in screen_text(app),
                    "the other radio button chosen")
    run_app(flowd, body, size=(80, 24))


def test_a_failed_cells_error_is_on_the_grids_bottom_line_and_at_the_top_of_the_task_detail(flowd: Flowd):
    """At 80 columns the tries table's Error column was about 100 → away and the grid's bottom
    line said nothing of the error."""
    from tests.tui.test_dag_list import FAILING

    flowd.add_dag("always_fails.py", FAILING)

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        screen = await open_view(pilot, app, "always_fails")
        await finished_run(pilot, app, flowd, "always_fails", glyph="✘")
        info = screen.query_one("#cell-info")
        await until(pilot, lambda: "always fails" in str(info.render()), "the error on the bottom line")
        assert "✘" in str(info.render())
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TaskDetailScreen)
                    and "always fails" in str(app.screen.query_one("#ti-header").render()), "the error in the header")
        header = app.screen.query_one("#ti-header")
        assert header.region.y < 5 and header.region.width <= 80  # at the top, on screen at 80x24
    run_app(flowd, body, size=(80, 24))
