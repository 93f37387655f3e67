"""EmptyOperator: a join point or placeholder; the planner marks it done without starting a process."""

from __future__ import annotations

from typing import Any

from flow.operators.base import BaseOperator


class EmptyOperator(BaseOperator):
    def execute(self, context: dict[str, Any]) -> None:
        return None


DummyOperator = EmptyOperator
