"""Editing keys reach a text box in the order they were typed.

Textual inserts a printable key in the Input's own handler, but runs a bound key (backspace,
delete, ctrl+w, arrows) only once the key event has bubbled from the Input up to the app. Typed
in one burst, as a fast typist or a paste over ssh does, the printable keys behind a backspace
are inserted before it runs: `trigger`, seven backspaces and `stat` in the ctrl+p palette gave
`trig`. `install()` makes every Input (the palette's, the filters', the log search) run its own
bindings in its own handler, in order with the characters; nothing else about the keys changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from textual import events
from textual.binding import Binding
from textual.widgets import Input

_installed = False


@cache
def editing_actions(cls: type[Input]) -> dict[str, str]:
    """Key -> action of the bindings an Input class declares itself (its subclasses' first)."""
    actions: dict[str, str] = {}
    for klass in cls.__mro__:
        for binding in Binding.make_bindings(klass.__dict__.get("BINDINGS") or []):
            actions.setdefault(binding.key, binding.action)
        if klass is Input:
            break
    return actions


def install() -> bool:
    """Wrap Input's key handler once per process; True when it is in place."""
    global _installed
    if _installed:
        return True
    original: Callable[[Input, events.Key], Awaitable[Any]] = Input._on_key

    async def on_key(self: Input, event: events.Key) -> None:
        action = None if event.is_printable else editing_actions(type(self)).get(event.key)
        if action is None:
            await original(self, event)
            return
        event.stop()
        event.prevent_default()
        await self.run_action(action)

    Input._on_key = on_key  # type: ignore[method-assign]
    _installed = True
    return True
