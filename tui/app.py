"""`flowtui`: the operator's console. It talks to flowd only through its socket (docs/protocol.md)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time
from collections.abc import Iterable
from typing import Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen

from flow.tui import config, inputkeys, termout
from flow.tui.client import ClientError, FlowClient, NotRunning, open_connection, socket_candidates
from flow.tui.commands import VIEWS
from flow.tui.screens.dag_list import DagListScreen

SCREENS_BY_NAME: dict[str, tuple[str, str]] = {"errors": ("import_errors", "ImportErrorsScreen"),
                                               "status": ("status", "StatusScreen"),
                                               "audit": ("audit", "AuditScreen"),
                                               "failures": ("failures", "FailuresScreen")}
"""The views `:name` opens, imported when first opened: start-up imports only the DAG list."""


def screen_class(name: str) -> type[Screen]:
    module, cls = SCREENS_BY_NAME[name]
    return getattr(importlib.import_module(f"flow.tui.screens.{module}"), cls)


class FlowTUI(App):
    """The app shell: owns the connection, shows its state in the header, hosts the screens."""

    TITLE = "flowtui"
    CSS_PATH = "flowtui.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark", "keys", "Keys", key_display="?", id="app.keys"),
        Binding("colon", "jump", "Jump", key_display=":", id="app.jump"),
        Binding("z", "toggle_utc", "UTC/local", id="app.utc"),
    ]
    utc: reactive[bool] = reactive(False)
    """Every screen formats times through flow.tui.timefmt with this flag and watches it."""

    def __init__(self, client: FlowClient, *, keymap: dict[str, str] | None = None,
                 warnings: Iterable[str] = (), theme: str | None = None) -> None:
        super().__init__()
        self.client = client
        # Every animated frame is bytes over the operator's ssh link; snap instead (TEXTUAL_ANIMATIONS
        # can turn them back on).
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            self.animation_level = "none"
        termout.install()  # a changed cell sends the terminal that cell, not its line up to it
        inputkeys.install()  # backspace typed in a burst runs in order with the characters around it
        self._link = f"connecting to {client.path}…"
        self._warnings = list(warnings)
        self.last_dag_id: str | None = None
        self.crash: str | None = None
        """One line naming the unhandled exception that ended the console, if one did."""
        if keymap:
            self.set_keymap(keymap)
        if theme:
            self.theme = theme
        self._subtitle()

    def _fatal_error(self) -> None:
        """Textual's hook for an unhandled exception (it would print a screenful of traceback with
        locals, which may hold untrusted text, and leave the exit status 0 to the caller). Here the
        traceback goes to a file and `main` prints one line and exits 1."""
        self.crash = crash_report(sys.exc_info()[1] or self._exception)
        self.exit(return_code=1)

    def on_mount(self) -> None:
        self.client.listeners.append(self)
        self.run_worker(self.client.run(), name="flowd-connection", group="connection", exit_on_error=False)
        self.push_screen(DagListScreen())
        for warning in self._warnings:
            self.notify(warning, title="flowtui configuration", severity="warning", timeout=15)

    def _subtitle(self) -> None:
        zone = "UTC" if self.utc else f"local ({time.strftime('%Z')})"
        self.sub_title = f"{self._link} · times: {zone}"

    def watch_utc(self) -> None:
        self._subtitle()

    def flow_connected(self, hello: dict[str, Any]) -> None:
        role = hello.get("role", "?")
        self._link = f"{hello.get('user', '?')} ({role}) @ {hello.get('server', 'flowd')} · {self.client.path}"
        self._subtitle()

    def flow_disconnected(self, reason: str) -> None:
        self._link = f"reconnecting… ({reason})"
        self._subtitle()
        self.notify(reason, title="Lost flowd: reconnecting…", severity="warning")

    def flow_event(self, event: dict[str, Any]) -> None:
        """The app shows no event itself; screens listen on the client."""

    def open_dag(self, dag_id: str, run_id: str | None = None) -> None:
        """Show a DAG's view, on `run_id` if given; reuses the view on top when it is that DAG's."""
        from flow.tui.screens.dag_view import DagViewScreen

        screen = self.screen
        if isinstance(screen, DagViewScreen) and screen.dag_id == dag_id:
            if run_id:
                screen.follow_run(dag_id, {"run_id": run_id})
            return
        self.push_screen(DagViewScreen(dag_id, run_id))

    # -- app-wide keys ----------------------------------------------------------------------------

    def action_keys(self) -> None:
        from textual.widgets import HelpPanel

        from flow.tui.widgets.keys_panel import KeysPanel

        if self.screen.query(HelpPanel):
            self.screen.query(HelpPanel).remove()
        else:
            self.screen.mount(KeysPanel())

    def action_toggle_utc(self) -> None:
        self.utc = not self.utc

    def action_jump(self, name: str | None = None) -> None:
        if name:
            self.jump(name)
            return
        from flow.tui.dialogs.jump import JumpDialog

        if isinstance(self.screen, JumpDialog):
            return
        self.push_screen(JumpDialog(list(VIEWS)), lambda name: self.jump(name) if name else None)

    def jump(self, name: str) -> None:
        """`:name`: the DAG list, the selected DAG's runs, or one of the other views."""
        if name == "dags":
            while len(self.screen_stack) > 2 and not isinstance(self.screen, DagListScreen):
                self.pop_screen()
        elif name == "runs":
            self._open_runs()
        elif name in SCREENS_BY_NAME:
            if not isinstance(self.screen, screen_class(name)):
                # As in k9s, a jump from a view reached by a jump replaces it: esc goes back to the
                # screen the jumping started from, not through every view jumped to.
                screen = screen_class(name)()
                screen.jumped_to = True  # type: ignore[attr-defined]
                if getattr(self.screen, "jumped_to", False) and len(self.screen_stack) > 2:
                    self.switch_screen(screen)
                else:
                    self.push_screen(screen)
        else:
            self.notify(f"no view named {name!r}; the views are " + ", ".join(f":{n}" for n in VIEWS),
                        title="Jump", severity="warning")

    def _open_runs(self) -> None:
        dag_id = self.selected_dag()
        open_dag = getattr(self, "open_dag", None)
        if open_dag is None:
            self.notify("DAG view not available in this build", title="Jump", severity="warning")
        elif dag_id is None:
            self.notify("select a DAG in the list first", title="Jump", severity="warning")
        else:
            open_dag(dag_id)

    def selected_dag(self) -> str | None:
        """The DAG under the cursor of the DAG list, else the DAG last looked at."""
        for screen in self.screen_stack:
            if isinstance(screen, DagListScreen):
                from flow.tui.widgets.dag_table import DagTable
                for table in screen.query(DagTable):
                    return table.selected_dag or self.last_dag_id
        return self.last_dag_id

    def open_logs(self, dag_id: str, run_id: str, task_id: str, try_number: int | None = None) -> None:
        self.last_dag_id = dag_id
        from flow.tui.screens.logs import LogScreen

        self.push_screen(LogScreen(dag_id, run_id, task_id, try_number))

    # -- the command palette ------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        from flow.tui.commands import flow_commands

        yield from flow_commands(self, screen)
        yield from super().get_system_commands(screen)

    def known_dags(self) -> dict[str, dict[str, Any]]:
        home = next((s for s in self.screen_stack if isinstance(s, DagListScreen)), None)
        return dict(home.dags) if home is not None else {}

    def _viewer(self, what: str) -> bool:
        if self.client.role == "viewer":
            self.notify(f"you are a viewer: you may not {what} (ask to be added to group 'flow')",
                        title="Not allowed", severity="warning")
            return True
        return False

    async def trigger_dag(self, dag_id: str) -> None:
        if self._viewer("trigger DAGs"):
            return
        try:
            run = (await self.client.call("dags.trigger", dag_id=dag_id))["run"]
        except ClientError as exc:
            self.notify(str(exc), title=f"Cannot trigger {dag_id}", severity="error")
            return
        self.notify(f"{run.get('run_id')} ({run.get('state')})", title=f"Triggered {dag_id}")

    async def pause_dag(self, dag_id: str, paused: bool) -> None:
        word = "pause" if paused else "unpause"
        if self._viewer("pause or unpause DAGs"):
            return
        try:
            await self.client.call("dags.pause", dag_id=dag_id, paused=paused)
        except ClientError as exc:
            self.notify(str(exc), title=f"Cannot {word} {dag_id}", severity="error")
            return
        self.notify(f"{dag_id} is {word}d", title=word.capitalize())


def crash_report(error: BaseException | None) -> str:
    """Save the traceback where the operator can find it; the one line that says what and where."""
    import tempfile
    import traceback

    from flow.textsafe import visible

    what = visible(f"{type(error).__name__}: {error}" if error is not None else "unknown error")
    text = "".join(traceback.format_exception(error)) if error is not None else what + "\n"
    try:
        fd, path = tempfile.mkstemp(prefix="flowtui-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as out:
            out.write(text)
    except OSError as exc:
        return f"flowtui: crashed: {what} (traceback not saved: {exc})"
    return f"flowtui: crashed: {what} (traceback in {path})"


def make_app(socket_path: str, *, config_file: str | None = None, theme: str | None = None,
             env: dict[str, str] | None = None) -> FlowTUI:
    """The console for `socket_path`, with the keys of `[tui.keys]` and the theme applied."""
    path = config.config_path(config_file)
    data, warnings = config.read_config(path)
    keys, more = config.keymap(data, path, config.binding_ids)
    chosen = config.pick_theme(theme, os.environ if env is None else env)
    return FlowTUI(FlowClient(socket_path), keymap=keys, warnings=warnings + more, theme=chosen)


async def _probe(candidates: list[str]) -> str:
    """The first socket where flowd answers the handshake; NotRunning naming all of them if none."""
    misses: list[NotRunning] = []
    for path in candidates:
        try:
            _, writer, _ = await open_connection(path)
        except NotRunning as exc:
            misses.append(exc)
            continue
        writer.close()
        return path
    raise NotRunning.among(misses)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="flowtui", description="The console for flowd.")
    parser.add_argument("--socket", metavar="PATH",
                        help="flowd's socket (default: $FLOW_SOCKET, socket_path in flowd.toml, else "
                             "$XDG_RUNTIME_DIR/flowd/flowd.sock if your own flowd runs, then "
                             "/run/flowd/flowd.sock)")
    parser.add_argument("--config", metavar="PATH",
                        help="the flowd.toml to read [tui.keys] (and socket_path) from "
                             "(default: $FLOW_CONFIG, ~/.config/flowd/flowd.toml, else /etc/flowd/flowd.toml)")
    parser.add_argument("--theme", choices=sorted(config.THEMES),
                        help="colours: ansi16 uses the terminal's 16 colours (the default on a 16-colour "
                             "TERM); NO_COLOR=1 turns colour off")
    args = parser.parse_args(argv)
    try:
        path = asyncio.run(_probe(socket_candidates(args.socket, args.config)))
    except ClientError as exc:
        print(f"flowtui: {exc}", file=sys.stderr)
        sys.exit(1)
    app = make_app(path, config_file=args.config, theme=args.theme)
    app.run()
    if app.crash:
        sys.stderr.write(app.crash + "\n")
        sys.stderr.flush()
    sys.exit(app.return_code or (1 if app.crash else 0))
