"""Labels on dependency edges: ``check >> Label("no errors") >> save`` (Airflow's EdgeModifier).

A label changes nothing about scheduling; it is recorded on the DAG (``dag.edge_labels``) for
the graph views, and the edge itself is an ordinary dependency.
"""

from __future__ import annotations

from typing import Any


class Label:
    """Sits between the two sides of ``>>``/``<<`` and links them, remembering its text."""

    def __init__(self, label: str) -> None:
        if not isinstance(label, str):
            raise TypeError(f"Label must be a str, not {type(label).__name__}")
        self.label = label
        self._up: list[Any] = []
        self._down: list[Any] = []

    def __repr__(self) -> str:
        return f"Label({self.label!r})"

    def add_upstream(self, items: list[Any]) -> None:
        self._up.extend(items)
        self._wire()

    def add_downstream(self, items: list[Any]) -> None:
        self._down.extend(items)
        self._wire()

    def _wire(self) -> None:
        from flow.operators.base import BaseOperator

        for up in self._up:
            for down in self._down:
                up >> down
                for u in _ops(up):
                    for d in _ops(down):
                        if isinstance(u, BaseOperator) and u.dag is not None:
                            u.dag.edge_labels[(u.task_id, d.task_id)] = self.label

    def __rrshift__(self, other: Any) -> Label:
        self.add_upstream(_flatten(other))
        return self

    def __rshift__(self, other: Any) -> Any:
        self.add_downstream(_flatten(other))
        return other

    def __rlshift__(self, other: Any) -> Label:
        self.add_downstream(_flatten(other))
        return self

    def __lshift__(self, other: Any) -> Any:
        self.add_upstream(_flatten(other))
        return other


def _flatten(items: Any) -> list[Any]:
    return list(items) if isinstance(items, list | tuple | set) else [items]


def _ops(item: Any) -> list[Any]:
    return [getattr(item, "operator", item)]
