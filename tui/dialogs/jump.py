"""The `:` prompt (k9s' habit): type a view's name, enter jumps there, esc goes back."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import Input


class JumpDialog(ModalScreen[str | None]):
    """Answers the typed name (without the colon), or None when dismissed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="jump.cancel"),
    ]

    def __init__(self, names: list[str]) -> None:
        super().__init__(id="jump")
        self.names = names

    def compose(self) -> ComposeResult:
        yield Input(placeholder=" ".join(f":{n}" for n in self.names), id="jump-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip().lstrip(":").strip().lower())

    def action_cancel(self) -> None:
        self.dismiss(None)
