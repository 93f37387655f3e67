"""The audit log: who changed what and when, newest first, with a filter.

The audit log has no event of its own, but every change it records is followed by a `run`,
`dag` or `dags` event, so those (coalesced: a burst costs one request) refresh it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static

from flow.textsafe import visible
from flow.tui.screens.refetch import Refetching
from flow.tui.timefmt import clock
from flow.tui.widgets.keybar import KeyBar

if TYPE_CHECKING:
    from flow.tui.app import FlowTUI

LIMIT = 500


def params_text(entry: dict[str, Any]) -> str:
    """The target and parameters of one change, compact enough for one line."""
    target = "/".join(str(entry[k]) for k in ("dag_id", "run_id", "task_id") if entry.get(k))
    params = entry.get("params")
    shown = json.dumps(params, separators=(",", ":"), default=str) if params else ""
    return " ".join(p for p in (target, shown) if p)


class AuditScreen(Refetching, Screen):
    WAKE_ON = ("run", "dag", "dags", "resync")
    PAUSE = 0.5

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="audit.back"),
        Binding("slash", "filter", "Filter", key_display="/", id="audit.filter"),
    ]

    def __init__(self) -> None:
        super().__init__(id="audit-screen")
        self.entries: list[dict[str, Any]] = []
        self.needle = ""

    @property
    def flow_app(self) -> FlowTUI:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter by user, action, DAG or parameter (esc clears)", id="audit-filter")
        yield DataTable(id="audit", cursor_type="row", zebra_stripes=True)
        yield Static("", id="audit-note")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#audit-filter").display = False
        table = self.query_one("#audit", DataTable)
        for key, label in (("time", "Time"), ("user", "User"), ("action", "Action"), ("params", "Target and parameters")):
            table.add_column(label, key=key)
        table.focus()
        self.watch(self.app, "utc", lambda _: self._redraw(), init=False)
        self.start_refetching("audit")

    def flow_disconnected(self, reason: str) -> None:
        """The rows stay until flowd is back."""

    async def fetch(self) -> None:
        reply = await self.flow_app.client.call("audit.list", limit=LIMIT)
        entries = reply.get("entries")
        self.entries = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def visible(self) -> list[dict[str, Any]]:
        needle = self.needle.strip().lower()
        if not needle:
            return self.entries
        return [e for e in self.entries
                if needle in " ".join((str(e.get("user") or ""), str(e.get("action") or ""), params_text(e))).lower()]

    def _redraw(self) -> None:
        table = self.query_one("#audit", DataTable)
        table.clear()
        shown = self.visible()
        for entry in shown:
            user = str(entry.get("user") or f"uid {entry.get('uid')}")
            table.add_row(clock(entry.get("time"), utc=self.flow_app.utc, seconds=True), Text(visible(user)),
                          Text(visible(str(entry.get("action") or "?"))), Text(visible(params_text(entry))))
        entries = "entry" if len(self.entries) == 1 else "entries"
        notes = [f"{len(shown)} of {len(self.entries)} {entries}" if self.needle else f"{len(self.entries)} {entries}"]
        if self.needle:
            notes.append(f"filter: {self.needle!r}")
        if self.problem:
            notes.append(f"⚠ {self.problem}")
        self.query_one("#audit-note", Static).update(" · ".join(notes))

    def action_filter(self) -> None:
        box = self.query_one("#audit-filter", Input)
        box.display = True
        box.focus()

    def action_back(self) -> None:
        box = self.query_one("#audit-filter", Input)
        if box.display:
            box.value, box.display, self.needle = "", False, ""
            self.query_one("#audit", DataTable).focus()
            self._redraw()
        else:
            self.app.pop_screen()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.needle = event.value
        self._redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.display = False
        self.query_one("#audit", DataTable).focus()
