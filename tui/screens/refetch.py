"""Screens that show one request's answer and fetch it again when flowd says it may have changed.

Pushed events only wake the screen: a burst of them costs one request, never a timer's polling.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from flow.tui.client import ClientError
from flow.tui.screens.listening import Listening
from flow.tui.screens.shown import ShownGate


class Refetching(Listening, ShownGate):
    """Mixin for a Screen: set WAKE_ON, implement `fetch` and `_redraw`, call `start_refetching`."""

    WAKE_ON: ClassVar[tuple[str, ...]] = ("resync",)
    """Event names after which what the screen shows may be stale."""
    PAUSE: ClassVar[float] = 0.0
    """Seconds to wait after a fetch, so a storm of events costs at most one request per PAUSE."""
    problem: str = ""

    def start_refetching(self, group: str) -> None:
        self._wake = asyncio.Event()
        self.listen(replay=False)
        self.run_worker(self._refetcher(), group=group, exit_on_error=False)  # type: ignore[attr-defined]
        self._wake.set()

    def flow_connected(self, hello: dict[str, Any]) -> None:
        self._wake.set()

    def flow_event(self, event: dict[str, Any]) -> None:
        if event.get("event") in self.WAKE_ON:
            self._wake.set()

    async def fetch(self) -> None:
        raise NotImplementedError

    def _redraw(self) -> None:
        raise NotImplementedError

    async def _refetcher(self) -> None:
        while True:
            await self._wake.wait()
            await self.until_shown()
            self._wake.clear()
            try:
                await self.fetch()
                self.problem = ""
            except ClientError as exc:
                self.problem = str(exc)
            self._redraw()
            if self.PAUSE:
                await asyncio.sleep(self.PAUSE)
