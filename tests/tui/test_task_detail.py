"""The task-instance detail against a real flowd, at 80x24: the command as it ran, and the XCom
values, fetched again as the task instance changes."""

from __future__ import annotations

import json

from textual.pilot import Pilot

from flow.tui.app import FlowTUI
from flow.tui.screens.task_detail import XCOM_LINES, TaskDetailScreen, xcom_text
from flow.tui.widgets.run_grid import RunGrid
from tests.daemon.conftest import Flowd
from tests.tui.test_dag_list import copy_examples, until
from tests.tui.test_dag_view import call, finished_run, open_view, run_app

WAITS = """
    import pendulum
    from flow import DAG
    from flow.operators import BashOperator

    with DAG(dag_id="waits", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), params={{"who": "tui"}}):
        BashOperator(task_id="wait", cwd="{cwd}",
                     bash_command="while [ ! -e {marker} ]; do sleep 0.05; done; echo hello {{{{ params.who }}}} {{{{ ti.try_number }}}}")
"""


async def open_detail(pilot: Pilot, app: FlowTUI, run_id: str, task_id: str) -> TaskDetailScreen:
    grid = app.screen.query_one(RunGrid)
    await until(pilot, lambda: run_id in grid.runs, f"run {run_id}'s column")
    grid.select(run_id, task_id)
    await until(pilot, lambda: grid.selected == (run_id, task_id), f"the cursor on {task_id}")
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, TaskDetailScreen), "the task detail")
    assert isinstance(app.screen, TaskDetailScreen)
    return app.screen


def shown(detail: TaskDetailScreen, widget: str) -> str:
    return str(detail.query_one(widget).render())


def test_a_running_try_shows_its_rendered_command_and_its_xcom_once_pushed(flowd: Flowd, tmp_path):
    marker = tmp_path / "go"
    flowd.add_dag("waits.py", WAITS.format(marker=marker, cwd=tmp_path))

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await open_view(pilot, app, "waits")
        run_id = call(flowd, "dags.trigger", dag_id="waits")["run"]["run_id"]
        detail = await open_detail(pilot, app, run_id, "wait")
        await until(pilot, lambda: "command (rendered for try 1):" in shown(detail, "#ti-definition"),
                    "the running try's rendered command")
        assert f"while [ ! -e {marker} ]; do sleep 0.05; done; echo hello tui 1\nin {tmp_path}" in \
            shown(detail, "#ti-definition")
        await until(pilot, lambda: shown(detail, "#ti-xcom") == "XCom: none pushed", "no XCom yet")
        marker.write_text("")
        await until(pilot, lambda: shown(detail, "#ti-xcom") == 'XCom\nreturn_value = "hello tui 1"',
                    "the XCom pushed when the try ended, fetched on its `ti` event")
        assert "success" in shown(detail, "#ti-header")
    run_app(flowd, body, size=(80, 24))


def test_a_python_task_shows_its_callable_and_returned_value(flowd: Flowd):
    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await open_view(pilot, app, "example_xcom")
        run_id = await finished_run(pilot, app, flowd, "example_xcom")
        detail = await open_detail(pilot, app, run_id, "dot")
        await until(pilot, lambda: "return_value = 12" in shown(detail, "#ti-xcom"), "dot's XCom")
        assert "callable:" in shown(detail, "#ti-definition") and "command" not in shown(detail, "#ti-definition")
    run_app(flowd, body, size=(80, 24))


def test_xcom_text_fits_a_screenful_and_says_what_was_cut():
    where = "`flow tasks xcom d r t`"
    many = xcom_text({"xcom": {"rows": list(range(40)), "n": 1}, "truncated": {}}, where=where)
    lines = str(many).splitlines()  # "n = 1", "rows =", then "[", 40 numbers and "]"
    assert lines[:3] == ["XCom", "n = 1", "rows ="] and len(lines) == 1 + XCOM_LINES + 1
    assert lines[-1] == f"… {2 + 42 - XCOM_LINES} more line(s) not shown here: {where}"
    cut = str(xcom_text({"xcom": {}, "truncated": {"big": {"bytes": 1 << 20, "head": json.dumps("x" * 50)}}}))
    assert cut.splitlines()[1:] == ["big = (cut by flowd: 1.0 MiB as JSON; its start:)", '  "' + "x" * 50 + '"…']
    assert str(xcom_text(None, "⚠ flowd went away")) == "XCom: ⚠ flowd went away"
