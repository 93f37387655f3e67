"""TaskFlow: ``@dag`` and ``@task``, Airflow's way of writing DAGs as plain Python functions."""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

from flow.context import CONTEXT_KEYS
from flow.dag import DAG, get_current_dag
from flow.exceptions import NotSupportedByFlow
from flow.operators.bash import bash_outcome_extra, bash_outcome_options
from flow.operators.external_python import ExternalPythonOperator
from flow.operators.python import BranchPythonOperator, PythonOperator, ShortCircuitOperator
from flow.xcom import RETURN_VALUE, Reference, XComArg


class _DecoratedMixin:
    """Pushes each key of a returned dict as its own XCom when ``multiple_outputs`` is set."""

    def __init__(self, *, multiple_outputs: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.multiple_outputs = bool(multiple_outputs)

    def execute(self, context: dict[str, Any]) -> Any:
        result = super().execute(context)  # type: ignore[misc]
        if self.multiple_outputs and self.do_xcom_push:  # type: ignore[attr-defined]
            if not isinstance(result, Mapping):
                raise TypeError(
                    f"task {self.task_id!r} has multiple_outputs=True but returned {type(result).__name__}, "  # type: ignore[attr-defined]
                    "not a dict"
                )
            for key, value in result.items():
                if not isinstance(key, str) or key == RETURN_VALUE:
                    raise TypeError(f"task {self.task_id!r}: multiple_outputs key {key!r} must be a str other than 'return_value'")  # type: ignore[attr-defined]
                context["ti"].xcom_push(key, value)
        return result


class _PythonDecoratedOperator(_DecoratedMixin, PythonOperator):
    operator_name = "@task"


class _ExternalPythonDecoratedOperator(ExternalPythonOperator):
    operator_name = "@task.external_python"


class _BashDecoratedOperator(PythonOperator):
    """``@task.bash``: the function returns a bash command, which is rendered as a template and run.

    The function runs in the task's worker; the worker then becomes ``bash -c COMMAND`` (see
    flow.executors.child), so the command's exit status, ``skip_on_exit_code`` and last stdout
    line (the XCom) work as for a BashOperator.
    """

    operator_name = "@task.bash"
    template_fields = ("templates_dict", "op_args", "op_kwargs", "env", "cwd")
    exec_bash = True

    def __init__(self, *, append_env: bool = False, skip_on_exit_code: int | list[int] | None = 99,
                 multiple_outputs: bool = False, output_processor: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.append_env = bool(append_env)
        self.skip_on_exit_code, self.output_json = bash_outcome_options(self._where, skip_on_exit_code, output_processor)
        self.multiple_outputs = bool(multiple_outputs)

    def serialize_extra(self) -> dict[str, Any]:
        return bash_outcome_extra(self.skip_on_exit_code, self.output_json, self.multiple_outputs)

    def execute(self, context: dict[str, Any]) -> Any:
        command = super().execute(context)
        if not isinstance(command, str) or not command.strip():
            raise TypeError(f"{self._where}: a @task.bash function must return a non-empty bash command, "
                            f"not {command!r}")
        return self.render_template(command, context, "bash_command")


class _BranchPythonDecoratedOperator(_DecoratedMixin, BranchPythonOperator):
    operator_name = "@task.branch"


class _ShortCircuitDecoratedOperator(_DecoratedMixin, ShortCircuitOperator):
    operator_name = "@task.short_circuit"


def _returns_mapping(fn: Callable[..., Any]) -> bool:
    """Airflow infers multiple_outputs from a ``-> dict[...]`` annotation; so do we."""
    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:
        return False
    origin = typing.get_origin(hint) or hint
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _unique_task_id(task_id: str, dag: DAG | None) -> str:
    """``name``, then ``name__1``, ``name__2``... when the same @task is called again in one DAG."""
    if dag is None or task_id not in dag.task_dict:
        return task_id
    base = re.split(r"__\d+$", task_id)[0]
    pattern = re.compile(rf"^{re.escape(base)}__(\d+)$")
    numbers = [int(m.group(1)) for t in dag.task_dict if (m := pattern.match(t))]
    return f"{base}__{max(numbers, default=0) + 1}"


class TaskDecorator:
    """What ``@task`` returns: call it inside a DAG to add a task; the call returns an XComArg."""

    def __init__(self, function: Callable[..., Any], operator_class: type, kwargs: dict[str, Any]) -> None:
        if not callable(function):
            raise TypeError(f"@task must decorate a function, not {type(function).__name__}")
        self.function = function
        self.operator_class = operator_class
        self.kwargs = kwargs
        functools.update_wrapper(self, function)

    def __repr__(self) -> str:
        return f"<@task {self.function.__qualname__}>"

    def override(self, **kwargs: Any) -> TaskDecorator:
        return TaskDecorator(self.function, self.operator_class, {**self.kwargs, **kwargs})

    def expand(self, **_kwargs: Any) -> Any:
        raise NotSupportedByFlow(f"@task {self.function.__name__}.expand(): flow does not support dynamic task "
                                 "mapping yet (call the task once per item in a loop instead)")

    partial = expand
    expand_kwargs = expand

    def __call__(self, *args: Any, **kwargs: Any) -> XComArg:
        signature = inspect.signature(self.function)
        try:
            bound = signature.bind_partial(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"@task {self.function.__name__}: {e}") from None
        missing = [
            p.name for p in signature.parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and p.name not in bound.arguments and p.name not in CONTEXT_KEYS
        ]
        if missing:
            raise TypeError(f"@task {self.function.__name__}: missing argument(s) {', '.join(missing)}")
        options = dict(self.kwargs)
        dag = options.get("dag") or get_current_dag()
        task_id = _unique_task_id(options.pop("task_id", self.function.__name__), dag)
        if self.operator_class not in (_BashDecoratedOperator, _ExternalPythonDecoratedOperator):
            options.setdefault("multiple_outputs", _returns_mapping(self.function))
        if options.get("doc") is None and options.get("doc_md") is None and self.function.__doc__:
            options["doc"] = inspect.cleandoc(self.function.__doc__)
        op = self.operator_class(
            task_id=task_id, python_callable=self.function, op_args=list(args), op_kwargs=kwargs, **options
        )
        return XComArg(op)


def _make(operator_class: type) -> Callable[..., Any]:
    def decorator(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
        if python_callable is not None:
            return TaskDecorator(python_callable, operator_class, kwargs)
        return lambda fn: TaskDecorator(fn, operator_class, kwargs)

    return decorator


class _TaskNamespace:
    """``@task``, ``@task(...)``, ``@task.python``, ``@task.branch``, ``@task.short_circuit``, ``@task.bash``."""

    python = staticmethod(_make(_PythonDecoratedOperator))
    bash = staticmethod(_make(_BashDecoratedOperator))
    external_python = staticmethod(_make(_ExternalPythonDecoratedOperator))
    branch = staticmethod(_make(_BranchPythonDecoratedOperator))
    short_circuit = staticmethod(_make(_ShortCircuitDecoratedOperator))

    def __call__(self, python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
        return self.python(python_callable, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        hint = _TASK_KINDS_UNSUPPORTED.get(name, "it is not one of flow's task kinds (python, branch, short_circuit)")
        raise NotSupportedByFlow(f"@task.{name}: flow does not support {hint}")


_TASK_KINDS_UNSUPPORTED = {
    "sensor": "sensors yet (poll in a @task with retries)",
    "docker": "Docker tasks (run docker in a BashOperator)",
    "kubernetes": "Kubernetes",
    "virtualenv": "virtualenv tasks yet (use an ExternalPython interpreter in a BashOperator)",
    "run_if": "run_if conditions",
    "skip_if": "skip_if conditions",
}


task = _TaskNamespace()


class DagParam(Reference):
    """A @dag function's argument inside its body: resolves to ``params[name]`` when the task runs."""

    def __init__(self, name: str, default: Any) -> None:
        self.name = name
        self.default = default

    def __repr__(self) -> str:
        return f"DagParam({self.name!r})"

    def resolve(self, context: dict[str, Any]) -> Any:
        return context["params"].get(self.name, self.default)


def dag(dag_id: str | Callable[..., Any] | None = None, **dag_kwargs: Any) -> Any:
    """``@dag(schedule=...)``: calling the decorated function builds and returns the DAG.

    The function's parameters become ``params`` (its defaults, overridden by call arguments) and
    arrive in the body as DagParam references that tasks resolve at run time.
    """
    if callable(dag_id):
        return dag()(dag_id)

    def wrapper(fn: Callable[..., Any]) -> Callable[..., DAG]:
        signature = inspect.signature(fn)
        for p in signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"@dag {fn.__name__}: *args and **kwargs cannot become DAG params")

        @functools.wraps(fn)
        def factory(*args: Any, **kwargs: Any) -> DAG:
            try:
                bound = signature.bind_partial(*args, **kwargs)
            except TypeError as e:
                raise TypeError(f"@dag {fn.__name__}: {e}") from None
            values = dict(bound.arguments)
            for p in signature.parameters.values():
                if p.name not in values:
                    if p.default is p.empty:
                        raise TypeError(f"@dag {fn.__name__}: parameter {p.name!r} needs a default; it becomes a DAG param")
                    values[p.name] = p.default
            options = dict(dag_kwargs)
            params = {**(options.pop("params", None) or {}), **values}
            if options.get("doc_md") is None and fn.__doc__:
                options["doc_md"] = inspect.cleandoc(fn.__doc__)
            with DAG(dag_id if isinstance(dag_id, str) else fn.__name__, params=params, **options) as built:
                fn(**{name: DagParam(name, value) for name, value in values.items()})
            return built

        return factory

    return wrapper
