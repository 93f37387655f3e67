"""Mark success or failed by hand, after seeing which task instances flowd will set (and kill)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Checkbox, RadioButton, RadioSet

from flow.tui.dialogs.confirm import DryRunDialog
from flow.tui.widgets.toggles import DotButton, TickBox


class MarkDialog(DryRunDialog):
    """One dialog for both states: s / x pick success / failed, d / u add downstream / upstream."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "state('success')", "Success", id="mark.success"),
        Binding("x", "state('failed')", "Failed", id="mark.failed"),
        Binding("d", "toggle('downstream')", "Downstream", id="mark.downstream"),
        Binding("u", "toggle('upstream')", "Upstream", id="mark.upstream"),
    ]

    def __init__(self, dag_id: str, run_id: str, task_id: str, state: str = "success") -> None:
        super().__init__(f"Mark {task_id} in {run_id} ({dag_id})", "tasks.mark",
                         {"dag_id": dag_id, "run_id": run_id, "task_ids": [task_id]}, "mark")
        self.state = state if state in ("success", "failed") else "success"

    def compose_options(self) -> ComposeResult:
        with RadioSet(id="mark-state"):
            yield DotButton("✔ success (s)", compact=True, value=self.state == "success", id="state-success")
            yield DotButton("✘ failed (x)", compact=True, value=self.state == "failed", id="state-failed")
        yield TickBox("downstream (d)", compact=True, id="downstream")
        yield TickBox("upstream (u)", compact=True, id="upstream")

    def current_params(self) -> dict[str, Any]:
        value = {box.id: box.value for box in self.query(Checkbox)}
        return {**self.params, "state": self.state, "downstream": bool(value.get("downstream")),
                "upstream": bool(value.get("upstream"))}

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self.state = "failed" if event.pressed.id == "state-failed" else "success"
        self.ask()

    def action_state(self, state: str) -> None:
        self.query_one(f"#state-{state}", RadioButton).value = True

    def action_toggle(self, box_id: str) -> None:
        self.toggle(box_id)
