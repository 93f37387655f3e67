"""The runner's event loop: one selector, a heap of timers, signals as bytes, one JSON-lines peer.

Not asyncio: the runner forks from inside its loop, and a forked child must not inherit a running
asyncio loop it may not touch. Everything here is plumbing; what a try is lives in runner.py.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import selectors
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

from flow.executors.base import LineBuffer
from flow.executors.child import warn


class Timer:
    __slots__ = ("fn", "cancelled", "keepalive")

    def __init__(self, fn: Callable[[], None], keepalive: bool) -> None:
        self.fn = fn
        self.cancelled = False
        self.keepalive = keepalive
        """A keepalive timer holds the runner open after its last try (a pending SIGKILL sweep)."""


class EventLoop:
    def __init__(self, sock_fd: int, *, on_line: Callable[[bytes], None], on_signal: Callable[[int], None],
                 on_close: Callable[[], None], signals: tuple[int, ...]) -> None:
        self.sel = selectors.DefaultSelector()
        self.sock = sock_fd
        self.peer_open = True
        self.keepalive = 0
        self._on_line, self._on_signal, self._on_close = on_line, on_signal, on_close
        self._inbuf = LineBuffer()
        self._outbuf = bytearray()
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        os.set_blocking(sock_fd, False)
        os.set_inheritable(sock_fd, False)
        self._sock_handler = self._on_sock
        """One bound method object: run_once tells a registration by its handler's identity."""
        self.sel.register(sock_fd, selectors.EVENT_READ, self._sock_handler)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in signals:
            self.watch_signal(sig)
        self.sel.register(self._wake_r, selectors.EVENT_READ, self._signals)

    def close(self) -> None:
        """Give back the selector, the wake-up pipe and the peer (the runner just exits; tests call this)."""
        self.close_peer()
        signal.set_wakeup_fd(self._previous_wakeup)
        self.sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    @staticmethod
    def watch_signal(sig: int) -> None:
        """The handler does nothing: the C-level handler writes the number to the wake-up pipe."""
        signal.signal(sig, lambda *_: None)

    def register(self, fd: int, callback: Callable[[], None]) -> None:
        self.sel.register(fd, selectors.EVENT_READ, lambda _mask: callback())

    def unregister(self, fd: int) -> bool:
        """Forget `fd`; False if it was not registered (a callback earlier in the batch did it)."""
        try:
            self.sel.unregister(fd)
        except (KeyError, ValueError):
            return False
        return True

    def run_once(self) -> None:
        """Run the callbacks of one select() batch, each only if its registration still stands.

        A callback may close fds whose events are later in the same batch: a try's exit drains and
        closes its pipes, whose EOF events were reported with it; and a closed fd number may be
        reused at once by a pipe of a try spawned in the same batch. An event is dispatched only if
        the selector still maps its fd to the very registration the event was reported for (its
        handler object, which register() makes anew for every registration and modify() keeps);
        anything else is stale and dropped. Selection is level-triggered, so a new registration
        that is ready is reported again by the next select().
        """
        timeout = max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else None
        events = self.sel.select(timeout)
        current = self.sel.get_map()
        for key, mask in events:
            now = current.get(key.fd)
            if now is None or now.data is not key.data:
                continue
            try:
                key.data(mask)
            except Exception:
                # A bug in one try's handling must not take every other try down with the runner.
                warn(f"an event handler failed and was skipped:\n{traceback.format_exc()}")
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            timer = heapq.heappop(self._timers)[2]
            if not timer.cancelled:
                self.cancel(timer)
                try:
                    timer.fn()
                except Exception:
                    warn(f"a timer failed and was skipped:\n{traceback.format_exc()}")

    # -- timers -----------------------------------------------------------------------------

    def call_later(self, delay: float, fn: Callable[[], None], *, keepalive: bool = False) -> Timer:
        timer = Timer(fn, keepalive)
        self.keepalive += keepalive
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), timer))
        return timer

    def cancel(self, timer: Timer | None) -> None:
        if timer is not None and not timer.cancelled:
            timer.cancelled = True
            self.keepalive -= timer.keepalive

    def _signals(self, _mask: int) -> None:
        try:
            signums = os.read(self._wake_r, 512)
        except BlockingIOError:
            return
        for signum in signums:
            self._on_signal(signum)

    # -- the peer ---------------------------------------------------------------------------

    @property
    def sending(self) -> bool:
        return bool(self._outbuf)

    def send(self, msg: dict[str, Any]) -> None:
        if not self.peer_open:
            return
        self._outbuf += json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        self._flush()

    def close_peer(self) -> None:
        if not self.peer_open:
            return
        self.sel.unregister(self.sock)
        os.close(self.sock)
        self.peer_open = False
        self._outbuf.clear()
        self._on_close()

    def _flush(self) -> None:
        if not self.peer_open:
            return
        pending = bool(self._outbuf)
        while self._outbuf:
            try:
                del self._outbuf[:os.write(self.sock, self._outbuf)]
            except BlockingIOError:
                break
            except OSError:
                self.close_peer()
                return
        if pending or self._outbuf:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._outbuf else 0)
            self.sel.modify(self.sock, events, self._sock_handler)

    def _on_sock(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush()
        if not (mask & selectors.EVENT_READ) or not self.peer_open:
            return
        try:
            data = os.read(self.sock, 1 << 18)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close_peer()
            return
        for line in self._inbuf.feed(data):
            if line.strip():
                self._on_line(line)
