"""One try's log: opened from its end, followed live, searched, paged to older tries.

Opening must be instant whatever the log's size, so the screen reads only the last TAIL bytes
(`logs.read` with a negative offset) and loads older chunks only when the user reaches the top
(or presses `g` for the start). A running try is followed with `logs.follow`; its `log` events
are appended only while the window reaches the end of the file, so jumping to the start of a
huge log never makes the console read the rest of it. flowd cannot stop a follow, so the screen
starts at most one per try and simply stops showing what it does not want.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header, Input, Static

from flow.states import GLYPHS
from flow.tui.client import ClientError
from flow.tui.screens.listening import Listening
from flow.tui.widgets.keybar import KeyBar
from flow.tui.widgets.log_view import LIVE_FRAME, LogView

if TYPE_CHECKING:
    from flow.tui.app import FlowTUI

TAIL = 256 * 1024
"""Bytes read when a log opens: a few thousand lines, small enough for a thin SSH link."""
CHUNK = 256 * 1024
"""Bytes read each time the user reaches an edge of what is loaded."""


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


class LogScreen(Listening, Screen):
    """The log of one try of one task instance."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="logs.back"),
        Binding("f", "follow", "Follow", id="logs.follow"),
        Binding("w", "wrap", "Wrap", id="logs.wrap"),
        Binding("t", "times", "Times", id="logs.times"),
        Binding("slash", "search", "Search", key_display="/", id="logs.search"),
        Binding("n", "match(True)", "Next", id="logs.next_match"),
        Binding("N", "match(False)", "Prev", id="logs.prev_match"),
        Binding("g", "start", "Start", id="logs.start"),
        Binding("G", "end", "End", id="logs.end"),
        Binding("left_square_bracket", "other_try(-1)", "Prev try", key_display="[", id="logs.prev_try"),
        Binding("right_square_bracket", "other_try(1)", "Next try", key_display="]", id="logs.next_try"),
    ]

    def __init__(self, dag_id: str, run_id: str, task_id: str, try_number: int | None = None,
                 *, window: int | None = None) -> None:
        super().__init__()
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id
        self.try_number = try_number
        self.pinned = try_number is not None
        """A try the operator asked for stays on screen; otherwise a retry's new try replaces it."""
        self.waiting = False
        """The task has no try yet: its first one is opened as soon as a `ti` event announces it."""
        self.moved = ""
        """The marker line shown after the screen moved on to a retry by itself."""
        self.tries: dict[int, str] = {}
        self.log_size = 0
        self.running = False
        self.following = False
        self.live = False
        """The window reaches the end of the file, so live data continues it."""
        self.problem = ""
        self._header_timer: Timer | None = None
        self._followed: set[int] = set()
        self._window = window
        self._loading = False

    @property
    def flow_app(self) -> FlowTUI:
        return self.app  # type: ignore[return-value]

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="log-header")
        yield LogView(id="log", **({"limit": self._window} if self._window else {}))
        yield Input(placeholder="search the loaded log (enter: find, esc: cancel)", id="log-search")
        yield Static("", id="log-note")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#log-search").display = False
        self.view.focus()
        self.view.set_options(utc=self.flow_app.utc)
        self.watch(self.app, "utc", lambda utc: self.view.set_options(utc=utc), init=False)
        self.listen(replay=False)  # the open below is the first load
        self._header()
        self._io(self._open(self.try_number, follow_default=True))

    def _io(self, work: Any) -> None:
        """Loads replace each other: the newest request for a part of the log wins."""
        self.run_worker(work, group="logs-io", exclusive=True, exit_on_error=False)

    # -- loading -------------------------------------------------------------------------------

    def _ident(self) -> dict[str, Any]:
        return {"dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id}

    async def _open(self, try_number: int | None, follow_default: bool = False) -> None:
        client = self.flow_app.client
        self.problem = ""
        try:
            got = await client.call("runs.get", dag_id=self.dag_id, run_id=self.run_id)
            ti = next((t for t in got.get("task_instances", []) if t.get("task_id") == self.task_id), None)
            if ti is None:
                raise ClientError(f"run {self.run_id!r} of DAG {self.dag_id!r} has no task {self.task_id!r}")
            self.tries = {int(t["try_number"]): str(t.get("state") or "none") for t in ti.get("tries") or []}
            self.waiting = not self.tries
            if self.waiting:
                self.problem = f"{self.task_id} has not started yet: its first try is shown as soon as it starts"
                self._header()
                return
            if try_number is not None and try_number not in self.tries:
                raise ClientError(f"task {self.task_id!r} has no try {try_number} "
                                  f"(tries: {min(self.tries)} to {max(self.tries)})")
            self.try_number = try_number if try_number is not None else max(self.tries)
            self.log_size = 0
            await self._tail()
            if self.running and self.try_number not in self._followed:
                await client.call("logs.follow", **self._ident(), try_number=self.try_number, offset=self.view.end)
                self._followed.add(self.try_number)
            if follow_default:
                self.following = self.running
        except ClientError as exc:
            self.problem = str(exc)
        self._header()

    async def _tail(self) -> None:
        reply = await self._read(-TAIL, TAIL)
        self.view.replace(int(reply["offset"]), str(reply["data"]), int(reply["next_offset"]))
        self.live = self.view.end >= self.log_size
        self.view.go_end()
        if self.view.first > 0 and self.view.virtual_size.height <= self.view.size.height:
            await self._older()

    async def _read(self, offset: int, length: int) -> dict[str, Any]:
        reply = await self.flow_app.client.call("logs.read", **self._ident(), try_number=self.try_number,
                                                offset=offset, length=length)
        self.log_size = max(self.log_size, int(reply.get("size") or 0))
        self.running = bool(reply.get("running"))
        return reply

    async def _older(self) -> None:
        first = self.view.first
        if first <= 0:
            return
        start = max(0, first - CHUNK)
        reply = await self._read(start, first - start)
        before = self.view.end
        self.view.prepend(int(reply["offset"]), str(reply["data"]))
        if self.view.end < before:
            self.live = False
        self._header()

    async def _newer(self) -> None:
        """Read forward from the window's end until it reaches what flowd reported (the catch-up)."""
        while self.view.end < self.log_size:
            end = self.view.end
            if self.live and self.log_size - end > self.view.limit:
                await self._tail()
                break
            reply = await self._read(end, CHUNK)
            if int(reply["next_offset"]) <= end:
                break
            self.view.append(int(reply["offset"]), str(reply["data"]), int(reply["next_offset"]))
            if not self.live:
                break
        self.live = self.live or self.view.end >= self.log_size
        if self.following:
            self.view.go_end()
        self._header()

    async def _guarded(self, work: Any) -> None:
        if self._loading:
            work.close()
            return
        self._loading = True
        try:
            await work
        except ClientError as exc:
            self.notify(str(exc), title="Cannot read the log", severity="error")
        finally:
            self._loading = False

    # -- what flowd pushes -------------------------------------------------------------------------

    def flow_connected(self, hello: dict[str, Any]) -> None:
        self._followed.clear()
        self._io(self._open(self.try_number))

    def flow_disconnected(self, reason: str) -> None:
        self.problem = f"lost flowd: {reason}"
        self._header()

    def flow_event(self, event: dict[str, Any]) -> None:
        kind, data = event.get("event"), event.get("data") or {}
        if not isinstance(data, dict) or any(data.get(k) != v for k, v in self._ident().items()):
            return
        number = data.get("try_number")
        if kind == "ti" and isinstance(number, int):
            self.tries[number] = str(data.get("state") or "none")
            if number > (self.try_number or 0) and (self.waiting or not self.pinned):
                self._move_on(number)
                return
            self._header()
        if number != self.try_number:
            return
        if kind == "log":
            self._live(int(data.get("offset", 0)), int(data.get("next_offset", 0)), str(data.get("data", "")))
        elif kind == "log_end":
            self.running = False
            self.log_size = max(self.log_size, int(data.get("size") or 0))
            if self.live and self.view.end < self.log_size:
                self.run_worker(self._guarded(self._newer()), group="logs-more", exit_on_error=False)
            self._header()

    def _move_on(self, number: int) -> None:
        """A new try of the task began (the first, or a retry): show and follow it."""
        before = self.try_number
        if before is not None:
            self.moved = f"↻ try {before} {self.tries.get(before, 'ended')}: now showing try {number} ([ goes back)"
        self.waiting = False
        self._io(self._open(number, follow_default=True))

    def _live(self, offset: int, next_offset: int, data: str) -> None:
        self.log_size = max(self.log_size, next_offset)
        end = self.view.end
        if not self.live or next_offset <= end:
            self._header_soon()
            return
        if offset < end:
            data = data.encode()[end - offset:].decode("utf-8", "replace")
            offset = end
        if offset > end:
            self.run_worker(self._guarded(self._newer()), group="logs-more", exit_on_error=False)
            return
        self.view.append(offset, data, next_offset, live=True)
        if self.following:
            self.view.go_end()
        self._header_soon()

    # -- what the user does ----------------------------------------------------------------------

    def on_log_view_scrolled_away(self, _: LogView.ScrolledAway) -> None:
        if self.following:
            self.following = False
            self._header()

    def on_log_view_edge(self, message: LogView.Edge) -> None:
        if message.top and self.view.first > 0:
            self.run_worker(self._guarded(self._older()), group="logs-more", exit_on_error=False)
        elif not message.top and not self.live and self.view.end < self.log_size:
            self.run_worker(self._guarded(self._newer()), group="logs-more", exit_on_error=False)

    def action_back(self) -> None:
        box = self.query_one("#log-search", Input)
        if box.display:
            box.display = False
            self.view.focus()
        else:
            self.app.pop_screen()

    def action_follow(self) -> None:
        if not self.running:
            self.following = False
            self.notify(f"try {self.try_number} has ended: there is nothing more to follow", title="Follow")
        else:
            self.following = not self.following
            if self.following:
                self._io(self._to_end())
        self._header()

    async def _to_end(self) -> None:
        try:
            if not self.live:
                await self._tail()
            self.view.go_end()
        except ClientError as exc:
            self.notify(str(exc), title="Cannot read the log", severity="error")
        self._header()

    def action_end(self) -> None:
        self._io(self._to_end())

    def action_start(self) -> None:
        self.following = False
        self._io(self._start())

    async def _start(self) -> None:
        try:
            if self.view.first > 0:
                reply = await self._read(0, CHUNK)
                self.view.replace(0, str(reply["data"]), int(reply["next_offset"]))
                self.live = self.view.end >= self.log_size
            self.view.go_home()
        except ClientError as exc:
            self.notify(str(exc), title="Cannot read the log", severity="error")
        self._header()

    def action_wrap(self) -> None:
        self.view.set_options(wrap=not self.view.wrap)
        self._header()

    def action_times(self) -> None:
        self.view.set_options(show_times=not self.view.show_times)
        self._header()

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.display = True
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.display = False
        self.view.focus()
        count = self.view.search(event.value)
        if event.value and count:
            self.following = False
            self.view.next_match(True)
        elif event.value:
            self.notify(f"no {event.value!r} in the loaded part of the log ({human_size(self.view.held)})",
                        title="Search")
        self._header()

    def action_match(self, forward: bool) -> None:
        if not self.view.needle:
            self.notify("press / to search first", title="Search")
            return
        self.following = False
        if self.view.next_match(forward) is None:
            self.notify(f"no {self.view.needle!r} in the loaded part of the log", title="Search")
        self._header()

    def action_other_try(self, step: int) -> None:
        numbers = sorted(self.tries)
        if self.try_number is None or not numbers:
            return
        target = self.try_number + step
        if target not in self.tries:
            which = "earlier" if step < 0 else "later"
            self.notify(f"no {which} try (tries: {numbers[0]} to {numbers[-1]})", title="Tries")
            return
        self.following = False
        self.pinned, self.moved = True, ""
        self._io(self._open(target, follow_default=True))

    # -- the header --------------------------------------------------------------------------------

    def _header_soon(self) -> None:
        """While the log streams, the header (its size figure) changes with every chunk: redraw it
        with the view's frames, not per chunk."""
        if self._header_timer is None:
            self._header_timer = self.set_timer(LIVE_FRAME, self._header)

    def _header(self) -> None:
        if self._header_timer is not None:
            self._header_timer.stop()
            self._header_timer = None
        if not self.is_mounted:
            return
        number = self.try_number
        state = self.tries.get(number, "none") if number is not None else "none"
        parts = [f"{GLYPHS.get(state, '?')} {state}",
                 ("following" if self.following else "paused") if self.running else "ended",
                 f"try {number if number is not None else '?'} of {max(self.tries) if self.tries else '?'}",
                 human_size(self.log_size), f"{self.dag_id} › {self.task_id} › {self.run_id}"]
        view = self.view
        if view.first > 0 or view.end < self.log_size:
            parts.append(f"showing {human_size(view.first)}–{human_size(view.end)}")
        header = self.query_one("#log-header", Static)
        if header.content != " · ".join(parts):
            header.update(" · ".join(parts))
        notes = []
        if self.moved:
            notes.append(self.moved)
        if self.problem:
            notes.append(f"⚠ {self.problem}")
        if view.needle:
            at = f"{view.current + 1}/" if view.current >= 0 else ""
            notes.append(f"/{view.needle}: {at}{len(view.matches)} matches")
        flags = [name for name, on in (("wrap", view.wrap), ("times", view.show_times)) if on]
        if flags:
            notes.append(" ".join(flags))
        note = self.query_one("#log-note", Static)
        if note.content != " · ".join(notes):
            note.update(" · ".join(notes), layout=False)  # one fixed line
