"""One task instance: what it ran, every try, the XCom values it pushed, and each try's resources.

The task's definition comes from dags.get (`serialized`), its tries from runs.get: a bash try
carries the command as rendered when it started, shown for the try under the cursor; tries
recorded before flowd kept that show the template, labelled as one. XComs come from xcom.get.
A `ti` event for this task refetches runs.get and xcom.get once per burst; the tries table is
updated in place. Long commands and values are cut to a screenful, with a note saying so.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Sparkline, Static
from textual.widgets.data_table import RowDoesNotExist

from flow.textsafe import visible
from flow.tui.client import ClientError, RemoteError
from flow.tui.screens.actions import ActionsMixin
from flow.tui.screens.listening import Listening
from flow.tui.screens.shown import ShownGate
from flow.tui.timefmt import clock, duration
from flow.tui.widgets.dag_table import state_text
from flow.tui.widgets.keybar import KeyBar

COMMAND_LINES = 10
"""Lines of a command shown; the rest is a `flow runs show --json` away."""
XCOM_LINES = 12
XCOM_ONE_LINE = 60
"""A value whose JSON is at most this long is shown on its key's line, longer ones pretty-printed."""
TRY_COLUMNS = (("try", "Try"), ("state", "State"), ("start", "Start"), ("end", "End"), ("duration", "Duration"),
               ("exit", "Exit"), ("host", "Host"), ("pid", "PID"), ("error", "Error"))


def size(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "—"


def resources_text(res: Any) -> str:
    """The figures of one try's `resources` dict, or why there are none."""
    if not isinstance(res, dict) or not res:
        return "resources: not recorded"

    def num(key: str, fmt: str = "{:.2f}") -> str:
        value = res.get(key)
        return fmt.format(value) if isinstance(value, int | float) else "—"
    return (f"resources: cpu user {num('cpu_user')}s · system {num('cpu_system')}s · "
            f"avg {num('avg_cpu_percent', '{:.0f}')}% · peak {num('peak_cpu_percent', '{:.0f}')}% · "
            f"peak rss {size(res.get('peak_rss'))} · read {size(res.get('read_bytes'))} · "
            f"written {size(res.get('write_bytes'))} · wall {duration(res.get('wall'))} · "
            f"max processes {num('max_procs', '{:.0f}')}")


def latest_error(ti: dict[str, Any]) -> str:
    """The last line of the latest try's error (or the task instance's), shown control-safe."""
    tries = [t for t in ti.get("tries") or [] if isinstance(t, dict)]
    raw = (tries[-1].get("error") if tries else None) or ti.get("error")
    lines = str(raw or "").strip().splitlines()
    return visible(lines[-1][:300]) if lines else ""


def series(res: Any, key: str) -> list[float]:
    values = ((res or {}).get("series") or {}).get(key) if isinstance(res, dict) else None
    return [float(v) for v in values if isinstance(v, int | float)] if isinstance(values, list) else []


def screenful(text: str, lines: int) -> tuple[str, int]:
    """At most `lines` lines of `text` (and 100 characters a line on average), and how many lines
    were left out: 0 if none, -1 if only the last shown line was cut short."""
    rows = text.splitlines()
    shown, budget = rows[:lines], lines * 100
    out: list[str] = []
    for row in shown:
        if len(row) > budget:
            out.append(row[:budget] + "…")
            return "\n".join(out), len(rows) - len(out) or -1
        out.append(row)
        budget -= len(row)
    return "\n".join(out), len(rows) - len(out)


def _more(text: Text, hidden: int, where: str) -> None:
    if hidden:
        lines = f"{hidden} more line(s)" if hidden > 0 else "the rest"
        text.append(f"… {lines} not shown here: {where}\n", style="yellow")


def command_text(text: Text, task: dict[str, Any], attempt: dict[str, Any] | None, where: str) -> None:
    """The command the selected try ran, or the task's template where no rendering was recorded."""
    tried = attempt or {}
    rendered = tried.get("rendered")
    if isinstance(rendered, str):
        text.append(f"command (rendered for try {tried.get('try_number')}):\n", style="dim")
        body = rendered
    elif task.get("bash_command"):
        why = (f"try {tried.get('try_number')} has no rendered command recorded" if tried
               else "rendered when a try starts")
        text.append(f"command template ({why}):\n", style="dim")
        body = str(task["bash_command"])
    else:
        return
    shown, hidden = screenful(body.rstrip(), COMMAND_LINES)
    text.append(visible(shown, keep="\n\t") + "\n", style="cyan")
    _more(text, hidden, where)
    if isinstance(rendered, str) and tried.get("rendered_cwd"):
        text.append(f"in {tried['rendered_cwd']}\n", style="dim")


def definition_text(task: dict[str, Any] | None, ti: dict[str, Any], attempt: dict[str, Any] | None = None,
                    where: str = "`flow runs show DAG RUN_ID --json`") -> Text:
    text = Text()
    if task is None:
        text.append("this task is not in the DAG's current definition\n", style="yellow")
        task = {}
    text.append(f"operator: {task.get('operator') or ti.get('operator') or '?'}", style="bold")
    text.append(f" ({task.get('kind', '?')}) · trigger rule {task.get('trigger_rule', '?')} · "
                f"retries {task.get('retries', '?')}\n")
    if task.get("bash_command") or (attempt or {}).get("rendered"):
        command_text(text, task, attempt, where)
    elif task.get("callable"):
        text.append("callable: ", style="dim")
        text.append(f"{visible(str(task['callable']))}\n", style="cyan")
    if ti.get("wait_reason"):
        text.append(f"waiting: {visible(str(ti['wait_reason']))}\n", style="yellow")
    if ti.get("next_retry_at"):
        text.append(f"next retry: {clock(ti['next_retry_at'])}\n")
    text.rstrip()
    return text


def xcom_text(reply: dict[str, Any] | None, problem: str = "", where: str = "`flow tasks xcom`") -> Text:
    """The XCom section: each key and its value as JSON, the whole cut to XCOM_LINES lines."""
    text = Text("XCom", style="bold")
    if problem:
        text.append(f": {problem}", style="red")
        return text
    if reply is None:
        text.append(": loading…", style="dim")
        return text
    values = reply.get("xcom") if isinstance(reply.get("xcom"), dict) else {}
    cut = reply.get("truncated") if isinstance(reply.get("truncated"), dict) else {}
    if not values and not cut:
        text.append(": none pushed", style="dim")
        return text
    lines: list[str] = []
    for key in sorted(set(values) | set(cut)):
        if key in values:
            compact = json.dumps(values[key], ensure_ascii=False)
            if len(compact) <= XCOM_ONE_LINE:
                lines.append(f"{key} = {compact}")
            else:
                lines.append(f"{key} =")
                lines.extend("  " + row for row in json.dumps(values[key], ensure_ascii=False, indent=2).splitlines())
        else:
            info = cut[key] if isinstance(cut[key], dict) else {}
            lines.append(f"{key} = (cut by flowd: {size(info.get('bytes'))} as JSON; its start:)")
            lines.append("  " + str(info.get("head") or "") + "…")
    shown, hidden = screenful("\n".join(lines), XCOM_LINES)
    text.append("\n" + visible(shown, keep="\n"), style="cyan")  # a task's values: never raw to the terminal
    if hidden:
        text.append("\n")
        _more(text, hidden, where)
        text.rstrip()
    return text


class TaskDetailScreen(Listening, ShownGate, ActionsMixin, Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="task_detail.back"),
        Binding("l", "logs", "Logs", id="task_detail.logs"),
        Binding("c", "clear", "Clear", id="task_detail.clear"),
        Binding("m", "mark('success')", "Mark", id="task_detail.mark"),
        Binding("s", "mark('success')", "Mark success", show=False, id="task_detail.mark_success"),
        Binding("x", "mark('failed')", "Mark failed", show=False, id="task_detail.mark_failed"),
        Binding("r", "retry", "Retry failed", id="task_detail.retry"),
    ]

    def __init__(self, dag_id: str, run_id: str, task_id: str) -> None:
        super().__init__(classes="task-detail")
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id
        self.definition: dict[str, Any] | None = None
        self.ti: dict[str, Any] = {}
        self.tries: dict[str, dict[str, Any]] = {}
        self.xcom: dict[str, Any] | None = None
        self.xcom_problem = ""
        self._wake = asyncio.Event()
        self._need_dag = True

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"{self.task_id} · {self.run_id} · {self.dag_id}", id="ti-header")
        with VerticalScroll(id="ti-body"):
            yield Static("loading…", id="ti-definition")
            yield DataTable(id="tries", cursor_type="row")
            yield Static("resources: not recorded", id="ti-resources")
            yield Static("cpu %", classes="spark-label", id="cpu-label")
            yield Sparkline([], id="cpu-spark")
            yield Static("rss", classes="spark-label", id="rss-label")
            yield Sparkline([], id="rss-spark")
            yield Static(xcom_text(None), id="ti-xcom")
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#tries", DataTable)
        for key, label in TRY_COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        self._show_resources(None)
        self.run_worker(self._refresher(), name="task-detail-refresher", group="task-detail", exit_on_error=False)
        self.listen()

    def flow_connected(self, hello: dict[str, Any]) -> None:
        self._need_dag = True
        self._wake.set()

    def flow_disconnected(self, reason: str) -> None:
        """What is shown stays until flowd is back."""

    def flow_event(self, event: dict[str, Any]) -> None:
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        kind = event.get("event")
        if kind == "resync" or (kind == "dags" and self.dag_id in (data.get("upserted") or [])):
            self._need_dag = kind == "dags" or self._need_dag
            self._wake.set()
        elif kind == "ti" and (data.get("dag_id"), data.get("run_id"), data.get("task_id")) == \
                (self.dag_id, self.run_id, self.task_id):
            self._wake.set()

    async def _refresher(self) -> None:
        client = self.flow_app.client
        while True:
            await self._wake.wait()
            await self.until_shown()
            self._wake.clear()
            try:
                if self._need_dag:
                    dag = (await client.call("dags.get", dag_id=self.dag_id))["dag"]
                    tasks = (dag.get("serialized") or {}).get("tasks") or []
                    mine = [t for t in tasks if isinstance(t, dict) and t.get("task_id") == self.task_id]
                    self.definition = mine[0] if mine else None
                    self._need_dag = False
                reply = await client.call("runs.get", dag_id=self.dag_id, run_id=self.run_id)
            except ClientError as exc:
                self.query_one("#ti-definition", Static).update(Text(f"⚠ {exc}", style="red"))
                continue
            found = [ti for ti in reply.get("task_instances") or []
                     if isinstance(ti, dict) and ti.get("task_id") == self.task_id]
            self.ti = found[0] if found else {}
            self._show()
            await self._fetch_xcom()

    async def _fetch_xcom(self) -> None:
        try:
            self.xcom = await self.flow_app.client.call("xcom.get", dag_id=self.dag_id, run_id=self.run_id,
                                                        task_id=self.task_id)
            self.xcom_problem = ""
        except RemoteError as exc:
            self.xcom_problem = ("this flowd does not serve XCom values (it predates xcom.get)"
                                 if exc.code == "unknown_method" else f"⚠ {exc}")
        except ClientError as exc:
            self.xcom_problem = f"⚠ {exc}"
        where = f"`flow tasks xcom {self.dag_id} {self.run_id} {self.task_id}`"
        self.query_one("#ti-xcom", Static).update(xcom_text(self.xcom, self.xcom_problem, where))

    def _show(self) -> None:
        utc = bool(getattr(self.app, "utc", False))
        state = str(self.ti.get("state") or "none")
        header = Text(f"{self.task_id} · {self.run_id} · {self.dag_id} · ")
        header.append_text(state_text(state))
        header.append(f" · try {self.ti.get('try_number') or 0}/{self.ti.get('max_tries') or '?'}")
        error = latest_error(self.ti)
        if error:  # at 80 columns the tries table's Error column is far to the right: say it here
            header.append(f"\n✘ {error}", style="red")
        self.query_one("#ti-header", Static).update(header)
        table = self.query_one("#tries", DataTable)
        tries = [t for t in self.ti.get("tries") or [] if isinstance(t, dict)]
        self.tries = {str(t.get("try_number")): t for t in tries}
        for attempt in tries:
            key = str(attempt.get("try_number"))
            cells = {"try": key, "state": state_text(str(attempt.get("state") or "none")),
                     "start": clock(attempt.get("start_date"), utc=utc, seconds=True),
                     "end": clock(attempt.get("end_date"), utc=utc, seconds=True),
                     "duration": duration(attempt.get("duration")),
                     "exit": "—" if attempt.get("exit_code") is None else str(attempt["exit_code"]),
                     "host": str(attempt.get("hostname") or "—"), "pid": str(attempt.get("pid") or "—"),
                     "error": Text(visible(str(attempt.get("error") or "")[:120]))}
            try:
                table.get_row_index(key)
            except RowDoesNotExist:
                table.add_row(*(cells[k] for k, _ in TRY_COLUMNS), key=key)
                table.move_cursor(row=table.row_count - 1)
                continue
            for column, value in cells.items():
                if str(table.get_cell(key, column)) != str(value):
                    table.update_cell(key, column, value, update_width=True)
        self._show_try(self.selected_try())

    def selected_try(self) -> dict[str, Any] | None:
        table = self.query_one("#tries", DataTable)
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self.tries.get(str(row_key.value))

    def _show_try(self, attempt: dict[str, Any] | None) -> None:
        """What depends on the try under the cursor: its rendered command and its figures."""
        where = f"`flow runs show {self.dag_id} {self.run_id} --json`"
        self.query_one("#ti-definition", Static).update(definition_text(self.definition, self.ti, attempt, where))
        self._show_resources(attempt)

    def _show_resources(self, attempt: dict[str, Any] | None) -> None:
        res = (attempt or {}).get("resources")
        which = f"try {attempt.get('try_number')} " if attempt else ""
        self.query_one("#ti-resources", Static).update(which + resources_text(res))
        for key, name in (("cpu", "cpu %"), ("rss", "rss")):
            values = series(res, key)
            spark = self.query_one(f"#{key}-spark", Sparkline)
            spark.data = values
            spark.display = bool(values)
            label = f"{name} (peak {max(values):.0f}%)" if key == "cpu" and values else \
                f"{name} (peak {size(max(values))})" if values else name
            self.query_one(f"#{key}-label", Static).update(label)
            self.query_one(f"#{key}-label").display = bool(values)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_try(self.selected_try())

    def action_target(self) -> tuple[str | None, str | None, str | None]:
        return self.dag_id, self.run_id, self.task_id

    def action_logs(self) -> None:
        open_logs = getattr(self.app, "open_logs", None)
        if open_logs is None:
            self.notify("logs screen not available", title="Logs", severity="warning")
            return
        attempt = self.selected_try()
        number = attempt.get("try_number") if attempt else None
        open_logs(self.dag_id, self.run_id, self.task_id, number if isinstance(number, int) else None)
