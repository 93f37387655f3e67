"""`flowtui`: the operator's console. It talks to flowd only through its socket (docs/protocol.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.widgets import HelpPanel

from flow.tui.client import ClientError, FlowClient, open_connection, resolve_socket
from flow.tui.screens.dag_list import DagListScreen


class FlowTUI(App):
    """The app shell: owns the connection, shows its state in the header, hosts the screens."""

    TITLE = "flowtui"
    CSS_PATH = "flowtui.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark", "keys", "Keys", key_display="?", id="app.keys"),
    ]

    def __init__(self, client: FlowClient) -> None:
        super().__init__()
        self.client = client
        # Every animated frame is bytes over the operator's ssh link; snap instead (TEXTUAL_ANIMATIONS
        # can turn them back on).
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            self.animation_level = "none"
        self.utc = False  # every screen formats times through flow.tui.timefmt with this flag
        self.sub_title = f"connecting to {client.path}…"

    def on_mount(self) -> None:
        self.client.listeners.append(self)
        self.run_worker(self.client.run(), name="flowd-connection", group="connection", exit_on_error=False)
        self.push_screen(DagListScreen())

    def flow_connected(self, hello: dict[str, Any]) -> None:
        role = hello.get("role", "?")
        self.sub_title = f"{hello.get('user', '?')} ({role}) @ {hello.get('server', 'flowd')} · {self.client.path}"

    def flow_disconnected(self, reason: str) -> None:
        self.sub_title = f"reconnecting… ({reason})"
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

    def action_keys(self) -> None:
        if self.screen.query(HelpPanel):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()


def make_app(socket_path: str) -> FlowTUI:
    return FlowTUI(FlowClient(socket_path))


async def _probe(path: str) -> None:
    _, writer, _ = await open_connection(path)
    writer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="flowtui", description="The console for flowd.")
    parser.add_argument("--socket", metavar="PATH",
                        help="flowd's socket (default: $FLOW_SOCKET, flowd.toml, /run/flowd/flowd.sock "
                             "if present, else $XDG_RUNTIME_DIR/flowd/flowd.sock)")
    args = parser.parse_args(argv)
    path = resolve_socket(args.socket)
    try:
        asyncio.run(_probe(path))
    except ClientError as exc:
        print(f"flowtui: {exc}", file=sys.stderr)
        sys.exit(1)
    make_app(path).run()
