"""Screens that hear flowd's pushed events: join the client's listeners when mounted, leave when not."""

from __future__ import annotations

from typing import Any


class Listening:
    """Mixin for a Screen: call `listen()` in on_mount; on_unmount leaves the listeners."""

    def listen(self, *, replay: bool = True) -> None:
        """Hear the client's events from now on; with `replay`, an open connection is told to
        `flow_connected` at once, as a connection made later would be."""
        client = self.app.client  # type: ignore[attr-defined]
        client.listeners.append(self)
        if replay and client.connected:
            self.flow_connected(client.hello)

    def flow_connected(self, hello: dict[str, Any]) -> None:
        """Screens that load something override this."""

    def on_unmount(self) -> None:
        listeners = self.app.client.listeners  # type: ignore[attr-defined]
        if self in listeners:
            listeners.remove(self)
