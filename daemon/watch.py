"""Keeping the engine's DAGs in step with the DAG folder.

The folder is scanned by (mtime, size) every second; only changed files are parsed. In flowd
the scan hands changed files to a ``ParsePool`` and returns at once: each file's DAGs and import
error reach the engine (and the store) when that file is done, so the engine loop never waits
for a parse, and a slow or broken file costs its own parse and nothing else. Until a file's new
parse arrives, the engine schedules the form of its DAGs it already has (from the store, at
start). Foreground commands (``refresh_sync``) still parse everything before they go on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from flow.dag import DATA_INTERVALS_ENV
from flow.units import parse_size

from .dags.pool import ParsePool
from .loader import DagFolder, DagRegistry, FileResult, parse_files
from .parser import timed_out

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("flow.watch")


class FolderWatcher:
    def __init__(self, engine: Engine):
        # DAG files read the default zone from the environment in the parse child; the setting may
        # have come from the configuration file, so hand it down explicitly.
        os.environ["FLOW_DEFAULT_TIMEZONE"] = engine.settings.default_timezone
        os.environ[DATA_INTERVALS_ENV] = "1" if engine.settings.create_cron_data_intervals else "0"
        self.engine = engine
        self.folder = DagFolder(engine.settings.dags_folder)
        self.registry = DagRegistry()
        self._seeded = False
        self.on_parsed: Callable[[str, float], None] | None = None
        """Told each file's parse time as its result arrives (flowd's metrics)."""
        self.unsaved: Exception | None = None
        """The first write error that lost a parse's result; the owner parses everything again later."""
        settings = engine.settings
        self.pool = ParsePool(self._arrived, processes=settings.parse_processes,
                              timeout=lambda: settings.parse_timeout, memory_limit=self._memory_limit)

    def _memory_limit(self) -> int | None:
        limit = self.engine.settings.parse_memory_limit
        return parse_size(limit, "parse_memory_limit") if limit else None

    def _seed(self) -> list[str]:
        """Teach the registry which file owned which DAG before this process started.

        Returns the DAG ids whose file is gone, so they are deactivated (their history stays).
        """
        self._seeded = True
        gone = []
        for dag_id, ser in self.engine.dags.items():
            if dag_id in self.engine.inactive:
                continue
            if os.path.exists(ser["fileloc"]):
                self.registry.claim(dag_id, ser["fileloc"])
            else:
                gone.append(dag_id)
        return gone

    def refresh_sync(self) -> int:
        """Scan and parse in the foreground (CLI commands). Returns the number of files parsed."""
        gone = [] if self._seeded else self._seed()
        changes = self.folder.scan()
        results = parse_files(changes.changed, timeout=self.engine.settings.parse_timeout,
                              memory_limit=self._memory_limit()) if changes.changed else {}
        return self._apply(results, changes.deleted, gone)

    async def refresh(self) -> int:
        """Scan, record deletions, and queue changed files for the pool; never waits for a parse.

        Returns the number of files queued.
        """
        first = not self._seeded
        gone = self._seed() if first else []
        try:
            changes = self.folder.scan()
        except FileNotFoundError as exc:
            log.warning("%s", exc)
            return 0
        self.pool.forget(changes.deleted)
        self._apply({}, changes.deleted, gone)
        self.pool.submit(self._first_order(changes.changed) if first else changes.changed)
        return len(changes.changed)

    def _first_order(self, paths: list[str]) -> list[str]:
        """Every file is parsed after a start; the ones that hold scheduled DAGs go first (a file
        edited while flowd was down replaces its stored form soonest), the ones that timed out
        last time go last (they would only take children away from the others)."""
        owners = {ser["fileloc"] for dag_id, ser in self.engine.dags.items() if dag_id not in self.engine.inactive}
        try:
            slow = {row["filename"] for row in self.engine.store.import_errors() if timed_out(row["message"])}
        except Exception as exc:  # the order is an optimisation: never a reason not to parse
            log.warning("cannot read the stored import errors: %s", exc)
            slow = set()
        return sorted(paths, key=lambda p: 0 if p in owners else 2 if p in slow else 1)

    def rescan(self) -> None:
        """Forget what was seen, so the next refresh parses every file again (SIGHUP)."""
        self.folder = DagFolder(self.engine.settings.dags_folder)
        self.registry = DagRegistry()
        self._seeded = False

    async def settle(self, timeout: float | None = None) -> bool:
        """Wait until every queued file has been parsed and applied; False if `timeout` passed first."""
        return await self.pool.wait_idle(timeout)

    async def close(self) -> None:
        """Abandon parses in flight and end every parse child."""
        await self.pool.close()

    def _arrived(self, path: str, result: FileResult) -> None:
        import sqlalchemy as sa

        if self.on_parsed is not None and result.seconds is not None:
            self.on_parsed(path, result.seconds)
        try:
            self._apply({path: result}, [], [])
        except sa.exc.OperationalError as exc:  # the database could not take it (full, stalled)
            if self.unsaved is None:
                self.unsaved = exc

    def _apply(self, results: dict, deleted: list[str], gone: list[str]) -> int:
        if not results and not deleted and not gone:
            return 0
        update = self.registry.apply(results, deleted)
        deactivated = sorted(set(update.deactivated) | set(gone))
        self.engine.sync_dags(update.upserts, deactivated, update.errors, update.parsed_files)
        return len(results)
