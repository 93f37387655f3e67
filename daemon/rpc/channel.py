"""One accepted socket as an asyncio protocol with bounded buffers in both directions.

asyncio's StreamReader buffers up to twice its limit whatever the caller wants, and its limit is
fixed at creation; flowd needs a small limit before the hello (16 KiB) and MAX_LINE after it, and
it needs to know how many reply bytes wait for each client. So the input side pauses the socket
as soon as more than the current line limit is buffered, and the output side refuses to queue
past a byte budget: a client that sends without a newline or asks without reading holds a few
hundred KiB of flowd's memory at most, never its whole heap.
"""

from __future__ import annotations

import asyncio
from typing import Any

READ_CHUNK_SLACK = 256 * 1024
"""What one data_received can add on top of the limit (asyncio reads 256 KiB at a time)."""
HIGH_WATER = 64 * 1024
"""Reply bytes queued in flowd before a writer waits (asyncio's own default)."""


class LineTooLong(Exception):
    def __init__(self, size: int | None, limit: int) -> None:
        super().__init__(f"line of {size} bytes is over the limit of {limit} bytes" if size is not None
                         else f"line is over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class OverBudget(Exception):
    """The client's unread replies and events passed the connection's byte budget."""


class Closed(Exception):
    """The connection is gone (the peer left, or flowd aborted it)."""


class Channel(asyncio.Protocol):
    """Lines in, bytes out; `readline`, `write`, `drain`, `abort`, `close`."""

    def __init__(self, *, line_limit: int, budget: int) -> None:
        self.line_limit = line_limit
        """Longest line accepted, newline not counted; change it with `set_line_limit`."""
        self.budget = budget
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._scanned = 0
        self._eof = False
        self._lost = False
        self._reading_paused = False
        self._writing_paused = False
        self._data: asyncio.Future[None] | None = None
        self._drains: list[asyncio.Future[None]] = []
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio callbacks ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._check_input()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return True  # keep the write side open: a refusal may still be on its way out

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        self._wake_reader()
        self._wake_drains()
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_drains()

    # -- input ----------------------------------------------------------------------------------

    def set_line_limit(self, limit: int) -> None:
        self.line_limit = limit
        self._check_input()

    def _check_input(self) -> None:
        """Stop reading from the socket while more than a whole line's worth waits unparsed."""
        if self.transport is None or self._lost:
            return
        over = len(self._buf) > self.line_limit + 1  # limit + 1 bytes may still end in the newline
        if over and not self._reading_paused:
            self.transport.pause_reading()
            self._reading_paused = True
        elif not over and self._reading_paused:
            self.transport.resume_reading()
            self._reading_paused = False

    def _wake_reader(self) -> None:
        if self._data is not None and not self._data.done():
            self._data.set_result(None)

    async def readline(self) -> bytes | None:
        """The next line with its newline; None at end of input (a partial last line is dropped).

        Raises LineTooLong as soon as the line is known to be over `line_limit`: with its size when
        the newline came right after the limit, without when the newline has not come at all.
        """
        while True:
            end = self._buf.find(b"\n", self._scanned)
            if end >= 0:
                if end > self.line_limit:
                    raise LineTooLong(end, self.line_limit)
                line = bytes(self._buf[:end + 1])
                del self._buf[:end + 1]
                self._scanned = 0
                self._check_input()
                return line
            self._scanned = len(self._buf)
            if len(self._buf) > self.line_limit + 1:
                raise LineTooLong(None, self.line_limit)
            if self._eof:
                return None
            self._data = asyncio.get_running_loop().create_future()
            try:
                await self._data
            finally:
                self._data = None

    # -- output ---------------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self._lost or self.transport is None or self.transport.is_closing()

    def queued(self) -> int:
        """Reply and event bytes written by flowd and not yet taken by the kernel."""
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    def write(self, data: bytes) -> None:
        """Queue `data`; raises Closed, or OverBudget when bytes were already waiting and this would
        take the queue past the budget (one message on its own is never refused for its size)."""
        if self.closing:
            raise Closed()
        assert self.transport is not None
        waiting = self.queued()
        if waiting and waiting + len(data) > self.budget:
            raise OverBudget(f"{waiting + len(data)} bytes of replies and events unread "
                             f"(budget {self.budget})")
        self.transport.write(data)

    async def drain(self) -> None:
        """Until the queue is below the high-water mark; raises Closed if the connection goes."""
        while self._writing_paused and not self.closing:
            waiter = asyncio.get_running_loop().create_future()
            self._drains.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._drains:
                    self._drains.remove(waiter)
        if self._lost:
            raise Closed()

    def _wake_drains(self) -> None:
        for waiter in self._drains:
            if not waiter.done():
                waiter.set_result(None)

    # -- teardown -------------------------------------------------------------------------------

    def extra(self, name: str) -> Any:
        return None if self.transport is None else self.transport.get_extra_info(name)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def close(self, timeout: float = 1.0) -> None:
        """Flush what is queued (at most `timeout` seconds), then close; abort after that."""
        if self.transport is None:
            return
        if not self.transport.is_closing():
            self.transport.close()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._closed)
        except TimeoutError:
            self.transport.abort()
