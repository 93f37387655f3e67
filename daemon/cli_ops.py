"""`flow db clean` and the alert/storage lines of `flow status`: day-two operations over the socket.

`db clean` asks flowd (the `db.clean` method) rather than opening the database itself: flowd owns
the database while it runs and knows which runs are still in flight, so a clean can never take
rows from under a running try.
"""

from __future__ import annotations

from typing import Any

import click

from .cli import Ctx, Fail, db, emit_json, parse_date, print_table


def _size(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def ops_status_rows(st: dict[str, Any]) -> list[tuple[str, str]]:
    """`flow status` lines for alerts and storage (absent from an older flowd's reply)."""
    from .cli_remote import when

    rows: list[tuple[str, str]] = []
    note = st.get("notifications")
    if isinstance(note, dict):
        names = ", ".join(f"{k} ({v})" for k, v in (note.get("configured") or {}).items()) or "none configured"
        rows.append(("alerts", f"{note.get('sent', 0)} sent, {note.get('failed', 0)} failed, "
                               f"{note.get('pending', 0)} pending; notifiers: {names}"))
        last = note.get("last_failure")
        if last:
            rows.append(("", f"last failure {when(last.get('time'))} via {last.get('notifier')} for "
                             f"{last.get('dag_id')}.{last.get('task_id')}: {last.get('reason')}"))
        for item in note.get("unknown") or []:
            rows.append(("", f"warning: DAG {item.get('dag_id')}: {item.get('detail')} (not configured)"))
    db = st.get("database")
    if isinstance(db, dict):
        state = (f"{db['problem']} for {db.get('for_seconds')} s ({db.get('failed_writes')} failed writes, "
                 f"retrying; no task starts): {db.get('detail')}" if db.get("problem") else "ok")
        rows.append(("db state", f"{state}; lock {db.get('lock')}, lease epoch {db.get('epoch')}"))
    storage = st.get("storage")
    if isinstance(storage, dict):
        days = storage.get("log_retention_days")
        cap = storage.get("max_log_bytes_per_try")
        sizes = "" if "log_size" in st else (  # an older flowd without the footprint line
            f"database {_size(storage.get('db_bytes'))}, logs {_size(storage.get('log_bytes'))}; ")
        rows.append(("logs", f"{sizes}{storage.get('log_files') if storage.get('log_files') is not None else '-'} "
                             f"file(s) after the last sweep; kept {f'{days} days' if days else 'forever'}, "
                             f"{_size(cap) if cap else 'no limit'} per try"))
        problem = storage.get("log_problem")
        if isinstance(problem, dict):
            rows.append(("", f"warning: {problem.get('reason')} since {when(problem.get('since'))}: "
                             f"{problem.get('tries')} tries' logs incomplete (last: {problem.get('last_try')}); "
                             f"{_size(storage.get('log_free_bytes'))} free"))
    if st.get("default_timezone"):
        rows.append(("time zone", str(st["default_timezone"])))
    return rows


@db.command("clean")
@click.option("--before", required=True, help="Remove finished runs whose logical date is before this "
                                              "(a date or date-time; without an offset, in default_timezone).")
@click.option("--dag", "dag_id", help="Only this DAG's runs.")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@click.option("--yes", "-y", is_flag=True, help="Do it without asking.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def db_clean(obj: Ctx, before: str, dag_id: str | None, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Remove old runs, their task instances, tries, XComs and logs (through flowd, which must run)."""
    from .cli_remote import remote, when

    cutoff = parse_date(before, "--before", obj.settings.default_timezone)
    assert cutoff is not None
    params: dict[str, Any] = {"before": cutoff.isoformat()}
    if dag_id:
        params["dag_id"] = dag_id
    with remote(obj, timeout=600.0) as client:
        if not dry_run and not yes:
            preview = client.call("db.clean", **params, dry_run=True)
            if not preview["runs"]:
                _report(preview, as_json, when(cutoff.isoformat()))
                return
            _report(preview, False, when(cutoff.isoformat()))
            if not click.get_text_stream("stdin").isatty():
                raise Fail("not removing anything without --yes (stdin is not a terminal)")
            if not click.confirm("Remove all of this?", default=False):
                raise Fail("nothing removed")
        result = client.call("db.clean", **params, dry_run=dry_run)
    _report(result, as_json, when(cutoff.isoformat()))


def _report(result: dict[str, Any], as_json: bool, cutoff: str) -> None:
    if as_json:
        emit_json(result)
        return
    verb = "would remove" if result.get("dry_run") else "removed"
    click.echo(f"{verb} {result['runs']} finished run(s) before {cutoff}:")
    rows = [[table, count] for table, count in sorted(result.get("rows", {}).items())]
    rows.append(["logs", f"{result.get('log_files', 0)} file(s), {_size(result.get('log_bytes', 0))}"])
    print_table(rows, ["WHAT", "COUNT"])
