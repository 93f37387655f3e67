"""`flow`: the command line. Offline commands work on the DAG folder and the database directly.

Exit codes: 0 success; 1 the thing asked for failed (a DAG run failed, an operation was
refused, the database cannot be opened); 2 the command line itself is wrong.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from flow import paths

from .config import ConfigError, Settings, load_settings, mask_url

EXIT_FAILED = 1
EXIT_USAGE = 2


class Fail(click.ClickException):
    """One clear line on stderr and exit status 1."""

    exit_code = EXIT_FAILED

    def show(self, file: Any = None) -> None:
        click.echo(f"flow: {self.message}", err=True)


class Ctx:
    def __init__(self, flags: dict[str, Any], *, utc: bool = False):
        self.flags = flags
        self.utc = utc
        self._settings: Settings | None = None
        self._engine: Any = None

    @property
    def display_zone(self) -> str:
        """Where times are shown: UTC with --utc or FLOW_UTC=1, else default_timezone (the host's zone)."""
        if self.utc:
            return "UTC"
        try:
            return self.settings.default_timezone or "UTC"
        except Fail:
            return "UTC"

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.flags)
            except ConfigError as exc:
                raise Fail(str(exc)) from None
        return self._settings

    def socket_candidates(self) -> list[str]:
        """The socket named by --socket, $FLOW_SOCKET or flowd.toml; else the user's own flowd's,
        then the system flowd's (flow.paths, the order flowtui uses too)."""
        s = self.settings
        named = s.socket_path if s.sources.get("socket_path", "default") != "default" else None
        return paths.socket_candidates(named)

    def store(self) -> Any:
        from .store import Store, StoreError

        try:
            return Store.open(self.settings.db_url)
        except StoreError as exc:
            raise Fail(str(exc)) from None

    def engine(self, *, parse: bool = True, listener: Any = None) -> Any:
        """An engine on the configured database, its DAGs refreshed from the folder."""
        import sqlalchemy.exc

        from flow.executors.base import build_executor

        from .engine import Engine
        from .watch import FolderWatcher

        executor = build_executor(self.settings.executor, connections_file=self.settings.connections_file)
        engine = Engine(self.store(), executor, self.settings, schedule=False, listener=listener)
        try:
            engine.load(run_keys=set())
            if parse:
                FolderWatcher(engine).refresh_sync()
        except FileNotFoundError as exc:
            raise Fail(f"{exc} (set --dags-folder or FLOW_DAGS_FOLDER)") from None
        except sqlalchemy.exc.OperationalError as exc:
            raise Fail(self._unwritable(exc)) from None
        return engine

    def _unwritable(self, exc: Exception) -> str:
        """One line for a database the offline commands cannot write (they record the DAGs they
        parse): on a server that is the service's database, owned by its user."""
        reason = str(getattr(exc, "orig", exc)).splitlines()[0]
        where = f"cannot write the database {mask_url(self.settings.db_url)} ({reason})"
        if self.settings.sources.get("db_url") != "command line" and paths.client_config().system:
            return (f"{where}: it is the flowd service's (from {paths.system_config_file()}); run offline "
                    "commands as its user (sudo -u flowd flow ...), or use --db for a database of your own")
        return where


def parse_json_option(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc.msg} at column {exc.colno}", param_hint=name) from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object such as '{\"key\": 1}'", param_hint=name)
    return data


def parse_date(value: str | None, name: str, tz: str = "UTC") -> datetime | None:
    """A date or date-time from the command line; without an offset it is read in `tz`."""
    if value is None:
        return None
    import pendulum

    try:
        dt = pendulum.parse(value, tz=tz)
    except Exception:
        raise click.BadParameter(f"{value!r} is not a date; use e.g. 2026-01-31 or 2026-01-31T09:00:00+01:00",
                                 param_hint=name) from None
    if not isinstance(dt, datetime):
        raise click.BadParameter(f"{value!r} is not a date and time", param_hint=name)
    return datetime.fromtimestamp(dt.timestamp(), UTC)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def for_terminal(text: str, keep: str = "") -> str:
    """Text from DAG files, tasks or other users, as a human may see it: on a terminal its control
    characters are drawn (`^[`), never obeyed (an OSC 2 in a DAG's owner retitled the terminal);
    a pipe or file gets it unchanged."""
    from flow.textsafe import visible

    return visible(text, keep) if sys.stdout.isatty() else text


def print_table(rows: list[list[Any]], header: list[str]) -> None:
    cells = [header] + [[for_terminal("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, r in enumerate(cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dags-folder", envvar=None, help="DAG folder (default: $FLOW_DAGS_FOLDER or ~/.config/flowd/dags).")
@click.option("--db", "db_url", help="Database URL or SQLite path (default: $FLOW_DB_URL or the user data dir).")
@click.option("--log-folder", help="Task log folder (default: $FLOW_LOG_FOLDER or the user data dir).")
@click.option("--socket", "socket_path", help="flowd's socket (default: $FLOW_SOCKET, flowd.toml, else your own flowd's "
              "socket if it exists, then /run/flowd/flowd.sock).")
@click.option("--utc", is_flag=True, envvar="FLOW_UTC",
              help="Show times in UTC (also FLOW_UTC=1); by default they are in default_timezone, with the zone.")
@click.version_option(package_name="flowtui", prog_name="flow")
@click.pass_context
def cli(ctx: click.Context, dags_folder: str | None, db_url: str | None, log_folder: str | None,
        socket_path: str | None, utc: bool) -> None:
    """flow: DAGs of tasks on a schedule, with retries, history and logs."""
    ctx.obj = Ctx({"dags_folder": dags_folder, "db_url": db_url, "log_folder": log_folder,
                   "socket_path": socket_path}, utc=utc)


@cli.group()
def db() -> None:
    """The state database."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(obj: Ctx) -> None:
    """Create or migrate the database schema to this version of flow."""
    store = obj.store()
    click.echo(f"database {store.url} is at schema revision {store.revision()}")


@cli.group()
def dags() -> None:
    """List, inspect, test and backfill DAGs."""


@dags.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def dags_list(obj: Ctx, as_json: bool) -> None:
    """Parse the DAG folder and list its DAGs."""
    from flow.schedule import ScheduleError, parse_schedule

    engine = obj.engine()
    rows = []
    latest = engine.store.latest_runs()
    for row in sorted(engine.store.dags(), key=lambda r: r["dag_id"]):
        if not row["is_active"]:
            continue
        ser = row["serialized"]
        try:
            sched = parse_schedule(_schedule_value(ser), ser.get("timezone", "UTC"))
            human = sched.describe() if sched else "manual only"
        except ScheduleError as exc:
            human = str(exc)
        last = latest.get(row["dag_id"])
        rows.append({
            "dag_id": row["dag_id"], "paused": bool(row["is_paused"]), "schedule": ser.get("schedule"),
            "schedule_text": human, "timezone": ser.get("timezone"), "owner": row.get("owner"),
            "tags": row.get("tags") or [], "fileloc": row["fileloc"],
            "next_run": row["next_dagrun"].isoformat() if row.get("next_dagrun") else None,
            "last_run_state": last["state"] if last else None,
            "last_run": last["logical_date"].isoformat() if last else None,
        })
    errors = engine.store.import_errors()
    if as_json:
        emit_json({"dags": rows, "import_errors": len(errors)})
        return
    print_table([[r["dag_id"], "yes" if r["paused"] else "no", r["schedule_text"], r["owner"],
                  ",".join(r["tags"]), r["last_run_state"] or "-"] for r in rows],
                ["DAG", "PAUSED", "SCHEDULE", "OWNER", "TAGS", "LAST RUN"])
    if errors:
        click.echo(f"\n{len(errors)} import error{'' if len(errors) == 1 else 's'}; see `flow dags list-import-errors`",
                   err=True)


def _schedule_value(ser: dict[str, Any]) -> Any:
    if ser.get("schedule_interval_seconds") is not None:
        from datetime import timedelta

        return timedelta(seconds=ser["schedule_interval_seconds"])
    return ser.get("schedule")


@dags.command("list-import-errors")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def dags_import_errors(obj: Ctx, as_json: bool) -> None:
    """Files in the DAG folder that failed to load, and why; then the warnings of those that loaded.

    Warnings (an Airflow argument accepted but not enforced, such as sla) do not change the exit status.
    """
    engine = obj.engine()
    errors = engine.store.import_errors()
    warnings = [(ser.get("fileloc") or "", text) for _, ser in sorted(engine.dags.items())
                for text in ser.get("warnings") or []]
    if as_json:
        emit_json([{"kind": "error", "filename": e["filename"], "message": e["message"], "traceback": e["traceback"]}
                   for e in errors]
                  + [{"kind": "warning", "filename": f, "message": text, "traceback": ""} for f, text in warnings])
    else:
        if not errors:
            click.echo("no import errors")
        for e in errors:
            click.echo(for_terminal(f"{e['message']}", keep="\n\t"))
        for filename, text in warnings:
            click.echo(for_terminal(f"warning: {filename}: {text}", keep="\n\t"))
    if errors:
        sys.exit(EXIT_FAILED)


def get_dag(engine: Any, dag_id: str) -> dict[str, Any]:
    from .ops import EngineError

    try:
        ser = engine._dag(dag_id)
    except EngineError as exc:
        errors = engine.store.import_errors()
        hint = f"; {len(errors)} file(s) failed to import (flow dags list-import-errors)" if errors else ""
        raise Fail(f"{exc}{hint}") from None
    if dag_id in engine.inactive:
        raise Fail(f"DAG {dag_id!r} is no longer in the DAG folder {engine.settings.dags_folder}")
    return ser


@dags.command("show")
@click.argument("dag_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def dags_show(obj: Ctx, dag_id: str, as_json: bool) -> None:
    """Show a DAG's tasks and dependencies as text."""
    from .graphtext import render_graph

    ser = get_dag(obj.engine(), dag_id)
    if as_json:
        emit_json(ser)
        return
    click.echo(render_graph(ser))


@dags.command("next-runs")
@click.argument("dag_id")
@click.option("-n", "count", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def dags_next_runs(obj: Ctx, dag_id: str, count: int, as_json: bool) -> None:
    """Preview the next fire times in the DAG's zone and in UTC."""
    from zoneinfo import ZoneInfo

    from flow.schedule import next_runs

    engine = obj.engine()
    ser = get_dag(engine, dag_id)
    infos = next_runs(ser, datetime.now(UTC), count, first_seen=engine.first_seen.get(dag_id))
    tz = ZoneInfo(ser.get("timezone") or "UTC")
    rows = [{"logical_date": i.logical_date.isoformat(), "local": i.logical_date.astimezone(tz).isoformat(),
             "data_interval_start": i.data_interval_start.isoformat(),
             "data_interval_end": i.data_interval_end.isoformat()} for i in infos]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(f"DAG {dag_id!r} has no upcoming runs (schedule {ser.get('schedule')!r})")
        return
    print_table([[i.logical_date.astimezone(tz).strftime(f"%Y-%m-%d %H:%M:%S %Z ({tz.key})"),
                  i.logical_date.strftime("%Y-%m-%d %H:%M:%S UTC")] for i in infos], ["LOCAL", "UTC"])


def show_time(dt: datetime, zone: str) -> str:
    """'2026-03-01 18:00:03 KST': a stored UTC instant on the reader's clock, always with its zone."""
    from zoneinfo import ZoneInfo

    try:
        tz = ZoneInfo(zone or "UTC")
    except Exception:
        tz = ZoneInfo("UTC")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def main() -> None:
    from . import (  # noqa: F401  (they register their commands)
        cli_connections,
        cli_ops,
        cli_remote,
        cli_resources,
        cli_run,
        cli_variables,
        cli_xcom,
    )

    cli(prog_name="flow")
