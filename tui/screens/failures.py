"""What went wrong lately, across every DAG: failed and up-for-retry task instances, newest first.

The operator's first question on opening the console is "what is broken?"; the DAG list marks the
DAGs, this answers with the task instances and their error lines, one `enter` from the task detail.
It is one `failures.list` request, made again when a `ti` or `run` event says something ended
(a burst of them costs one request per PAUSE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from flow.textsafe import visible
from flow.tui.screens.refetch import Refetching
from flow.tui.timefmt import clock
from flow.tui.widgets.dag_table import state_text
from flow.tui.widgets.keybar import KeyBar

if TYPE_CHECKING:
    from flow.tui.app import FlowTUI

LIMIT = 200
ERROR_WIDTH = 200


def error_line(row: dict[str, Any]) -> str:
    """The last line of the error (where Python puts the exception), or the exit status."""
    lines = str(row.get("error") or "").strip().splitlines()
    if lines:
        return visible(lines[-1][:ERROR_WIDTH])
    return f"exit status {row['exit_code']}" if row.get("exit_code") is not None else "no error recorded"


class FailuresScreen(Refetching, Screen):
    WAKE_ON = ("ti", "run", "resync")
    PAUSE = 1.0

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="failures.back"),
        Binding("enter", "open", "Task detail", id="failures.open"),
        Binding("l", "logs", "Logs", id="failures.logs"),
    ]

    def __init__(self) -> None:
        super().__init__(id="failures-screen")
        self.failures: list[dict[str, Any]] = []

    @property
    def flow_app(self) -> FlowTUI:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("asking flowd…", id="failures-summary")
        yield DataTable(id="failures", cursor_type="row", zebra_stripes=True)
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#failures", DataTable)
        for key, label in (("when", "Ended"), ("state", "State"), ("dag", "DAG"), ("task", "Task"),
                           ("try", "Try"), ("error", "Error"), ("run", "Run")):
            table.add_column(label, key=key)
        table.focus()
        self.watch(self.app, "utc", lambda _: self._redraw(), init=False)
        self.start_refetching("failures")

    async def fetch(self) -> None:
        reply = await self.flow_app.client.call("failures.list", limit=LIMIT)
        rows = reply.get("failures")
        self.failures = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    def _redraw(self) -> None:
        table = self.query_one("#failures", DataTable)
        keep = table.cursor_row
        table.clear()
        utc = self.flow_app.utc
        for n, row in enumerate(self.failures):
            table.add_row(clock(row.get("end_date") or row.get("start_date"), utc=utc, zone=False),
                          state_text(str(row.get("state") or "none")), Text(visible(str(row.get("dag_id")))),
                          Text(visible(str(row.get("task_id")))), f"{row.get('try_number')}/{row.get('max_tries')}",
                          Text(error_line(row)), Text(visible(str(row.get("run_id")))), key=str(n))
        if self.failures:
            table.move_cursor(row=min(keep, len(self.failures) - 1))
        count = len(self.failures)
        summary = (f"{count} failed or retrying task instance{'s' if count != 1 else ''}, newest first"
                   " · enter: task detail · l: its log" if count else "✔ nothing failed recently")
        if self.problem:
            summary += f" · ⚠ {self.problem}"
        self.query_one("#failures-summary", Static).update(Text(summary))

    def selected(self) -> dict[str, Any] | None:
        row = self.query_one("#failures", DataTable).cursor_row
        return self.failures[row] if 0 <= row < len(self.failures) else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        row = self.selected()
        if row is None:
            return
        from flow.tui.screens.task_detail import TaskDetailScreen

        self.flow_app.last_dag_id = str(row["dag_id"])
        self.app.push_screen(TaskDetailScreen(str(row["dag_id"]), str(row["run_id"]), str(row["task_id"])))

    def action_logs(self) -> None:
        row = self.selected()
        if row is not None:
            self.flow_app.open_logs(str(row["dag_id"]), str(row["run_id"]), str(row["task_id"]))
