"""Screens that keep themselves current hold that work while another screen covers them.

A covered screen's repaint is not free: Textual forwards its dirty regions to the screen on top,
which repaints them. With the DAG list under a DAG view, every `dags.get` reply re-rendered the
hidden table and so the whole visible screen, several times a second while tasks ran: most of the
bytes a slow ssh link carried. A screen mixing this in lets events pile up (as dirty marks) while
covered and catches up once, when it is shown again.
"""

from __future__ import annotations

import asyncio


class ShownGate:
    """Mixin for a Screen: `shown` says whether it is the screen on top; `until_shown` waits for it."""

    _shown_event: asyncio.Event | None = None

    def _shown_flag(self) -> asyncio.Event:
        if self._shown_event is None:
            self._shown_event = asyncio.Event()
            self._shown_event.set()  # a screen is shown when it is pushed
        return self._shown_event

    @property
    def shown(self) -> bool:
        return self._shown_flag().is_set()

    async def until_shown(self) -> None:
        await self._shown_flag().wait()

    def on_screen_suspend(self) -> None:
        self._shown_flag().clear()

    def on_screen_resume(self) -> None:
        self._shown_flag().set()
        self.caught_up()

    def caught_up(self) -> None:
        """Shown again: a screen that skipped work while covered redoes it here."""
