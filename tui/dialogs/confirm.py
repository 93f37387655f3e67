"""Confirm a change after seeing exactly what it touches: flowd's own dry run, listed.

The list comes from the same request with `dry_run: true`, asked again whenever an option
changes, so what the operator confirms is what flowd computed for those options, not the
console's guess. Confirm is refused until the list on screen matches the current options.
The dialog returns the params to send; the screen that opened it sends them and reports.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Static

from flow.states import GLYPHS
from flow.tui.client import ClientError
from flow.tui.widgets.dag_table import STATE_STYLES


def affected_text(items: list[dict[str, Any]], verb: str) -> Text:
    """One line per task instance: glyph, state now, task id, try."""
    if not items:
        return Text(f"nothing to {verb}: no task instance matches these options", style="dim")
    text = Text()
    for i, ti in enumerate(items):
        state = str(ti.get("state") or "none")
        if i:
            text.append("\n")
        text.append(f"{GLYPHS.get(state, '?')} {state:<16}", style=STATE_STYLES.get(state, ""))
        text.append(f" {ti.get('task_id')}", style="bold")
        text.append(f"  try {ti.get('try_number') or 0}", style="dim")
    return text


class DryRunDialog(ModalScreen[dict[str, Any] | None]):
    """Base for clear, mark and retry: options (from subclasses), the dry-run list, confirm/cancel."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
        Binding("enter", "confirm", "Confirm", priority=True, id="dialog.confirm"),
    ]

    def __init__(self, title: str, method: str, params: dict[str, Any], verb: str) -> None:
        super().__init__(classes="dry-run-dialog")
        self.title_text = title
        self.method = method
        self.params = params
        self.verb = verb
        self.affected: list[dict[str, Any]] | None = None
        self.shown_for: dict[str, Any] | None = None
        self._generation = 0

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.title_text, id="dialog-title")
            yield from self.compose_options()
            yield Static("asking flowd what this would change…", id="dry-run-summary")
            with VerticalScroll(id="dry-run-scroll"):
                yield Static("", id="dry-run-list")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.verb.capitalize()} (enter)", variant="warning", compact=True, id="confirm")
                yield Button("Cancel (esc)", compact=True, id="cancel")

    def compose_options(self) -> ComposeResult:
        yield from ()

    def current_params(self) -> dict[str, Any]:
        return dict(self.params)

    def on_mount(self) -> None:
        for button in self.query(Button):
            button.can_focus = False  # enter always confirms; the buttons are for the mouse
        boxes = list(self.query(Checkbox))
        if boxes:
            boxes[0].focus()
        self.ask()

    def ask(self) -> None:
        """(Re)run the dry run for the options as they are now; older answers are ignored."""
        self._generation += 1
        self.query_one("#dry-run-summary", Static).update("asking flowd what this would change…")
        self.run_worker(self._dry_run(self._generation, self.current_params()), group="dry-run",
                        exit_on_error=False)

    async def _dry_run(self, generation: int, params: dict[str, Any]) -> None:
        try:
            reply = await self.app.client.call(self.method, **params, dry_run=True)  # type: ignore[attr-defined]
            items = reply.get("task_instances")
            if not isinstance(items, list):
                raise ClientError(f"flowd's reply to {self.method} has no task_instances list")
        except ClientError as exc:
            if generation == self._generation:
                self.affected, self.shown_for = None, None
                self.query_one("#dry-run-summary", Static).update(Text(f"cannot ask flowd: {exc}", style="red"))
                self.query_one("#dry-run-list", Static).update("")
            return
        if generation != self._generation:
            return
        self.affected, self.shown_for = [i for i in items if isinstance(i, dict)], params
        count = len(self.affected)
        self.query_one("#dry-run-summary", Static).update(
            f"{count} task instance{'s' if count != 1 else ''} will be affected:" if count else "")
        self.query_one("#dry-run-list", Static).update(affected_text(self.affected, self.verb))

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.ask()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self.action_confirm()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_confirm(self) -> None:
        params = self.current_params()
        if self.affected is None or self.shown_for != params:
            self.notify("wait for the list of affected task instances", title="Not yet", severity="warning")
            return
        if not self.affected:
            self.notify(f"nothing to {self.verb}", title="Nothing changed")
            self.dismiss(None)
            return
        self.dismiss(params)

    def toggle(self, box_id: str) -> None:
        box = self.query_one(f"#{box_id}", Checkbox)
        if not box.disabled:
            box.value = not box.value


class ConfirmDialog(DryRunDialog):
    """A plain confirm with the dry-run list and no options (retry failed tasks of a run)."""
