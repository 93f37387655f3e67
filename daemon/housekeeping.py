"""Keeping the disk bounded: old task logs go away on a schedule, and status shows what is kept.

The sweep walks the log folder in a worker thread (asyncio.to_thread), so scheduling never
pauses for it, however many files there are. A file is old when it was last written more than
`log_retention_days` ago; the run folders of unfinished runs are never touched, whatever their
age (a quiet task can run for weeks). Folders left empty are removed too, deepest first.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .footprint import db_size
from .specs import _safe

log = logging.getLogger("flow.housekeeping")

SWEEP_PERIOD = 3600.0


@dataclass
class SweepResult:
    removed_files: int = 0
    removed_bytes: int = 0
    removed_dirs: int = 0
    kept_files: int = 0
    kept_bytes: int = 0
    errors: int = 0


def run_folder(log_folder: str, dag_id: str, run_id: str) -> str:
    return os.path.join(log_folder, f"dag_id={_safe(dag_id)}", f"run_id={_safe(run_id)}")


def sweep_logs(log_folder: str, days: int, now: datetime, keep_dirs: set[str]) -> SweepResult:
    """Remove files older than `days` (0: remove nothing, only count) and then empty folders."""
    result = SweepResult()
    if not os.path.isdir(log_folder):
        return result
    cutoff = (now - timedelta(days=days)).timestamp() if days > 0 else None
    keep = {os.path.normpath(d) for d in keep_dirs}
    for root, _dirs, files in os.walk(log_folder, topdown=True):
        protected = os.path.normpath(root) in keep or any(os.path.normpath(root).startswith(k + os.sep)
                                                          for k in keep)
        for name in files:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if cutoff is not None and not protected and st.st_mtime < cutoff:
                try:
                    os.unlink(path)
                except OSError as exc:
                    result.errors += 1
                    log.warning("cannot remove old log %s: %s", path, exc.strerror)
                else:
                    result.removed_files += 1
                    result.removed_bytes += st.st_size
                    continue
            result.kept_files += 1
            result.kept_bytes += st.st_size
    if cutoff is not None:
        for root, _dirs, files in os.walk(log_folder, topdown=False):
            # `_dirs` was listed before the walk emptied them, so let rmdir judge emptiness.
            if os.path.normpath(root) == os.path.normpath(log_folder) or files or os.path.normpath(root) in keep:
                continue
            try:
                os.rmdir(root)  # fails harmlessly if not empty, or if a try just created a file here
                result.removed_dirs += 1
            except OSError:
                pass
    return result


class LogFolderHealth:
    """Whether tries can write their logs: a problem starts with the first try whose log came back
    incomplete (the log folder full) and ends with the next try whose log is whole, so `status`
    says it while it lasts and one alert goes out per episode, not one per try."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.problem: dict[str, Any] | None = None

    def record(self, what: str, note: str | None, now: datetime) -> bool:
        """A try ended with this note (None: its log is whole). True when a problem starts."""
        if note is None:
            if self.problem is not None:
                log.warning("logs are written again in %s (%d tries' logs were incomplete since %s)",
                            self.settings.log_folder, self.problem["tries"], self.problem["since"])
                self.problem = None
            return False
        if self.problem is None:
            self.problem = {"reason": note, "since": now.isoformat(), "tries": 1, "last_try": what}
            log.error("%s: %s; its exit status is recorded in the database", what, note)
            return True
        self.problem.update(reason=note, tries=self.problem["tries"] + 1, last_try=what)
        return False

    def free_bytes(self) -> int | None:
        try:
            st = os.statvfs(self.settings.log_folder)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize


class Housekeeping:
    """flowd's periodic sweep and the storage figures `status` reports."""

    def __init__(self, engine: Any, settings: Any, *, clock: Any = None) -> None:
        self.engine = engine
        self.settings = settings
        self.logs = LogFolderHealth(settings)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.last: dict[str, Any] | None = None
        self.db_bytes: int | None = None
        self._lock = asyncio.Lock()

    def _keep_dirs(self) -> set[str]:
        folder = self.settings.log_folder
        return {run_folder(folder, r.dag_id, r.run_id) for r in self.engine.runs.values()}

    async def sweep(self) -> SweepResult:
        async with self._lock:
            now = self.clock()
            days = int(self.settings.log_retention_days or 0)
            keep = self._keep_dirs()
            result = await asyncio.to_thread(sweep_logs, self.settings.log_folder, days, now, keep)
            self.db_bytes = await asyncio.to_thread(db_size, self.engine.store)
            self.engine.monitor.footprint.rebase(result.kept_bytes)
            self.last = {"time": now.isoformat(), "retention_days": days, **asdict(result)}
            if result.removed_files or result.removed_dirs:
                log.info("log retention (%d days): removed %d file(s), %d bytes, %d empty folder(s)", days,
                         result.removed_files, result.removed_bytes, result.removed_dirs)
            return result

    async def run(self, period: float = SWEEP_PERIOD) -> None:
        """Sweep at start and then every `period` seconds; a failed sweep is logged and retried later."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("log retention sweep failed")
            await asyncio.sleep(period)

    def status(self) -> dict[str, Any]:
        last = self.last or {}
        return {
            "db_bytes": self.db_bytes,
            "log_bytes": last.get("kept_bytes"),
            "log_files": last.get("kept_files"),
            "log_folder": self.settings.log_folder,
            "log_retention_days": self.settings.log_retention_days,
            "max_log_bytes_per_try": self.settings.max_log_bytes_per_try,
            "last_sweep": self.last,
            "log_free_bytes": self.logs.free_bytes(),
            "log_problem": self.logs.problem,
        }
