"""Jinja templating of task fields, with errors that say which field and which line.

StrictUndefined makes a typo fail the task instead of silently running ``rm -rf /{{ dirr }}``,
and the sandbox keeps templates from reaching into Python internals.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jinja2
import jinja2.sandbox

from flow.xcom import Reference


class TemplateError(Exception):
    """str() is the whole message: "template error in bash_command line 3: 'foo' is undefined"."""

    def __init__(self, field: str, line: int | None, message: str, source: str | None = None) -> None:
        self.field = field
        self.line = line
        self.detail = message
        self.source = source
        where = field if source is None else f"{field} ({source})"
        at = f" line {line}" if line else ""
        super().__init__(f"template error in {where}{at}: {message}")


def _ds_filter(value: Any) -> str:
    return value.strftime("%Y-%m-%d")


def _ds_nodash_filter(value: Any) -> str:
    return value.strftime("%Y%m%d")


def _ts_filter(value: Any) -> str:
    return value.isoformat()


def _ts_nodash_filter(value: Any) -> str:
    return value.strftime("%Y%m%dT%H%M%S")


_FILTERS = {"ds": _ds_filter, "ds_nodash": _ds_nodash_filter, "ts": _ts_filter, "ts_nodash": _ts_nodash_filter}
SearchPath = str | Sequence[str] | None
_envs: dict[tuple[tuple[str, ...], tuple[tuple[str, Any], ...]], jinja2.Environment] = {}


def _folders(searchpath: SearchPath) -> tuple[str, ...]:
    if not searchpath:
        return ()
    return (searchpath,) if isinstance(searchpath, str) else tuple(searchpath)


def environment(searchpath: SearchPath = None, filters: dict[str, Any] | None = None) -> jinja2.Environment:
    """One sandboxed environment per template path; the first folder is the DAG file's, as in Airflow.

    A DAG's ``template_searchpath`` folders follow it, and its ``user_defined_filters`` are added.
    """
    key = (_folders(searchpath), tuple(sorted((filters or {}).items(), key=lambda kv: kv[0])))
    env = _envs.get(key)
    if env is None:
        loader = jinja2.FileSystemLoader(list(key[0])) if key[0] else None
        env = jinja2.sandbox.SandboxedEnvironment(
            loader=loader,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
            extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"],
        )
        env.filters.update(_FILTERS)
        env.filters.update(filters or {})
        _envs[key] = env
    return env


def _error_line(exc: BaseException, filename: str) -> int | None:
    """The template line from a Jinja traceback (Jinja rewrites frames to point into the template)."""
    line = getattr(exc, "lineno", None)
    if isinstance(exc, jinja2.TemplateSyntaxError) and line:
        return int(line)
    tb = exc.__traceback__
    found = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            found = tb.tb_lineno
        tb = tb.tb_next
    return found


def _message(exc: BaseException) -> str:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.message or str(exc)
    if isinstance(exc, jinja2.UndefinedError | jinja2.TemplateError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def render_string(
    field: str,
    text: str,
    context: dict[str, Any],
    template_ext: Sequence[str] = (),
    searchpath: SearchPath = None,
    filters: dict[str, Any] | None = None,
) -> str:
    """Render one template; a value ending in a template extension names a file in ``searchpath``."""
    env = environment(searchpath, filters)
    if template_ext and text.endswith(tuple(template_ext)):
        if not searchpath:
            raise TemplateError(field, None, f"template file {text!r} given but the DAG file's folder is unknown")
        try:
            template = env.get_template(text)
        except jinja2.TemplateNotFound:
            path = " or ".join(os.path.join(folder, text) for folder in _folders(searchpath))
            raise TemplateError(field, None, f"template file {path} not found") from None
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(field, e.lineno, _message(e), source=text) from None
        filename = template.filename or text
        source: str | None = text
    else:
        filename = "<template>"
        source = None
        try:
            template = env.from_string(text)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(field, e.lineno, _message(e)) from None
    try:
        return template.render(context)
    except Exception as e:
        raise TemplateError(field, _error_line(e, filename), _message(e), source=source) from None


def render_field(
    field: str,
    value: Any,
    context: dict[str, Any],
    template_ext: Sequence[str] = (),
    searchpath: SearchPath = None,
    *,
    nested_files: bool = False,
    filters: dict[str, Any] | None = None,
) -> Any:
    """Render strings, recursively through lists, tuples and dicts; resolve XComArg-like references.

    A resolved reference (an upstream task's XCom) is data, so it is not rendered again. Only a
    top-level string may name a template file (an env value "run.sh" is just a value), unless
    ``nested_files``: a Python task given ``templates_exts`` reads its op_kwargs files, as in Airflow.
    """
    if isinstance(value, str):
        return render_string(field, value, context, template_ext, searchpath, filters)
    if isinstance(value, Reference):
        return value.resolve(context)
    inner = template_ext if nested_files else ()

    def again(name: str, item: Any) -> Any:
        return render_field(name, item, context, inner, searchpath, nested_files=nested_files, filters=filters)

    if isinstance(value, list):
        return [again(f"{field}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(again(f"{field}[{i}]", v) for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: again(f"{field}[{k!r}]", v) for k, v in value.items()}
    return value
