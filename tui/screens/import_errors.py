"""DAG files flowd could not import: which file, the error, and its traceback.

The list is refetched when flowd says the DAG folder changed (a `dags` event carries the new
count) or after a reconnect; there is nothing to poll.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from flow.textsafe import visible
from flow.tui.screens.refetch import Refetching
from flow.tui.timefmt import clock
from flow.tui.widgets.keybar import KeyBar

if TYPE_CHECKING:
    from flow.tui.app import FlowTUI


class ImportErrorsScreen(Refetching, Screen):
    """One row per broken file; the traceback of the highlighted one below."""

    WAKE_ON = ("dags", "resync")

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="import_errors.back"),
    ]

    def __init__(self) -> None:
        super().__init__(id="import-errors-screen")
        self.errors: list[dict[str, Any]] = []

    @property
    def flow_app(self) -> FlowTUI:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="errors-summary")
        yield DataTable(id="errors", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="traceback-box"):
            yield Static("", id="traceback")
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#errors", DataTable)
        table.add_column("File", key="file")
        table.add_column("Error", key="message")
        table.add_column("Seen", key="when")
        table.focus()
        self.watch(self.app, "utc", lambda _: self._redraw(), init=False)
        self.start_refetching("import-errors")

    def flow_disconnected(self, reason: str) -> None:
        """The list stays as it was until flowd is back."""

    async def fetch(self) -> None:
        reply = await self.flow_app.client.call("import_errors.list")
        errors = reply.get("import_errors")
        self.errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []

    def _redraw(self) -> None:
        table = self.query_one("#errors", DataTable)
        keep = table.cursor_row
        table.clear()
        for n, error in enumerate(self.errors):
            message = str(error.get("message") or "").strip().splitlines() or [""]
            table.add_row(Text(visible(str(error.get("filename") or "?"))), Text(visible(message[-1][:200])),
                          clock(error.get("timestamp"), utc=self.flow_app.utc), key=str(n))
        if self.errors:
            table.move_cursor(row=min(keep, len(self.errors) - 1))
        count = len(self.errors)
        summary = f"{count} DAG file{'s' if count != 1 else ''} failed to import" if count else \
            "✔ every DAG file imported"
        if self.problem:
            summary += f" · ⚠ {self.problem}"
        self.query_one("#errors-summary", Static).update(summary)
        self._show_traceback()

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._show_traceback()

    def _show_traceback(self) -> None:
        row = self.query_one("#errors", DataTable).cursor_row
        box = self.query_one("#traceback", Static)
        if not self.errors or not 0 <= row < len(self.errors):
            box.update("")
            return
        error = self.errors[row]
        text = str(error.get("traceback") or error.get("message") or "no traceback recorded")
        box.update(Text(visible(f"{error.get('filename')}\n\n{text}", keep="\n")))  # plain text, no markup
