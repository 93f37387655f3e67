"""Importing one DAG file and collecting the DAGs it declares.

Runs in the loader's parse child and in task workers, never in flowd itself. Each import uses a
fresh module name and compiles the source directly (no .pyc), so an edited file is always
re-read and two files named ``etl.py`` in different folders never collide. The file's folder is
appended to sys.path (so helper modules next to it import), never prepended: a DAG file named
``json.py`` must not shadow the standard library.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import traceback
import types
from dataclasses import dataclass

from flow.compat.hook import install as install_airflow_names
from flow.dag import DAG, DagDefinitionError, collect_dags

_counter = itertools.count()
_last_module: dict[str, str] = {}


@dataclass(frozen=True)
class ImportErrorInfo:
    message: str
    """One line: "dags/x.py:12: SyntaxError: invalid syntax"."""
    traceback: str


def module_name(path: str) -> str:
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
    stem = os.path.splitext(os.path.basename(path))[0]
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)
    return f"flow_dagfile_{digest}_{next(_counter)}__{safe}"


def _error_line(exc: BaseException, path: str, fallback: int | None) -> int | None:
    if isinstance(exc, SyntaxError) and exc.filename and os.path.abspath(exc.filename) == path:
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename) == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line if line is not None else fallback


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        text = exc.msg
    else:
        text = str(exc)
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _failure(path: str, shown: str, exc: BaseException, fallback_line: int | None = None) -> ImportErrorInfo:
    line = _error_line(exc, path, fallback_line)
    where = f"{shown}:{line}" if line else shown
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ImportErrorInfo(f"{where}: {_one_line(exc)}", tb)


def _finalise(dag: DAG, path: str, seen: dict[str, DAG]) -> None:
    """The checks a DAG must pass once its file has run: a unique id, no cycles, a serializable form."""
    from flow.serialize import serialize_dag

    if dag.dag_id in seen:
        raise DagDefinitionError(
            f"DAG id {dag.dag_id!r} is declared twice in this file (lines {seen[dag.dag_id].lineno} and {dag.lineno})"
        )
    seen[dag.dag_id] = dag
    dag.fileloc = path
    json.dumps(serialize_dag(dag))


def load_file(path: str) -> tuple[list[DAG], ImportErrorInfo | None]:
    """Import ``path`` and return every DAG created while it ran, or the first error in one line."""
    shown = path
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        return [], ImportErrorInfo(f"{shown}: cannot read DAG file: {e.strerror or e}", "")
    previous = _last_module.pop(path, None)
    if previous is not None:
        sys.modules.pop(previous, None)
    name = module_name(path)
    module = types.ModuleType(name)
    module.__file__ = path
    if folder not in sys.path:
        sys.path.append(folder)
    current = None
    install_airflow_names()
    try:
        code = compile(source, path, "exec", dont_inherit=True)
        sys.modules[name] = module
        with collect_dags() as collected:
            exec(code, module.__dict__)
        seen: dict[str, DAG] = {}
        for current in collected:
            _finalise(current, path, seen)
    except (Exception, SystemExit) as e:
        sys.modules.pop(name, None)
        return [], _failure(path, shown, e, current.lineno if current is not None else None)
    _last_module[path] = name
    return list(collected), None
