"""Keeping the engine's DAGs in step with the DAG folder.

The folder is scanned by (mtime, size) every second; only changed files are parsed, in a
child process, so a slow or broken file costs its own parse and nothing else.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from flow.dag import DATA_INTERVALS_ENV

from .loader import DagFolder, DagRegistry, parse_files, parse_files_async

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
        results = parse_files(changes.changed, timeout=self.engine.settings.parse_timeout) if changes.changed else {}
        return self._apply(results, changes.deleted, gone)

    async def refresh(self) -> int:
        """Scan and parse without blocking the loop (flowd)."""
        gone = [] if self._seeded else self._seed()
        try:
            changes = self.folder.scan()
        except FileNotFoundError as exc:
            log.warning("%s", exc)
            return 0
        results = {}
        if changes.changed:
            results = await parse_files_async(changes.changed, timeout=self.engine.settings.parse_timeout)
        return self._apply(results, changes.deleted, gone)

    def _apply(self, results: dict, deleted: list[str], gone: list[str]) -> int:
        if not results and not deleted and not gone:
            return 0
        update = self.registry.apply(results, deleted)
        deactivated = sorted(set(update.deactivated) | set(gone))
        self.engine.sync_dags(update.upserts, deactivated, update.errors, update.parsed_files)
        return len(results)
