"""`flow variables list|get|set|delete|import|export`: Airflow-style Variables in flow's database.

Tries read them (flow.variables.Variable.get, {{ var.value.KEY }}); an AIRFLOW_VAR_<KEY>
environment variable of the task's process still wins, as in Airflow. Values of keys that look
secret are shown as *** by `list` (ask for one with `get`).
"""

from __future__ import annotations

import json
from typing import Any

import click

from flow.variables import mask

from .cli import Ctx, Fail, cli, emit_json, print_table


@cli.group()
def variables() -> None:
    """List, read, set, delete, import and export Variables."""


@variables.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def variables_list(obj: Ctx, as_json: bool) -> None:
    """Every variable, its value (masked when the key looks secret) and description."""
    found = obj.store().variables()
    if as_json:
        emit_json([{"key": k, "value": mask(k, v["value"]), "description": v["description"]} for k, v in found.items()])
        return
    if not found:
        click.echo("no variables")
        return
    print_table([[k, _short(mask(k, v["value"])), v["description"] or ""] for k, v in found.items()],
                ["KEY", "VALUE", "DESCRIPTION"])


def _short(value: str) -> str:
    one = " ".join(value.split())
    return one if len(one) <= 60 else one[:57] + "..."


@variables.command("get")
@click.argument("key")
@click.option("--json", "deserialize", is_flag=True, help="Parse the value as JSON and print it indented.")
@click.pass_obj
def variables_get(obj: Ctx, key: str, deserialize: bool) -> None:
    """Print one variable's value; exit 1 when there is none."""
    found = obj.store().variables().get(key)
    if found is None:
        raise Fail(f"variable {key!r} does not exist")
    if deserialize:
        try:
            click.echo(json.dumps(json.loads(found["value"]), indent=2))
        except ValueError as exc:
            raise Fail(f"variable {key!r} is not JSON: {exc}") from None
        return
    click.echo(found["value"])


@variables.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--description", help="What the variable is for.")
@click.pass_obj
def variables_set(obj: Ctx, key: str, value: str, description: str | None) -> None:
    """Create or replace a variable."""
    _check_key(key)
    with obj.store().begin() as tx:
        tx.set_variable(key, value, description)
    click.echo(f"set {key}")


@variables.command("delete")
@click.argument("key")
@click.pass_obj
def variables_delete(obj: Ctx, key: str) -> None:
    """Delete a variable; exit 1 when there was none."""
    with obj.store().begin() as tx:
        gone = tx.delete_variable(key)
    if not gone:
        raise Fail(f"variable {key!r} does not exist")
    click.echo(f"deleted {key}")


@variables.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.pass_obj
def variables_import(obj: Ctx, path: str) -> None:
    """Set every variable of a JSON object file, as Airflow's `variables import` reads it.

    ``{"key": "text", "other": {"a": 1}}``: a value that is not a string is stored as its JSON. The
    whole file is checked before anything is written.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise Fail(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise Fail(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Fail(f"{path}: expected a JSON object of key: value, not {type(data).__name__}")
    rows: list[tuple[str, str, str | None]] = []
    for key, value in data.items():
        _check_key(key, where=path)
        description = None
        if isinstance(value, dict) and set(value) <= {"value", "description"} and "value" in value:
            value, description = value["value"], value.get("description")
        rows.append((key, value if isinstance(value, str) else json.dumps(value), description))
    with obj.store().begin() as tx:
        for key, value, description in rows:
            tx.set_variable(key, value, description)
    click.echo(f"imported {len(rows)} variable(s) from {path}")


@variables.command("export")
@click.argument("path", type=click.Path(dir_okay=False))
@click.pass_obj
def variables_export(obj: Ctx, path: str) -> None:
    """Write every variable to a JSON object file (values unmasked: keep the file private)."""
    found = obj.store().variables()
    data: dict[str, Any] = {}
    for key, v in found.items():
        try:
            data[key] = json.loads(v["value"]) if v["value"].lstrip()[:1] in ("{", "[") else v["value"]
        except ValueError:
            data[key] = v["value"]
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
    except OSError as exc:
        raise Fail(f"{path}: cannot write: {exc.strerror or exc}") from None
    click.echo(f"exported {len(data)} variable(s) to {path}")


def _check_key(key: str, where: str = "key") -> None:
    if not isinstance(key, str) or not key or len(key) > 250 or any(c.isspace() for c in key):
        raise Fail(f"{where}: variable key {key!r} must be 1-250 characters without spaces")
