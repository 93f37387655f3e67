"""Coalescing the engine's writes within one transaction.

In one iteration a task can go NONE -> SCHEDULED -> QUEUED, or RUNNING -> SUCCESS with its try
started and ended; written as they happen that is several UPDATEs of the same row. Merging them
per row and sending every kind of write as executemany batches — task instances, tries started,
tries ended, their resource figures — makes the statements per iteration a small constant, not
a number per task (see docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

_INSERT_FIELDS = ("state", "start_date", "hostname", "pid", "log_path")


class WriteBuffer:
    """Wraps a store transaction; update_ti / insert_try / update_try / put_try_resources are held
    until flush()."""

    def __init__(self, tx: Any):
        self.tx = tx
        self.tis: dict[tuple[int, str], dict[str, Any]] = {}
        self.inserts: dict[tuple[int, str, int], dict[str, Any]] = {}
        self.tries: dict[tuple[int, str, int], dict[str, Any]] = {}
        self.figures: dict[tuple[int, str, int], dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tx, name)

    def update_ti(self, run_key: int, task_id: str, **fields: Any) -> None:
        self.tis.setdefault((run_key, task_id), {}).update(fields)

    def insert_try(self, run_key: int, task_id: str, try_number: int, **fields: Any) -> None:
        self.inserts[(run_key, task_id, try_number)] = dict(fields)

    def update_try(self, run_key: int, task_id: str, try_number: int, **fields: Any) -> None:
        key = (run_key, task_id, try_number)
        if key in self.inserts:
            row = self.inserts[key]
            for name in _INSERT_FIELDS:
                if name in fields:
                    row[name] = fields.pop(name)
            if not fields:
                return
        self.tries.setdefault(key, {}).update(fields)

    def put_try_resources(self, run_key: int, task_id: str, try_number: int, figures: dict[str, Any]) -> None:
        self.figures[(run_key, task_id, try_number)] = figures

    def flush(self) -> None:
        if self.inserts:
            self.tx.insert_tries_bulk([{"run_key": k[0], "task_id": k[1], "try_number": k[2], **f}
                                       for k, f in self.inserts.items()])
        if self.tries:
            self.tx.update_tries_bulk([{"run_key": k[0], "task_id": k[1], "try_number": k[2], **f}
                                       for k, f in self.tries.items()])
        if self.tis:
            self.tx.update_tis_bulk([{"run_key": k[0], "task_id": k[1], **f} for k, f in self.tis.items()])
        if self.figures:
            self.tx.put_try_resources_bulk(self.figures)
        self.tis, self.inserts, self.tries, self.figures = {}, {}, {}, {}
