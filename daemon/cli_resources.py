"""`flow tasks stats` and the resource lines of `flow status`: what tries cost, over flowd's socket."""

from __future__ import annotations

from typing import Any

import click

from flow.units import format_bytes, format_seconds

from .cli import Ctx, emit_json, print_table
from .cli_remote import JSON_OPTION, _short, remote, state_cell, when
from .cli_run import tasks


def resource_rows(st: dict[str, Any]) -> list[tuple[str, str]]:
    """Host, admission control and footprint lines for `flow status` (absent fields are skipped)."""
    rows = []
    host = st.get("host")
    if isinstance(host, dict):
        rows.append(("host", f"{format_bytes(host.get('mem_available'))} of {format_bytes(host.get('mem_total'))} "
                             f"memory available ({host.get('mem_free_percent', '?')}%), "
                             f"{host.get('cpu_count', '?')} CPUs, load {host.get('load_1m', '?')}"))
    adm = st.get("admission")
    if isinstance(adm, dict):
        if not adm.get("min_free_memory"):
            text = "off (min_free_memory not set)"
        elif adm.get("holding"):
            text = f"HOLDING new tasks: {adm.get('reason')}"
        else:
            text = f"admitting (min_free_memory {adm['min_free_memory']})"
        rows.append(("admission", text))
    if "db_size" in st or "log_size" in st:
        rows.append(("footprint", f"database {format_bytes(st.get('db_size'))}, logs {format_bytes(st.get('log_size'))}, "
                                  f"{st.get('open_files', '?')} open files, sampling every "
                                  f"{st.get('sample_interval', '?')}s"))
    return rows


def _pct(value: Any) -> str:
    return f"{value:.0f}%" if isinstance(value, int | float) else "-"


@tasks.command("stats")
@click.argument("dag_id")
@click.argument("task_id")
@click.option("-n", "limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many tries, newest first.")
@JSON_OPTION
@click.pass_obj
def tasks_stats(obj: Ctx, dag_id: str, task_id: str, limit: int, as_json: bool) -> None:
    """What a task's tries cost: CPU seconds, peak memory, CPU %, I/O, processes; newest first."""
    with remote(obj) as client:
        got = client.call("tasks.stats", dag_id=dag_id, task_id=task_id, limit=limit)
    if as_json:
        emit_json(got)
        return
    rows = []
    for t in got.get("tries", []):
        r = t.get("resources") or {}
        cpu = (r.get("cpu_user") or 0.0) + (r.get("cpu_system") or 0.0) if r else None
        rows.append([t.get("run_id"), t.get("try_number"), state_cell(t.get("state")), when(t.get("start_date")),
                     format_seconds(r.get("wall")), format_seconds(cpu), _pct(r.get("avg_cpu_percent")),
                     _pct(r.get("peak_cpu_percent")), format_bytes(r.get("peak_rss")),
                     format_bytes(r.get("read_bytes")), format_bytes(r.get("write_bytes")),
                     r.get("max_procs", "-"), _short(t.get("error"), 40)])
    if not rows:
        click.echo(f"no tries of {dag_id}.{task_id} yet")
        return
    print_table(rows, ["RUN ID", "TRY", "STATE", "STARTED (UTC)", "WALL", "CPU", "AVG CPU", "PEAK CPU",
                       "PEAK RSS", "READ", "WRITTEN", "PROCS", "ERROR"])
