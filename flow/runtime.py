"""What runs inside a task's process: rendering bash commands and running Python tasks.

Imported once by the runner (a fork server), so everything a try needs is loaded before the
fork: Jinja2 and pendulum here, the DAG file only inside the child.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from typing import Any

import jinja2  # noqa: F401  (preloaded for forked children)
import pendulum  # noqa: F401

from flow.context import _current, build_context
from flow.exceptions import FAIL_EXCEPTIONS, SKIP_EXCEPTIONS
from flow.templating import TemplateError, render_field
from flow.xcom import RETURN_VALUE, XComError, encode_xcom

__all__ = ["TemplateError", "render_bash", "run_task", "run_callback"]

_BASH_EXT = (".sh", ".bash")


def render_bash(spec: dict[str, Any]) -> tuple[str, dict[str, str] | None, str | None]:
    """(command, env, cwd) with templates rendered; a command ending in .sh/.bash names a script file.

    Raises only TemplateError, so the runner has one failure to report for anything that stops
    the command from being built (a bad template, a malformed context).
    """
    try:
        return _render_bash(spec)
    except TemplateError:
        raise
    except Exception as e:
        raise TemplateError("task context", None, f"{type(e).__name__}: {e}") from None


def _render_bash(spec: dict[str, Any]) -> tuple[str, dict[str, str] | None, str | None]:
    context = build_context(spec)
    dag_file = spec.get("dag_file")
    folder = os.path.dirname(os.path.abspath(dag_file)) if dag_file else None
    extra_path = (spec.get("extra") or {}).get("template_searchpath") or []
    searchpath = [folder, *(os.path.join(folder, p) for p in extra_path)] if folder else None
    command = render_field("bash_command", spec.get("bash_command") or "", context, _BASH_EXT, searchpath)
    env = spec.get("env")
    if env is not None:
        if not isinstance(env, dict):
            raise TemplateError("env", None, f"env must be a dict of str to str, not {type(env).__name__}")
        env = {str(k): str(v) for k, v in render_field("env", env, context, (), searchpath).items()}
    cwd = spec.get("cwd")
    if cwd is not None:
        cwd = render_field("cwd", cwd, context, (), searchpath)
    if context["ti"].pushed:
        # {{ ti.xcom_push(...) }} ran while the command rendered: the executor stores these with the
        # try's result, as Airflow does (they used to be rendered and dropped).
        spec["template_xcom"] = dict(context["ti"].pushed)
    return command, env, cwd


def bash_xcom(extra: dict[str, Any], line: str, note: Any) -> dict[str, Any] | None:
    """The XComs of a bash try from its last stdout line: the line itself, or (output_processor=json.loads,
    multiple_outputs=True) the JSON it holds, and each of its keys. ``note`` writes to the try's log."""
    if not extra.get("output_json"):
        return {RETURN_VALUE: line}
    try:
        value = json.loads(line)
    except ValueError as e:
        note(f"output_processor=json.loads: the last line is not JSON ({e}); pushed as text")
        return {RETURN_VALUE: line}
    if value is None:
        return None  # nothing returned: no XCom, as in Airflow
    pushes = {RETURN_VALUE: value}
    if extra.get("multiple_outputs") and isinstance(value, dict):
        pushes.update({str(k): v for k, v in value.items() if k != RETURN_VALUE})
    return pushes


def _result(ok: bool, error: str | None = None, **fields: Any) -> dict[str, Any]:
    extra = {"exec_bash": fields["exec_bash"]} if fields.get("exec_bash") else {}
    return extra | {
        "ok": ok,
        "error": error,
        "xcom": fields.get("xcom"),
        "branch": fields.get("branch"),
        "skip_downstream": bool(fields.get("skip_downstream", False)),
        "outcome": fields.get("outcome"),
    }


def _describe(exc: BaseException, dag_file: str | None) -> str:
    """One line: the exception and the line that raised it, preferring a line of the DAG file."""
    text = " ".join(str(exc).split())
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, TemplateError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    if dag_file:
        target = os.path.abspath(dag_file)
        in_dag = [f for f in frames if os.path.abspath(f.filename) == target]
        if in_dag:
            frames = in_dag
        elif isinstance(exc, XComError):
            return message
    if not frames:
        return message
    return f"{message} (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})"


def _load(spec: dict[str, Any]) -> tuple[Any, Any, str | None]:
    """(dag, task, error): the DAG and task this try runs, or a message saying which is missing."""
    from flow.dagbag import load_file

    dag_file = spec.get("dag_file") or ""
    dag_id = spec.get("dag_id")
    dags, failure = load_file(dag_file)
    if failure is not None:
        return None, None, f"cannot import DAG file: {failure.message}"
    found = next((d for d in dags if d.dag_id == dag_id), None)
    if found is None:
        return None, None, f"DAG {dag_id!r} is not defined in {dag_file}"
    task_id = spec.get("task_id")
    if task_id is None:
        return found, None, None
    task = found.task_dict.get(task_id)
    if task is None:
        return found, None, f"DAG {dag_id!r} has no task {task_id!r} (in {dag_file})"
    return found, task, None


def _branch_ids(value: Any, dag: Any, task_id: str) -> list[str]:
    if value is None:
        return []
    ids = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple | set) else None
    if ids is None or not all(isinstance(i, str) for i in ids):
        raise TypeError(f"branch task {task_id!r} must return a task id or a list of task ids, not {value!r}")
    unknown = [i for i in ids if i not in dag.task_dict]
    if unknown:
        raise ValueError(f"branch task {task_id!r} chose {', '.join(map(repr, unknown))}, not a task of DAG {dag.dag_id!r}")
    return ids


LOG_FORMAT = "[%(asctime)s] %(levelname)s %(name)s - %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a record is emitted: the runner installs this once,
    while warming up with stderr redirected, and each forked try has its own stderr."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


_log_handler: logging.Handler | None = None


def task_logging() -> None:
    """Send stdlib ``logging`` at INFO and above to the try's log (stderr), as Airflow's task handler does.

    Only the root logger gets a handler, and only once per process; a task that configures
    logging itself keeps its own setup on top.
    """
    global _log_handler
    root = logging.getLogger()
    if _log_handler is not None and _log_handler in root.handlers:
        return
    _log_handler = _StderrHandler()
    _log_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(_log_handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)


def run_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one Python try; never raises. Errors are one line in "error", the traceback on stderr."""
    dag_file = spec.get("dag_file")
    try:
        dag, task, problem = _load(spec)
        if problem is not None:
            print(problem, file=sys.stderr)
            return _result(False, problem)
        context = build_context(spec, dag=dag, task=task)
        task_logging()
        _current.append(context)
        try:
            task.render_template_fields(context)
            value = task.execute(context)
        finally:
            _current.pop()
        ti = context["ti"]
        if getattr(task, "exec_bash", False):  # @task.bash: the worker becomes bash -c value
            env = task.env
            if env is not None:
                env = {str(k): str(v) for k, v in env.items()}
            return _result(True, xcom=dict(ti.pushed) or None, exec_bash={
                "command": value, "env": env, "append_env": bool(getattr(task, "append_env", False)), "cwd": task.cwd})
        pushes: dict[str, Any] = dict(ti.pushed)
        if value is not None and task.do_xcom_push and spec.get("do_xcom_push", True):
            encode_xcom(task.task_id, RETURN_VALUE, value)
            pushes[RETURN_VALUE] = value
        branch = _branch_ids(value, dag, task.task_id) if task.is_branch else None
        skip = bool(task.is_short_circuit and not value)
        if skip and not getattr(task, "ignore_downstream_trigger_rules", True):
            skip, branch = False, []  # skip the direct downstream only; the rest follow their trigger rules
        if task.is_short_circuit:
            print(f"Condition result is {bool(value)}" + ("" if value else ": skipping downstream tasks"))
        return _result(True, xcom=pushes or None, branch=branch, skip_downstream=skip)
    except SKIP_EXCEPTIONS as e:
        text = " ".join(str(e).split())
        print(f"task skipped: {text}" if text else "task skipped", file=sys.stderr)
        return _result(True, xcom=None, outcome="skipped")
    except BaseException as e:  # noqa: BLE001 - a task's failure must become a result, whatever it raised
        if isinstance(e, KeyboardInterrupt):
            raise
        traceback.print_exc(file=sys.stderr)
        return _result(False, _describe(e, dag_file), outcome="no_retry" if isinstance(e, FAIL_EXCEPTIONS) else None)


def run_callback(spec: dict[str, Any], which: str) -> dict[str, Any]:
    """Call the task's (or, with task_id None, the DAG's) ``which`` callbacks with the try's context.

    ``which`` is "on_success_callback", "on_failure_callback" or "on_retry_callback";
    ``spec["extra"]["reason"]`` (the failure message) is passed as ``context["reason"]``.
    Never raises: {"ok": bool, "error": str | None}.
    """
    if which not in ("on_success_callback", "on_failure_callback", "on_retry_callback"):
        return {"ok": False, "error": f"unknown callback {which!r}"}
    try:
        dag, task, problem = _load(spec)
        if problem is not None:
            return {"ok": False, "error": problem}
        owner = task if task is not None else dag
        context = build_context(spec, dag=dag, task=task)
        context["reason"] = (spec.get("extra") or {}).get("reason")
        context["exception"] = context["reason"]
        for fn in getattr(owner, which, None) or []:
            fn(context)
        return {"ok": True, "error": None}
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        traceback.print_exc(file=sys.stderr)
        return {"ok": False, "error": _describe(e, spec.get("dag_file"))}
