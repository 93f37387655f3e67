"""logs.read and logs.follow: Supervisor's tail API over a try's log file.

A read never loads more than `length` bytes, whatever the file's size, so a client opens a
multi-gigabyte log instantly with a negative offset. Chunks end on a UTF-8 character boundary
where possible, so a multi-byte character is not shown as two replacement marks.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flow.protocol import ProtocolError, dumps
from flow.states import ACTIVE

from .specs import log_path

if TYPE_CHECKING:
    from .connection import Connection
    from .engine import Engine
    from .handlers import Call
    from .server import Server

FOLLOW_CHUNK = 256 * 1024
"""Most bytes one `log` event carries; a big backlog is sent as several events."""
MAX_FOLLOWS = 64
"""Follows one connection may hold at once."""
_RUNNING_STATES = {s.value for s in ACTIVE}


@dataclass(frozen=True)
class TryRef:
    run_key: int
    dag_id: str
    run_id: str
    task_id: str
    try_number: int
    path: str

    def ident(self) -> dict[str, Any]:
        return {"dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id,
                "try_number": self.try_number}


def locate_try(engine: Engine, p: dict[str, Any]) -> TryRef:
    """The try a log request names (default: the latest); not_found says which part is unknown."""
    from .handlers import require_run

    run = require_run(engine, p["dag_id"], p["run_id"])
    task_id = p["task_id"]
    if engine.store.task_instance(run["id"], task_id) is None:
        raise ProtocolError("not_found", f"run {p['run_id']!r} of DAG {p['dag_id']!r} has no task {task_id!r}")
    tries = engine.store.tries(run["id"], task_id)
    if not tries:
        raise ProtocolError("not_found", f"task {task_id!r} of run {p['run_id']!r} has not run yet, so it has no log")
    if p["try_number"] is None:
        row = tries[-1]
    else:
        row = next((t for t in tries if t["try_number"] == p["try_number"]), None)
        if row is None:
            raise ProtocolError("not_found", f"task {task_id!r} of run {p['run_id']!r} has no try "
                                f"{p['try_number']} (tries: 1 to {tries[-1]['try_number']})")
    path = row.get("log_path") or log_path(engine.settings.log_folder, p["dag_id"], p["run_id"], task_id,
                                           row["try_number"])
    return TryRef(run["id"], p["dag_id"], p["run_id"], task_id, row["try_number"], path)


def try_running(engine: Engine, ref: TryRef) -> bool:
    """Queued or running; answered from the engine's memory when it holds the run."""
    run = engine.runs.get(ref.run_key)
    if run is not None and ref.task_id in run.tis:
        view = run.tis[ref.task_id]
        if view.try_number == ref.try_number:
            return view.state in ACTIVE
        if view.try_number > ref.try_number:
            return False
    row = next((t for t in engine.store.tries(ref.run_key, ref.task_id) if t["try_number"] == ref.try_number), None)
    return row is not None and row["state"] in _RUNNING_STATES


def file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def complete_utf8(data: bytes) -> int:
    """Length of the longest prefix that does not end inside a UTF-8 character."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80 or byte >= 0xF8:  # ASCII, or a byte no character starts with
            return len(data)
        if byte >= 0xC0:  # a lead byte: is its character complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= need else len(data) - back
    return len(data)


def _skip_continuations(data: bytes) -> int:
    n = 0
    while n < min(3, len(data)) and 0x80 <= data[n] < 0xC0:
        n += 1
    return n


def _open_at(path: str, offset: int) -> tuple[Any, int, int] | None:
    """(file, start, size) with `offset` resolved (negative: from the end) and clamped; None if absent.

    A start found by counting back from the end may land inside a character: it moves forward to
    the next character.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed by the callers)
    except FileNotFoundError:
        return None
    size = os.fstat(fh.fileno()).st_size
    start = min(max(0, size + offset if offset < 0 else offset), size)
    if offset < 0 and start > 0:
        fh.seek(start)
        start += _skip_continuations(fh.read(3))
    fh.seek(start)
    return fh, start, size


def start_of(path: str, offset: int) -> int:
    opened = _open_at(path, offset)
    if opened is None:
        return 0
    opened[0].close()
    return opened[1]


def read_range(path: str, offset: int, length: int, *, hold_partial: bool = True) -> tuple[bytes, int, int]:
    """(data, start, size): up to `length` bytes from `offset` (negative: from the end), clamped.

    hold_partial leaves a character cut by the end of the range for the next read (unless that
    would return nothing at all, so a reader always moves on).
    """
    opened = _open_at(path, offset)
    if opened is None:
        return b"", 0, 0
    fh, start, size = opened
    with fh:
        data = fh.read(min(length, size - start)) if length and start < size else b""
    if hold_partial:
        keep = complete_utf8(data)
        if keep:
            data = data[:keep]
    return data, start, size


def logs_read(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    ref = locate_try(call.engine, p)
    data, start, size = read_range(ref.path, p["offset"], p["length"])
    return {"data": data.decode("utf-8", "replace"), "offset": start, "next_offset": start + len(data),
            "size": size, "running": try_running(call.engine, ref)}


def logs_follow(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    ref = locate_try(call.engine, p)
    if len(call.conn.follows) >= MAX_FOLLOWS:
        raise ProtocolError("conflict", f"this connection already follows {MAX_FOLLOWS} logs")
    start = start_of(ref.path, p["offset"])
    conn, server = call.conn, call.server
    call.after_reply.append(lambda: conn.start_follow(follow(conn, server, ref, start)))
    return {"offset": start}


async def follow(conn: Connection, server: Server, ref: TryRef, pos: int) -> None:
    """Push `log` events as the file grows; `log_end` once the try has ended and the file is drained.

    The file is polled every follow_interval seconds, and at once when the engine reports a state
    change of the task, so the end of a try is seen before the next task's output. It is read
    again only once the client has taken what was sent, so a slow reader slows its own follow
    and never makes flowd hold more than a few chunks.
    """
    with server.watch_task(ref.dag_id, ref.run_id, ref.task_id) as changed:
        while True:
            changed.clear()
            running = try_running(server.engine, ref)
            # An ended try's last output goes out together with its log_end, with no wait in between,
            # so the end shows before whatever the engine starts next.
            budget = FOLLOW_CHUNK if running else 4 * FOLLOW_CHUNK
            sent, start, size = 0, pos, 0
            while sent < budget:
                data, start, size = read_range(ref.path, pos, min(FOLLOW_CHUNK, budget - sent), hold_partial=running)
                if not data:
                    break
                pos, sent = start + len(data), sent + len(data)
                conn.push("log", dumps(ref.ident() | {"offset": start, "next_offset": pos,
                                                      "data": data.decode("utf-8", "replace")}), keep=True)
            if not sent:
                pos = start  # a file cut shorter (never by flow itself) is followed from its new end
            if not running and sent < budget:
                conn.push("log_end", dumps(ref.ident() | {"offset": pos, "size": size}), keep=True)
                await conn.wait_idle()
                return
            if sent:
                await conn.wait_idle()
                continue
            with suppress(TimeoutError):
                async with asyncio.timeout(server.follow_interval):
                    await changed.wait()
