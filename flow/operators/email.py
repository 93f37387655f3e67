"""EmailOperator: send an e-mail as a task, through an SMTP notifier configured in flowd.toml.

The operator only describes the message. The SMTP server, account and password belong to
flowd's configuration, so a DAG file never holds them: flowd hands the worker the notifier's
settings (the password stays in its password_file) and the worker installs a transport here
before the task runs. Run outside flowd (a plain `python dag.py`), execute() says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flow.dag import DagDefinitionError
from flow.operators.base import BaseOperator, _names

Transport = Callable[[dict[str, Any]], None]
"""Takes {"to", "cc", "bcc", "subject", "body", "html"}; raises on failure with a one-line reason."""

_transport: Transport | None = None
_unavailable = "EmailOperator sends mail only when flowd runs it (no SMTP transport in this process)"


def set_transport(transport: Transport | None, unavailable: str | None = None) -> None:
    """Installed by the worker process; `unavailable` explains why there is none (no SMTP notifier)."""
    global _transport, _unavailable
    _transport = transport
    if unavailable:
        _unavailable = unavailable


class EmailOperator(BaseOperator):
    """Airflow's EmailOperator: `to`, `subject`, `html_content` (or plain `body`), optional cc/bcc.

    `notifier` names the SMTP notifier of flowd.toml to send through; by default the one marked
    `default = true` (or the only one).
    """

    template_fields = ("to", "subject", "html_content", "body", "cc", "bcc")
    template_ext = (".html",)

    def __init__(self, *, to: str | Iterable[str], subject: str, html_content: str | None = None,
                 body: str | None = None, cc: str | Iterable[str] | None = None,
                 bcc: str | Iterable[str] | None = None, notifier: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.to = _names(to, "to", self._where, address=True)
        if not self.to:
            raise DagDefinitionError(f"{self._where}: to needs at least one e-mail address")
        if not isinstance(subject, str):
            raise TypeError(f"{self._where}: subject must be a str, not {type(subject).__name__}")
        if html_content is None and body is None:
            raise DagDefinitionError(f"{self._where}: give html_content or body (or both)")
        for name, value in (("html_content", html_content), ("body", body), ("notifier", notifier)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{self._where}: {name} must be a str, not {type(value).__name__}")
        self.subject = subject
        self.html_content = html_content
        self.body = body
        self.cc = _names(cc, "cc", self._where, address=True)
        self.bcc = _names(bcc, "bcc", self._where, address=True)
        self.notifier = notifier

    def serialize_extra(self) -> dict[str, Any]:
        return {"email_notifier": self.notifier}

    def execute(self, context: dict[str, Any]) -> None:
        if _transport is None:
            raise RuntimeError(_unavailable)
        _transport({"to": self.to, "cc": self.cc, "bcc": self.bcc, "subject": self.subject,
                    "body": self.body, "html": self.html_content})
        print(f"sent e-mail {self.subject!r} to {', '.join(self.to + self.cc + self.bcc)}")
