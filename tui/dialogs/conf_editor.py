"""Trigger with conf: a JSON editor that refuses to send anything but a JSON object.

The text is checked here before it goes to flowd, so a typo is pointed at (line and column)
while the text is still on screen, and nothing the operator typed is lost to a refused request.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static, TextArea


def parse_conf(text: str) -> tuple[dict[str, Any] | None, str]:
    """(conf, "") when `text` is a JSON object, else (None, what is wrong and where)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    if not isinstance(value, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
        return None, f"conf must be a JSON object ({{\"key\": value, …}}), not {kind}"
    return value, ""


class ConfEditor(ModalScreen[dict[str, Any] | None]):
    """ctrl+s (or the button) triggers with the conf; esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="conf_editor.cancel"),
        Binding("ctrl+s", "send", "Trigger", priority=True, id="conf_editor.send"),
    ]

    def __init__(self, dag_id: str, initial: dict[str, Any] | None = None) -> None:
        super().__init__(classes="conf-dialog")
        self.dag_id = dag_id
        self.initial = json.dumps(initial or {}, indent=2)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(f"Trigger {self.dag_id} with conf (a JSON object) · ctrl+s sends, esc cancels",
                         id="dialog-title")
            yield TextArea(self.initial, id="conf-text", show_line_numbers=True, tab_behavior="indent")
            yield Static("", id="conf-error")
            with Horizontal(id="dialog-buttons"):
                yield Button("Trigger (ctrl+s)", variant="primary", compact=True, id="send")
                yield Button("Cancel (esc)", compact=True, id="cancel")

    def on_mount(self) -> None:
        self.query_one("#conf-error").display = False
        self.query_one(TextArea).focus()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self.query_one("#conf-error").display = False

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "send":
            self.action_send()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_send(self) -> None:
        conf, error = parse_conf(self.query_one(TextArea).text)
        if conf is None:
            box = self.query_one("#conf-error", Static)
            box.update(Text(f"✘ {error}", style="bold red"))
            box.display = True
            return
        self.dismiss(conf)
