"""The key hints on the bottom line: one widget drawing one line of text.

Textual's Footer builds a widget per key and restyles each one whenever the bindings change
(a focus move, a dialog): about a fifth of a second of CSS work each time the DAG view opens,
and a repaint of the line on every focus change. KeyBar draws the same hints (the screen's
active bindings with `show`, in the theme's footer colours; a disabled one dimmed) as one Text,
rebuilt when the bindings change and repainted only when the text differs. A click on a key
presses it, as on the Footer.
"""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget


class KeyBar(Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"keybar--key", "keybar--description"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        background: $footer-background;
        color: $footer-foreground;
        .keybar--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        .keybar--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
    }
    """
    ALLOW_SELECT = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._text = Text()
        self._spans: list[tuple[int, int, str]] = []
        """(x from, x to, key) of each hint, for clicks."""

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.call_after_refresh(self.rebuild)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen) -> None:
        if self.is_attached and screen is self.screen:
            self.rebuild()

    def rebuild(self) -> None:
        """Redraw the hints from the screen's active bindings; nothing is repainted if they are the same."""
        key_style = self.get_component_rich_style("keybar--key")
        text_style = self.get_component_rich_style("keybar--description")
        text, spans, seen = Text(no_wrap=True, overflow="crop"), [], set()
        for _node, binding, enabled, _tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            start = text.cell_len
            dim = Style(dim=True) if not enabled else Style()
            text.append(f" {self.app.get_key_display(binding)} ", key_style + dim)
            text.append(f"{binding.description} ", text_style + dim)
            spans.append((start, text.cell_len, binding.key.split(",")[0]))
        if text.plain != self._text.plain or text.spans != self._text.spans:
            self._text, self._spans = text, spans
            self.refresh()

    @property
    def hints(self) -> str:
        """The line as plain text (what the tests read)."""
        return self._text.plain

    def _palette(self) -> Text | None:
        """'^p palette' at the right end, as on Textual's Footer, when the palette is on."""
        if not self.app.ENABLE_COMMAND_PALETTE:
            return None
        binding = self.screen.active_bindings.get(self.app.COMMAND_PALETTE_BINDING)
        if binding is None:
            return None
        key_style = self.get_component_rich_style("keybar--key")
        return Text.assemble((f" {self.app.get_key_display(binding[1])} ", key_style),
                             (f"{binding[1].description} ", self.get_component_rich_style("keybar--description")))

    def render(self) -> Text:
        width, palette = self.size.width, self._palette()
        if palette is None or width <= palette.cell_len:
            return self._text
        room = width - palette.cell_len
        keys = self._text[:room] if self._text.cell_len > room else self._text + " " * (room - self._text.cell_len)
        return Text.assemble(keys, palette, no_wrap=True, overflow="crop")

    def on_click(self, event: events.Click) -> None:
        palette = self._palette()
        if palette is not None and event.x >= self.size.width - palette.cell_len:
            self.app.action_command_palette()
            return
        for start, end, key in self._spans:
            if start <= event.x < end:
                self.app.simulate_key(key)
                return
