"""The `?` panel: flow's own keys for the current screen first, grouped; Textual's generic ones last.

Textual's HelpPanel lists whatever the focus chain binds, Textual's own bindings among flow's, so
an operator reading it for "how do I clear a task?" has to skip the widget plumbing. This panel
reads the same active bindings (so a remapped key shows as remapped) and groups them: this
screen, the widget with the focus (moving around), everywhere, then Textual's.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import HelpPanel, Static


def keys_text(screen: Screen) -> Text:
    """The grouped list of the screen's active keys."""
    app = screen.app
    groups: dict[str, list[tuple[str, str]]] = {"This screen": [], "Moving": [], "Everywhere": [], "Textual": []}
    seen: set[tuple[str, str]] = set()
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if not binding.description:
            continue
        if not binding.id:
            group = "Textual"
        elif active.node is app:
            group = "Everywhere"
        elif active.node is screen:
            group = "This screen"
        else:
            group = "Moving"
        shown = binding.key_display or app.get_key_display(binding) or key
        if (group, binding.description) in seen:
            continue
        seen.add((group, binding.description))
        groups[group].append((shown, binding.description))
    text = Text()
    for title, rows in groups.items():
        if not rows:
            continue
        if text:
            text.append("\n")
        text.append(f"{title}\n", style="bold underline")
        width = max(len(k) for k, _ in rows)
        for shown, description in rows:
            text.append(f" {shown.ljust(width)} ", style="bold")
            text.append(f"{description}\n")
    text.rstrip()
    return text


class KeysPanel(HelpPanel):
    """A HelpPanel (same place, same toggling) whose content is `keys_text`."""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="keys-scroll"):
            yield Static(id="keys-list")

    def on_mount(self) -> None:  # not HelpPanel's, which follows the focus for a widget's help text
        self.refresh_keys()

    def refresh_keys(self) -> None:
        screen = self.screen
        self.query_one("#keys-list", Static).update(keys_text(screen))
