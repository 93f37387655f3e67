"""One client connection: the handshake, requests answered in order, and its queue of events.

Replies and events share the socket; each is written whole with one write call, so they
interleave only at message boundaries. Writes wait for the client with a timeout, so a client
that stops reading is cut off instead of holding memory or a task forever. The next request is
read only once the last reply has drained (backpressure), and unread output past the byte budget
disconnects the client: what a connection costs flowd is bounded whatever the client does.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from flow.protocol import (
    MAX_LINE,
    PROTOCOL_VERSION,
    ProtocolError,
    check_role,
    decode,
    dumps,
    encode,
    error_reply,
    event_line,
    parse_hello,
    parse_request,
    result_reply,
    validate,
)

from .handlers import HANDLERS, Call
from .ops import EngineError
from .peer import Peer, forbidden_message
from .rpc.admission import Refused, Ticket
from .rpc.channel import Channel, Closed, LineTooLong, OverBudget
from .rpc.logsafe import loggable

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("flow.server")

RESYNC = dumps({"reason": "client fell behind"})
EVENT_BATCH = 256 * 1024
"""Event bytes written at once; the rest waits in the queue, where the budget counts it."""


class ConnectionClosed(Exception):
    """The peer went away or stopped reading; the connection is being torn down."""


class Connection:
    """Lives as long as the client stays connected; `serve` is its whole life."""

    def __init__(self, server: Server, channel: Channel, ticket: Ticket | None = None) -> None:
        self.server = server
        self.channel = channel
        self.ticket = ticket
        """Its place in the server's connection counts; None when admission is not in use."""
        self.peer: Peer | None = None
        self.task: asyncio.Task[Any] | None = None
        self.topics: frozenset[str] | None = None
        """None until `subscribe`; empty means every topic."""
        self.seq = 0
        """The seq of the last event written to this client."""
        self.events: deque[tuple[str, bytes, bool]] = deque()
        self._event_bytes = 0
        """Bytes of the queued events: with the channel's queue, what counts against the budget."""
        self.follows: set[asyncio.Task[None]] = set()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pump: asyncio.Task[None] | None = None
        self._closing = False

    def describe(self) -> str:
        if self.peer is None:
            return "a client"
        return f"{loggable(self.peer.user)} (uid {self.peer.uid}, pid {self.peer.pid})"

    # -- writing ----------------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Write and wait until the client has taken it, at most write_timeout seconds."""
        self.send(data)
        del data  # the transport holds its own copy now; a stalled client must not cost two
        await self.drain()

    def send(self, data: bytes) -> None:
        """Queue `data` without waiting; raises ConnectionClosed (over budget: after one warning)."""
        if self._closing:
            raise ConnectionClosed()
        try:
            self.channel.write(data)
        except Closed:
            self.abort()
            raise ConnectionClosed() from None
        except OverBudget as exc:
            self.server.throttled.warning(f"budget {self.peer.uid if self.peer else '?'}",
                                          f"disconnecting {self.describe()}: {exc}")
            self.abort()
            raise ConnectionClosed() from None

    async def drain(self) -> None:
        """Until the client has taken what is queued, at most write_timeout seconds."""
        try:
            async with asyncio.timeout(self.server.write_timeout):
                await self.channel.drain()
        except TimeoutError:
            self.server.throttled.warning(f"stalled {self.peer.uid if self.peer else '?'}",
                                          f"disconnecting {self.describe()}: it has not read for "
                                          f"{self.server.write_timeout:.0f} s")
            self.abort()
            raise ConnectionClosed() from None
        except (Closed, ConnectionError, OSError):
            self.abort()
            raise ConnectionClosed() from None

    def abort(self) -> None:
        self._closing = True
        self.channel.abort()

    # -- events -----------------------------------------------------------------------------

    def subscribe(self, topics: list[str] | None) -> None:
        self.topics = frozenset(topics or ())

    def wants(self, kind: str) -> bool:
        return self.topics is not None and not self._closing and (not self.topics or kind in self.topics)

    def push(self, kind: str, data: bytes, *, keep: bool = False) -> None:
        """Queue an event (data encoded with `dumps`); never blocks.

        A full queue loses its events to one `resync` (followed by this newest event), except
        those marked `keep` (log data, of which each follow has at most one queued).
        """
        if self._closing:
            return
        if len(self.events) >= self.server.queue_limit:
            kept = [e for e in self.events if e[2]]
            self.events.clear()
            self.events.extend(kept)
            self.events.append(("resync", RESYNC, False))
            self._event_bytes = sum(len(e[1]) for e in self.events)
        self.events.append((kind, data, keep))
        self._event_bytes += len(data)
        unread = self._event_bytes + self.channel.queued()
        if unread > self.server.output_budget:
            self.server.throttled.warning(f"budget {self.peer.uid if self.peer else '?'}",
                                          f"disconnecting {self.describe()}: {unread} bytes of events and "
                                          f"replies unread (budget {self.server.output_budget})")
            self.events.clear()
            self._event_bytes = 0
            self.abort()
            return
        self._idle.clear()
        self._ready.set()
        if self._pump is None and not self._closing:
            self._pump = asyncio.create_task(self._pump_events(), name="flowd-events")

    async def wait_idle(self) -> None:
        """Until every queued event has been written and taken by the client."""
        await self._idle.wait()

    async def _pump_events(self) -> None:
        """Number and write queued events; seq counts this connection's events, so a client sees a
        gap only where something meant for it was lost."""
        try:
            while not self._closing:
                await self._ready.wait()
                self._ready.clear()
                if not self.events or self._closing:
                    continue
                lines, size = [], 0
                while self.events and (not lines or size < EVENT_BATCH):
                    kind, data, _ = self.events.popleft()
                    self._event_bytes -= len(data)
                    self.seq += 1
                    lines.append(event_line(kind, self.seq, data))
                    size += len(lines[-1])
                del data
                self.send(b"".join(lines))
                del lines  # the transport has its copy; waiting must not hold a second one
                await self.drain()
                if self.events:
                    self._ready.set()
                else:
                    self._idle.set()
        except ConnectionClosed:
            pass

    def start_follow(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._run_follow(coro), name="flowd-follow")
        self.follows.add(task)
        task.add_done_callback(self.follows.discard)

    async def _run_follow(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("following a log for %s failed", self.describe())

    # -- reading ----------------------------------------------------------------------------

    async def _read_line(self) -> bytes | None:
        """The next line, None at end of stream; a line over MAX_LINE raises line_too_long."""
        try:
            return await self.channel.readline()
        except LineTooLong as exc:
            raise ProtocolError("line_too_long", str(exc)) from None

    async def _refuse(self, code: str, message: str, request_id: Any = None, *, with_id: bool = False) -> None:
        try:
            await self.write(encode(error_reply(code, message, request_id, with_id=with_id)))
        except ConnectionClosed:
            pass

    async def serve(self) -> None:
        settings = self.server.settings
        try:
            self.peer = self.server.identify(self.channel.extra("socket"), settings.operator_group,
                                             settings.viewer_group)
        except OSError as exc:
            log.warning("cannot read the credentials of a client: %s", exc)
            return
        if not await self._handshake():
            return
        while True:
            try:
                line = await self._read_line()
            except ProtocolError as exc:
                await self._refuse(exc.code, exc.message, with_id=True)
                return
            if line is None:
                return
            if not line.strip():
                continue
            call = Call(self.server, self, self.peer)
            reply = await self._dispatch(line, call)
            try:
                self.send(reply)
                del reply
                await self.drain()  # the next request is read once this reply (and any events) drained
            except ConnectionClosed:
                return
            for start in call.after_reply:
                start()

    async def _handshake(self) -> bool:
        settings = self.server.settings
        self.channel.set_line_limit(self.server.hello_limit)
        try:
            async with asyncio.timeout(self.server.hello_timeout):
                line = await self._read_line()
            if line is None:
                return False
            hello = parse_hello(decode(line))
        except TimeoutError:
            await self._refuse("invalid_request", f"no hello within {self.server.hello_timeout:g} s")
            return False
        except ProtocolError as exc:
            await self._refuse(exc.code, exc.message, exc.request_id, with_id=exc.request_id is not None)
            return False
        peer = self.peer
        assert peer is not None
        if peer.role is None:
            self.server.throttled.warning(f"forbidden {peer.uid}", f"refused {self.describe()} "
                                          f"({loggable(hello.get('client') or 'unnamed client')})")
            await self._refuse("forbidden", forbidden_message(peer.user, peer.uid, settings.operator_group,
                                                              settings.viewer_group))
            return False
        if self.ticket is not None:
            try:
                self.ticket.promote()
            except Refused as exc:
                self.server.throttled.warning(f"refused {exc.kind}", f"refused {self.describe()}: {exc}")
                await self._refuse("too_many_connections", str(exc))
                return False
        self.channel.set_line_limit(MAX_LINE)
        reply = {"hello": {"protocol": PROTOCOL_VERSION, "server": f"flowd/{self.server.version}",
                           "pid": os.getpid(), "uid": peer.uid, "user": peer.user, "role": peer.role,
                           "max_line": MAX_LINE}}
        try:
            await self.write(encode(reply))
        except ConnectionClosed:
            return False
        return True

    async def _dispatch(self, line: bytes, call: Call) -> bytes:
        """The encoded reply to one request line; never raises."""
        request_id: Any = None
        method = "?"
        try:
            req = parse_request(decode(line))
            request_id, method = req.id, req.method
            params = validate(req.method, req.params)
            self._check_role(req.method, params)
            result = HANDLERS[req.method](call, params)
            if asyncio.iscoroutine(result):
                result = await result
            return encode(result_reply(request_id, result))
        except ProtocolError as exc:
            call.after_reply.clear()
            rid = exc.request_id if request_id is None else request_id
            return encode(error_reply(exc.code, exc.message, rid))
        except EngineError as exc:
            call.after_reply.clear()
            code = "invalid_params" if exc.code == "bad_request" else exc.code
            if code not in ("invalid_params", "not_found", "conflict"):
                code = "internal"
            return encode(error_reply(code, str(exc), request_id))
        except Exception as exc:
            call.after_reply.clear()
            log.exception("%s from %s failed", loggable(method), self.describe())
            return encode(error_reply("internal", f"{method} failed: {type(exc).__name__}: {exc}", request_id))

    def _check_role(self, method: str, params: dict[str, Any]) -> None:
        assert self.peer is not None and self.peer.role is not None
        try:
            check_role(method, self.peer.role, params)
        except ProtocolError as exc:
            group = self.server.settings.operator_group
            raise ProtocolError("forbidden", f"{exc.message} (user {self.peer.user}; members of group "
                                f"{group!r} may operate)") from None

    async def close(self) -> None:
        self._closing = True
        self._ready.set()
        tasks = [t for t in (self._pump, *self.follows) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        if self.ticket is not None:
            self.ticket.release()
        await self.channel.close()

