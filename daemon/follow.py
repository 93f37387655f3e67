"""Reading and following runs and logs over flowd's socket: what `flow dags trigger --follow` and `flow logs` print.

Both work from pushed events alone. A run is re-read (`runs.get`) only when the event stream
says something may have been missed (a `resync`, a gap in `seq`) or has been quiet for a while,
so following a run costs flowd nothing while nothing happens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from flow.states import GLYPHS

from .client import Client, RemoteError

FINISHED_TI = frozenset({"success", "failed", "up_for_retry", "upstream_failed", "skipped", "removed"})
FINISHED_RUN = frozenset({"success", "failed"})
QUIET = 2.0
"""Seconds without events after which the run is re-read, in case its end was missed."""
READ_CHUNK = 128 * 1024
"""Log bytes per request: small enough that the JSON reply stays under the protocol's line limit."""
LOG_GRACE = 5.0
"""How long to wait, once the run has ended, for the logs still being followed to finish."""

Key = tuple[str, int]


def _echo(text: str) -> None:
    click.echo(text)


class LogStream:
    """One try's log as it arrives in chunks; hands out whole lines with the task as prefix."""

    def __init__(self, task_id: str, try_number: int):
        self.task_id = task_id
        self.try_number = try_number
        self.partial = ""
        self.ended = False
        self.held: list[str] = []
        """State lines that wait until the log's last lines have been printed."""

    def feed(self, data: str) -> list[str]:
        text = self.partial + data
        lines = text.split("\n")
        self.partial = lines.pop()
        return lines

    def flush(self) -> list[str]:
        rest, self.partial = self.partial, ""
        return [rest] if rest else []


class RunFollower:
    """Prints a run's task state changes and its tries' log lines until the run ends.

    The client must have subscribed before the run was created, so no event of it is missed.
    """

    def __init__(self, client: Client, dag_id: str, run_id: str, *, as_json: bool = False,
                 echo: Callable[[str], None] = _echo, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.dag_id = dag_id
        self.run_id = run_id
        self.as_json = as_json
        self.echo = echo
        self.clock = clock
        self.streams: dict[Key, LogStream] = {}
        self.state: str | None = None
        self.reason = ""
        self.ended_at: float | None = None
        self.prev_seq: int | None = None

    def follow(self) -> str:
        """Block until the run has ended and its logs are drained; returns the run's final state."""
        while True:
            for event in self.client.events(timeout=self._wait()):
                self._check_seq(event)
                self._handle(event)
                if self._done():
                    return self.state or ""
            if self.ended_at is None:
                self._resync()
            if self._done():
                return self.state or ""

    def _wait(self) -> float:
        if self.ended_at is None:
            return QUIET
        return max(0.05, self.ended_at + LOG_GRACE - self.clock())

    def _done(self) -> bool:
        if self.ended_at is None:
            return False
        open_logs = [s for s in self.streams.values() if not s.ended]
        if open_logs and self.clock() < self.ended_at + LOG_GRACE:
            return False
        for stream in open_logs:
            self._end_stream(stream)
        if not self.as_json:
            why = f": {self.reason}" if self.reason and self.state != "success" else ""
            self.echo(f"[{_stamp()}] {GLYPHS.get(self.state or '', '?')} run {self.run_id} {self.state}{why}")
        return True

    def _check_seq(self, event: dict[str, Any]) -> None:
        seq = event.get("seq")
        gap = isinstance(seq, int) and self.prev_seq is not None and seq != self.prev_seq + 1
        if isinstance(seq, int):
            self.prev_seq = seq
        if event.get("event") == "resync" or gap:
            self._resync()

    def _ours(self, data: dict[str, Any]) -> bool:
        return data.get("dag_id") == self.dag_id and data.get("run_id") == self.run_id

    def _handle(self, event: dict[str, Any]) -> None:
        kind, data = event.get("event"), event.get("data") or {}
        if not isinstance(data, dict) or not self._ours(data):
            return
        if self.as_json:
            self.echo(json.dumps(event, default=str))
        if kind == "ti":
            self._on_ti(data)
        elif kind == "run" and data.get("state") in FINISHED_RUN and self.ended_at is None:
            self.state, self.reason = data["state"], str(data.get("reason") or "")
            self.ended_at = self.clock()
        elif kind == "log":
            stream = self.streams.get((data.get("task_id", ""), int(data.get("try_number") or 0)))
            if stream is not None and not stream.ended:
                self._print_lines(stream, stream.feed(str(data.get("data", ""))))
        elif kind == "log_end":
            stream = self.streams.get((data.get("task_id", ""), int(data.get("try_number") or 0)))
            if stream is not None and not stream.ended:
                self._end_stream(stream)

    def _on_ti(self, data: dict[str, Any]) -> None:
        task_id, state, try_number = data["task_id"], data.get("state"), int(data.get("try_number") or 0)
        if state == "running" or (state in FINISHED_TI and try_number > 0):
            self._start_stream(task_id, try_number)
        if state not in FINISHED_TI and state != "running":
            return
        if self.as_json:
            return
        why = f"  ({data['reason']})" if data.get("reason") and state != "success" else ""
        line = f"[{_stamp()}] {GLYPHS.get(state or '', '?')} {task_id} {state}{why}"
        stream = self.streams.get((task_id, try_number))
        if state != "running" and stream is not None and not stream.ended:
            stream.held.append(line)
        else:
            self.echo(line)

    def _start_stream(self, task_id: str, try_number: int) -> None:
        key = (task_id, try_number)
        if key in self.streams or try_number < 1:
            return
        stream = self.streams[key] = LogStream(task_id, try_number)
        try:
            self.client.call("logs.follow", dag_id=self.dag_id, run_id=self.run_id, task_id=task_id,
                             try_number=try_number, offset=0)
        except RemoteError:
            stream.ended = True  # no log for this try (it never started a process)

    def _end_stream(self, stream: LogStream) -> None:
        self._print_lines(stream, stream.flush())
        stream.ended = True
        for line in stream.held:
            self.echo(line)
        stream.held.clear()

    def _print_lines(self, stream: LogStream, lines: list[str]) -> None:
        if self.as_json:
            return
        for line in lines:
            self.echo(f"  {stream.task_id} | {line}")

    def _resync(self) -> None:
        """Re-read the run: follow tries whose start was missed, notice an end that was missed."""
        got = self.client.call("runs.get", dag_id=self.dag_id, run_id=self.run_id)
        for ti in got.get("task_instances", []):
            for t in ti.get("tries") or []:
                if t.get("state") == "running" or t.get("state") in FINISHED_TI:
                    self._start_stream(ti["task_id"], int(t.get("try_number") or 0))
        state = (got.get("run") or {}).get("state")
        if state in FINISHED_RUN and self.ended_at is None:
            self.state = state
            self.ended_at = self.clock()


def follow_log(client: Client, params: dict[str, Any], *, as_json: bool = False,
               write: Callable[[str], None] | None = None, say: Callable[[str], None] | None = None) -> None:
    """Stream a try's log from `params["offset"]` until the try has ended and its log is drained.

    Without a try number it is the task's latest try, and the follow carries on as the task does:
    a task that has not started yet is waited for, and when a try fails and the task will be
    retried, the next try is followed too. Each move is announced by `say` (stderr), so what
    goes to stdout is the logs' bytes and nothing else.
    """
    out = write or (lambda text: click.echo(text, nl=False))
    say = say or (lambda text: click.echo(text, err=True))
    ident = {k: params[k] for k in ("dag_id", "run_id", "task_id") if k in params}
    if "try_number" in params:
        _follow_try(client, params, ident, as_json, out)
        return
    number = _next_try(client, ident, 0, say)
    offset = params["offset"]
    while number is not None:
        _follow_try(client, {**params, "offset": offset, "try_number": number}, ident, as_json, out)
        ended = number
        number = _next_try(client, ident, ended, say)
        if number is not None:
            say(f"flow: --- try {number} of {ident['task_id']} (try {ended} did not succeed) ---")
        offset = 0


def _follow_try(client: Client, params: dict[str, Any], ident: dict[str, Any], as_json: bool,
                out: Callable[[str], None]) -> None:
    client.call("logs.follow", **params)
    for event in client.events():
        data = event.get("data") or {}
        if not isinstance(data, dict) or any(data.get(k) != v for k, v in ident.items()):
            continue
        if data.get("try_number") not in (None, params["try_number"]):
            continue
        if event.get("event") == "log":
            if as_json:
                click.echo(json.dumps(data, default=str))
            else:
                out(str(data.get("data", "")))
        elif event.get("event") == "log_end":
            if as_json:
                click.echo(json.dumps({"event": "log_end", **data}, default=str))
            return


WILL_RUN = frozenset({"none", "scheduled", "queued", "up_for_retry", "up_for_reschedule", "deferred"})
"""Task instance states after which another try may still come."""


def _next_try(client: Client, ident: dict[str, Any], after: int, say: Callable[[str], None]) -> int | None:
    """The number of the task's first try after `after`, waiting for it while the task may still
    run again; None once it will not (it succeeded, or failed for good, or its run ended)."""
    waiting = False
    while True:
        got = client.call("runs.get", dag_id=ident["dag_id"], run_id=ident["run_id"], rendered=False)
        ti = next((t for t in got.get("task_instances") or [] if t.get("task_id") == ident["task_id"]), None)
        if ti is None:
            raise RemoteError("not_found", f"run {ident['run_id']!r} of DAG {ident['dag_id']!r} "
                                           f"has no task {ident['task_id']!r}")
        later = [n for t in ti.get("tries") or [] if (n := int(t.get("try_number") or 0)) > after]
        if later:
            return min(later)
        run_over = (got.get("run") or {}).get("state") in FINISHED_RUN
        if str(ti.get("state") or "none") not in WILL_RUN or run_over:
            return None
        if not waiting and after == 0:
            say(f"flow: {ident['task_id']} has not started yet; waiting for its first try (ctrl+c stops)")
        waiting = True
        for event in client.events(timeout=QUIET):  # a state change of the task, or a quiet spell: look again
            data = event.get("data") or {}
            if event.get("event") in ("ti", "run", "resync") and isinstance(data, dict) \
                    and data.get("run_id") in (None, ident["run_id"]):
                break


def read_log(client: Client, params: dict[str, Any], *, as_json: bool = False,
             write: Callable[[str], None] | None = None) -> None:
    """Print a try's log from `params["offset"]` to its current end, in chunks."""
    out = write or (lambda text: click.echo(text, nl=False))
    chunks: list[str] = []
    first: dict[str, Any] = {}
    offset = params["offset"]
    while True:
        got = client.call("logs.read", **params | {"offset": offset, "length": READ_CHUNK})
        first = first or got
        chunks.append(str(got.get("data") or ""))
        if not as_json and chunks[-1]:
            out(chunks[-1])
        offset = int(got.get("next_offset", 0))
        if not chunks[-1] or offset >= int(got.get("size", 0)):
            break
    text = "".join(chunks)
    if as_json:
        click.echo(json.dumps({**first, "data": text, "next_offset": offset}, indent=2, default=str))
        return
    if text and not text.endswith("\n"):
        click.echo("")
    if first.get("running"):
        click.echo("flow: the try is still running; add --follow to keep reading", err=True)


def _stamp() -> str:
    return datetime.now().strftime("%H:%M:%S")
