"""Delivering alerts: off the scheduler's loop, retried with backoff, every failure recorded.

The engine hands finished-try alerts over after its transaction commits; a small thread pool
reads the log tail, renders the message and talks SMTP or HTTP, sleeping between attempts
without holding up anything. The outcome comes back to the loop, which counts it, and writes a
`notify.failed` audit entry when every attempt failed, so a lost alert shows in `flow status`
and `flow audit` instead of vanishing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from flow.executors.mail import MailError, send_mail

from .alerts import read_tail, render_json, render_slack, render_text, subject
from .notifyconf import NotifierConf, default_smtp, mask_webhook_url

log = logging.getLogger("flow.notify")

WORKERS = 2


class DeliveryError(Exception):
    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


def post_webhook(conf: NotifierConf, body: dict[str, Any]) -> None:
    """One POST; a non-2xx answer or a network error raises with the URL masked."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(conf.url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "flowd",
                                          **conf.headers})
    where = f"webhook {mask_webhook_url(conf.url)} (notifier {conf.name!r})"
    try:
        with urllib.request.urlopen(req, timeout=conf.timeout) as resp:  # noqa: S310 - http(s) checked at load
            resp.read(65536)
    except urllib.error.HTTPError as exc:
        raise MailError(f"{where}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        reason = getattr(reason, "strerror", None) or reason
        raise MailError(f"{where}: {' '.join(str(reason).split())}") from None


class Notifications:
    """One per flowd: counts for `status`, the pool that sends, the audit of failures."""

    def __init__(self, settings: Any, store: Any, *, clock: Any = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="flow-notify")
        self.sent = 0
        self.failed = 0
        self.pending = 0
        self.last_sent: dict[str, Any] | None = None
        self.last_failure: dict[str, Any] | None = None
        self.unknown: dict[tuple[str, str], str] = {}
        """(dag_id, notifier name) -> why it cannot be used; warned about once."""
        self._checked: tuple[Any, ...] = ()
        for conf in settings.notifiers.values():
            if conf.password_file and not os.access(conf.password_file, os.R_OK):
                log.warning("notifier %r: password_file %s cannot be read by flowd; mail through it will fail",
                            conf.name, conf.password_file)

    # -- on the loop -----------------------------------------------------------------------

    def submit(self, alert: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        for name, addresses in alert["targets"]:
            self.pending += 1
            fut = self.pool.submit(self._deliver, alert, name, addresses)
            fut.add_done_callback(lambda f, n=name: loop.call_soon_threadsafe(self._done, alert, n, f))

    def _done(self, alert: dict[str, Any], name: str | None, fut: Future[tuple[str, int]]) -> None:
        self.pending -= 1
        now = self.clock()
        exc = fut.exception()
        what = f"{alert['dag_id']}.{alert['task_id']} try {alert['try_number']} ({alert['state']})"
        if exc is None:
            notifier, attempts = fut.result()
            self.sent += 1
            self.last_sent = {"time": now.isoformat(), "notifier": notifier, "dag_id": alert["dag_id"],
                              "task_id": alert["task_id"]}
            log.info("alert for %s sent through %s%s", what, notifier,
                     f" after {attempts} attempts" if attempts > 1 else "")
            return
        reason = exc.reason if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
        attempts = exc.attempts if isinstance(exc, DeliveryError) else 1
        notifier = name or "email"
        self.failed += 1
        self.last_failure = {"time": now.isoformat(), "notifier": notifier, "dag_id": alert["dag_id"],
                             "run_id": alert["run_id"], "task_id": alert["task_id"],
                             "try_number": alert["try_number"], "reason": reason, "attempts": attempts}
        log.error("alert for %s NOT delivered through %s after %d attempt(s): %s", what, notifier, attempts, reason)
        try:
            with self.store.begin() as tx:
                tx.add_audit(time=now, uid=None, user="flowd", action="notify.failed", dag_id=alert["dag_id"],
                             run_id=alert["run_id"], task_id=alert["task_id"],
                             params={"notifier": notifier, "try_number": alert["try_number"],
                                     "state": alert["state"], "attempts": attempts, "reason": reason})
        except Exception:
            log.exception("could not record the failed alert in the audit log")

    def check_dags(self, dags: dict[str, dict[str, Any]], inactive: set[str] | frozenset[str] = frozenset()) -> None:
        """Warn once per DAG and name about notifiers a DAG uses that flowd's configuration lacks."""
        notifiers = self.settings.notifiers
        version = (id(notifiers), tuple((d, id(ser)) for d, ser in dags.items() if d not in inactive))
        if version == self._checked:
            return
        self._checked = version
        found: dict[tuple[str, str], str] = {}
        has_smtp = default_smtp(notifiers) is not None
        for dag_id, ser in dags.items():
            if dag_id in inactive:
                continue
            for task in ser.get("tasks", ()):
                for key in ("notify_on_failure", "notify_on_retry", "notify_on_success"):
                    for name in task.get(key) or ():
                        if name not in notifiers:
                            found[(dag_id, name)] = f"task {task['task_id']!r} names notifier {name!r} in {key}"
                if task.get("email") and not has_smtp:
                    found[(dag_id, "email")] = (f"task {task['task_id']!r} sets email= but flowd has no SMTP "
                                                "notifier")
                extra = task.get("extra") or {}
                if "email_notifier" in extra:
                    wanted = extra["email_notifier"]
                    conf = notifiers.get(wanted) if wanted else default_smtp(notifiers)
                    if conf is None or conf.kind != "smtp":
                        found[(dag_id, wanted or "email")] = (f"EmailOperator {task['task_id']!r} needs SMTP "
                                                              f"notifier {wanted or '(default)'!r}")
        for key, why in found.items():
            if key not in self.unknown:
                log.warning("DAG %r: %s, which is not configured in flowd's [notifiers] (known: %s)",
                            key[0], why, ", ".join(sorted(notifiers)) or "none")
        self.unknown = found

    def status(self) -> dict[str, Any]:
        return {
            "configured": {n.name: n.describe() for n in self.settings.notifiers.values()},
            "sent": self.sent, "failed": self.failed, "pending": self.pending,
            "last_sent": self.last_sent, "last_failure": self.last_failure,
            "unknown": [{"dag_id": d, "name": n, "detail": why} for (d, n), why in sorted(self.unknown.items())],
        }

    def close(self) -> None:
        if self.pending:
            log.warning("stopping with %d alert(s) still being delivered; they may not arrive", self.pending)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- in a pool thread ------------------------------------------------------------------

    def _deliver(self, alert: dict[str, Any], name: str | None, addresses: list[str] | None) -> tuple[str, int]:
        notifiers = self.settings.notifiers
        conf = default_smtp(notifiers) if name is None else notifiers.get(name)
        if conf is None:
            why = ("no SMTP notifier is configured for email=" if name is None
                   else f"notifier {name!r} is not configured in flowd's [notifiers]")
            raise DeliveryError(why, 0)
        if conf.kind == "smtp" and not addresses:
            addresses = list(conf.to)
        tail = read_tail(alert["log_path"])
        zone = self.settings.default_timezone or "UTC"
        attempt, delay = 0, conf.retry_delay
        while True:
            attempt += 1
            try:
                self._send(conf, alert, tail, zone, addresses)
                return conf.name, attempt
            except MailError as exc:
                if attempt > conf.retries:
                    raise DeliveryError(str(exc), attempt) from None
                log.warning("alert through %s failed (attempt %d of %d): %s; next in %gs", conf.name, attempt,
                            conf.retries + 1, exc, delay)
            time.sleep(delay)
            delay *= 2

    @staticmethod
    def _send(conf: NotifierConf, alert: dict[str, Any], tail: list[str], zone: str,
              addresses: list[str] | None) -> None:
        if conf.kind == "webhook":
            body = render_slack(alert, tail, zone) if conf.format == "slack" else render_json(alert, tail, zone)
            post_webhook(conf, body)
            return
        if not addresses:
            raise MailError(f"notifier {conf.name!r} has no `to` addresses in flowd.toml (or use email= on the task)")
        send_mail(conf.smtp_json(), {"to": addresses, "subject": subject(alert),
                                     "body": render_text(alert, tail, zone), "html": None})
