"""A checkbox and a radio button whose state is a glyph, not only a colour.

Textual draws both states of a checkbox as `▐X▌` and of a radio button as `▐●▌`, told apart by
colour alone: under NO_COLOR, on a 16-colour terminal or for a colour-blind operator, a clear
dialog's options all read "on". These read `[x]` / `[ ]` and `(•)` / `( )`. The glyph is part of
the label (Textual's button part is drawn in half blocks whose brackets would not show), so only
Textual's public `label` and `watch_value` are used.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.content import Content
from textual.widgets import Checkbox, RadioButton


class TickBox(Checkbox):
    """A Checkbox that reads `[x] label` or `[ ] label`."""

    BUTTON_LEFT = BUTTON_INNER = BUTTON_RIGHT = ""
    GLYPHS: ClassVar[tuple[str, str]] = ("[ ]", "[x]")

    def __init__(self, label: str, value: bool = False, **kwargs: Any) -> None:
        self.text = label
        super().__init__(self._glyph_label(value), value, **kwargs)

    def _glyph_label(self, value: bool) -> Content:
        return Content(f"{self.GLYPHS[bool(value)]} {self.text}")  # plain text: `[x]` is no markup tag

    def watch_value(self) -> None:
        self.label = self._glyph_label(self.value)
        super().watch_value()


class DotButton(RadioButton):
    """A RadioButton that reads `(•) label` or `( ) label`."""

    BUTTON_LEFT = BUTTON_INNER = BUTTON_RIGHT = ""
    GLYPHS: ClassVar[tuple[str, str]] = ("( )", "(•)")

    def __init__(self, label: str, value: bool = False, **kwargs: Any) -> None:
        self.text = label
        super().__init__(self._glyph_label(value), value, **kwargs)

    def _glyph_label(self, value: bool) -> Content:
        return Content(f"{self.GLYPHS[bool(value)]} {self.text}")

    def watch_value(self) -> None:
        self.label = self._glyph_label(self.value)
        super().watch_value()
