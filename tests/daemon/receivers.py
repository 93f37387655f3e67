"""Real receivers on 127.0.0.1 for alert tests: an SMTP server (aiosmtpd) and an HTTP server.

Each keeps what it received and lets a test wait for it with a generous timeout, so the tests
never depend on how fast a loaded machine delivers.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    """A port nothing listens on (bound, then closed): also how a test gets a receiver that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self) -> None:
        self.items: list[Any] = []
        self.cond = threading.Condition()

    def add(self, item: Any) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait(self, count: int = 1, timeout: float = 90.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.items) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} message(s) within {timeout:g}s, got {len(self.items)}")
                self.cond.wait(min(left, 0.2))
            return list(self.items)


@dataclass
class Mail:
    sender: str
    rcpt: list[str]
    message: email.message.EmailMessage
    login: str | None

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        return part.get_content().replace("\r\n", "\n") if part is not None else ""


class SMTPReceiver:
    """aiosmtpd on a free port; with `password` set, AUTH LOGIN/PLAIN must use it (no TLS needed)."""

    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        self.inbox = Inbox()
        self.user, self.password = user, password
        self.port = free_port()
        self._login: dict[int, str] = {}
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
                login = session.auth_data if isinstance(session.auth_data, str) else None
                receiver.inbox.add(Mail(envelope.mail_from, list(envelope.rcpt_tos), msg, login))
                return "250 OK"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = (isinstance(data, LoginPassword) and data.login.decode() == self.user
                  and data.password.decode() == self.password)
            return AuthResult(success=ok, handled=False, auth_data=data.login.decode() if ok else None)

        kwargs: dict[str, Any] = {}
        if password is not None:
            kwargs = {"authenticator": authenticator, "auth_require_tls": False, "auth_required": True}
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)

    def start(self) -> SMTPReceiver:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HTTPReceiver:
    """http.server in a thread; answers every POST with `status` (set 500 to play a broken receiver)."""

    status: int = 200
    inbox: Inbox = field(default_factory=Inbox)

    def start(self) -> HTTPReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.inbox.add(Request(self.path, dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
