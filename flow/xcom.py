"""XCom values: the reference to a task's future output, and the rules a pushed value must meet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flow.operators.base import DependencyMixin

if TYPE_CHECKING:
    from flow.operators.base import BaseOperator

MAX_XCOM_BYTES = 1024 * 1024
RETURN_VALUE = "return_value"


class XComError(ValueError):
    """A pushed value that the store cannot keep: not JSON, or larger than MAX_XCOM_BYTES."""


def encode_xcom(task_id: str, key: str, value: Any) -> str:
    """The JSON text stored for a value; raises XComError naming the task and key when it cannot be."""
    if not isinstance(key, str) or not key:
        raise XComError(f"task {task_id!r}: XCom key must be a non-empty str, not {key!r}")
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise XComError(f"task {task_id!r}: XCom {key!r} is not JSON-serialisable ({e})") from None
    size = len(text.encode("utf-8"))
    if size > MAX_XCOM_BYTES:
        raise XComError(
            f"task {task_id!r}: XCom {key!r} is {size / MAX_XCOM_BYTES:.2f} MiB as JSON; the limit is 1 MiB "
            "(store large data in a file and push its path)"
        )
    return text


class Reference:
    """A value known only at run time; templating replaces it by ``resolve(context)``."""

    def resolve(self, context: dict[str, Any]) -> Any:
        raise NotImplementedError


class XComArg(Reference, DependencyMixin):
    """What calling a @task returns: passing it to another task adds the dependency and the value."""

    def __init__(self, operator: BaseOperator, key: str = RETURN_VALUE) -> None:
        self.operator = operator
        self.key = key

    def __repr__(self) -> str:
        return f"XComArg({self.operator.task_id!r}, key={self.key!r})"

    def __str__(self) -> str:
        """Airflow's form: an f-string or str() of an XComArg is a template that pulls the value."""
        dag_id = self.operator.dag_id
        parts = [f"task_ids='{self.operator.task_id}'"]
        if dag_id is not None:
            parts.append(f"dag_id='{dag_id}'")
        parts.append(f"key='{self.key}'")
        return "{{ task_instance.xcom_pull(" + ", ".join(parts) + ") }}"

    def __getitem__(self, key: str) -> XComArg:
        return XComArg(self.operator, key)

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(
            f"XComArg of task {self.operator.task_id!r} is only known at run time; it cannot be iterated "
            "while the DAG is being defined"
        )

    def _operators(self) -> list[BaseOperator]:
        return [self.operator]

    def resolve(self, context: dict[str, Any]) -> Any:
        return context["ti"].xcom_pull(task_ids=self.operator.task_id, key=self.key)


def iter_references(value: Any) -> Iterator[Any]:
    """Every Reference nested in lists, tuples and dicts."""
    if isinstance(value, Reference):
        yield value
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from iter_references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_references(item)
