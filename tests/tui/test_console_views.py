"""Import errors, status, audit, the `:` jump, the palette, `?`, UTC, key remapping and colours,
against a real flowd."""

from __future__ import annotations

import io
import re
import shutil
import time
from pathlib import Path

import pytest
from rich.console import Console
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import DataTable, HelpPanel

from flow.daemon.config import load_settings
from flow.tui import config
from flow.tui.app import FlowTUI
from flow.tui.screens.audit import AuditScreen
from flow.tui.screens.dag_list import DagListScreen
from flow.tui.screens.import_errors import ImportErrorsScreen
from flow.tui.screens.logs import LogScreen
from flow.tui.screens.status import StatusScreen, status_table
from flow.tui.widgets.dag_table import DagTable
from tests.daemon.conftest import Flowd
from tests.tui.partb import LARGE, SMALL, call, notes, run_app, trigger, until, wait_for_dag

ROOT = Path(__file__).resolve().parents[2]


def copy_example(flowd: Flowd, name: str) -> None:
    shutil.copy(ROOT / "dags" / f"{name}.py", Path(flowd.dags_folder) / f"{name}.py")


def rows(app: FlowTUI) -> list[str]:
    found = app.screen.query(DagTable)
    return found.first().dag_ids if found else []


def table_rows(app: FlowTUI, selector: str) -> list[list[str]]:
    found = app.screen.query(selector)
    if not found:
        return []
    table = found.first(DataTable)
    return [[str(c) for c in table.get_row_at(n)] for n in range(table.row_count)]


def screen_text(app: FlowTUI) -> str:
    """What the terminal shows, as plain text (from Textual's own screenshot)."""
    svg = app.export_screenshot()
    return re.sub(r"<[^>]+>", "", svg).replace("&#160;", " ")


def test_e_and_colon_errors_open_the_import_errors_with_the_traceback(flowd: Flowd):
    flowd.add_dag("broken.py", "import no_such_module_here\n")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        banner = app.screen.query_one("#import-errors")
        await until(pilot, lambda: banner.display, "the import-error banner")
        assert "press e" in str(banner.render())
        await pilot.press("e")
        await until(pilot, lambda: table_rows(app, "#errors"), "the import errors table")
        assert isinstance(app.screen, ImportErrorsScreen)
        [[filename, message, _]] = table_rows(app, "#errors")
        assert filename.endswith("broken.py") and "no_such_module_here" in message
        traceback = str(app.screen.query_one("#traceback").render())
        assert "Traceback" in traceback or "ModuleNotFoundError" in traceback
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DagListScreen), "back to the DAG list")
        await pilot.press("colon", *"errors", "enter")
        await until(pilot, lambda: isinstance(app.screen, ImportErrorsScreen), ":errors")
        flowd.add_dag("broken.py", "x = 1\n")
        await until(pilot, lambda: "every DAG file imported" in str(app.screen.query_one("#errors-summary").render()),
                    "the list to empty when the file is fixed (pushed by flowd)")
        await pilot.press("colon", *"nope", "enter")
        await until(pilot, lambda: any("'nope'" in m for _, m in notes(app)), "the unknown-view message")
        said = next(m for _, m in notes(app) if "'nope'" in m)
        assert all(f":{v}" in said for v in ("dags", "runs", "errors", "status", "audit"))
        await pilot.press("colon", *"runs", "enter")
        await until(pilot, lambda: any("DAG view" in m or "select a DAG" in m for _, m in notes(app)),
                    "the :runs answer")
        await pilot.press("colon", *"dags", "enter")
        await until(pilot, lambda: isinstance(app.screen, DagListScreen), ":dags")
    run_app(flowd, body, size=SMALL)


def test_status_shows_flowds_pid_refreshes_and_renders_unknown_sections():
    table = status_table({"pid": 42, "rss": 3 * 1024 * 1024, "uptime": 125, "started_at": "2026-01-01T00:00:00Z",
                          "admission": {"queued": 3, "limits": {"pool": 4}}, "notifications": {}}, utc=True)
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(table)
    text = out.getvalue()
    assert re.search(r"pid\s+42", text) and "3.0 MB" in text and "2m05s" in text and "2026-01-01 00:00:00 UTC" in text
    assert re.search(r"admission\s*\n\s+queued\s+3", text) and re.search(r"limits\s*\n\s+pool\s+4", text)
    assert "notifications" in text


def test_status_screen_shows_the_real_flowd(flowd: Flowd):
    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await pilot.press("colon", *"status", "enter")
        await until(pilot, lambda: isinstance(app.screen, StatusScreen) and app.screen.fetches >= 1, "status")
        screen = app.screen
        assert isinstance(screen, StatusScreen)
        assert screen.status["pid"] == flowd.proc.pid
        await until(pilot, lambda: screen.fetches >= 2, "the 2-second refresh", timeout=30)
        await until(pilot, lambda: re.search(rf"pid\s+{flowd.proc.pid}", screen_text(app)), "the pid on screen")
    run_app(flowd, body, size=LARGE)


def test_audit_lists_a_trigger_and_a_pause_newest_first_and_filters(flowd: Flowd):
    copy_example(flowd, "example_xcom")
    trigger(flowd, "example_xcom")
    call(flowd, "dags.pause", dag_id="example_xcom", paused=True)

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await pilot.press("colon", *"audit", "enter")
        await until(pilot, lambda: len(table_rows(app, "#audit")) >= 2, "two audit rows")
        assert isinstance(app.screen, AuditScreen)
        actions = [r[2] for r in table_rows(app, "#audit")]
        assert actions[:2] == ["pause", "trigger"]
        assert "example_xcom" in table_rows(app, "#audit")[1][3]
        await pilot.press("slash", *"trig")
        await until(pilot, lambda: [r[2] for r in table_rows(app, "#audit")] == ["trigger"], "the filter")
        await pilot.press("escape")
        await until(pilot, lambda: len(table_rows(app, "#audit")) == 2, "the filter cleared")
        call(flowd, "dags.pause", dag_id="example_xcom", paused=False)
        await until(pilot, lambda: table_rows(app, "#audit")[0][2] == "unpause", "a new entry after a pushed event")
    run_app(flowd, body, size=LARGE)


def test_the_palette_triggers_a_dag_and_lists_the_screens_own_keys(flowd: Flowd):
    copy_example(flowd, "example_xcom")
    wait_for_dag(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: rows(app) == ["example_xcom"], "the DAG row")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for expected in ("Trigger example_xcom", "Pause example_xcom", "Open :status", "Open :errors",
                         "Show times in UTC", "Filter (/)", "Quit"):
            assert any(t.startswith(expected) for t in titles), (expected, titles)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"Trigger example_xcom")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: call(flowd, "runs.list", dag_id="example_xcom")["runs"], "a run from the palette")
        assert any(t == "Triggered example_xcom" for t, _ in notes(app))
    run_app(flowd, body, size=LARGE)


def test_question_mark_shows_the_keys_of_each_screen(flowd: Flowd):
    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await pilot.press("question_mark")
        await until(pilot, lambda: app.screen.query(HelpPanel), "the help panel")
        await until(pilot, lambda: "Trigger" in screen_text(app), "the DAG list's keys in the panel")
        await pilot.press("question_mark")
        await until(pilot, lambda: not app.screen.query(HelpPanel), "the panel closed")
        await pilot.press("colon", *"audit", "enter")
        await until(pilot, lambda: isinstance(app.screen, AuditScreen), ":audit")
        await pilot.press("question_mark")
        await until(pilot, lambda: app.screen.query(HelpPanel), "the help panel on the audit screen")
        await until(pilot, lambda: "Filter" in screen_text(app), "the audit screen's keys")
        assert "Trigger" not in screen_text(app)
    run_app(flowd, body, size=LARGE)


def test_z_switches_every_time_between_local_and_utc(flowd: Flowd, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "Asia/Seoul")
    time.tzset()
    copy_example(flowd, "example_branch")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: rows(app) == ["example_branch"], "the DAG row")
        next_run = lambda: str(app.screen.query_one(DagTable).get_cell("example_branch", "next_run"))  # noqa: E731
        await until(pilot, lambda: next_run() != "—", "a next run")
        local = next_run()
        assert "times: local (KST)" in str(app.sub_title)
        await pilot.press("z")
        await until(pilot, lambda: next_run() != local, "the next-run cell in UTC")
        assert "times: UTC" in str(app.sub_title)
        hours = lambda text: int(text.split()[1].split(":")[0])  # noqa: E731
        assert (hours(local) - hours(next_run())) % 24 == 9
        await pilot.press("z")
        try:
            await until(pilot, lambda: next_run() == local, "local time again")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {local!r} != {next_run()!r}, utc={app.utc}, {app.sub_title}") from None
    try:
        run_app(flowd, body, size=SMALL)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_tui_keys_remap_a_binding_and_bad_entries_warn_without_stopping(flowd: Flowd, tmp_path: Path):
    copy_example(flowd, "example_xcom")
    wait_for_dag(flowd, "example_xcom")
    conf = tmp_path / "flowd.toml"
    conf.write_text('[flowd]\nparallelism = 4\n\n[tui.keys]\n"dag_list.trigger" = "ctrl+t"\n'
                    '"dag_list.nope" = "x"\n"app.utc" = "ctrl+nonsense+"\n')
    assert load_settings(config_file=conf).parallelism == 4, "flowd must accept a file with a [tui] table"

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        said = [m for t, m in notes(app) if t == "flowtui configuration"]
        assert len(said) == 2, said
        assert "'dag_list.nope'" in said[0] and str(conf) in said[0]
        assert "app.utc" in said[1] and "ctrl+nonsense+" in said[1]
        await until(pilot, lambda: rows(app) == ["example_xcom"], "the DAG row")
        await pilot.press("ctrl+t")
        await until(pilot, lambda: call(flowd, "runs.list", dag_id="example_xcom")["runs"], "a run from ctrl+t")
        await pilot.press("z")
        await until(pilot, lambda: app.utc, "z still toggles UTC (its bad remap was ignored)")
    run_app(flowd, body, size=SMALL, config_file=str(conf))


def test_keymap_and_theme_helpers(tmp_path: Path):
    known = config.binding_ids()
    assert {"logs.follow", "dag_list.trigger", "app.utc", "audit.filter", "status.refresh"} <= set(known)
    assert all(config.valid_key(k) for k in ("x", "G", "ctrl+t", "f5", "question_mark", "shift+tab", "a,b"))
    assert not any(config.valid_key(k) for k in ("", "ctrl+", "hyperdrive+x", "nokey", "a,,b"))
    path = tmp_path / "f.toml"
    keys, warnings = config.keymap({"tui": {"keys": "x"}}, path, known)
    assert keys == {} and "must be a table" in warnings[0]
    path.write_text("[tui.keys\n")
    data, warnings = config.read_config(path)
    assert data == {} and str(path) in warnings[0]
    assert config.pick_theme(None, {"TERM": "linux"}) == "ansi-dark"
    assert config.pick_theme(None, {"TERM": "xterm-16color"}) == "ansi-dark"
    assert config.pick_theme(None, {"TERM": "xterm-256color"}) == "textual-dark"
    assert config.pick_theme(None, {"TERM": "xterm", "COLORTERM": "truecolor"}) == "textual-dark"
    assert config.pick_theme("ansi16", {"COLORTERM": "truecolor"}) == "ansi-dark"


WINDOW_BUTTONS = {"#ff5f57", "#febc2e", "#28c840", "#c5c8c6"}
"""The screenshot's imitation window frame and default foreground, there whatever the app draws."""


def hex_colours(app: FlowTUI) -> set[str]:
    return {c.lower() for c in re.findall(r"#[0-9a-fA-F]{6}\b", app.export_screenshot())} - WINDOW_BUTTONS


def test_no_color_renders_greys_only_and_keeps_the_glyphs(flowd: Flowd, monkeypatch: pytest.MonkeyPatch):
    copy_example(flowd, "example_xcom")
    trigger(flowd, "example_xcom")
    monkeypatch.setenv("NO_COLOR", "1")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        assert app.no_color
        await until(pilot, lambda: "✔ success" in screen_text(app), "the success glyph")
        colours = hex_colours(app)
        assert colours and all(c[1:3] == c[3:5] == c[5:7] for c in colours), colours
    run_app(flowd, body, size=LARGE)


def test_ansi16_theme_uses_the_terminals_colours_and_keeps_the_glyphs(flowd: Flowd):
    copy_example(flowd, "example_xcom")
    trigger(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        assert app.theme == "ansi-dark" and app.native_ansi_color
        await until(pilot, lambda: "✔ success" in screen_text(app), "the success glyph")
        run_id = call(flowd, "runs.list", dag_id="example_xcom")["runs"][0]["run_id"]
        app.open_logs("example_xcom", run_id, "dot")
        await until(pilot, lambda: isinstance(app.screen, LogScreen) and "✔ success" in screen_text(app),
                    "the log header's state glyph")
    run_app(flowd, body, size=SMALL, theme="ansi16")


def test_keys_typed_in_one_burst_edit_the_palette_and_the_filter_in_order(flowd: Flowd):
    """`trigger`, seven backspaces and `stat` arriving together gave `trig`: Textual ran the
    backspaces only after the characters behind them had been inserted."""
    from textual import events
    from textual.widgets import Input

    copy_example(flowd, "example_xcom")

    def burst(app: FlowTUI, keys: list[str]) -> None:
        for key in keys:  # as the driver posts them from one read of the terminal: no pause between
            app.post_message(events.Key(key, key if len(key) == 1 else ("\x7f" if key == "backspace" else None)))

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: "example_xcom" in screen_text(app), "the DAG list")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        burst(app, [*"trigger", *["backspace"] * 7, *"stat"])
        await pilot.pause(0.5)
        await until(pilot, lambda: app.screen.query_one(Input).value == "stat",
                    f"'stat' in the palette (it has {app.screen.query_one(Input).value!r})", timeout=5)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DagListScreen), "the DAG list again")
        await pilot.press("slash")
        await until(pilot, lambda: app.focused is app.screen.query_one("#filter", Input), "the filter box")
        burst(app, [*"xoz", "backspace", "m", "left", "left", "c"])
        await until(pilot, lambda: app.screen.query_one("#filter", Input).value == "xcom",
                    f"'xcom' in the filter (it has {app.screen.query_one('#filter', Input).value!r})", timeout=5)
    run_app(flowd, body, size=SMALL)


def test_status_shows_every_size_in_one_unit_style():
    """`rss 79.8 MB` sat next to `mem total 25276203008`."""
    from flow.tui.screens.status import show_value

    assert show_value("mem_total", 25276203008, utc=True) == "23.5 GB"
    assert show_value("rss", 83676364, utc=True) == "79.8 MB"
    assert show_value("mem_percent", 12.5, utc=True) == "12.5%"
    assert show_value("running", 3, utc=True) == "3"


def test_colon_jumps_replace_each_other_so_esc_goes_back_to_where_the_jumping_started(flowd: Flowd):
    copy_example(flowd, "example_xcom")
    trigger(flowd, "example_xcom")

    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await until(pilot, lambda: "example_xcom" in rows(app), "the DAG list")
        app.open_dag("example_xcom")
        from flow.tui.screens.dag_view import DagViewScreen
        await until(pilot, lambda: isinstance(app.screen, DagViewScreen), "the DAG view")
        for name, cls in (("audit", AuditScreen), ("errors", ImportErrorsScreen), ("status", StatusScreen)):
            app.jump(name)
            await until(pilot, lambda cls=cls: isinstance(app.screen, cls) and app.screen.query("HeaderTitle"),
                        f":{name} drawn")
            await pilot.pause(0.2)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DagViewScreen), "the DAG view the jumps started from")
    run_app(flowd, body, size=SMALL)


def test_the_keys_panel_lists_this_screens_keys_first_then_moving_then_everywhere(flowd: Flowd):
    async def body(app: FlowTUI, pilot: Pilot) -> None:
        await pilot.press("question_mark")
        await until(pilot, lambda: app.screen.query("#keys-list"), "the keys panel")
        text = str(app.screen.query_one("#keys-list").render())
        order = [text.index(title) for title in ("This screen", "Moving", "Everywhere")]
        assert order == sorted(order), text
        assert text.index("Trigger") < text.index("Moving") < text.index("Scroll right") < text.index("Everywhere")
        assert text.index("Everywhere") < text.index("Quit")
        if "Textual" in text:
            assert text.index("Textual") > text.index("Quit")
    run_app(flowd, body, size=SMALL)
