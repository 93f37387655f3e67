"""The DAG list against a real flowd: rows, live updates, trigger, pause, filters, reconnect."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from textual.pilot import Pilot

from flow.daemon.client import Client
from flow.tui.app import FlowTUI, make_app
from flow.tui.client import FlowClient, resolve_socket
from flow.tui.screens.dag_list import DagListScreen, matches
from flow.tui.widgets.dag_table import DagTable, relative
from tests.daemon.conftest import BIN, Flowd, clean_env
from tests.tui.partb import call

ROOT = Path(__file__).resolve().parents[2]
SIZE = (120, 40)
FAILING = """
    import pendulum
    from flow import dag, task

    @task
    def boom():
        raise RuntimeError("always fails")

    @dag(dag_id="always_fails", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
         tags=["broken-on-purpose"], default_args={"owner": "ops"})
    def always_fails():
        boom()

    always_fails()
"""


def copy_examples(flowd: Flowd, *names: str) -> None:
    for name in names:
        shutil.copy(ROOT / "dags" / f"{name}.py", Path(flowd.dags_folder) / f"{name}.py")


async def until(pilot: Pilot, check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Let the app run until `check()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await pilot.pause(0.05)


def table(app: FlowTUI) -> DagTable:
    return app.screen.query_one(DagTable)


def cell(app: FlowTUI, dag_id: str, column: str) -> str:
    try:
        return str(table(app).get_cell(dag_id, column))
    except Exception:
        return ""


def rows(app: FlowTUI) -> list[str]:
    return table(app).dag_ids if isinstance(app.screen, DagListScreen) else []


async def select(pilot: Pilot, app: FlowTUI, dag_id: str) -> None:
    table(app).move_cursor(row=rows(app).index(dag_id))
    await until(pilot, lambda: table(app).selected_dag == dag_id, f"cursor on {dag_id}")


def run_app(flowd: Flowd, body: Callable[[FlowTUI, Pilot], Awaitable[None]]) -> None:
    async def main() -> None:
        app = make_app(flowd.socket_path)
        async with app.run_test(size=SIZE) as pilot:
            await body(app, pilot)
    asyncio.run(main())


def dag_via_socket(flowd: Flowd, dag_id: str) -> dict:
    with Client.connect(flowd.socket_path) as client:
        return client.call("dags.get", dag_id=dag_id)["dag"]


def test_list_shows_dags_added_to_the_folder_and_an_import_error_banner(flowd: Flowd):
    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: app.client.connected, "the connection")
        banner = app.screen.query_one("#import-errors")
        assert rows(app) == [] and not banner.display
        copy_examples(flowd, "example_xcom", "example_branch")
        flowd.add_dag("broken.py", "import no_such_module_here\n")
        await until(pilot, lambda: rows(app) == ["example_branch", "example_xcom"], "both example DAGs")
        await until(pilot, lambda: banner.display, "the import-error banner")
        assert "1 DAG file failed to import" in str(banner.render())
        assert cell(app, "example_xcom", "tags") == "example"
        assert cell(app, "example_xcom", "schedule") == "manual only"
        assert cell(app, "example_xcom", "last_run") == "never"
        assert cell(app, "example_xcom", "paused") == "● active"
        assert cell(app, "example_branch", "next_run") != "—"
        assert cell(app, "example_branch", "schedule") == "* * * * * · every minute", "the expression and its reading"
    run_app(flowd, body)


def test_t_triggers_the_selected_dag_and_after_its_view_the_row_shows_the_run_succeed(flowd: Flowd):
    copy_examples(flowd, "example_xcom", "example_branch")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: "example_xcom" in rows(app), "example_xcom's row")
        await select(pilot, app, "example_xcom")
        await pilot.press("t")
        await until(pilot, lambda: not isinstance(app.screen, DagListScreen), "the DAG view on the new run")
        await pilot.press("escape")
        await until(pilot, lambda: cell(app, "example_xcom", "last_run").startswith("✔ success"),
                    "example_xcom's last run to show success")
        await until(pilot, lambda: cell(app, "example_xcom", "recent") == "✔3", "three successful tasks")
        assert any(n.title == "Triggered example_xcom" for n in app._notifications)
    run_app(flowd, body)


def test_p_pauses_the_selected_dag_in_flowd_and_the_row_shows_it(flowd: Flowd):
    copy_examples(flowd, "example_xcom", "example_branch")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: len(rows(app)) == 2, "both rows")
        await select(pilot, app, "example_branch")
        await pilot.press("p")
        await until(pilot, lambda: cell(app, "example_branch", "paused") == "⏸ paused", "the paused cell")
        assert dag_via_socket(flowd, "example_branch")["is_paused"] is True
        assert dag_via_socket(flowd, "example_xcom")["is_paused"] is False
        await pilot.press("p")
        await until(pilot, lambda: cell(app, "example_branch", "paused") == "● active", "the unpaused cell")
        assert dag_via_socket(flowd, "example_branch")["is_paused"] is False
    run_app(flowd, body)


def test_slash_filters_by_id_tag_or_owner_and_f_shows_only_failing_dags(flowd: Flowd):
    copy_examples(flowd, "example_xcom", "example_branch")
    flowd.add_dag("always_fails.py", FAILING)

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: len(rows(app)) == 3, "three rows")
        await pilot.press("slash", *"xcom")
        await until(pilot, lambda: rows(app) == ["example_xcom"], "the id filter")
        await pilot.press("escape")
        await until(pilot, lambda: len(rows(app)) == 3, "all rows after esc")
        await pilot.press("slash", *"ops", "enter")
        await until(pilot, lambda: rows(app) == ["always_fails"], "the owner filter")
        assert app.focused is table(app)
        await pilot.press("escape")
        await until(pilot, lambda: len(rows(app)) == 3, "all rows again")
        with Client.connect(flowd.socket_path) as client:
            client.call("dags.trigger", dag_id="always_fails")
        await until(pilot, lambda: cell(app, "always_fails", "last_run").startswith("✘ failed"),
                    "the failed run pushed by flowd")
        await pilot.press("f")
        await until(pilot, lambda: rows(app) == ["always_fails"], "only the failing DAG")
        await pilot.press("f")
        await until(pilot, lambda: len(rows(app)) == 3, "all rows after a second f")
        await pilot.press("r")
        await until(pilot, lambda: rows(app) == [], "no running DAG")
    run_app(flowd, body)


def test_flowd_restart_reconnects_keeps_the_cursor_and_still_updates(flowd: Flowd):
    copy_examples(flowd, "example_xcom", "example_branch")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: len(rows(app)) == 2, "both rows")
        await select(pilot, app, "example_xcom")
        await asyncio.to_thread(flowd.stop)
        await until(pilot, lambda: "reconnecting" in str(app.sub_title), "the reconnecting state")
        await pilot.press("t")
        await until(pilot, lambda: any("Cannot trigger" in str(n.title) for n in app._notifications),
                    "the refused trigger while flowd is away")
        await asyncio.to_thread(flowd.start)
        await until(pilot, lambda: "reconnecting" not in str(app.sub_title) and app.client.connected,
                    "the reconnection")
        await until(pilot, lambda: len(rows(app)) == 2, "the refetched rows")
        assert table(app).selected_dag == "example_xcom"
        await pilot.press("t")
        await until(pilot, lambda: not isinstance(app.screen, DagListScreen), "the DAG view on the new run")
        await pilot.press("escape")
        await until(pilot, lambda: cell(app, "example_xcom", "last_run").startswith("✔ success"),
                    "a run after the restart to show success")
    run_app(flowd, body)


def test_a_viewer_may_not_trigger_or_pause_and_is_told_why(flowd: Flowd):
    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: rows(app) == ["example_xcom"], "the row")
        app.client.hello = {**app.client.hello, "role": "viewer"}
        await pilot.press("t", "p")
        said = [n.message for n in app._notifications if n.title == "Not allowed"]
        assert len(said) == 2 and "viewer" in said[0] and "trigger" in said[0] and "pause" in said[1]
        with Client.connect(flowd.socket_path) as client:
            assert client.call("runs.list", dag_id="example_xcom")["runs"] == []
        assert dag_via_socket(flowd, "example_xcom")["is_paused"] is False
    run_app(flowd, body)


def test_flowtui_without_flowd_prints_one_line_naming_the_socket_and_exits_1(tmp_path: Path):
    sock = tmp_path / "nobody.sock"
    env = clean_env(tmp_path)
    res = subprocess.run([str(BIN / "flowtui"), "--socket", str(sock)], capture_output=True, text=True,
                         timeout=30, env=env)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert str(sock) in lines[0] and "flowd &" in lines[0] and "systemctl" in lines[0]
    assert res.stdout == ""


def test_socket_resolution_order(tmp_path: Path, monkeypatch):
    for var in ("FLOW_SOCKET", "FLOW_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    fallback = str(tmp_path / "run" / "flowd" / "flowd.sock")
    if not os.path.exists("/run/flowd/flowd.sock"):
        assert resolve_socket() == fallback
    (tmp_path / "config" / "flowd").mkdir(parents=True)
    (tmp_path / "config" / "flowd" / "flowd.toml").write_text('[flowd]\nsocket_path = "/srv/f.sock"\n')
    assert resolve_socket() == "/srv/f.sock"
    monkeypatch.setenv("FLOW_SOCKET", "/env/f.sock")
    assert resolve_socket() == "/env/f.sock"
    assert resolve_socket("/flag/f.sock") == "/flag/f.sock"


def test_a_gap_in_event_numbers_is_reported_as_a_resync():
    seen: list[dict] = []

    class Listener:
        def flow_connected(self, hello: dict) -> None: ...
        def flow_disconnected(self, reason: str) -> None: ...
        def flow_event(self, event: dict) -> None:
            seen.append(event)

    client = FlowClient("/nowhere")
    client.listeners.append(Listener())
    for seq in (1, 2, 5):
        client._dispatch_event({"event": "ti", "seq": seq, "data": {"dag_id": "d"}})
    assert [(e["event"], e["seq"]) for e in seen] == [("ti", 1), ("ti", 2), ("resync", 5), ("ti", 5)]
    assert "3..4" in seen[2]["data"]["reason"]


def test_filter_and_relative_time_helpers():
    dag = {"dag_id": "etl_daily", "owner": "data", "tags": ["Finance"]}
    assert matches(dag, "ETL") and matches(dag, "finance") and matches(dag, "dat") and matches(dag, " ")
    assert not matches(dag, "report")
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert [relative(now - timedelta(seconds=s), now) for s in (5, 90, 7200, 200000, -3)] == \
        ["5s ago", "1m ago", "2h ago", "2d ago", "just now"]


SLEEPS = """
    import pendulum
    from flow import DAG
    from flow.operators import BashOperator

    with DAG(dag_id="sleeps", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        BashOperator(task_id="nap", bash_command="sleep 60")
"""


def test_at_80_columns_failing_running_and_import_broken_dags_show_without_a_key(flowd: Flowd):
    """The first screen answers "what is broken?": at 80x24 the last run's state and a mark per row
    are on screen, not seven → away; a DAG whose file now fails to import is marked ⚠."""
    from tests.tui.test_console_views import screen_text

    flowd.add_dag("always_fails.py", FAILING)
    flowd.add_dag("sleeps.py", SLEEPS)
    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: {"always_fails", "sleeps", "example_xcom"} <= set(rows(app)), "the rows")
        call(flowd, "dags.trigger", dag_id="always_fails")
        call(flowd, "dags.trigger", dag_id="sleeps")
        await until(pilot, lambda: "✘ failed" in str(cell(app, "always_fails", "last_run")), "the failed run")
        await until(pilot, lambda: "▶ running" in str(cell(app, "sleeps", "last_run")), "the running run")
        Path(flowd.dags_folder, "example_xcom.py").write_text("import no_such_module_here\n")
        await until(pilot, lambda: "⚠" in str(cell(app, "example_xcom", "mark")), "example_xcom's ⚠ mark")
        grid = table(app)
        assert grid.scroll_offset.x == 0 and grid.size.width == 80
        shown = [grid.render_line(y).text for y in range(1, 1 + grid.row_count)]  # the strips on screen
        lines = {d: next((line for line in shown if f" {d} " in line), "") for d in ("always_fails", "sleeps", "example_xcom")}
        assert "✘" in lines["always_fails"].split("always_fails")[0] and "✘ failed" in lines["always_fails"]
        assert "▶ running" in lines["sleeps"]
        assert "⚠" in lines["example_xcom"].split("example_xcom")[0]
        assert "failed to import" in screen_text(app)
    run_app_small(flowd, body)


def run_app_small(flowd: Flowd, body: Callable[[FlowTUI, Pilot], Awaitable[None]]) -> None:
    async def main() -> None:
        app = make_app(flowd.socket_path)
        async with app.run_test(size=(80, 24)) as pilot:
            await body(app, pilot)
    asyncio.run(main())


def test_t_on_a_paused_dag_says_the_run_would_wait_before_queuing_it_and_u_unpauses(flowd: Flowd):
    from flow.tui.dialogs.paused import PausedTriggerDialog
    from flow.tui.screens.dag_view import DagViewScreen

    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: "example_xcom" in rows(app), "the row")
        await asyncio.to_thread(call, flowd, "dags.pause", dag_id="example_xcom", paused=True)
        await until(pilot, lambda: "⏸" in str(cell(app, "example_xcom", "mark")), "the paused mark")
        await select(pilot, app, "example_xcom")
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, PausedTriggerDialog), "the paused warning")
        assert call(flowd, "runs.list", dag_id="example_xcom")["runs"] == []  # nothing queued yet
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DagListScreen), "the list again")
        assert call(flowd, "runs.list", dag_id="example_xcom")["runs"] == []
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, PausedTriggerDialog), "the paused warning again")
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, DagViewScreen), "the DAG view on the new run")
        assert not call(flowd, "dags.get", dag_id="example_xcom")["dag"]["is_paused"]
        assert len(call(flowd, "runs.list", dag_id="example_xcom")["runs"]) == 1
    run_app(flowd, body)


def test_F_lists_what_failed_across_dags_with_the_error_line_and_enter_opens_the_task(flowd: Flowd):
    from flow.tui.screens.failures import FailuresScreen
    from flow.tui.screens.task_detail import TaskDetailScreen

    flowd.add_dag("always_fails.py", FAILING)
    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: {"always_fails", "example_xcom"} <= set(rows(app)), "the rows")
        run_id = call(flowd, "dags.trigger", dag_id="always_fails")["run"]["run_id"]
        call(flowd, "dags.trigger", dag_id="example_xcom")
        await until(pilot, lambda: "✘ failed" in str(cell(app, "always_fails", "last_run")), "the failed run")
        await pilot.press("F")
        await until(pilot, lambda: isinstance(app.screen, FailuresScreen) and app.screen.failures, "the failures")
        screen = app.screen
        assert isinstance(screen, FailuresScreen)
        assert [(f["dag_id"], f["task_id"], f["run_id"]) for f in screen.failures] == [("always_fails", "boom", run_id)]
        from flow.tui.screens.failures import error_line
        assert "always fails" in error_line(screen.failures[0])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TaskDetailScreen), "the task detail")
        detail = app.screen
        assert isinstance(detail, TaskDetailScreen)
        assert (detail.dag_id, detail.run_id, detail.task_id) == ("always_fails", run_id, "boom")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, FailuresScreen), "the failures again")
    run_app(flowd, body)


def test_T_on_the_dag_list_opens_the_conf_editor_on_the_dags_params(flowd: Flowd):
    """It opened at `{}`: the list's summaries carry no params, so they are asked for."""
    from flow.tui.dialogs.conf_editor import ConfEditor

    copy_examples(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: "example_xcom" in rows(app), "the row")
        await select(pilot, app, "example_xcom")
        await pilot.press("T")
        await until(pilot, lambda: isinstance(app.screen, ConfEditor), "the conf editor")
        area = app.screen.query_one("#conf-text")
        assert area.text.replace(" ", "").replace("\n", "") == '{"x":2}'
    run_app(flowd, body)
