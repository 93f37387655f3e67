"""A blocking client for flowd's socket protocol (docs/protocol.md), used by the `flow` CLI and scripts.

One connection, one request in flight: `call` sends a request and reads until its reply comes
back. Events pushed after `subscribe` can arrive before that reply; they are kept in order and
handed out by `events`, so a caller can follow a run and still make requests on the same
connection without losing anything.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

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


class Client:
    """A handshaken connection to flowd. Use `Client.connect`, then `call`, `events`, `close`."""

    def __init__(self, sock: socket.socket, path: str, timeout: float):
        self._sock = sock
        self.path = path
        self.timeout = timeout
        self.hello: dict[str, Any] = {}
        self.last_seq: int | None = None
        self._buf = bytearray()
        self._pending: deque[dict[str, Any]] = deque()
        self._next_id = 1
        self._closed = False

    @classmethod
    def connect(cls, path: str, *, timeout: float = 5.0, client_name: str = "flow-cli") -> Client:
        """Connect and say hello; raises NotRunning, RemoteError (forbidden, unsupported_version), ClientError."""
        sock = _open(path, timeout)
        client = cls(sock, path, timeout)
        try:
            client._send(client_hello(f"{client_name}/{client_version()}"))
            reply = client._read(time.monotonic() + timeout, what="the handshake")
        except BaseException:
            client.close()
            raise
        if "error" in reply:
            client.close()
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            raise RemoteError(str(err.get("code", "internal")), str(err.get("message", reply["error"])))
        if not isinstance(reply.get("hello"), dict):
            client.close()
            raise ClientError(f"{path} answered the handshake with {_preview(reply)}: is it flowd's socket?")
        client.hello = reply["hello"]
        return client

    @classmethod
    def connect_first(cls, paths: Sequence[str], **kwargs: Any) -> Client:
        """The first of `paths` (flow.paths.socket_candidates) where flowd answers; NotRunning
        naming every socket tried when none does. A socket that refuses us (permissions) is an
        answer: that error is raised as it is."""
        misses: list[NotRunning] = []
        for path in paths:
            try:
                return cls.connect(path, **kwargs)
            except NotRunning as exc:
                misses.append(exc)
        raise NotRunning.among(misses)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one request and return its result; events read meanwhile are kept for `events`."""
        rid = self._next_id
        self._next_id += 1
        self._send({"id": rid, "method": method, "params": params})
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._read(deadline, what=f"the reply to {method!r}")
            if "event" in msg:
                self._pending.append(msg)
                continue
            if msg.get("id") not in (rid, None):
                continue  # a reply to an earlier request whose caller gave up waiting
            if "error" in msg:
                err = msg["error"] if isinstance(msg["error"], dict) else {}
                raise RemoteError(str(err.get("code", "internal")), str(err.get("message", msg["error"])))
            result = msg.get("result")
            if not isinstance(result, dict):
                raise ClientError(f"flowd sent a reply to {method!r} without a result: {_preview(msg)}")
            return result

    def events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Pushed events in order; ends when none arrives for `timeout` seconds (None: wait for ever).

        Calls made while iterating are fine: the events that arrive with their replies come next.
        """
        while True:
            if self._pending:
                yield self._take()
                continue
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                msg = self._read(deadline, what="an event")
            except TimeoutError:
                return
            if "event" in msg:
                self._pending.append(msg)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._sock.close()
            except OSError:
                pass

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self) -> dict[str, Any]:
        msg = self._pending.popleft()
        if isinstance(msg.get("seq"), int):
            self.last_seq = msg["seq"]
        return msg

    def _send(self, message: dict[str, Any]) -> None:
        if self._closed:
            raise ConnectionLost(f"the connection to flowd at {self.path} is closed")
        try:
            self._sock.settimeout(self.timeout)
            self._sock.sendall(encode(message))
        except TimeoutError:
            raise ConnectionLost(f"flowd at {self.path} did not accept a request within {self.timeout:g}s") from None
        except OSError as exc:
            self.close()
            raise ConnectionLost(f"flowd at {self.path} closed the connection ({os_error_reason(exc)})") from None

    def _read(self, deadline: float | None, *, what: str) -> dict[str, Any]:
        """The next message; TimeoutError (for `events`) or ConnectionLost when none comes."""
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[:end + 1]
                if not line.strip():
                    continue
                try:
                    msg = decode(line) if len(line) <= MAX_LINE else json.loads(line)
                except (ProtocolError, ValueError) as exc:
                    raise ConnectionLost(f"flowd at {self.path} sent a line that is not JSON: {exc}") from None
                if not isinstance(msg, dict):
                    raise ConnectionLost(f"flowd at {self.path} sent {_preview(msg)}, not a JSON object")
                return msg
            if len(self._buf) > MAX_REPLY_LINE:
                self.close()
                raise ConnectionLost(f"flowd at {self.path} sent a line longer than {MAX_REPLY_LINE} bytes")
            if self._closed:
                raise ConnectionLost(f"the connection to flowd at {self.path} is closed")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self._timeout(what)
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(1 << 16)
            except TimeoutError:
                self._timeout(what)
            except OSError as exc:
                self.close()
                raise ConnectionLost(f"flowd at {self.path} closed the connection ({os_error_reason(exc)})") from None
            if not chunk:
                self.close()
                raise ConnectionLost(f"flowd at {self.path} closed the connection while waiting for {what}")
            self._buf += chunk

    def _timeout(self, what: str) -> None:
        if what == "an event":
            raise TimeoutError
        self.close()
        raise ConnectionLost(f"flowd at {self.path} did not send {what} within {self.timeout:g}s")


def _open(path: str, timeout: float) -> socket.socket:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotRunning(path, "no such file") from None
    except OSError as exc:
        raise NotRunning(path, os_error_reason(exc)) from None
    if not stat.S_ISSOCK(st.st_mode):
        raise NotRunning(path, "not a socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        reason = "no such file" if isinstance(exc, FileNotFoundError) else "connection refused: a stale socket?"
        raise NotRunning(path, reason) from None
    except PermissionError:
        sock.close()
        raise ClientError(f"permission denied on flowd's socket {path}: ask to be added to group 'flow' "
                          "(operate) or 'flow-view' (read only)") from None
    except TimeoutError:
        sock.close()
        raise ClientError(f"flowd at {path} did not accept the connection within {timeout:g}s") from None
    except OSError as exc:
        sock.close()
        raise NotRunning(path, os_error_reason(exc)) from None
    return sock


def _preview(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
