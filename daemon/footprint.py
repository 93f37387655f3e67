"""flowd's own footprint for the status: database size, log folder size, open files, host figures.

The two sizes cost I/O that grows with history (a log folder can hold millions of files). The
database's is read in a worker thread every REFRESH seconds. The log folder is walked only at
start and then every WALK seconds (or re-based by the retention sweep, which walks it anyway);
in between, each finished try's log is added as it ends, so a long history costs no idle time.
Nothing here walks a folder on the event loop.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("flow.footprint")

REFRESH = 30.0
WALK = 6 * 3600.0


def folder_size(path: str) -> int:
    """Bytes of every regular file under `path` (symlinks not followed); 0 if it does not exist."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    return total


def db_size(store: Any) -> int | None:
    """SQLite: the file with its WAL; PostgreSQL: pg_database_size. None if it cannot be read."""
    url = store.url
    try:
        if url.get_backend_name() == "sqlite":
            path = url.database or ""
            return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))
        with store._read() as conn:
            return int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar() or 0)
    except Exception as exc:
        log.debug("cannot measure the database size: %s", exc)
        return None


class Footprint:
    def __init__(self) -> None:
        self.db_size: int | None = None
        self.walked = 0
        """Bytes under the log folder when it was last walked."""
        self.added = 0
        """Bytes of the logs of tries that ended since then."""
        self.measured_at: float | None = None
        self.walked_at: float | None = None

    @property
    def log_size(self) -> int:
        return self.walked + self.added

    def due(self) -> bool:
        return self.measured_at is None or time.monotonic() - self.measured_at >= REFRESH

    def refresh(self, engine: Engine) -> None:
        """Blocking: call from a worker thread."""
        self.db_size = db_size(engine.store)
        if self.walked_at is None or time.monotonic() - self.walked_at >= WALK:
            self.rebase(folder_size(engine.settings.log_folder))
        self.measured_at = time.monotonic()

    def rebase(self, walked: int) -> None:
        """The log folder's size from a walk just made; what tries added before it is in it."""
        self.walked, self.added, self.walked_at = walked, 0, time.monotonic()

    def log_written(self, path: str) -> None:
        """A try's log is complete: count it (a missing file counts nothing)."""
        try:
            self.added += os.stat(path).st_size
        except OSError:
            pass


def resource_status(engine: Engine) -> dict[str, Any]:
    """The status fields of issue 6; the host figures are the monitor's last tick (or read now)."""
    monitor = engine.monitor
    host = monitor.host or monitor.facade.host()
    admission = monitor.admission()
    return {
        "host": {
            "mem_total": host.mem_total,
            "mem_available": host.mem_available,
            "mem_free_percent": round(host.mem_available / host.mem_total * 100.0, 1) if host.mem_total else None,
            "cpu_count": host.cpu_count,
            "load_1m": host.load_1m,
        },
        "admission": admission.as_json(),
        "db_size": monitor.footprint.db_size,
        "log_size": monitor.footprint.log_size,
        "open_files": monitor.facade.self_figures()["open_files"],
        "sample_interval": float(engine.settings.sample_interval),
        "sampling_cpu_seconds": round(monitor.sampling_cpu, 3),
        "remote_sampling": monitor.remote.as_json(),
    }
