"""One DAG: its runs as a grid, or its structure as a graph (`g` switches), live from flowd's events.

A page of the newest runs is loaded with one runs.grid call (every cell of the page at once);
after that a `ti` event rewrites one cell at once and marks its run dirty, and one refresher task
turns the dirty set into runs.get calls for the details (dates, tries, figures) the event does not
carry. Paging (`[` older, `]` newer) loads another page with `before`; nothing ever loads every run.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Header, Static

from flow.states import GLYPHS
from flow.tui.client import ClientError
from flow.tui.screens.actions import ActionsMixin
from flow.tui.screens.listening import Listening
from flow.tui.screens.shown import ShownGate
from flow.tui.screens.task_detail import latest_error
from flow.tui.timefmt import clock, duration
from flow.tui.widgets import heat
from flow.tui.widgets.dag_graph import DagGraph
from flow.tui.widgets.keybar import KeyBar
from flow.tui.widgets.run_grid import RunGrid, page_size


class DagViewScreen(Listening, ShownGate, ActionsMixin, Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="dag_view.back"),
        Binding("g", "switch", "Grid/graph", id="dag_view.switch"),
        Binding("v", "cells", "State/time/mem", id="dag_view.cells"),
        Binding("enter", "detail", "Detail", show=False, id="dag_view.detail"),
        Binding("l", "logs", "Logs", id="dag_view.logs"),
        Binding("t", "trigger", "Trigger", id="dag_view.trigger"),
        Binding("T", "trigger_conf", "Trigger w/ conf", id="dag_view.trigger_conf"),
        Binding("c", "clear", "Clear", id="dag_view.clear"),
        Binding("m", "mark('success')", "Mark", id="dag_view.mark"),
        Binding("s", "mark('success')", "Mark success", show=False, id="dag_view.mark_success"),
        Binding("x", "mark('failed')", "Mark failed", show=False, id="dag_view.mark_failed"),
        Binding("r", "retry", "Retry failed", id="dag_view.retry"),
        Binding("left_square_bracket,pageup", "page('older')", "Older", key_display="[",
                id="dag_view.older"),
        Binding("right_square_bracket,pagedown", "page('newer')", "Newer", key_display="]",
                id="dag_view.newer"),
    ]

    def __init__(self, dag_id: str, run_id: str | None = None) -> None:
        super().__init__(classes="dag-view")
        self.dag_id = dag_id
        self.dag: dict[str, Any] = {}
        self.tasks: list[str] = []
        self.runs: dict[str, dict[str, Any]] = {}
        """The runs of the page on screen, oldest first, by run id."""
        self.tis: dict[str, dict[str, dict[str, Any]]] = {}
        """run id -> task id -> task instance (runs.get, patched by `ti` events)."""
        self.follow: str | None = run_id
        self.befores: list[str | None] = [None]
        """The `before` of each page from the newest to the one shown: `[` pushes, `]` pops."""
        self.graph_run: str | None = None
        self.graph_task: str | None = None
        self._dirty: set[str] = set()
        self._full = False
        self._wake = asyncio.Event()
        self.grid = RunGrid(id="grid")
        self.graph = DagGraph(id="graph")

    # -- layout -----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.dag_id, id="dag-header")
        with ContentSwitcher(initial="grid", id="dag-body"):
            yield self.grid
            yield self.graph
        yield Static("", id="grid-legend")
        yield Static("", id="cell-info")
        yield KeyBar()


    @property
    def mode(self) -> str:
        return str(self.query_one(ContentSwitcher).current)

    def on_mount(self) -> None:
        self.grid.focus()
        self.run_worker(self._refresher(), name="dag-view-refresher", group="dag-view", exit_on_error=False)
        self.listen()

    # -- what the client tells us (on its task: note and wake, never wait) -----------------------

    def flow_connected(self, hello: dict[str, Any]) -> None:
        self._full = True
        self._wake.set()

    def flow_disconnected(self, reason: str) -> None:
        """The grid stays as it is; the reconnect reloads the same page."""

    def flow_event(self, event: dict[str, Any]) -> None:
        kind, data = event.get("event"), event.get("data")
        if kind == "resync":
            self._full = True
        elif not isinstance(data, dict):
            return
        elif kind == "dags" and self.dag_id in (data.get("upserted") or []) + (data.get("deactivated") or []):
            self._full = True
        elif data.get("dag_id") != self.dag_id or kind not in ("dag", "ti", "run"):
            return
        elif not self.shown:  # covered by another screen: reload the page once we are back
            self._full = True
        elif kind == "dag" and "is_paused" in data:
            self.dag["is_paused"] = bool(data["is_paused"])
            self._show_header()
            return
        elif kind == "ti":
            self._on_ti(data)
        elif kind == "run":
            self._on_run(data)
        else:
            return
        self._wake.set()

    def _on_ti(self, data: dict[str, Any]) -> None:
        run_id, task_id, state = str(data.get("run_id")), str(data.get("task_id")), data.get("state")
        if run_id not in self.runs or not isinstance(state, str):
            return
        ti = self.tis.setdefault(run_id, {}).setdefault(task_id, {"task_id": task_id})
        ti["state"] = state
        if isinstance(data.get("try_number"), int):
            ti["try_number"] = data["try_number"]
        if task_id not in self.grid.tasks:
            self.grid.add_task(task_id)
        self.grid.set_state(run_id, task_id, state)
        if run_id == self.graph_run:
            self.graph.set_state(task_id, state)
        self._dirty.add(run_id)
        self._describe()

    def _on_run(self, data: dict[str, Any]) -> None:
        run_id = str(data.get("run_id"))
        if run_id in self.runs:
            self.runs[run_id].update({k: v for k, v in data.items() if k != "reason"})
            self.grid.set_run(self.runs[run_id])
        elif len(self.befores) == 1:  # on the newest page a new run appears at the right
            self.runs[run_id] = {k: v for k, v in data.items() if k != "reason"}
            self.tis[run_id] = {}
            self.grid.add_run(self.runs[run_id])
            for dropped in self.grid.trim():  # the page stays a screenful: the oldest make room
                self.runs.pop(dropped, None)
                self.tis.pop(dropped, None)
            self._show_header()
            if self.follow == run_id:
                self._select_run(run_id)
        else:
            return
        self._dirty.add(run_id)
        self._describe()

    # -- loading ----------------------------------------------------------------------------------

    async def _refresher(self) -> None:
        client = self.flow_app.client
        while True:
            await self._wake.wait()
            await self.until_shown()
            self._wake.clear()
            full, self._full = self._full, False
            dirty, self._dirty = self._dirty, set()
            try:
                if full:
                    await self._load(self.befores[-1])
                    continue
                for run_id in sorted(dirty):
                    if run_id in self.runs:
                        await self._refetch(run_id)
            except ClientError as exc:
                self._full = True
                self.query_one("#cell-info", Static).update(f"⚠ {exc}")
                if client.connected:  # otherwise flow_connected wakes us when flowd is back
                    self._wake.set()
                    await asyncio.sleep(0.5)

    async def _refetch(self, run_id: str) -> None:
        """Bring one run's details up to date and rewrite only the cells that changed."""
        reply = await self.flow_app.client.call("runs.get", dag_id=self.dag_id, run_id=run_id, rendered=False)
        if run_id not in self.runs:
            return
        self.runs[run_id].update(reply.get("run") or {})
        tis = {str(ti.get("task_id")): ti for ti in reply.get("task_instances") or [] if isinstance(ti, dict)}
        self.tis[run_id] = tis
        self.grid.set_run(self.runs[run_id])
        for task_id, ti in tis.items():
            if task_id not in self.grid.tasks:
                self.grid.add_task(task_id)
            last = (ti.get("tries") or [{}])[-1].get("resources") or {}
            self.grid.set_cell(run_id, task_id, {"state": ti.get("state"), "duration": ti.get("duration"),
                                                 "peak_rss": last.get("peak_rss")})
            if run_id == self.graph_run:
                self.graph.set_state(task_id, ti.get("state"))
        self._describe()

    async def _load(self, before: str | None) -> None:
        client = self.flow_app.client
        self.dag = (await client.call("dags.get", dag_id=self.dag_id))["dag"]
        serialized = self.dag.get("serialized") or {}
        tasks = [t for t in serialized.get("tasks") or [] if isinstance(t, dict) and "task_id" in t]
        self.tasks = [str(t["task_id"]) for t in tasks]
        self.graph.set_dag(self.tasks, {str(t["task_id"]): list(t.get("upstream") or []) for t in tasks})
        params: dict[str, Any] = {"dag_id": self.dag_id, "limit": page_size(self.size.width or 80)}
        if before:
            params["before"] = before
        page = await client.call("runs.grid", **params)
        listed = [r for r in page.get("runs") or [] if isinstance(r, dict)]
        if before and not listed and len(self.befores) > 1:
            self.befores.pop()
            self.notify("there are no older runs", title="Oldest")
            self._show_header()
            return
        runs = list(reversed(listed))
        cells = page.get("cells") or {}
        self.runs = {str(r["run_id"]): r for r in runs}
        self.tis = {run_id: {str(t): {"task_id": t, **c} for t, c in (cells.get(run_id) or {}).items()}
                    for run_id in self.runs}
        extra = [t for tis in self.tis.values() for t in tis if t not in self.tasks]
        keep_run, keep_task = self.grid.selected
        if self.follow in self.runs:
            keep_run = self.follow
        self.grid.show(self.tasks + list(dict.fromkeys(extra)), runs, self.tis, keep=(keep_run, keep_task))
        self._show_header()
        self._sync_graph()
        self._describe()

    # -- showing ----------------------------------------------------------------------------------

    def _show_header(self) -> None:
        dag = self.dag
        paused = "⏸ paused" if dag.get("is_paused") else "● active"
        schedule = dag.get("schedule_text") or dag.get("schedule") or "manual only"
        runs = "run" if len(self.runs) == 1 else "runs"
        page = f"newest {runs}" if len(self.befores) == 1 else f"older {runs} (page {len(self.befores)}; ] newer)"
        role = " · viewer: read only" if self.flow_app.client.role == "viewer" else ""
        self.query_one("#dag-header", Static).update(
            f"[b]{self.dag_id}[/b] · {schedule} · {paused} · {len(self.runs)} {page} · {self.mode}{role}",
            layout=False)

    def _select_run(self, run_id: str) -> None:
        if self.mode == "grid":
            self.grid.select(run_id, self.grid.selected[1])
        else:
            self.graph_run = run_id
            self._sync_graph()

    def _sync_graph(self) -> None:
        if self.graph_run not in self.runs:
            self.graph_run = self.grid.selected[0] or (list(self.runs)[-1] if self.runs else None)
        tis = self.tis.get(self.graph_run or "", {})
        self.graph.set_states({t: str(ti.get("state") or "none") for t, ti in tis.items()})

    def selection(self) -> tuple[str | None, str | None]:
        if self.mode == "graph":
            return self.graph_run, self.graph.selected
        return self.grid.selected

    def _describe(self) -> None:
        self._show_legend()
        run_id, task_id = self.selection()
        run = self.runs.get(run_id or "")
        if run is None:
            self._say("no runs yet · t triggers one" if not self.runs else "")
            return
        utc = bool(getattr(self.app, "utc", False))
        when = clock(run.get("logical_date"), utc=utc)
        head = f"logical {when} · {run.get('run_type')} run {run.get('state')} · {run_id}"
        ti = self.tis.get(run_id or "", {}).get(task_id or "")
        if task_id is None or ti is None:
            self._say(f"{task_id or ''} · {head}")
            return
        state = str(ti.get("state") or "none")
        tries = f"try {ti.get('try_number') or 0}/{ti.get('max_tries') or '?'}"
        peak = (self.grid.cells.get(run_id or "", {}).get(task_id) or {}).get("peak_rss")
        figures = duration(ti.get("duration")) + (f" · peak {heat.compact_bytes(peak)}" if peak else "")
        wait = f" · waiting: {ti['wait_reason']}" if ti.get("wait_reason") else ""
        flag = self.grid.flag(run_id, task_id)
        error = latest_error(ti)
        error = f"[red]✘ {escape(error)}[/red] · " if error else ""  # the selected cell's error first
        text = f"[b]{task_id}[/b] {GLYPHS.get(state, '?')} {state} · {error}{tries} · {figures} · {head}{wait}"
        self._say(escape(flag) + " · " + text if flag else text)

    def _say(self, text: str) -> None:
        """Every pushed event describes the cell again; an unchanged line costs no terminal bytes."""
        info = self.query_one("#cell-info", Static)
        if info.content != text:
            info.update(text, layout=False)  # one fixed line: a layout pass would repaint the screen

    def on_run_grid_moved(self, event: RunGrid.Moved) -> None:
        self._describe()

    def on_dag_graph_moved(self, event: DagGraph.Moved) -> None:
        self._describe()

    # -- actions ----------------------------------------------------------------------------------

    def action_target(self) -> tuple[str | None, str | None, str | None]:
        run_id, task_id = self.selection()
        return self.dag_id, run_id, task_id

    def follow_run(self, dag_id: str, run: dict[str, Any]) -> None:
        """Select the new run once its column is there (its `run` event may come before or after)."""
        if dag_id != self.dag_id:
            super().follow_run(dag_id, run)
            return
        self.follow = str(run.get("run_id"))
        if len(self.befores) > 1:
            self.befores = [None]
            self._full = True
            self._wake.set()
        elif self.follow in self.runs:
            self._select_run(self.follow)

    def is_paused(self, dag_id: str) -> bool:
        return dag_id == self.dag_id and bool(self.dag.get("is_paused"))

    def initial_conf(self, dag_id: str) -> dict[str, Any]:
        params = (self.dag.get("serialized") or {}).get("params")
        return dict(params) if isinstance(params, dict) else {}

    def action_cells(self) -> None:
        """Cycle the grid's cells: state glyphs, then duration, then peak memory as shades."""
        modes = heat.MODES
        self.grid.set_mode(modes[(modes.index(self.grid.mode) + 1) % len(modes)])
        self._describe()

    def _show_legend(self) -> None:
        legend, text = self.query_one("#grid-legend", Static), self.grid.legend()
        if legend.content != escape(text):
            legend.update(escape(text))
        legend.display = self.mode == "grid" and self.grid.mode != "state"

    def action_switch(self) -> None:
        switcher = self.query_one(ContentSwitcher)
        if switcher.current == "grid":
            run_id, task_id = self.grid.selected
            self.graph_run = run_id
            self._sync_graph()
            switcher.current = "graph"
            if task_id:
                self.graph.select(task_id)
            self.graph.focus()
        else:
            switcher.current = "grid"
            self.grid.select(self.graph_run, self.graph.selected)
            self.grid.focus()
        self._show_header()
        self._describe()

    def action_detail(self) -> None:
        run_id, task_id = self.selection()
        if run_id is None or task_id is None:
            self.notify("select a task instance first", title="Nothing selected", severity="warning")
            return
        from flow.tui.screens.task_detail import TaskDetailScreen
        self.app.push_screen(TaskDetailScreen(self.dag_id, run_id, task_id))

    def action_logs(self) -> None:
        run_id, task_id = self.selection()
        if run_id is None or task_id is None:
            self.notify("select a task instance first", title="Nothing selected", severity="warning")
            return
        open_logs = getattr(self.app, "open_logs", None)
        if open_logs is None:
            self.notify("logs screen not available", title="Logs", severity="warning")
            return
        open_logs(self.dag_id, run_id, task_id)

    def action_page(self, direction: str) -> None:
        if self.mode == "graph":  # in the graph, [ and ] step through the loaded runs instead
            order = list(self.runs)
            if self.graph_run in order:
                index = order.index(self.graph_run) + (-1 if direction == "older" else 1)
                if 0 <= index < len(order):
                    self.graph_run = order[index]
                    self._sync_graph()
                    self._describe()
            return
        if direction == "older":
            if not self.runs:
                return
            oldest = next(iter(self.runs.values()))
            self.befores.append(str(oldest.get("logical_date")))
        elif len(self.befores) > 1:
            self.befores.pop()
        else:
            self.notify("these are the newest runs", title="Newest")
            return
        self.follow = None
        self._full = True
        self._wake.set()
