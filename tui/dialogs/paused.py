"""Triggering a paused DAG: say first that the run will wait, and offer to unpause.

flowd queues a manual run of a paused DAG but starts nothing until the DAG is unpaused, so an
operator who triggers one and watches the run sit in `queued` is misled. The dialog says so
before anything is queued and returns what to do: "trigger", "unpause" (then trigger) or None.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from flow.textsafe import visible


class PausedTriggerDialog(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "choose(None)", "Cancel", id="paused_trigger.cancel"),
        Binding("enter", "choose('trigger')", "Trigger anyway", priority=True, id="paused_trigger.confirm"),
        Binding("u", "choose('unpause')", "Unpause and trigger", id="paused_trigger.unpause"),
    ]

    def __init__(self, dag_id: str) -> None:
        super().__init__(classes="dry-run-dialog")
        self.dag_id = dag_id

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(f"⏸ {visible(self.dag_id)} is paused", id="dialog-title", markup=False)
            yield Static("A run triggered now is queued and waits: nothing starts until the DAG is unpaused.",
                         id="dry-run-summary")
            with Horizontal(id="dialog-buttons"):
                yield Button("Trigger anyway (enter)", variant="warning", compact=True, id="trigger")
                yield Button("Unpause and trigger (u)", compact=True, id="unpause")
                yield Button("Cancel (esc)", compact=True, id="cancel")

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)
