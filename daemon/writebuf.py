"""Coalescing the engine's writes within one transaction.

In one iteration a task can go NONE -> SCHEDULED -> QUEUED, or RUNNING -> SUCCESS with its try
started and ended; written as they happen that is several UPDATEs of the same row. Merging them
per row and sending the task-instance updates as executemany batches cuts the statements per
task roughly in half (see docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

_INSERT_FIELDS = ("state", "start_date", "hostname", "pid", "log_path")


class WriteBuffer:
    """Wraps a store transaction; update_ti / insert_try / update_try are held until flush()."""

    def __init__(self, tx: Any):
        self.tx = tx
        self.tis: dict[tuple[int, str], dict[str, Any]] = {}
        self.inserts: dict[tuple[int, str, int], dict[str, Any]] = {}
        self.tries: dict[tuple[int, str, int], dict[str, Any]] = {}

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

    def flush(self) -> None:
        for (run_key, task_id, try_number), fields in self.inserts.items():
            self.tx.insert_try(run_key, task_id, try_number, **fields)
        for (run_key, task_id, try_number), fields in self.tries.items():
            self.tx.update_try(run_key, task_id, try_number, **fields)
        if self.tis:
            self.tx.update_tis_bulk([{"run_key": k[0], "task_id": k[1], **f} for k, f in self.tis.items()])
        self.tis, self.inserts, self.tries = {}, {}, {}
