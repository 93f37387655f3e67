"""CLI commands that operate a running flowd over its socket: status, trigger, pause, runs, clear, logs, audit.

They never open the database or the DAG folder: flowd owns both, and these commands see exactly
what the console sees. Every error flowd sends back is one line (`flow: <message>`, exit 1).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click

from flow.states import GLYPHS

from .cli import (
    EXIT_FAILED,
    Ctx,
    Fail,
    cli,
    dags,
    emit_json,
    for_terminal,
    parse_date,
    parse_json_option,
    print_table,
    show_time,
)
from .cli_ops import ops_status_rows
from .cli_run import tasks
from .client import Client, ClientError, RemoteError
from .follow import RunFollower, follow_log, read_log

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
RUN_OPTION = click.option("--run", "run_id", required=True, help="The run's id (see `flow runs list DAG`).")
YES_OPTION = click.option("--yes", "-y", is_flag=True, help="Do it without asking.")
DRY_RUN_OPTION = click.option("--dry-run", is_flag=True, help="Only show what would change.")


@contextmanager
def remote(obj: Ctx, *, timeout: float = 10.0) -> Iterator[Client]:
    """A connection to flowd for one command; any client or protocol error becomes one `flow:` line."""
    try:
        client = Client.connect_first(obj.socket_candidates(), timeout=timeout)
    except ClientError as exc:
        raise Fail(str(exc)) from None
    try:
        yield client
    except ClientError as exc:
        raise Fail(str(exc)) from None
    finally:
        client.close()


def when(value: str | None) -> str:
    """An ISO time from flowd (UTC) on the reader's clock, with the zone: default_timezone, or UTC
    with --utc / FLOW_UTC=1."""
    if not value:
        return "-"
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return value
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(Ctx) if ctx is not None else None
    return show_time(dt if dt.tzinfo else dt.replace(tzinfo=UTC), obj.display_zone if obj else "UTC")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours < 48 else f"{hours // 24}d {hours % 24:02d}h"


def state_cell(state: str | None) -> str:
    return f"{GLYPHS.get(state or '', '?')} {state}" if state else "-"


def _mib(value: Any) -> str:
    return f"{value / (1 << 20):.1f} MiB" if isinstance(value, int | float) else "-"


@cli.command("status")
@JSON_OPTION
@click.pass_obj
def status(obj: Ctx, as_json: bool) -> None:
    """Is flowd up, and how is it doing: uptime, memory, CPU, loop lag, running tasks, DAGs."""
    with remote(obj) as client:
        st = client.call("status")
    if as_json:
        emit_json(st)
        return
    lag = st.get("loop_lag_ms")
    rows = [
        ("flowd", f"{st.get('version', '?')}, pid {st.get('pid', '?')}, up {duration(st.get('uptime'))} "
                  f"(since {when(st.get('started_at'))})"),
        ("resources", f"{_mib(st.get('rss'))} RSS, CPU {st.get('cpu_percent', 0):.1f}%, loop lag "
                      + (f"{lag:.1f} ms" if isinstance(lag, int | float) else "-")),
        ("tasks", f"{st.get('running', 0)} running, {st.get('free_slots', '?')} free slots "
                  f"(parallelism {st.get('parallelism', '?')})"),
        ("DAGs", f"{st.get('dags', 0)} ({st.get('paused', 0)} paused), {_count(st.get('import_errors', 0), 'import error')}"),
        ("DAG folder", st.get("dags_folder", "-")),
        ("database", st.get("db", "-")),
        ("socket", st.get("socket", "-")),
    ]
    rows += ops_status_rows(st)
    from .cli_resources import resource_rows

    rows[2:2] = resource_rows(st)
    for name, value in rows:
        click.echo(f"{name:<11}{value}")


@dags.command("trigger")
@click.argument("dag_id")
@click.option("--conf", help="Run configuration as a JSON object.")
@click.option("--date", "date", help="Logical date of the run (default: now).")
@click.option("--follow", "-f", is_flag=True, help="Stream task states and logs until the run ends; exit 1 if it fails.")
@JSON_OPTION
@click.pass_obj
def dags_trigger(obj: Ctx, dag_id: str, conf: str | None, date: str | None, follow: bool, as_json: bool) -> None:
    """Ask flowd to start a run of DAG now; prints the run id."""
    params: dict[str, Any] = {"dag_id": dag_id}
    conf_data = parse_json_option(conf, "--conf")
    if conf_data is not None:
        params["conf"] = conf_data
    logical = parse_date(date, "--date", obj.settings.default_timezone) if date else None
    if logical is not None:
        params["logical_date"] = logical.isoformat()
    with remote(obj, timeout=30.0) as client:
        if follow:
            client.call("subscribe", topics=["ti", "run"])
        if not as_json:
            _warn_if_paused(client, dag_id)  # before the run is queued, so the operator knows it will wait
        run = client.call("dags.trigger", **params)["run"]
        if as_json:
            click.echo(json.dumps({"run": run}, default=str, indent=None if follow else 2))
        else:
            click.echo(run["run_id"])
        if not follow:
            return
        try:
            final = RunFollower(client, dag_id, run["run_id"], as_json=as_json).follow()
        except KeyboardInterrupt:
            click.echo(f"flow: stopped following; run {run['run_id']} carries on in flowd", err=True)
            sys.exit(130)
    if final != "success":
        sys.exit(EXIT_FAILED)


def _count(n: Any, noun: str) -> str:
    """'1 import error', '3 import errors'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _warn_if_paused(client: Client, dag_id: str) -> None:
    try:
        dag = client.call("dags.get", dag_id=dag_id).get("dag") or {}
    except RemoteError:  # an unknown DAG: the trigger itself says so
        return
    if dag.get("is_paused"):
        click.echo(f"flow: DAG {dag_id!r} is paused: the run is queued and waits until it is unpaused "
                   f"(flow dags unpause {dag_id})", err=True)


def _set_paused(obj: Ctx, dag_id: str, paused: bool, as_json: bool) -> None:
    with remote(obj) as client:
        result = client.call("dags.pause", dag_id=dag_id, paused=paused)
    word = "paused" if paused else "unpaused"
    if as_json:
        emit_json({"dag_id": dag_id, "is_paused": paused, "changed": bool(result.get("changed"))})
    elif result.get("changed"):
        click.echo(f"DAG {dag_id!r} {word}")
    else:
        click.echo(f"DAG {dag_id!r} was already {word}")


@dags.command("pause")
@click.argument("dag_id")
@JSON_OPTION
@click.pass_obj
def dags_pause(obj: Ctx, dag_id: str, as_json: bool) -> None:
    """Stop flowd from creating scheduled runs of DAG (running tasks carry on)."""
    _set_paused(obj, dag_id, True, as_json)


@dags.command("unpause")
@click.argument("dag_id")
@JSON_OPTION
@click.pass_obj
def dags_unpause(obj: Ctx, dag_id: str, as_json: bool) -> None:
    """Let flowd schedule DAG again."""
    _set_paused(obj, dag_id, False, as_json)


@cli.group()
def runs() -> None:
    """A DAG's runs and the tries of their tasks (from flowd)."""


@runs.command("list")
@click.argument("dag_id", required=False)
@click.option("--limit", "-n", default=25, show_default=True, type=click.IntRange(1, 1000))
@click.option("--state", type=click.Choice(["queued", "running", "success", "failed"]),
              help="Only runs in this state (e.g. --state failed).")
@JSON_OPTION
@click.pass_obj
def runs_list(obj: Ctx, dag_id: str | None, limit: int, state: str | None, as_json: bool) -> None:
    """The DAG's runs, newest first; without DAG_ID, the latest runs of every DAG."""
    params: dict[str, Any] = {"limit": limit}
    if dag_id is not None:
        params["dag_id"] = dag_id
    if state is not None:
        params["state"] = state
    with remote(obj) as client:
        found = client.call("runs.list", **params).get("runs", [])
    if as_json:
        emit_json({"runs": found})
        return
    if not found:
        which = f"DAG {dag_id!r} has" if dag_id else "there are"
        click.echo(f"{which} no {state + ' ' if state else ''}runs yet")
        return
    lead = [] if dag_id else ["DAG"]
    print_table([[*([] if dag_id else [r.get("dag_id")]), r.get("run_id"), r.get("run_type"), state_cell(r.get("state")),
                  when(r.get("logical_date")), when(r.get("start_date")), when(r.get("end_date"))] for r in found],
                [*lead, "RUN ID", "TYPE", "STATE", "LOGICAL DATE", "STARTED", "ENDED"])


@runs.command("show")
@click.argument("dag_id")
@click.argument("run_id")
@JSON_OPTION
@click.pass_obj
def runs_show(obj: Ctx, dag_id: str, run_id: str, as_json: bool) -> None:
    """One run: its task instances and every try (state, times, exit code, host, pid, error)."""
    with remote(obj) as client:
        got = client.call("runs.get", dag_id=dag_id, run_id=run_id)
    if as_json:
        emit_json(got)
        return
    run = got.get("run") or {}
    click.echo(f"run {run.get('run_id', run_id)} of {dag_id}: {state_cell(run.get('state'))}, "
               f"logical date {when(run.get('logical_date'))}, {run.get('run_type', '?')}")
    if run.get("conf"):
        click.echo(f"conf {json.dumps(run['conf'])}")
    rows = []
    for ti in got.get("task_instances", []):
        tries = ti.get("tries") or []
        if not tries:
            rows.append([ti["task_id"], "-", state_cell(ti.get("state")), "-", "-", "-", "", "", "",
                         _short(ti.get("error"))])
        for t in tries:
            rows.append([ti["task_id"], t.get("try_number"), state_cell(t.get("state")), when(t.get("start_date")),
                         when(t.get("end_date")), duration(t.get("duration")),
                         "" if t.get("exit_code") is None else t["exit_code"], t.get("hostname") or "",
                         t.get("pid") or "", _short(t.get("error"))])
    click.echo("")
    print_table(rows, ["TASK", "TRY", "STATE", "STARTED", "ENDED", "DURATION", "EXIT", "HOST", "PID", "ERROR"])


def _short(text: str | None, width: int = 60) -> str:
    line = (text or "").strip().splitlines()[-1:] or [""]
    return line[0] if len(line[0]) <= width else line[0][:width - 3] + "..."


def _apply(obj: Ctx, method: str, params: dict[str, Any], *, verb: str, dry_run: bool, yes: bool,
           as_json: bool) -> None:
    """Show what a change would touch (from its dry run), confirm, then do it."""
    with remote(obj) as client:
        preview = client.call(method, **params, dry_run=True).get("task_instances", [])
        if not as_json:
            _print_affected(preview, verb)
        if dry_run or not preview:
            if as_json:
                emit_json({"task_instances": preview, "dry_run": True})
            return
        if not yes:
            if not sys.stdin.isatty():
                raise Fail(f"refusing to {verb} {len(preview)} task instance(s) without confirmation: use --yes")
            if not click.confirm(f"{verb.capitalize()} these {len(preview)} task instance(s)?", default=False,
                                 err=True):
                raise Fail("cancelled; nothing changed")
        done = client.call(method, **params, dry_run=False).get("task_instances", [])
    if as_json:
        emit_json({"task_instances": done, "dry_run": False})
    else:
        click.echo(f"{verb}: {len(done)} task instance(s)" if done else f"nothing left to {verb}")


def _print_affected(rows: list[dict[str, Any]], verb: str) -> None:
    if not rows:
        click.echo(f"nothing to {verb}")
        return
    print_table([[r.get("task_id"), state_cell(r.get("state")), r.get("try_number", "")] for r in rows],
                ["TASK", "NOW", "TRIES"])


@tasks.command("clear")
@click.argument("dag_id")
@click.argument("task_ids", nargs=-1)
@RUN_OPTION
@click.option("--downstream", is_flag=True, help="Also clear the tasks downstream of TASK.")
@click.option("--upstream", is_flag=True, help="Also clear the tasks upstream of TASK.")
@click.option("--failed-only", is_flag=True, help="Only failed and upstream-failed tasks.")
@DRY_RUN_OPTION
@YES_OPTION
@JSON_OPTION
@click.pass_obj
def tasks_clear(obj: Ctx, dag_id: str, task_ids: tuple[str, ...], run_id: str, downstream: bool, upstream: bool,
                failed_only: bool, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Run task instances of a run again (all of them without TASK); shows them and asks first."""
    params: dict[str, Any] = {"dag_id": dag_id, "run_id": run_id, "downstream": downstream, "upstream": upstream,
                              "failed_only": failed_only}
    if task_ids:
        params["task_ids"] = list(task_ids)
    _apply(obj, "tasks.clear", params, verb="clear", dry_run=dry_run, yes=yes, as_json=as_json)


@tasks.command("retry")
@click.argument("dag_id")
@RUN_OPTION
@DRY_RUN_OPTION
@YES_OPTION
@JSON_OPTION
@click.pass_obj
def tasks_retry(obj: Ctx, dag_id: str, run_id: str, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Run the failed and upstream-failed tasks of a run again."""
    _apply(obj, "tasks.retry", {"dag_id": dag_id, "run_id": run_id}, verb="retry", dry_run=dry_run, yes=yes,
           as_json=as_json)


@tasks.command("mark")
@click.argument("state", type=click.Choice(["success", "failed"]))
@click.argument("dag_id")
@click.argument("task_ids", nargs=-1)
@RUN_OPTION
@click.option("--downstream", is_flag=True, help="Also mark the tasks downstream of TASK.")
@click.option("--upstream", is_flag=True, help="Also mark the tasks upstream of TASK.")
@DRY_RUN_OPTION
@YES_OPTION
@JSON_OPTION
@click.pass_obj
def tasks_mark(obj: Ctx, state: str, dag_id: str, task_ids: tuple[str, ...], run_id: str, downstream: bool,
               upstream: bool, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Set task instances (all of the run's without TASK) to success or failed by hand."""
    params: dict[str, Any] = {"dag_id": dag_id, "run_id": run_id, "state": state, "downstream": downstream,
                              "upstream": upstream, "task_ids": list(task_ids)}
    if not task_ids:
        with remote(obj) as client:
            got = client.call("runs.get", dag_id=dag_id, run_id=run_id)
        params["task_ids"] = [ti["task_id"] for ti in got.get("task_instances", [])]
    _apply(obj, "tasks.mark", params, verb=f"mark {state}", dry_run=dry_run, yes=yes, as_json=as_json)


@cli.command("logs")
@click.argument("dag_id")
@click.argument("task_id")
@click.option("--run", "run_id", help="The run's id (default: the DAG's latest run).")
@click.option("--try", "try_number", type=click.IntRange(1), help="Which try (default: the latest).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the log grows, until the try ends.")
@click.option("--tail", type=click.IntRange(1), metavar="BYTES", help="Start this many bytes before the end.")
@JSON_OPTION
@click.pass_obj
def logs(obj: Ctx, dag_id: str, task_id: str, run_id: str | None, try_number: int | None, follow: bool,
         tail: int | None, as_json: bool) -> None:
    """Print a try's log (read from flowd, so it works for any user allowed on the socket)."""
    with remote(obj, timeout=30.0) as client:
        if run_id is None:
            latest = client.call("runs.list", dag_id=dag_id, limit=1).get("runs", [])
            if not latest:
                raise Fail(f"DAG {dag_id!r} has no runs yet, so task {task_id!r} has no log")
            run_id = latest[0]["run_id"]
        params: dict[str, Any] = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id,
                                  "offset": -tail if tail else 0}
        if try_number is not None:
            params["try_number"] = try_number
        # To a terminal a task's escape sequences are drawn, not obeyed; to a pipe or file, the bytes as written.
        write = (lambda text: click.echo(for_terminal(text, keep="\n\t"), nl=False)) if sys.stdout.isatty() else None
        if follow:
            try:
                follow_log(client, params, as_json=as_json, write=write)
            except KeyboardInterrupt:
                sys.exit(130)
            return
        read_log(client, params, as_json=as_json, write=write)


@cli.command("audit")
@click.option("--limit", "-n", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--dag", "dag_id", help="Only actions on this DAG.")
@JSON_OPTION
@click.pass_obj
def audit(obj: Ctx, limit: int, dag_id: str | None, as_json: bool) -> None:
    """Who did what to flowd, newest first: triggers, pauses, clears, marks (with user and uid)."""
    params: dict[str, Any] = {"limit": limit}
    if dag_id:
        params["dag_id"] = dag_id
    with remote(obj) as client:
        entries = client.call("audit.list", **params).get("entries", [])
    if as_json:
        emit_json({"entries": entries})
        return
    if not entries:
        click.echo("no audited actions yet")
        return
    print_table([[when(e.get("time")), f"{e.get('user') or '?'} ({e.get('uid')})", e.get("action"),
                  e.get("dag_id") or "", e.get("run_id") or "", e.get("task_id") or "",
                  _short(json.dumps(e["params"], default=str) if e.get("params") else "", 50)] for e in entries],
                ["TIME", "USER", "ACTION", "DAG", "RUN", "TASK", "DETAILS"])
