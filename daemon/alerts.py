"""What an alert says and to whom: pure functions from a finished try to messages.

The engine calls `alert_for` on the loop (no I/O); the notifier thread reads the log tail and
renders the message with `render_*`. A message answers the on-call engineer's first questions
without opening anything: which DAG, task, run and try, the error line, the last log lines, when
(in the configured zone, and UTC), and the exact command that shows the whole log.
"""

from __future__ import annotations

import os
import shlex
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

TAIL_LINES = 20
TAIL_BYTES = 64 * 1024
EMAIL = "email"
"""Target kind for the `email=` addresses, sent through the default SMTP notifier."""

HEADLINE = {"failed": "failed", "up_for_retry": "failed and will be retried", "success": "succeeded",
            "log_incomplete": "lost log output"}


def alert_targets(task: dict[str, Any], state: str) -> list[tuple[str | None, list[str] | None]]:
    """[(notifier name or None for the default SMTP one, addresses or None)] for a try ending in `state`."""
    email = list(task.get("email") or [])
    targets: list[tuple[str | None, list[str] | None]] = []
    if state in ("failed", "log_incomplete"):  # output lost to a full log folder goes where failures go
        if email and task.get("email_on_failure", True):
            targets.append((None, email))
        names = task.get("notify_on_failure") or []
    elif state == "up_for_retry":
        if email and task.get("email_on_retry"):
            targets.append((None, email))
        names = task.get("notify_on_retry") or []
    elif state == "success":
        names = task.get("notify_on_success") or []
    else:
        names = []
    targets += [(name, None) for name in names]
    return targets


def alert_for(dag_id: str, run_id: str, task: dict[str, Any], state: str, *, try_number: int, max_tries: int,
              error: str | None, log_path: str, ended: datetime, hostname: str) -> dict[str, Any] | None:
    """The alert to deliver, or None when the task asks for none."""
    targets = alert_targets(task, state)
    if not targets:
        return None
    return {"dag_id": dag_id, "run_id": run_id, "task_id": task["task_id"], "state": state,
            "try_number": try_number, "max_tries": max_tries, "error": error, "log_path": log_path,
            "ended": ended.astimezone(UTC), "hostname": hostname, "targets": targets}


def read_tail(path: str, lines: int = TAIL_LINES) -> list[str]:
    """The last `lines` lines of a log, reading at most TAIL_BYTES from its end."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - TAIL_BYTES))
            data = fh.read()
    except OSError as exc:
        return [f"(cannot read the log {path}: {exc.strerror})"]
    text = data.decode("utf-8", errors="replace").splitlines()
    if size > TAIL_BYTES and text:
        text = text[1:]  # the first line read may be cut in the middle
    return [line.rstrip() for line in text[-lines:]]


def log_command(alert: dict[str, Any]) -> str:
    return (f"flow logs {shlex.quote(alert['dag_id'])} {shlex.quote(alert['task_id'])} "
            f"--run {shlex.quote(alert['run_id'])} --try {alert['try_number']}")


def show_time(when: datetime, zone: str) -> str:
    """'2026-03-01 18:00:03 KST (Asia/Seoul), 09:00:03 UTC': local first, UTC for cross-checking."""
    try:
        tz = ZoneInfo(zone or "UTC")
    except Exception:
        tz, zone = ZoneInfo("UTC"), "UTC"
    local = when.astimezone(tz)
    if zone == "UTC":
        return local.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{local.strftime('%Y-%m-%d %H:%M:%S %Z')} ({zone}), {when.astimezone(UTC).strftime('%H:%M:%S')} UTC"


def headline(alert: dict[str, Any]) -> str:
    return (f"{alert['dag_id']}.{alert['task_id']} {HEADLINE.get(alert['state'], alert['state'])} "
            f"(try {alert['try_number']} of {alert['max_tries']})")


def subject(alert: dict[str, Any]) -> str:
    return f"[flow] {headline(alert)}"


def render_text(alert: dict[str, Any], tail: list[str], zone: str) -> str:
    rows = [
        headline(alert), "",
        f"DAG:    {alert['dag_id']}",
        f"Task:   {alert['task_id']}",
        f"Run:    {alert['run_id']}",
        f"Try:    {alert['try_number']} of {alert['max_tries']}",
        f"State:  {alert['state']}",
        f"Ended:  {show_time(alert['ended'], zone)}",
        f"Host:   {alert['hostname']}",
    ]
    if alert.get("error"):
        rows.append(f"Error:  {alert['error']}")
    rows += ["", f"Last {len(tail)} log lines:", *[f"  {line}" for line in tail], "",
             "The whole log:", f"  {log_command(alert)}", ""]
    return "\n".join(rows)


def render_json(alert: dict[str, Any], tail: list[str], zone: str) -> dict[str, Any]:
    ended = alert["ended"]
    try:
        local = ended.astimezone(ZoneInfo(zone or "UTC")).isoformat()
    except Exception:
        local = ended.isoformat()
    return {
        "event": f"task.{alert['state']}", "dag_id": alert["dag_id"], "task_id": alert["task_id"],
        "run_id": alert["run_id"], "try_number": alert["try_number"], "max_tries": alert["max_tries"],
        "state": alert["state"], "error": alert.get("error"), "hostname": alert["hostname"],
        "ended": local, "ended_utc": ended.isoformat(), "timezone": zone, "log_tail": tail,
        "log_command": log_command(alert), "text": headline(alert),
    }


def render_slack(alert: dict[str, Any], tail: list[str], zone: str) -> dict[str, Any]:
    """Slack's incoming-webhook body (also understood by Mattermost and Rocket.Chat)."""
    icon = ":x:" if alert["state"] == "failed" else ":warning:" if alert["state"] in (
        "up_for_retry", "log_incomplete") else ":white_check_mark:"
    facts = (f"*Run:* `{alert['run_id']}`\n*Try:* {alert['try_number']} of {alert['max_tries']}\n"
             f"*Ended:* {show_time(alert['ended'], zone)}\n*Host:* {alert['hostname']}")
    if alert.get("error"):
        facts += f"\n*Error:* {alert['error']}"
    log = "\n".join(tail)[-2800:] or "(empty)"
    return {
        "text": f"{icon} {headline(alert)}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{headline(alert)}*\n{facts}"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"Last {len(tail)} log lines:\n```{log}```"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Whole log: `{log_command(alert)}`"}]},
        ],
    }
