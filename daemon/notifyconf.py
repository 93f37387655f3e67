"""The `[notifiers.NAME]` tables of flowd.toml: where alerts go, checked once when flowd starts.

Configuration belongs to the daemon, not to DAG files: a DAG only names a notifier
(`notify_on_failure=["ops-webhook"]`) or gives addresses (`email=`), so SMTP passwords and webhook
tokens live in one file readable by flowd alone. Every message here names the notifier, the key
and the file; no message, log line or `--print-config` output ever shows a secret.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .config import ConfigError

KINDS = ("smtp", "webhook")
SECURITY = ("starttls", "ssl", "none")
FORMATS = ("json", "slack")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_COMMON = {"type", "retries", "retry_delay", "timeout"}
_KEYS = {
    "smtp": _COMMON | {"host", "port", "security", "user", "password_file", "from", "default", "to", "ca_file"},
    "webhook": _COMMON | {"url", "headers", "format"},
}


@dataclass(frozen=True)
class NotifierConf:
    name: str
    kind: str
    retries: int = 3
    """Attempts after the first one; each waits retry_delay, doubled every time."""
    retry_delay: float = 2.0
    timeout: float = 10.0
    host: str = ""
    port: int = 0
    security: str = "starttls"
    user: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    """PEM certificates to trust for the server's TLS certificate (a private CA); else the system's."""
    sender: str = ""
    default: bool = False
    to: tuple[str, ...] = ()
    """Who gets the mail when a DAG names this notifier (notify_on_failure=[...]) rather than email=."""
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    format: str = "json"

    def smtp_json(self) -> dict[str, Any]:
        """What a worker needs to send mail (EmailOperator): the password stays in its file."""
        return {"name": self.name, "host": self.host, "port": self.port, "security": self.security,
                "user": self.user, "password_file": self.password_file, "from": self.sender, "ca_file": self.ca_file,
                "timeout": self.timeout}

    def describe(self) -> str:
        """One line for logs and status, without secrets."""
        if self.kind == "smtp":
            return f"smtp {self.host}:{self.port} ({self.security})"
        return f"webhook {mask_webhook_url(self.url)} ({self.format})"


def mask_webhook_url(url: str) -> str:
    """Scheme and host only: webhook URLs (Slack's, for one) carry their token in the path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    return f"{parts.scheme}://{host}{port}/***"


def _fail(name: str, path: str, message: str) -> ConfigError:
    return ConfigError(f"notifier {name!r} in {path}: {message}")


def _int(name: str, path: str, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(name, path, f"{key} must be a whole number from {lo} to {hi}, not {json.dumps(value)}")
    return value


def _number(name: str, path: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _fail(name, path, f"{key} must be a number of seconds (0 or more), not {json.dumps(value)}")
    return float(value)


def _str(name: str, path: str, key: str, value: Any, *, secret: bool = False) -> str:
    if not isinstance(value, str) or not value.strip():
        shown = "a non-string value" if secret else json.dumps(value)
        raise _fail(name, path, f"{key} must be a non-empty string, not {shown}")
    return value.strip()


def _choice(name: str, path: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(name, path, f"{key} must be one of {', '.join(choices)}, not {json.dumps(value)}")
    return str(value)


def parse_notifier(name: str, table: Any, path: str) -> NotifierConf:
    if not _NAME.match(name):
        raise ConfigError(f"notifier name {name!r} in {path}: use 1-64 letters, digits, '_', '-' or '.'")
    if not isinstance(table, dict):
        raise _fail(name, path, "must be a table ([notifiers.NAME] with type = \"smtp\" or \"webhook\")")
    kind = table.get("type")
    if kind not in KINDS:
        raise _fail(name, path, f"type must be one of {', '.join(KINDS)}, not {json.dumps(kind)}")
    unknown = sorted(set(table) - _KEYS[kind])
    if unknown:
        raise _fail(name, path, f"unknown key(s) {', '.join(unknown)} for type {kind!r}; "
                                f"known: {', '.join(sorted(_KEYS[kind]))}")
    common: dict[str, Any] = {
        "retries": _int(name, path, "retries", table.get("retries", 3), 0, 20),
        "retry_delay": _number(name, path, "retry_delay", table.get("retry_delay", 2.0)),
        "timeout": _number(name, path, "timeout", table.get("timeout", 10.0)) or 10.0,
    }
    if kind == "smtp":
        security = _choice(name, path, "security", table.get("security", "starttls"), SECURITY)
        port_default = {"starttls": 587, "ssl": 465, "none": 25}[security]
        user = table.get("user")
        password_file = table.get("password_file")
        if (user is None) != (password_file is None):
            raise _fail(name, path, "user and password_file go together: set both or neither")
        to = table.get("to", [])
        to = [to] if isinstance(to, str) else to
        if not isinstance(to, list) or not all(isinstance(a, str) and "@" in a for a in to):
            raise _fail(name, path, f"to must be an e-mail address or a list of them, not {json.dumps(to)}")
        ca_file = table.get("ca_file")
        if ca_file is not None:
            ca_file = _str(name, path, "ca_file", ca_file)
            if security == "none":
                raise _fail(name, path, "ca_file needs security = \"starttls\" or \"ssl\"")
        default = table.get("default", False)
        if not isinstance(default, bool):
            raise _fail(name, path, f"default must be true or false, not {json.dumps(default)}")
        return NotifierConf(
            name, kind, host=_str(name, path, "host", table.get("host")),
            port=_int(name, path, "port", table.get("port", port_default), 1, 65535), security=security,
            user=None if user is None else _str(name, path, "user", user),
            password_file=None if password_file is None else _str(name, path, "password_file", password_file),
            ca_file=ca_file,
            sender=_str(name, path, "from", table.get("from")), default=default, to=tuple(to), **common)
    if "url" not in table:
        raise _fail(name, path, "url is required for a webhook")
    url = _str(name, path, "url", table.get("url"), secret=True)
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise _fail(name, path, f"url must be an http:// or https:// URL, not {mask_webhook_url(url)}")
    headers = table.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in headers.items()):
        raise _fail(name, path, "headers must be a table of strings, e.g. headers = { Authorization = \"...\" }")
    return NotifierConf(name, kind, url=url, headers=dict(headers),
                        format=_choice(name, path, "format", table.get("format", "json"), FORMATS), **common)


def parse_notifiers(data: Any, path: str) -> dict[str, NotifierConf]:
    """All `[notifiers.*]` tables; at most one SMTP notifier may say `default = true`."""
    if not isinstance(data, dict):
        raise ConfigError(f"notifiers in {path} must be tables such as [notifiers.mail]")
    found = {name: parse_notifier(name, table, path) for name, table in data.items()}
    defaults = [n.name for n in found.values() if n.kind == "smtp" and n.default]
    if len(defaults) > 1:
        raise ConfigError(f"notifiers {', '.join(defaults)} in {path} all say default = true; keep one")
    return found


def default_smtp(notifiers: dict[str, NotifierConf]) -> NotifierConf | None:
    """The SMTP notifier `email=` uses: the one marked default, else the only (or first) one."""
    smtp = [n for n in notifiers.values() if n.kind == "smtp"]
    return next((n for n in smtp if n.default), smtp[0] if smtp else None)


def render_notifiers(notifiers: dict[str, NotifierConf], source: str) -> list[str]:
    """TOML for --print-config with every secret masked (password files are paths, not secrets)."""
    lines = []
    for n in notifiers.values():
        lines.append(f"[notifiers.{json.dumps(n.name) if '.' in n.name else n.name}]  # {source}")
        lines.append(f'type = "{n.kind}"')
        if n.kind == "smtp":
            lines += [f"host = {json.dumps(n.host)}", f"port = {n.port}", f'security = "{n.security}"',
                      f"from = {json.dumps(n.sender)}"]
            if n.user is not None:
                lines += [f"user = {json.dumps(n.user)}", f"password_file = {json.dumps(n.password_file)}"]
            if n.to:
                lines.append(f"to = {json.dumps(list(n.to))}")
            if n.default:
                lines.append("default = true")
        else:
            lines += [f"url = {json.dumps(mask_webhook_url(n.url))}", f'format = "{n.format}"']
            if n.headers:
                lines.append("headers = { " + ", ".join(f'{json.dumps(k)} = "***"' for k in n.headers) + " }")
        lines += [f"retries = {n.retries}", f"retry_delay = {n.retry_delay:g}", f"timeout = {n.timeout:g}", ""]
    return lines
