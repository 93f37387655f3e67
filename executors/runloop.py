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
from collections.abc import Callable
from typing import Any

from flow.executors.base import LineBuffer


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
        self.sel.register(sock_fd, selectors.EVENT_READ, self._on_sock)
        self._wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for sig in signals:
            self.watch_signal(sig)
        self.sel.register(self._wake_r, selectors.EVENT_READ, self._signals)

    @staticmethod
    def watch_signal(sig: int) -> None:
        """The handler does nothing: the C-level handler writes the number to the wake-up pipe."""
        signal.signal(sig, lambda *_: None)

    def register(self, fd: int, callback: Callable[[], None]) -> None:
        self.sel.register(fd, selectors.EVENT_READ, lambda _mask: callback())

    def unregister(self, fd: int) -> None:
        self.sel.unregister(fd)

    def run_once(self) -> None:
        timeout = max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else None
        for key, mask in self.sel.select(timeout):
            key.data(mask)
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            timer = heapq.heappop(self._timers)[2]
            if not timer.cancelled:
                self.cancel(timer)
                timer.fn()

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
            self.sel.modify(self.sock, events, self._on_sock)

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
