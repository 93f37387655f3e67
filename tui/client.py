"""An asyncio client for flowd's protocol (docs/protocol.md), made for a console that stays open.

The console must never freeze on the network and must survive flowd restarting underneath it,
so one reader task owns the socket: replies resolve the futures of their requests (matched by
id), events go to listeners in order, and when the connection drops every pending request fails
at once and the client reconnects with backoff, re-subscribes and tells its listeners, who then
refetch what they show. Sequence numbers are checked here so a gap looks like a `resync` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from flow import paths
from flow.protocol import (  # noqa: F401  (the error classes are part of this module's API)
    MAX_LINE,
    MAX_REPLY_LINE,
    START_HINT,
    ClientError,
    ConnectionLost,
    NotRunning,
    ProtocolError,
    RemoteError,
    client_hello,
    client_version,
    decode,
    encode,
    os_error_reason,
)

SYSTEM_SOCKET = paths.system_socket_path()


class Listener(Protocol):
    """What the client tells the console. Called on the client's task: keep them quick, never `call`."""

    def flow_connected(self, hello: dict[str, Any]) -> None: ...
    def flow_disconnected(self, reason: str) -> None: ...
    def flow_event(self, event: dict[str, Any]) -> None: ...


def config_path(explicit: str | None = None) -> Path:
    """--config, $FLOW_CONFIG, the user's flowd.toml, else the system's: the file `flow` reads too."""
    return paths.client_config(explicit).path


def socket_candidates(flag: str | None = None, config: str | None = None) -> list[str]:
    """--socket, $FLOW_SOCKET, socket_path in flowd.toml; else the user's flowd, then the system's."""
    return paths.socket_candidates(flag, paths.configured_socket(config_path(config)))


def resolve_socket(flag: str | None = None, config: str | None = None) -> str:
    """The first of `socket_candidates` whose socket exists, else the first of them."""
    return paths.resolve_socket(flag, paths.configured_socket(config_path(config)))


async def open_connection(path: str, timeout: float = 5.0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter,
                                                                    dict[str, Any]]:
    """Connect and exchange hellos; raises NotRunning, RemoteError (forbidden...) or ClientError."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise NotRunning(path, "not a socket")
    except FileNotFoundError:
        raise NotRunning(path, "no such file") from None
    except OSError as exc:
        raise NotRunning(path, os_error_reason(exc)) from None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path, limit=MAX_REPLY_LINE), timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        raise NotRunning(path, "connection refused: a stale socket?") from None
    except PermissionError:
        raise ClientError(f"permission denied on flowd's socket {path}: ask to be added to group 'flow' "
                          "(operate) or 'flow-view' (read only)") from None
    except TimeoutError:
        raise ClientError(f"flowd at {path} did not accept the connection within {timeout:g}s") from None
    except OSError as exc:
        raise NotRunning(path, os_error_reason(exc)) from None
    try:
        writer.write(encode(client_hello(f"flowtui/{client_version()}")))
        line = await asyncio.wait_for(reader.readline(), timeout)
        reply = _parse(line, path)
    except BaseException:
        writer.close()
        raise
    if "error" in reply:
        writer.close()
        err = reply["error"] if isinstance(reply["error"], dict) else {}
        raise RemoteError(str(err.get("code", "internal")), str(err.get("message", reply["error"])))
    if not isinstance(reply.get("hello"), dict):
        writer.close()
        raise ClientError(f"{path} answered the handshake with {json.dumps(reply)[:80]}: is it flowd's socket?")
    return reader, writer, reply["hello"]


def _parse(line: bytes, path: str) -> dict[str, Any]:
    if not line:
        raise ConnectionLost(f"flowd at {path} closed the connection")
    try:
        msg = decode(line) if len(line) <= MAX_LINE else json.loads(line)
    except (ProtocolError, ValueError) as exc:
        raise ConnectionLost(f"flowd at {path} sent a line that is not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ConnectionLost(f"flowd at {path} sent a message that is not a JSON object")
    return msg


class FlowClient:
    """A connection to flowd that keeps itself open. `await run()` in a task; `call` from anywhere."""

    def __init__(self, path: str, *, topics: list[str] | None = None, timeout: float = 10.0,
                 backoff: tuple[float, float] = (0.1, 2.0),
                 connector: Callable[[str], Awaitable[Any]] | None = None) -> None:
        self.path = path
        self.topics = topics
        self.timeout = timeout
        self.backoff = backoff
        self.hello: dict[str, Any] = {}
        self.connected = False
        self.last_error = ""
        self.listeners: list[Listener] = []
        self._connector = connector or open_connection
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 1
        self._last_seq = 0

    @property
    def role(self) -> str:
        return str(self.hello.get("role", ""))

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One request's result; RemoteError when flowd refuses, ConnectionLost when it is away."""
        writer = self._writer
        if writer is None or not self.connected:
            raise ConnectionLost(f"not connected to flowd at {self.path}")
        rid = self._next_id
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            writer.write(encode({"id": rid, "method": method, "params": params}))
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise ConnectionLost(f"flowd at {self.path} did not answer {method!r} within {self.timeout:g}s") from None
        finally:
            self._pending.pop(rid, None)

    async def run(self) -> None:
        """Connect, read, and reconnect with backoff for as long as the task lives."""
        delay = self.backoff[0]
        while True:
            try:
                reader, writer, hello = await self._connector(self.path)
            except ClientError as exc:
                self.last_error = str(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            delay = self.backoff[0]
            self.last_error = await self._serve(reader, writer, hello)
            self._disconnected(self.last_error)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     hello: dict[str, Any]) -> str:
        self._writer, self.hello, self._last_seq = writer, hello, 0
        self.connected = True
        read_task = asyncio.create_task(self._read(reader))
        try:
            try:
                await self.call("subscribe", **({"topics": self.topics} if self.topics else {}))
            except ClientError:
                pass
            else:
                for listener in list(self.listeners):
                    listener.flow_connected(hello)
            return await read_task
        finally:
            read_task.cancel()
            with contextlib.suppress(BaseException):
                await read_task
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> str:
        """Dispatch messages until the connection ends; returns why it ended."""
        try:
            while True:
                msg = _parse(await reader.readline(), self.path)
                if "event" in msg:
                    self._dispatch_event(msg)
                    continue
                future = self._pending.get(msg["id"]) if isinstance(msg.get("id"), int) else None
                if future is None or future.done():
                    continue
                if "error" in msg:
                    err = msg["error"] if isinstance(msg["error"], dict) else {}
                    future.set_exception(RemoteError(str(err.get("code", "internal")),
                                                     str(err.get("message", msg["error"]))))
                elif isinstance(msg.get("result"), dict):
                    future.set_result(msg["result"])
                else:
                    future.set_exception(ClientError(f"flowd sent a reply without a result: {json.dumps(msg)[:80]}"))
        except ClientError as exc:
            return str(exc)
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            return f"flowd at {self.path} closed the connection ({exc})"

    def _dispatch_event(self, msg: dict[str, Any]) -> None:
        seq = msg.get("seq")
        if isinstance(seq, int):
            if seq != self._last_seq + 1 and msg.get("event") != "resync":
                self._emit({"event": "resync", "seq": seq, "data": {"reason": f"missed events "
                                                                              f"{self._last_seq + 1}..{seq - 1}"}})
            self._last_seq = seq
        self._emit(msg)

    def _emit(self, msg: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener.flow_event(msg)

    def _disconnected(self, reason: str) -> None:
        self.connected = False
        self._writer = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(reason or f"lost flowd at {self.path}"))
        self._pending.clear()
        for listener in list(self.listeners):
            listener.flow_disconnected(reason)
