"""flowd's `status`, as a panel refreshed every two seconds while it is on screen.

Status is not pushed (it is a handful of counters that change all the time), and it is cheap,
so this one screen polls. Fields it does not know are shown too: a scalar as a row, an object
as a section of its own, so a newer flowd's figures appear without a console release.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Static

from flow.tui.client import ClientError
from flow.tui.screens.logs import human_size
from flow.tui.timefmt import clock, duration
from flow.tui.widgets.keybar import KeyBar

if TYPE_CHECKING:
    from flow.tui.app import FlowTUI

INTERVAL = 2.0
SIZES = ("rss", "db_size", "log_size", "size", "bytes")
"""Fields shown as sizes: those named here, ending in `_bytes`/`_size`/`_rss` or starting `mem_`, `disk_`…"""


def show_value(key: str, value: Any, utc: bool) -> str:
    """A field's value the way an operator reads it: sizes in MB, times in the chosen zone."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and not isinstance(value, bool) and (
            key in SIZES or key.endswith(("_bytes", "_size", "_rss"))
            or key.startswith(("mem_", "memory_", "swap_", "disk_")) and not key.endswith(("_percent", "_ms"))):  # one unit style: `mem total 23.5 GB`
        return human_size(int(value))
    if key == "uptime" or key.endswith("_seconds"):
        return duration(value)
    if key.endswith("_percent") and isinstance(value, int | float):
        return f"{value:g}%"
    if key.endswith("_ms") and isinstance(value, int | float):
        return f"{value:g} ms"
    if isinstance(value, str) and (key.endswith(("_at", "_time", "time")) or key in ("since", "last")):
        shown = clock(value, utc=utc, seconds=True)
        return shown if shown != "—" else value
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "—"
    if value is None:
        return "—"
    return str(value)


def status_table(status: dict[str, Any], utc: bool) -> Table:
    """Scalars first, then one titled section per object field (nested objects indent)."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    _rows(table, status, utc, depth=0)
    return table


def _rows(table: Table, data: dict[str, Any], utc: bool, depth: int) -> None:
    indent = "  " * depth
    for key, value in data.items():
        if not isinstance(value, dict):
            table.add_row(f"{indent}{key.replace('_', ' ')}", show_value(key, value, utc))
    for key, value in data.items():
        if isinstance(value, dict):
            table.add_row("", "")
            table.add_row(Text(f"{indent}{key.replace('_', ' ')}", style="bold underline"), "")
            if value:
                _rows(table, value, utc, depth + 1)
            else:
                table.add_row(f"{indent}  —", "")


class StatusScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="status.back"),
        Binding("r", "refresh", "Refresh now", id="status.refresh"),
    ]

    def __init__(self) -> None:
        super().__init__(id="status-screen")
        self.status: dict[str, Any] = {}
        self.problem = ""
        self.fetches = 0

    @property
    def flow_app(self) -> FlowTUI:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="status-box"):
            yield Static("asking flowd…", id="status")
        yield KeyBar()

    def on_mount(self) -> None:
        self.watch(self.app, "utc", lambda _: self._redraw(), init=False)
        self._timer = self.set_interval(INTERVAL, self.action_refresh, name="status-refresh")
        self.action_refresh()

    def on_screen_suspend(self) -> None:
        self._timer.pause()

    def on_screen_resume(self) -> None:
        self._timer.resume()
        self.action_refresh()

    def action_refresh(self) -> None:
        self.run_worker(self._fetch(), group="status", exclusive=True, exit_on_error=False)

    async def _fetch(self) -> None:
        try:
            reply = await self.flow_app.client.call("status")
            self.status, self.problem = reply, ""
            self.fetches += 1
        except ClientError as exc:
            self.problem = str(exc)
        self._redraw()

    def _redraw(self) -> None:
        box = self.query_one("#status", Static)
        if not self.status:
            box.update(f"⚠ {self.problem}" if self.problem else "asking flowd…")
            return
        table = status_table(self.status, self.flow_app.utc)
        if self.problem:
            table.add_row("", "")
            table.add_row(Text("⚠ stale", style="bold"), self.problem)
        box.update(table)
