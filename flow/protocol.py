"""flowd's wire protocol (docs/protocol.md), without any I/O.

Framing, message shapes, error codes and the method table live here so that flowd, the `flow`
CLI, the console and the tests all agree on one definition, and so that every rule about what
a request may contain can be tested without opening a socket.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

PROTOCOL_VERSION = 1
MAX_LINE = 1_048_576
"""Longest accepted line in bytes, not counting the newline."""

MAX_LOG_LENGTH = 1_048_576
EVENT_TOPICS = ("ti", "run", "dag", "dags")
"""Events a client can choose with `subscribe`; `resync` is always delivered to subscribers."""

ERROR_CODES = frozenset({
    "parse_error", "invalid_request", "unknown_method", "invalid_params", "not_found", "conflict",
    "forbidden", "line_too_long", "unsupported_version", "internal", "too_many_connections",
})

ROLES = ("viewer", "operator")
"""Least to most privileged: a role may call every method whose role is at or below its own."""


class ProtocolError(Exception):
    """A request that gets an error reply; `code` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str, *, request_id: Any = None) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown protocol error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


# -- framing ----------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, datetimes as ISO 8601 UTC; no newline."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default)
    return text.encode("utf-8")


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as one line."""
    return dumps(message) + b"\n"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(line: bytes) -> Any:
    """Parse one line (with or without its newline). Raises line_too_long or parse_error."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if len(line) > MAX_LINE:
        raise ProtocolError("line_too_long", f"line of {len(line)} bytes is over the limit of {MAX_LINE} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("parse_error", f"line is not UTF-8: invalid byte at position {exc.start}") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ProtocolError("parse_error", f"line is not JSON: {exc.msg} at column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("parse_error", f"line is not JSON: {exc}") from None


# -- messages ---------------------------------------------------------------------------------


def client_hello(client: str) -> dict[str, Any]:
    return {"hello": {"protocol": PROTOCOL_VERSION, "client": client}}


def parse_hello(message: Any) -> dict[str, Any]:
    """The body of a client hello; the first line of every connection must be one."""
    if not isinstance(message, dict) or "hello" not in message:
        raise ProtocolError("invalid_request", "the first message must be a hello: "
                            f'{{"hello": {{"protocol": {PROTOCOL_VERSION}, "client": "name/version"}}}}',
                            request_id=_request_id_or_none(message))
    body = message["hello"]
    if not isinstance(body, dict):
        raise ProtocolError("invalid_request", "hello: expected an object with a protocol number")
    version = body.get("protocol")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProtocolError("invalid_request", f"hello.protocol: expected an integer, got {_show(version)}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_version",
                            f"flowd speaks protocol {PROTOCOL_VERSION}; this client speaks {version}")
    client = body.get("client", "")
    if not isinstance(client, str):
        raise ProtocolError("invalid_request", f"hello.client: expected a string, got {_show(client)}")
    return {"protocol": version, "client": client}


@dataclass(frozen=True)
class Request:
    id: Any
    method: str
    params: dict[str, Any]


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool))


def _request_id_or_none(message: Any) -> Any:
    if isinstance(message, dict) and _valid_id(message.get("id")):
        return message["id"]
    return None


def parse_request(message: Any) -> Request:
    """Check the envelope of a request (not its params: see :func:`validate`)."""
    if not isinstance(message, dict):
        raise ProtocolError("invalid_request", f"expected a request object, got {_kind(message)}")
    rid = _request_id_or_none(message)
    if "id" not in message or not _valid_id(message["id"]):
        raise ProtocolError("invalid_request", f"id: expected a number or a string, got {_show(message.get('id'))}")
    if "hello" in message:
        raise ProtocolError("invalid_request", "hello was already exchanged on this connection", request_id=rid)
    method = message.get("method")
    if not isinstance(method, str):
        raise ProtocolError("invalid_request", f"method: expected a string, got {_show(method)}", request_id=rid)
    params = message.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError("invalid_request", f"params: expected an object, got {_kind(params)}", request_id=rid)
    return Request(rid, method, params)


def request(request_id: Any, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"id": request_id, "method": method, "params": dict(params or {})}


def result_reply(request_id: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "result": result}


def error_reply(code: str, message: str, request_id: Any = None, *, with_id: bool = True) -> dict[str, Any]:
    """An error reply; handshake errors are sent without an id (with_id=False)."""
    body = {"error": {"code": code, "message": message}}
    return {"id": request_id, **body} if with_id else body


def event(kind: str, seq: int, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"event": kind, "seq": seq, "data": data}


def event_line(kind: str, seq: int, data: bytes) -> bytes:
    """An event line around data already encoded with :func:`dumps`, so an event sent to many
    clients, each with its own seq, is serialised once."""
    return b'{"event":' + dumps(kind) + b',"seq":' + str(seq).encode() + b',"data":' + data + b"}\n"


# -- parameters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One request parameter. `kind`: str, bool, int, object, str_list, datetime, choice, topics."""

    name: str
    kind: str
    required: bool = False
    default: Any = None
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Method:
    name: str
    role: str
    params: tuple[Param, ...] = ()
    dry_run_for_viewers: bool = False
    """Viewers may call it when dry_run is true (it then changes nothing)."""
    param_names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "param_names", frozenset(p.name for p in self.params))


def _p(name: str, kind: str, **kw: Any) -> Param:
    return Param(name, kind, **kw)


_DAG = _p("dag_id", "str", required=True)
_RUN = _p("run_id", "str", required=True)
_DRY = _p("dry_run", "bool", default=False)
_DOWN = _p("downstream", "bool", default=False)
_UP = _p("upstream", "bool", default=False)
_LOG_TARGET = (_DAG, _RUN, _p("task_id", "str", required=True), _p("try_number", "int", min=1))

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("status", "viewer"),
    Method("dags.list", "viewer"),
    Method("dags.get", "viewer", (_DAG,)),
    Method("dags.pause", "operator", (_DAG, _p("paused", "bool", required=True))),
    Method("dags.trigger", "operator", (_DAG, _p("conf", "object"), _p("logical_date", "datetime"))),
    Method("runs.list", "viewer", (_p("dag_id", "str"), _p("limit", "int", default=25, min=1, max=1000),
                                   _p("before", "datetime"),
                                   _p("state", "choice", choices=("queued", "running", "success", "failed")))),
    Method("failures.list", "viewer", (_p("limit", "int", default=100, min=1, max=1000),)),
    Method("runs.get", "viewer", (_DAG, _RUN, _p("rendered", "bool", default=True))),
    Method("runs.grid", "viewer", (_DAG, _p("limit", "int", default=25, min=1, max=200),
                                   _p("before", "datetime"))),
    Method("tasks.clear", "operator", (_DAG, _RUN, _p("task_ids", "str_list"), _DOWN, _UP,
                                       _p("failed_only", "bool", default=False), _DRY),
           dry_run_for_viewers=True),
    Method("tasks.mark", "operator", (_DAG, _RUN, _p("task_ids", "str_list", required=True),
                                      _p("state", "choice", required=True, choices=("success", "failed")),
                                      _DOWN, _UP, _DRY),
           dry_run_for_viewers=True),
    Method("tasks.retry", "operator", (_DAG, _RUN, _DRY), dry_run_for_viewers=True),
    Method("tasks.stats", "viewer", (_DAG, _p("task_id", "str", required=True),
                                     _p("limit", "int", default=20, min=1, max=1000))),
    Method("xcom.get", "viewer", (_DAG, _RUN, _p("task_id", "str", required=True), _p("key", "str"))),
    Method("logs.read", "viewer", (*_LOG_TARGET, _p("offset", "int", default=0),
                                   _p("length", "int", default=65536, min=0, max=MAX_LOG_LENGTH))),
    Method("logs.follow", "viewer", (*_LOG_TARGET, _p("offset", "int", default=0))),
    Method("import_errors.list", "viewer"),
    Method("audit.list", "viewer", (_p("limit", "int", default=100, min=1, max=10_000), _p("dag_id", "str"))),
    Method("subscribe", "viewer", (_p("topics", "topics"),)),
    Method("db.clean", "operator", (_p("before", "datetime", required=True), _p("dag_id", "str"), _DRY),
           dry_run_for_viewers=True),
)}


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(param: Param, value: Any) -> Any:
    where = param.name
    if param.kind == "str":
        if not isinstance(value, str) or not value:
            raise ProtocolError("invalid_params", f"{where}: expected a non-empty string, got {_show(value)}")
        if "\x00" in value:
            raise ProtocolError("invalid_params", f"{where}: a NUL character is not allowed")
        return value
    if param.kind == "bool":
        if not isinstance(value, bool):
            raise ProtocolError("invalid_params", f"{where}: expected true or false, got {_show(value)}")
        return value
    if param.kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProtocolError("invalid_params", f"{where}: expected an integer, got {_show(value)}")
        if (param.min is not None and value < param.min) or (param.max is not None and value > param.max):
            low = "" if param.min is None else f" from {param.min}"
            high = "" if param.max is None else f" to {param.max}"
            raise ProtocolError("invalid_params", f"{where}: expected an integer{low}{high}, got {value}")
        return value
    if param.kind == "object":
        if not isinstance(value, dict):
            raise ProtocolError("invalid_params", f"{where}: expected an object, got {_kind(value)}")
        return value
    if param.kind in ("str_list", "topics"):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ProtocolError("invalid_params", f"{where}: expected a list of strings, got {_show(value)}")
        if param.kind == "topics":
            unknown = [v for v in value if v not in EVENT_TOPICS]
            if unknown:
                raise ProtocolError("invalid_params", f"{where}: unknown event {unknown[0]!r} "
                                    f"(known: {', '.join(EVENT_TOPICS)})")
        return list(dict.fromkeys(value))
    if param.kind == "choice":
        if value not in param.choices:
            raise ProtocolError("invalid_params", f"{where}: expected one of {', '.join(param.choices)}, "
                                f"got {_show(value)}")
        return value
    if param.kind == "datetime":
        return _parse_datetime(where, value)
    raise AssertionError(f"parameter kind {param.kind!r} of {where} is not defined")


def _parse_datetime(where: str, value: Any) -> datetime:
    """ISO 8601; without an offset the time is UTC (the protocol's zone)."""
    if not isinstance(value, str):
        raise ProtocolError("invalid_params", f"{where}: expected an ISO 8601 date-time string, got {_show(value)}")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ProtocolError("invalid_params", f"{where}: expected an ISO 8601 date-time such as "
                            f"2026-01-31T09:00:00Z, got {_show(value)}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ProtocolError("invalid_params", f"{where}: {value!r} is out of range in UTC") from None


def validate(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Checked params with defaults filled in; raises unknown_method or invalid_params."""
    spec = METHODS.get(method)
    if spec is None:
        raise ProtocolError("unknown_method", f"no method {method!r}; known: {', '.join(METHODS)}")
    given = dict(params or {})
    unknown = sorted(set(given) - spec.param_names)
    if unknown:
        accepted = ", ".join(p.name for p in spec.params) or "none"
        raise ProtocolError("invalid_params", f"{unknown[0]}: not a parameter of {method} (accepted: {accepted})")
    out: dict[str, Any] = {}
    for param in spec.params:
        value = given.get(param.name)
        if value is None:
            if param.required:
                raise ProtocolError("invalid_params", f"{param.name}: required by {method} but missing")
            out[param.name] = param.default
            continue
        out[param.name] = _check(param, value)
    return out


def check_role(method: str, role: str, params: Mapping[str, Any]) -> None:
    """Raise forbidden unless `role` may make this (validated) request."""
    spec = METHODS[method]
    if ROLES.index(role) >= ROLES.index(spec.role):
        return
    if spec.dry_run_for_viewers and params.get("dry_run") is True:
        return
    unless = " unless dry_run is true" if spec.dry_run_for_viewers else ""
    raise ProtocolError("forbidden", f"{method} needs the {spec.role} role{unless}; you are a {role}")


# -- what a client tells its user ----------------------------------------------------------
# Shared by the CLI's blocking client and the console's asyncio client, so both say the same
# thing in the same words when flowd is away or refuses.

START_HINT = "start it with `systemctl --user start flowd`, `systemctl start flowd`, or `flowd &`"
MAX_REPLY_LINE = 8 * MAX_LINE
"""A reply may hold a 1 MiB log chunk whose JSON escaping makes it longer than the request limit."""


class ClientError(Exception):
    """Anything that stops a request from getting an answer; str() is one line for the user."""


class NotRunning(ClientError):
    """Nothing answers on the socket: flowd is not started, or a stale socket file is left behind."""

    def __init__(self, path: str, reason: str, *, tried: Sequence[tuple[str, str]] = ()):
        attempts = list(tried) or [(path, reason)]
        where = " or ".join(f"{p} ({r})" for p, r in attempts)
        super().__init__(f"cannot reach flowd at {where}: {START_HINT}")
        self.path = path
        self.reason = reason
        self.tried = attempts

    @classmethod
    def among(cls, misses: Sequence[NotRunning]) -> NotRunning:
        """One error for a client that tried several sockets (paths.socket_candidates) and found
        flowd at none: it names every socket and why each failed."""
        tried = [t for miss in misses for t in miss.tried]
        return cls(tried[0][0], tried[0][1], tried=tried)


class ConnectionLost(ClientError):
    """flowd closed the connection or stopped answering in the middle of a conversation."""


class RemoteError(ClientError):
    """flowd answered with an error; `code` is one of the protocol's error codes."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def client_version() -> str:
    try:
        return version("flowtui")
    except PackageNotFoundError:
        return "0"


def os_error_reason(exc: OSError) -> str:
    """`connect()`'s failure in the words users see elsewhere: 'permission denied', 'connection refused'."""
    return os.strerror(exc.errno).lower() if exc.errno else (str(exc) or type(exc).__name__)
