"""The home screen: every DAG, kept current by flowd's pushed events.

Events only mark DAGs dirty; one refresher task turns the dirty set into `dags.get` calls (or a
single `dags.list` after `dags`, `resync`, a gap or a reconnect). A burst of a hundred task
events for one DAG therefore costs one request, and the reader task never waits on a request.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header, Input, Static

from flow.tui import timefmt
from flow.tui.client import ClientError
from flow.tui.screens.actions import ActionsMixin
from flow.tui.screens.listening import Listening
from flow.tui.screens.shown import ShownGate
from flow.tui.widgets.dag_table import DagTable
from flow.tui.widgets.keybar import KeyBar

CATCH_UP = 50
"""More DAGs changed than this while the list was covered: one dags.list instead of a dags.get each."""


def matches(dag: dict[str, Any], needle: str) -> bool:
    """The filter matches a DAG's id, one of its tags or its owner (case-insensitive substring)."""
    needle = needle.strip().lower()
    if not needle:
        return True
    fields = [str(dag.get("dag_id", "")), str(dag.get("owner") or ""), *(str(t) for t in dag.get("tags") or [])]
    return any(needle in f.lower() for f in fields)


def last_state(dag: dict[str, Any]) -> str | None:
    return (dag.get("last_run") or {}).get("state")


class DagListScreen(Listening, ShownGate, ActionsMixin, Screen):
    """DAG list with filter, failing/running views, trigger and pause; enter opens the DAG view."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="dag_list.open"),
        Binding("t", "trigger", "Trigger", id="dag_list.trigger"),
        Binding("T", "trigger_conf", "Trigger w/ conf", id="dag_list.trigger_conf"),
        Binding("p", "pause", "Pause/unpause", id="dag_list.pause"),
        Binding("slash", "filter", "Filter", key_display="/", id="dag_list.filter"),
        Binding("f", "only('failed')", "Failing", id="dag_list.failing"),
        Binding("r", "only('running')", "Running", id="dag_list.running"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="dag_list.clear_filter"),
        Binding("F", "app.jump('failures')", "Failures", id="dag_list.failures"),
        Binding("e", "app.jump('errors')", "Import errors", id="dag_list.import_errors"),
    ]

    def __init__(self) -> None:
        super().__init__(id="dag-list")
        self.dags: dict[str, dict[str, Any]] = {}
        self.import_errors = 0
        self.needle = ""
        self.only: str | None = None
        self._dirty: set[str] = set()
        self._full = False
        self._wake = asyncio.Event()
        self._filter_timer: Timer | None = None
        self._stale_times = False
        self.broken: set[str] = set()
        """Files with an import error: a DAG defined in one is marked ⚠ (its old definition still runs)."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="import-errors")
        yield Input(placeholder="filter by DAG id, tag or owner (esc clears)", id="filter")
        yield DagTable(id="dags")
        yield Static("", id="view-note")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#import-errors").display = False
        self.query_one("#filter").display = False
        self.query_one(DagTable).focus()
        self.run_worker(self._refresher(), name="dag-list-refresher", group="dag-list", exit_on_error=False)
        self.set_interval(30, self._tick, name="relative-times")
        self.listen()

    # -- what the client tells us (on its task: mark and wake, never wait) ----------------------

    def flow_connected(self, hello: dict[str, Any]) -> None:
        self._full = True
        self._wake.set()

    def flow_disconnected(self, reason: str) -> None:
        """Nothing to do: the rows stay as they were until the reconnect refetches them."""

    def flow_event(self, event: dict[str, Any]) -> None:
        kind, data = event.get("event"), event.get("data") or {}
        if kind in ("dags", "resync"):
            self._full = True
        elif kind == "dag" and data.get("dag_id") in self.dags and "is_paused" in data and self.shown:
            self.dags[data["dag_id"]]["is_paused"] = data["is_paused"]
            self.query_one(DagTable).update_dag(self.dags[data["dag_id"]])
            return
        elif kind in ("ti", "run", "dag") and isinstance(data.get("dag_id"), str):
            self._dirty.add(data["dag_id"])
        else:
            return
        self._wake.set()

    async def _refresher(self) -> None:
        client = self.flow_app.client
        while True:
            await self._wake.wait()
            await self.until_shown()  # covered: events pile up as dirty marks until we are back
            self._wake.clear()
            full, self._full = self._full, False
            dirty, self._dirty = self._dirty, set()
            try:
                if full or len(dirty) > CATCH_UP:
                    listing = await client.call("dags.list")
                    count = int(listing.get("import_errors") or 0)
                    errors = (await client.call("import_errors.list")).get("import_errors") if count else []
                    self.broken = {str(e.get("filename")) for e in errors or [] if isinstance(e, dict)}
                    self.dags = {d["dag_id"]: self._marked(d) for d in listing.get("dags", [])}
                    self._set_import_errors(count)
                    self._render_rows()
                    continue
                for dag_id in sorted(dirty):
                    reply = await client.call("dags.get", dag_id=dag_id)
                    dag = self._marked(reply["dag"])
                    dag.pop("serialized", None)
                    known = dag_id in self.dags
                    self.dags[dag_id] = dag
                    if not known or not self.query_one(DagTable).update_dag(dag):
                        self._render_rows()
            except ClientError:
                self._full = True
                if client.connected:  # otherwise flow_connected wakes us when flowd is back
                    self._wake.set()
                    await asyncio.sleep(0.5)

    def _marked(self, dag: dict[str, Any]) -> dict[str, Any]:
        dag["import_error"] = str(dag.get("fileloc")) in self.broken
        return dag

    def _tick(self) -> None:
        """Every 30 s the relative times ('3m ago') move on; a covered list catches up when shown."""
        if self.shown:
            self._render_rows(refresh=True)
        else:
            self._stale_times = True

    def caught_up(self) -> None:
        if self._stale_times:
            self._stale_times = False
            self._render_rows(refresh=True)

    # -- rendering ------------------------------------------------------------------------------

    def visible(self) -> list[dict[str, Any]]:
        return [d for _, d in sorted(self.dags.items())
                if matches(d, self.needle) and (self.only is None or last_state(d) == self.only)]

    def _render_rows(self, refresh: bool = False) -> None:
        self.query_one(DagTable).show(self.visible(), timefmt.now(), refresh=refresh)
        notes = []
        if self.needle:
            notes.append(f"filter: {self.needle!r}")
        if self.only:
            notes.append(f"only DAGs whose last run is {self.only} (press {self.only[0]} again for all)")
        note = self.query_one("#view-note", Static)
        note.update(" · ".join(notes))
        note.display = bool(notes)

    def _set_import_errors(self, count: int) -> None:
        self.import_errors = count
        banner = self.query_one("#import-errors", Static)
        plural = "s" if count != 1 else ""
        banner.update(f"⚠ {count} DAG file{plural} failed to import: press e to see why")
        banner.display = count > 0

    # -- actions --------------------------------------------------------------------------------

    def action_target(self) -> tuple[str | None, str | None, str | None]:
        return self.query_one(DagTable).selected_dag, None, None

    def is_paused(self, dag_id: str) -> bool:
        return bool(self.dags.get(dag_id, {}).get("is_paused"))

    def action_open(self) -> None:
        dag_id = self.query_one(DagTable).selected_dag
        if dag_id is not None:
            self.flow_app.open_dag(dag_id)

    def on_dag_table_selected(self, event: DagTable.Selected) -> None:
        """Enter on the table (its own binding, so the screen's enter does not fire too) or a click."""
        event.stop()
        self.flow_app.open_dag(event.dag_id)

    def action_pause(self) -> None:
        dag_id = self.query_one(DagTable).selected_dag
        if dag_id is None or self.refused("pause"):
            return
        paused = not self.dags.get(dag_id, {}).get("is_paused", False)
        self.run_worker(self._pause(dag_id, paused), group="dag-list-actions", exit_on_error=False)

    async def _pause(self, dag_id: str, paused: bool) -> None:
        word = "pause" if paused else "unpause"
        try:
            await self.flow_app.client.call("dags.pause", dag_id=dag_id, paused=paused)
        except ClientError as exc:
            self.notify(str(exc), title=f"Cannot {word} {dag_id}", severity="error")
            return
        if dag_id in self.dags:
            self.dags[dag_id]["is_paused"] = paused
            self.query_one(DagTable).update_dag(self.dags[dag_id])
        self.notify(f"{dag_id} is {word}d", title=word.capitalize())

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        self.set_focus(box)  # at once: Widget.focus() defers it, and keys typed right after `/` went to the list

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.needle = ""
        self.query_one(DagTable).focus()
        self._render_rows()

    def action_only(self, state: str) -> None:
        self.only = None if self.only == state else state
        self._render_rows()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Typing (or pasting) several characters re-filters once, after a 60 ms pause."""
        self.needle = event.value
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(0.06, self._render_rows, name="filter")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        # Filter now, not after the typing pause: a key pressed right after enter (`/etl⏎t`) must
        # act on the filtered rows, not on whatever row the cursor had before.
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None
        self.needle = event.value
        self._render_rows()
        if not event.value:
            event.input.display = False
        self.set_focus(self.query_one(DagTable))
