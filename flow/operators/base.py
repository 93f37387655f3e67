"""BaseOperator: the arguments every task shares, default_args, and the dependency operators.

Operators only describe work. ``execute(context)`` runs later in a worker process (Python
tasks) and BashOperator commands are run by the executor, never here.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from flow.dag import DAG, DagDefinitionError, _callbacks, _seconds, get_current_dag, validate_id
from flow.units import parse_duration, parse_size

if TYPE_CHECKING:
    from flow.xcom import XComArg


class TriggerRule(StrEnum):
    """When a task may start, given its upstream tasks' final states (Airflow's names)."""

    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ALL_SKIPPED = "all_skipped"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    NONE_SKIPPED = "none_skipped"
    ALWAYS = "always"


TRIGGER_RULES = frozenset(r.value for r in TriggerRule)
_accepted_cache: dict[type, frozenset[str]] = {}
_required_cache: dict[type, tuple[str, ...]] = {}


def _accepted_args(cls: type) -> frozenset[str]:
    """Every keyword any __init__ in the class chain names: the keys default_args may fill."""
    if cls not in _accepted_cache:
        names: set[str] = set()
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                    names.add(p.name)
        _accepted_cache[cls] = frozenset(names)
    return _accepted_cache[cls]


def _required_args(cls: type) -> tuple[str, ...]:
    """Keyword-only arguments without a default in the class's own __init__ (a parent's may be filled by it)."""
    if cls not in _required_cache:
        init = next(k.__dict__["__init__"] for k in cls.__mro__ if "__init__" in k.__dict__)
        _required_cache[cls] = tuple(
            p.name for p in inspect.signature(init).parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.default is p.empty
        )
    return _required_cache[cls]


AIRFLOW_TASK_ARGS_IGNORED = frozenset({
    "pool", "pool_slots", "queue", "executor", "executor_config", "weight_rule", "run_as_user",
    "max_active_tis_per_dag", "max_active_tis_per_dagrun", "task_concurrency", "resources",
    "wait_for_downstream", "ignore_first_depends_on_past", "wait_for_past_depends_before_skipping",
    "provide_context", "doc_rst", "doc_json", "doc_yaml", "map_index_template", "start_date", "end_date",
    "on_execute_callback", "on_skipped_callback", "sla", "owner_links", "email_on_success", "allow_nested_operators",
    "logger_name",
})
"""Airflow task arguments flow accepts so files load unchanged; they only matter to Airflow's own
services (pools, queues, executors) or are display-only. ``sla`` adds a warning: it is not enforced."""


class _OperatorMeta(type):
    """Fills arguments from default_args before __init__ runs, as Airflow's apply_defaults did."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError(f"{cls.__name__}: pass arguments by keyword (task_id=..., ...)")
        dag = kwargs.get("dag") or get_current_dag()
        defaults: dict[str, Any] = {}
        if isinstance(dag, DAG):
            defaults.update(dag.default_args)
        own = kwargs.get("default_args")
        if own is not None:
            if not isinstance(own, dict):
                raise TypeError(f"{cls.__name__}: default_args must be a dict")
            defaults.update(own)
        accepted = _accepted_args(cls)
        for key, value in defaults.items():
            if key in accepted and key not in kwargs and key not in ("task_id", "dag", "default_args"):
                kwargs[key] = value
        if defaults.get("sla") is not None and "sla" not in kwargs:
            kwargs["sla"] = defaults["sla"]  # accepted but not enforced: the task warns about it
        missing = [name for name in ("task_id", *_required_args(cls)) if name not in kwargs]
        if missing:
            where = f"{cls.__name__} {kwargs['task_id']!r}" if "task_id" in kwargs else cls.__name__
            if isinstance(dag, DAG):
                where = f"DAG {dag.dag_id!r}, {where}"
            unknown = sorted(k for k in kwargs if k not in accepted)
            hint = f" (unexpected: {', '.join(unknown)})" if unknown else ""
            raise TypeError(f"{where}: missing required argument(s) {', '.join(missing)}{hint}")
        op = super().__call__(**kwargs)
        op._depend_on_references()
        return op


def _names(value: Any, what: str, where: str, *, address: bool = False) -> list[str]:
    """A str or a list of str (e-mail addresses, or notifier names from flowd.toml), in order, once each.

    Airflow accepts "a@x, b@x" in one string; so do we for addresses.
    """
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple | set) else None
    if items is None or not all(isinstance(i, str) for i in items):
        raise TypeError(f"{where}: {what} must be a str or a list of str, not {value!r}")
    out: list[str] = []
    for item in items:
        for part in (item.replace(";", ",").split(",") if address else [item]):
            part = part.strip()
            if not part:
                continue
            if address and ("@" not in part or any(c.isspace() for c in part)):
                raise DagDefinitionError(f"{where}: {what} {part!r} is not an e-mail address")
            if part not in out:
                out.append(part)
    return out


def _flatten(items: Any) -> list[Any]:
    if isinstance(items, list | tuple | set):
        out: list[Any] = []
        for item in items:
            out.extend(_flatten(item))
        return out
    return [items]


def _as_operator(item: Any, where: str) -> BaseOperator:
    op = getattr(item, "operator", item)
    if not isinstance(op, BaseOperator):
        raise TypeError(f"{where}: cannot set a dependency on {type(item).__name__} {item!r}")
    return op


class DependencyMixin:
    """``>>`` and ``<<`` for tasks and XComArgs; each returns its right side so chains read left to right."""

    def _operators(self) -> list[BaseOperator]:
        raise NotImplementedError

    def set_downstream(self, other: Any) -> None:
        for op in self._operators():
            op._link(other, downstream=True)

    def set_upstream(self, other: Any) -> None:
        for op in self._operators():
            op._link(other, downstream=False)

    def __rshift__(self, other: Any) -> Any:
        self.set_downstream(other)
        return other

    def __lshift__(self, other: Any) -> Any:
        self.set_upstream(other)
        return other

    def __rrshift__(self, other: Any) -> Any:
        self.set_upstream(other)
        return self

    def __rlshift__(self, other: Any) -> Any:
        self.set_downstream(other)
        return self


class BaseOperator(DependencyMixin, metaclass=_OperatorMeta):
    """Subclass and implement ``execute(context)``; its return value becomes the "return_value" XCom."""

    template_fields: Sequence[str] = ()
    template_ext: Sequence[str] = ()
    is_branch: bool = False
    is_short_circuit: bool = False

    def __init__(
        self,
        *,
        task_id: str,
        owner: str = "flow",
        retries: int = 0,
        retry_delay: timedelta | float = timedelta(minutes=5),
        retry_exponential_backoff: bool = False,
        max_retry_delay: timedelta | float | None = None,
        execution_timeout: timedelta | float | None = None,
        memory_limit: int | str | None = None,
        cpu_time_limit: timedelta | float | str | None = None,
        depends_on_past: bool = False,
        trigger_rule: str = "all_success",
        priority_weight: int = 1,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        on_success_callback: Any = None,
        on_failure_callback: Any = None,
        on_retry_callback: Any = None,
        email: str | Iterable[str] | None = None,
        email_on_failure: bool | None = None,
        email_on_retry: bool = False,
        notify_on_failure: str | Iterable[str] | None = None,
        notify_on_retry: str | Iterable[str] | None = None,
        notify_on_success: str | Iterable[str] | None = None,
        do_xcom_push: bool = True,
        doc: str | None = None,
        doc_md: str | None = None,
        dag: DAG | None = None,
        default_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = type(self).__name__
        validate_id(task_id, "task_id", name)
        where = f"{name} {task_id!r}"
        dag = dag if dag is not None else get_current_dag()
        if dag is not None:
            if not isinstance(dag, DAG):
                raise TypeError(f"{where}: dag must be a DAG, not {type(dag).__name__}")
            where = f"DAG {dag.dag_id!r}, {where}"
        self.task_display_name: str | None = kwargs.pop("task_display_name", None)
        self.params: dict[str, Any] = dict(kwargs.pop("params", None) or {})
        self.inlets = kwargs.pop("inlets", None)
        self.outlets = kwargs.pop("outlets", None)
        if kwargs.get("sla") is not None and dag is not None:
            dag.warn(f"task {task_id!r}: sla is accepted but not enforced by flow")
        for key in [k for k in kwargs if k in AIRFLOW_TASK_ARGS_IGNORED]:
            del kwargs[key]
        if kwargs:
            bad = ", ".join(sorted(kwargs))
            raise TypeError(f"{where}: unexpected argument(s) {bad} for {name}")
        self.task_id = task_id
        self._where = where
        if not isinstance(owner, str) or not owner:
            raise TypeError(f"{where}: owner must be a non-empty str")
        self.owner = owner
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise TypeError(f"{where}: retries must be an int >= 0, not {retries!r}")
        self.retries = retries
        self.retry_delay = _seconds(retry_delay, "retry_delay", where, allow_none=False)
        self.retry_exponential_backoff = bool(retry_exponential_backoff)
        self.max_retry_delay = _seconds(max_retry_delay, "max_retry_delay", where)
        self.execution_timeout = _seconds(execution_timeout, "execution_timeout", where)
        if self.execution_timeout is not None and self.execution_timeout <= 0:
            raise DagDefinitionError(f"{where}: execution_timeout must be positive")
        try:
            self.memory_limit = None if memory_limit is None else parse_size(memory_limit, f"{where}: memory_limit")
            self.cpu_time_limit = (None if cpu_time_limit is None
                                   else parse_duration(cpu_time_limit, f"{where}: cpu_time_limit"))
        except ValueError as exc:
            raise DagDefinitionError(str(exc)) from None
        self.depends_on_past = bool(depends_on_past)
        rule = trigger_rule.value if isinstance(trigger_rule, TriggerRule) else trigger_rule
        if rule not in TRIGGER_RULES:
            raise DagDefinitionError(
                f"{where}: invalid trigger_rule {trigger_rule!r}; expected one of {', '.join(sorted(TRIGGER_RULES))}"
            )
        self.trigger_rule: str = rule
        if not isinstance(priority_weight, int) or isinstance(priority_weight, bool):
            raise TypeError(f"{where}: priority_weight must be an int, not {priority_weight!r}")
        self.priority_weight = priority_weight
        if env is not None and not isinstance(env, dict):
            raise TypeError(f"{where}: env must be a dict of str to str, not {type(env).__name__}")
        self.env = env
        if cwd is not None and not isinstance(cwd, str):
            raise TypeError(f"{where}: cwd must be a str, not {type(cwd).__name__}")
        self.cwd = cwd
        self.on_success_callback: list[Callable[..., Any]] = _callbacks(on_success_callback, "on_success_callback", where)
        self.on_failure_callback: list[Callable[..., Any]] = _callbacks(on_failure_callback, "on_failure_callback", where)
        self.on_retry_callback: list[Callable[..., Any]] = _callbacks(on_retry_callback, "on_retry_callback", where)
        self.email: list[str] = _names(email, "email", where, address=True)
        self.email_on_failure = bool(self.email) if email_on_failure is None else bool(email_on_failure)
        self.email_on_retry = bool(email_on_retry)
        self.notify_on_failure = _names(notify_on_failure, "notify_on_failure", where)
        self.notify_on_retry = _names(notify_on_retry, "notify_on_retry", where)
        self.notify_on_success = _names(notify_on_success, "notify_on_success", where)
        self.do_xcom_push = bool(do_xcom_push)
        self.doc = doc if doc is not None else doc_md
        self.upstream_task_ids: dict[str, None] = {}
        self.downstream_task_ids: dict[str, None] = {}
        self._upstream: dict[str, BaseOperator] = {}
        self._downstream: dict[str, BaseOperator] = {}
        self.dag: DAG | None = None
        if dag is not None:
            dag.add_task(self)
            self.dag = dag

    def __repr__(self) -> str:
        return f"<Task({type(self).__name__}): {self.task_id}>"

    @property
    def dag_id(self) -> str | None:
        return self.dag.dag_id if self.dag is not None else None

    @property
    def output(self) -> XComArg:
        from flow.xcom import XComArg

        return XComArg(self)

    @property
    def max_tries(self) -> int:
        return self.retries

    @property
    def upstream_list(self) -> list[BaseOperator]:
        return list(self._upstream.values())

    @property
    def downstream_list(self) -> list[BaseOperator]:
        return list(self._downstream.values())

    def _operators(self) -> list[BaseOperator]:
        return [self]

    def _attach(self, dag: DAG) -> None:
        dag.add_task(self)
        self.dag = dag
        self._where = f"DAG {dag.dag_id!r}, {type(self).__name__} {self.task_id!r}"
        for other in (*self._upstream.values(), *self._downstream.values()):
            if other.dag is None:
                other._attach(dag)

    def _link(self, other: Any, *, downstream: bool) -> None:
        from flow.edges import Label

        for item in _flatten(other):
            if isinstance(item, Label):
                (item.add_upstream if downstream else item.add_downstream)([self])
                continue
            op = _as_operator(item, self._where)
            if op is self:
                raise DagDefinitionError(f"{self._where}: a task cannot depend on itself")
            if self.dag is not None and op.dag is not None and self.dag is not op.dag:
                raise DagDefinitionError(
                    f"{self._where}: cannot link to {op.task_id!r} of DAG {op.dag.dag_id!r}; tasks must share a DAG"
                )
            if self.dag is None and op.dag is not None:
                self._attach(op.dag)
            elif op.dag is None and self.dag is not None:
                op._attach(self.dag)
            up, down = (self, op) if downstream else (op, self)
            up.downstream_task_ids[down.task_id] = None
            up._downstream[down.task_id] = down
            down.upstream_task_ids[up.task_id] = None
            down._upstream[up.task_id] = up

    def _depend_on_references(self) -> None:
        """An XComArg in a templated field makes its task an upstream, as in Airflow."""
        from flow.xcom import iter_references

        for field in self.template_fields:
            for ref in iter_references(getattr(self, field, None)):
                upstream = getattr(ref, "operator", None)
                if isinstance(upstream, BaseOperator) and upstream is not self:
                    self.set_upstream(upstream)

    def execute(self, context: dict[str, Any]) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement execute(context)")

    def _template_path(self) -> list[str]:
        """The DAG file's folder, then the DAG's template_searchpath (Airflow's order)."""
        if self.dag is None:
            return []
        folders = [os.path.dirname(self.dag.fileloc)] if self.dag.fileloc else []
        base = folders[0] if folders else os.getcwd()
        return folders + [os.path.join(base, p) for p in self.dag.template_searchpath]

    def render_template(self, content: Any, context: dict[str, Any], field: str = "template") -> Any:
        """Render ``content`` (a str, or lists/dicts of them) as this task's fields are rendered."""
        from flow.templating import render_field

        filters = self.dag.user_defined_filters if self.dag is not None else None
        return render_field(field, content, context, self.template_ext, self._template_path(),
                            nested_files=self._nested_template_files, filters=filters)

    _nested_template_files = False

    def render_template_fields(self, context: dict[str, Any]) -> None:
        """Replace each templated attribute by its rendered value, in place, just before execute."""
        for field in self.template_fields:
            value = getattr(self, field)
            setattr(self, field, self.render_template(value, context, field))

    @classmethod
    def partial(cls, **_kwargs: Any) -> Any:
        from flow.exceptions import NotSupportedByFlow

        raise NotSupportedByFlow(f"{cls.__name__}.partial(): flow does not support dynamic task mapping yet "
                                 "(create one task per item in a loop instead)")

    def expand(self, **_kwargs: Any) -> Any:
        type(self).partial()

    def serialize_extra(self) -> dict[str, Any]:
        """Operator-specific JSON for executors that need more than the common fields."""
        return {}


def chain(*tasks: Any) -> None:
    """``chain(a, [b, c], d)``: a >> b, a >> c, b >> d, c >> d; two adjacent lists pair up element-wise."""
    for left, right in zip(tasks, tasks[1:], strict=False):
        left_is_list = isinstance(left, list | tuple)
        right_is_list = isinstance(right, list | tuple)
        if left_is_list and right_is_list:
            if len(left) != len(right):
                raise DagDefinitionError(
                    f"chain: adjacent lists must have the same length, got {len(left)} and {len(right)}"
                )
            for a, b in zip(left, right, strict=True):
                a >> b
        elif left_is_list:
            for a in left:
                a >> right
        else:
            left >> right


def cross_downstream(from_tasks: Iterable[Any], to_tasks: Iterable[Any]) -> None:
    """Every task in ``from_tasks`` upstream of every task in ``to_tasks``."""
    targets = list(to_tasks)
    for task in from_tasks:
        task >> targets
