"""Clear: run task instances again, with Airflow's options, after seeing which ones flowd will reset."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Checkbox

from flow.tui.dialogs.confirm import DryRunDialog
from flow.tui.widgets.toggles import TickBox


class ClearDialog(DryRunDialog):
    """Options: downstream (d), upstream (u), failed only (f), whole run (w)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "toggle('downstream')", "Downstream", id="clear.downstream"),
        Binding("u", "toggle('upstream')", "Upstream", id="clear.upstream"),
        Binding("f", "toggle('failed_only')", "Failed only", id="clear.failed_only"),
        Binding("w", "toggle('whole_run')", "Whole run", id="clear.whole_run"),
    ]

    def __init__(self, dag_id: str, run_id: str, task_id: str | None) -> None:
        what = f"{task_id} in {run_id}" if task_id else f"every task of {run_id}"
        super().__init__(f"Clear {what} ({dag_id})", "tasks.clear",
                         {"dag_id": dag_id, "run_id": run_id}, "clear")
        self.task_id = task_id

    def compose_options(self) -> ComposeResult:
        yield TickBox("downstream (d)", compact=True, id="downstream")
        yield TickBox("upstream (u)", compact=True, id="upstream")
        yield TickBox("failed only (f)", compact=True, id="failed_only")
        whole = self.task_id is None
        yield TickBox("whole run (w)", compact=True, value=whole, disabled=whole, id="whole_run")

    def current_params(self) -> dict[str, Any]:
        value = {box.id: box.value for box in self.query(Checkbox)}
        whole = value.get("whole_run", True) or self.task_id is None
        return {**self.params, "task_ids": None if whole else [self.task_id],
                "downstream": bool(value.get("downstream")) and not whole,
                "upstream": bool(value.get("upstream")) and not whole,
                "failed_only": bool(value.get("failed_only"))}

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id == "whole_run":
            for box_id in ("downstream", "upstream"):
                self.query_one(f"#{box_id}", Checkbox).disabled = event.value
        self.ask()

    def action_toggle(self, box_id: str) -> None:
        self.toggle(box_id)
