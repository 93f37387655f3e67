"""Operators that call a Python function in the task's worker process."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from flow.operators.base import BaseOperator


def determine_kwargs(
    fn: Callable[..., Any], op_args: tuple[Any, ...] | list[Any], op_kwargs: Mapping[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """Keyword arguments for ``fn``: op_kwargs, plus the context keys it names (all of them for **kwargs)."""
    kwargs = dict(op_kwargs)
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params):
        for key, value in context.items():
            kwargs.setdefault(key, value)
        return kwargs
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    taken = {p.name for p in positional[: len(op_args)]}
    for p in params:
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in taken:
            if p.name in context and p.name not in kwargs:
                kwargs[p.name] = context[p.name]
    return kwargs


def callable_name(fn: Callable[..., Any]) -> str:
    """'module.qualname' for display; DAG-file modules are shown by their file's base name."""
    module = getattr(fn, "__module__", None) or "?"
    if module.startswith("flow_dagfile_"):
        module = module.split("__", 1)[-1]
    return f"{module}.{getattr(fn, '__qualname__', getattr(fn, '__name__', repr(fn)))}"


class PythonOperator(BaseOperator):
    """Calls ``python_callable(*op_args, **op_kwargs)``; the callable may also name context keys."""

    template_fields = ("templates_dict", "op_args", "op_kwargs")

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: list[Any] | tuple[Any, ...] | None = None,
        op_kwargs: dict[str, Any] | None = None,
        templates_dict: dict[str, Any] | None = None,
        templates_exts: list[str] | tuple[str, ...] | None = None,
        show_return_value_in_logs: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if templates_exts is not None:
            if not isinstance(templates_exts, list | tuple) or not all(isinstance(e, str) for e in templates_exts):
                raise TypeError(f"{self._where}: templates_exts must be a list of file name endings such as ['.sql']")
            self.template_ext = tuple(templates_exts)
            self._nested_template_files = True
        if not callable(python_callable):
            raise TypeError(f"{self._where}: python_callable must be callable, not {type(python_callable).__name__}")
        if op_args is not None and not isinstance(op_args, list | tuple):
            raise TypeError(f"{self._where}: op_args must be a list, not {type(op_args).__name__}")
        for name, value in (("op_kwargs", op_kwargs), ("templates_dict", templates_dict)):
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"{self._where}: {name} must be a dict, not {type(value).__name__}")
        self.python_callable = python_callable
        self.op_args: list[Any] = list(op_args or [])
        self.op_kwargs: dict[str, Any] = dict(op_kwargs or {})
        self.templates_dict = templates_dict

    def execute(self, context: dict[str, Any]) -> Any:
        context["templates_dict"] = self.templates_dict
        kwargs = determine_kwargs(self.python_callable, self.op_args, self.op_kwargs, context)
        return self.python_callable(*self.op_args, **kwargs)


class BaseBranchOperator(BaseOperator):
    """Implement ``choose_branch(context)`` returning the task id(s) to follow; other direct downstream tasks skip."""

    is_branch = True

    def choose_branch(self, context: dict[str, Any]) -> str | list[str] | None:
        raise NotImplementedError(f"{type(self).__name__} must implement choose_branch(context)")

    def execute(self, context: dict[str, Any]) -> Any:
        return self.choose_branch(context)


class BranchPythonOperator(PythonOperator):
    """The callable returns the task id (or list of ids) to follow; other direct downstream tasks skip."""

    is_branch = True


class ShortCircuitOperator(PythonOperator):
    """A falsy return value skips every task downstream of this one.

    With ``ignore_downstream_trigger_rules=False`` only the direct downstream tasks are skipped and
    the ones after them follow their own trigger rules (an ``all_done`` task still runs), as in Airflow.
    """

    is_short_circuit = True

    def __init__(self, *, ignore_downstream_trigger_rules: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ignore_downstream_trigger_rules = bool(ignore_downstream_trigger_rules)
