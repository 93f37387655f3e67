"""CLI commands that run tasks in the foreground: `dags test`, `dags backfill`, `tasks test`.

They use the same engine and executor as flowd, with live task output on the terminal.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import sys
import tempfile
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
    get_dag,
    parse_date,
    parse_json_option,
    print_table,
)
from .specs import log_path


def cli_actor() -> dict[str, Any]:
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return {"uid": uid, "user": name}


class LiveOutput:
    """Prints task state changes and, as they are written, the lines of the logs of running tries."""

    def __init__(self, log_folder: str, *, prefix_dag: bool = False):
        self.log_folder = log_folder
        self.prefix_dag = prefix_dag
        self.offsets: dict[str, int] = {}
        self.labels: dict[str, str] = {}

    def _label(self, p: dict[str, Any]) -> str:
        return f"{p['dag_id']}.{p['task_id']}" if self.prefix_dag else p["task_id"]

    def listener(self, kind: str, p: dict[str, Any]) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        if kind == "run":
            click.echo(f"[{stamp}] run {p['run_id']} {p['state']}" + (f": {p['reason']}" if p.get("reason") else ""))
            return
        if kind != "ti":
            return
        path = log_path(self.log_folder, p["dag_id"], p["run_id"], p["task_id"], p["try_number"])
        if p["state"] == "queued":
            self.offsets.setdefault(path, 0)
            self.labels[path] = self._label(p)
        if p["state"] in ("queued", "running"):
            return
        if path in self.offsets:
            self.drain(path, final=True)
            del self.offsets[path]
        glyph = GLYPHS.get(p["state"], "?")
        why = f"  ({p['reason']})" if p.get("reason") and p["state"] != "success" else ""
        click.echo(f"[{stamp}] {glyph} {self._label(p)} {p['state']}{why}")

    def drain(self, path: str, *, final: bool = False) -> None:
        try:
            with open(path, "rb") as fh:
                fh.seek(self.offsets[path])
                data = fh.read()
        except OSError:
            return
        if not data:
            return
        end = len(data) if final else data.rfind(b"\n") + 1
        chunk, self.offsets[path] = data[:end], self.offsets[path] + end
        for line in chunk.decode("utf-8", "replace").splitlines():
            click.echo(f"  {self.labels.get(path, '?')} | {line}")

    async def pump(self) -> None:
        while True:
            for path in list(self.offsets):
                self.drain(path)
            await asyncio.sleep(0.1)


async def run_foreground(engine: Any, live: LiveOutput | None) -> None:
    pump = asyncio.create_task(live.pump()) if live else None
    try:
        await engine.run(once=True, kill_on_exit=True)
    finally:
        if pump:
            pump.cancel()


def run_to_end(engine: Any, live: LiveOutput | None) -> None:
    try:
        asyncio.run(run_foreground(engine, live))
    except KeyboardInterrupt:
        click.echo("flow: interrupted; running tasks were stopped", err=True)
        sys.exit(130)


def summarize(engine: Any, run_keys: list[int]) -> bool:
    """Print each run's task table; True when every run succeeded."""
    ok = True
    for key in run_keys:
        run = engine.store.run_by_key(key)
        tis = {t["task_id"]: t for t in engine.store.task_instances(key)}
        order = [t["task_id"] for t in engine.dags[run["dag_id"]]["tasks"] if t["task_id"] in tis]
        order += [t for t in tis if t not in order]
        click.echo(f"\nrun {run['run_id']}: {GLYPHS.get(run['state'], '')} {run['state']}")
        rows = []
        for tid in order:
            t = tis[tid]
            dur = f"{t['duration']:.2f}s" if t.get("duration") is not None else ""
            rows.append([tid, f"{GLYPHS.get(t['state'], '')} {t['state']}", t["try_number"], dur,
                         "" if t.get("exit_code") is None else t["exit_code"], (t.get("error") or "")[:70]])
        print_table(rows, ["TASK", "STATE", "TRIES", "DURATION", "EXIT", "ERROR"])
        ok = ok and run["state"] == "success"
    return ok


@dags.command("test")
@click.argument("dag_id")
@click.option("--date", "date", help="Logical date of the run (default: now).")
@click.option("--conf", help="Run configuration as a JSON object.")
@click.pass_obj
def dags_test(obj: Ctx, dag_id: str, date: str | None, conf: str | None) -> None:
    """Run one whole DAG run in the foreground with live task output; exit 1 if it fails."""
    conf_data = parse_json_option(conf, "--conf")
    when = parse_date(date, "--date", obj.settings.default_timezone)
    live = LiveOutput(obj.settings.log_folder)
    engine = obj.engine(listener=live.listener)
    get_dag(engine, dag_id)
    from .ops import EngineError

    try:
        run = engine.trigger(dag_id, conf=conf_data, logical_date=when, actor=cli_actor(), unpause_run=True)
    except EngineError as exc:
        raise Fail(str(exc)) from None
    run_to_end(engine, live)
    if not summarize(engine, [run["key"]]):
        sys.exit(EXIT_FAILED)


@dags.command("backfill")
@click.argument("dag_id")
@click.option("-s", "--start", "start", required=True, help="First logical date (inclusive).")
@click.option("-e", "--end", "end", required=True, help="Last logical date (inclusive).")
@click.option("--conf", help="Run configuration as a JSON object.")
@click.option("--dry-run", is_flag=True, help="Only list the runs that would be created.")
@click.pass_obj
def dags_backfill(obj: Ctx, dag_id: str, start: str, end: str, conf: str | None, dry_run: bool) -> None:
    """Create and run, in the foreground, one run per interval in [start, end] that has none yet."""
    conf_data = parse_json_option(conf, "--conf")
    tz = obj.settings.default_timezone
    s, e = parse_date(start, "--start", tz), parse_date(end, "--end", tz)
    live = LiveOutput(obj.settings.log_folder)
    engine = obj.engine(listener=None if dry_run else live.listener)
    get_dag(engine, dag_id)
    from .ops import EngineError

    try:
        planned = engine.backfill(dag_id, s, e, conf=conf_data, dry_run=dry_run, actor=cli_actor())
    except EngineError as exc:
        raise Fail(str(exc)) from None
    if dry_run or not planned:
        click.echo("\n".join(p["run_id"] for p in planned) or "nothing to backfill: every interval has a run")
        return
    keys = list(engine.runs)
    engine.unpaused_runs.update(keys)
    run_to_end(engine, live)
    if not summarize(engine, keys):
        sys.exit(EXIT_FAILED)


@cli.group()
def tasks() -> None:
    """List, test, clear, retry and mark tasks."""


@tasks.command("list")
@click.argument("dag_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def tasks_list(obj: Ctx, dag_id: str, as_json: bool) -> None:
    """The DAG's task ids in dependency order."""
    found = get_dag(obj.engine(), dag_id)["tasks"]
    if as_json:
        emit_json([{k: t[k] for k in ("task_id", "operator", "upstream", "downstream", "trigger_rule", "retries")}
                   for t in found])
        return
    for t in found:
        click.echo(t["task_id"])


@tasks.command("test")
@click.argument("dag_id")
@click.argument("task_id")
@click.option("--date", "date", help="Logical date for templates (default: now).")
@click.option("--conf", help="dag_run.conf as a JSON object.")
@click.pass_obj
def tasks_test(obj: Ctx, dag_id: str, task_id: str, date: str | None, conf: str | None) -> None:
    """Run one task now, ignoring its dependencies, without recording anything; exit 1 if it fails."""
    from .engine import RunMem
    from .specs import build_spec, run_id_for

    conf_data = parse_json_option(conf, "--conf") or {}
    when = parse_date(date, "--date", obj.settings.default_timezone) or datetime.now(UTC)
    engine = obj.engine()
    ser = get_dag(engine, dag_id)
    task = next((t for t in ser["tasks"] if t["task_id"] == task_id), None)
    if task is None:
        raise Fail(f"DAG {dag_id!r} has no task {task_id!r} (tasks: {', '.join(t['task_id'] for t in ser['tasks'])})")
    if task["kind"] == "empty":
        click.echo(f"{task_id} is an {task['operator']}: nothing to run")
        return
    with tempfile.TemporaryDirectory(prefix="flow-tasks-test-") as tmp:
        engine.settings.log_folder = tmp
        run = RunMem(0, dag_id, run_id_for("test", when), "manual", None, when, when, when,  # type: ignore[arg-type]
                     conf_data, when, when, {}, {})
        spec = build_spec(engine, run, task, 1, 1)
        live = LiveOutput(tmp)
        live.offsets[spec.log_path], live.labels[spec.log_path] = 0, task_id
        result = asyncio.run(_run_one(engine.executor, spec, live))
    if result.xcom:
        click.echo(f"xcom: {result.xcom}")
    click.echo(f"{GLYPHS['success'] if result.ok else GLYPHS['failed']} {task_id} "
               f"{'succeeded' if result.ok else 'failed: ' + (result.error or '')}")
    if not result.ok:
        sys.exit(EXIT_FAILED)


async def _run_one(executor: Any, spec: Any, live: LiveOutput) -> Any:
    done: asyncio.Future = asyncio.get_running_loop().create_future()
    await executor.start(lambda ref, pid: None, lambda r: done.done() or done.set_result(r))
    pump = asyncio.create_task(live.pump())
    try:
        executor.submit(spec)
        result = await done
        live.drain(spec.log_path, final=True)
        live.offsets.pop(spec.log_path, None)
        return result
    finally:
        pump.cancel()
        await executor.stop(kill_running=True)


__all__ = ["print_table", "tasks"]
