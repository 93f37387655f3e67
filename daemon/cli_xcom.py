"""`flow tasks xcom`: the values a task instance pushed, from flowd (xcom.get)."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import click

from .cli import Ctx, Fail, emit_json
from .cli_remote import JSON_OPTION, remote
from .cli_run import tasks

ONE_LINE = 100
"""Values whose JSON fits in this many characters print on their key's line; longer ones indented below."""


def value_lines(key: str, value: Any) -> list[str]:
    compact = json.dumps(value, ensure_ascii=False)
    if len(compact) <= ONE_LINE:
        return [f"{key} = {compact}"]
    return [f"{key} =", textwrap.indent(json.dumps(value, ensure_ascii=False, indent=2), "  ")]


def cut_lines(key: str, cut: dict[str, Any]) -> list[str]:
    head = str(cut.get("head") or "")
    size = cut.get("bytes")
    return [f"{key} = (cut by flowd: {size} bytes as JSON; the first {len(head.encode())} follow)",
            textwrap.indent(head, "  ") + " …"]


@tasks.command("xcom")
@click.argument("dag_id")
@click.argument("run_id")
@click.argument("task_id")
@click.option("--key", "-k", help="Only this key (the value a task returns is `return_value`).")
@JSON_OPTION
@click.pass_obj
def tasks_xcom(obj: Ctx, dag_id: str, run_id: str, task_id: str, key: str | None, as_json: bool) -> None:
    """The XCom values TASK pushed in RUN_ID, one `key = JSON` per line (see `flow runs list DAG`).

    flowd sends at most 16 KiB of each value: a longer one shows its start and its full size.
    """
    with remote(obj) as client:
        got = client.call("xcom.get", dag_id=dag_id, run_id=run_id, task_id=task_id, key=key)
    if as_json:
        emit_json(got)
        return
    values: dict[str, Any] = got.get("xcom") or {}
    cut: dict[str, dict[str, Any]] = got.get("truncated") or {}
    if not values and not cut:
        if key is not None:
            raise Fail(f"task {task_id!r} pushed no XCom {key!r} in run {run_id!r} of {dag_id}")
        click.echo(f"task {task_id!r} pushed no XComs in run {run_id!r} of {dag_id}")
        return
    for name in sorted(set(values) | set(cut)):
        for line in value_lines(name, values[name]) if name in values else cut_lines(name, cut[name]):
            click.echo(line)
