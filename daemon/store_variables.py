"""Storing and reading Variables (the ``variable`` table); mixed into Tx and Store like store_resources."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .models import variable


class VariableTx:
    """Write side, mixed into store_tx.Tx."""

    _exec: Callable[..., sa.CursorResult[Any]]  # Tx's

    def set_variable(self, key: str, value: str, description: str | None = None) -> None:
        """Insert or replace one variable."""
        self._exec(sa.delete(variable).where(variable.c.key == key))
        self._exec(sa.insert(variable), {"key": key, "val": value, "description": description})

    def delete_variable(self, key: str) -> bool:
        return bool(self._exec(sa.delete(variable).where(variable.c.key == key)).rowcount)


class VariableReads:
    """Read side, mixed into store.Store."""

    _read: Callable[[], AbstractContextManager[Connection]]  # StoreReads'

    def variables(self) -> dict[str, dict[str, Any]]:
        """{key: {"value", "description"}} in key order."""
        with self._read() as conn:
            rows = conn.execute(sa.select(variable).order_by(variable.c.key)).mappings().all()
        return {r["key"]: {"value": r["val"], "description": r["description"]} for r in rows}

    def variable_values(self) -> dict[str, str]:
        """{key: value}: what a try receives (flow.variables.MemoryBackend)."""
        with self._read() as conn:
            return {k: v for k, v in conn.execute(sa.select(variable.c.key, variable.c.val))}
