"""The child's side of a try: how it starts warm, how it becomes the task, how its end is read.

`become_task` runs in the child between fork and exec (bash) or exit (Python). It must never
return into the runner's loop, so it ends in ``os._exit`` whatever happens, and failures are
written where the runner will find them: the message to stderr (which is the try's log) and a
result file next to the status file, which `read_result` and `outcome` turn into the record.
`preload` runs once in the runner, before any fork, so that every child inherits it.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import sys
from typing import Any, NoReturn

from flow.executors.base import TaskSpec

_RESET_SIGNALS = (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD,
    signal.SIGPIPE, signal.SIGXFSZ, signal.SIGUSR1, signal.SIGUSR2,
)
"""Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec: a task's
`yes | head` would spin on EPIPE instead of ending. The runner's own handlers go too."""

EXEC_FAILED = 127


def result_path(status_path: str) -> str:
    return status_path + ".result"


def warn(message: str) -> None:
    try:
        os.write(2, f"flow-runner[{os.getpid()}]: {message}\n".encode("utf-8", errors="replace"))
    except OSError:
        pass


def become_task(spec: dict[str, Any], stdout_fd: int, stderr_fd: int) -> NoReturn:
    """Turn this freshly forked process into the try described by `spec`."""
    code = EXEC_FAILED
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in _RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(stdout_fd, 1)
        os.dup2(stderr_fd, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        if spec["kind"] == "bash":
            code = 1
            _exec_bash(spec)
        else:
            code = _run_python(spec)
    except BaseException as exc:  # noqa: B036 - nothing may escape into the runner's copy
        message = f"could not start the task: {type(exc).__name__}: {exc}"
        _report(spec, message)
    finally:
        os._exit(code)


def _report(spec: dict[str, Any], error: str) -> None:
    try:
        os.write(2, f"[flow] {error}\n".encode("utf-8", errors="replace"))
    except OSError:
        pass
    _write_result(spec, {"ok": False, "error": error})


def _write_result(spec: dict[str, Any], result: dict[str, Any]) -> None:
    try:
        data = json.dumps(result)
    except (TypeError, ValueError) as exc:
        data = json.dumps({"ok": False, "error": f"the task's result is not JSON: {exc}"})
    try:
        with open(result_path(spec["status_path"]), "w", encoding="utf-8") as fh:
            fh.write(data)
    except OSError as exc:
        os.write(2, f"[flow] cannot write the result file: {exc}\n".encode())


def _exec_bash(spec: dict[str, Any]) -> None:
    """Render in the child so a slow or failing template costs the runner nothing."""
    from flow.runtime import TemplateError, render_bash

    try:
        command, env, cwd = render_bash(spec)
    except TemplateError as exc:
        _report(spec, str(exc))
        return
    if env is None:
        env = dict(os.environ)
    elif spec.get("append_env"):
        env = {**os.environ, **env}
    if cwd:
        try:
            os.chdir(cwd)
        except OSError as exc:
            _report(spec, f"cannot use cwd {cwd!r}: {exc.strerror}")
            return
    try:
        os.execve("/bin/bash", ["bash", "-c", command], env)
    except OSError as exc:
        _report(spec, f"cannot run /bin/bash: {exc.strerror}")
        os._exit(EXEC_FAILED)


def _run_python(spec: dict[str, Any]) -> int:
    """Run the operator here: the runner already imported flow and its dependencies, so this is warm."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.reconfigure(line_buffering=True)
    from flow.runtime import run_task

    try:
        result = run_task(spec)
    except BaseException as exc:  # noqa: B036 - run_task promises not to raise; SystemExit still can
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    _flush_streams()
    _write_result(spec, result)
    return 0 if result.get("ok") else 1


def _flush_streams() -> None:
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


# -- before any fork: what every child inherits --------------------------------------------


PRELOAD = ("logging", "jinja2", "jinja2.sandbox", "pendulum", "flow", "flow.operators", "flow.runtime",
           "flow.dagbag", "flow.serialize", "flow.schedule")

WARMUP_DAG = """
from flow import DAG
from flow.operators import PythonOperator

with DAG("flow_runner_warmup", schedule=None):
    PythonOperator(task_id="noop", python_callable=lambda: "ok")
"""


def preload() -> None:
    """Import and exercise what tasks need once, here, so every forked child inherits it warm.

    Importing is not enough: Jinja2, pendulum and the DAG loader import and cache more on first
    use, which every child would otherwise redo (compiling from source when bytecode writing is
    off). So one bash command is rendered and one built-in Python task runs in this process.
    """
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:
            warn(f"could not preload {name}: {exc}")
    try:
        _warm_up()
    except Exception as exc:
        warn(f"warm-up failed (tasks will start slower): {type(exc).__name__}: {exc}")
    gc.freeze()


def _warm_up() -> None:
    import contextlib
    import io
    import tempfile

    from flow.runtime import render_bash, run_task

    context = {
        "logical_date": "2024-01-01T00:00:00+00:00", "data_interval_start": "2023-12-31T00:00:00+00:00",
        "data_interval_end": "2024-01-01T00:00:00+00:00", "run_id": "warmup", "run_type": "manual",
        "conf": {}, "params": {}, "dag_id": "flow_runner_warmup", "task_id": "noop", "try_number": 1,
        "max_tries": 1, "timezone": "UTC",
    }
    saved_path = list(sys.path)
    with tempfile.TemporaryDirectory(prefix="flow-runner-warmup-") as tmp:
        dag_file = os.path.join(tmp, "warmup_dag.py")
        with open(dag_file, "w", encoding="utf-8") as fh:
            fh.write(WARMUP_DAG)
        spec = TaskSpec(
            ref="warmup", kind="python", dag_id="flow_runner_warmup", task_id="noop", run_id="warmup",
            try_number=1, dag_file=dag_file, log_path=os.devnull, status_path=os.devnull,
            bash_command="echo {{ ds }} {{ params }}", env={"DS": "{{ ds_nodash }}"}, cwd="{{ ts }}",
            context=context,
        ).to_json()
        render_bash(spec)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            result = run_task(spec)
        if not result.get("ok"):
            raise RuntimeError(result.get("error"))
    sys.path[:] = saved_path


# -- the runner reading back what the child did ------------------------------------------------


def read_result(status_path: str) -> dict[str, Any] | None:
    """What the child reported (a Python task's result, a template error), consumed once."""
    path = result_path(status_path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    return data if isinstance(data, dict) else None


def outcome(spec: dict[str, Any], code: int, *, timed_out: bool, killed: str | None,
            reported: dict[str, Any] | None) -> tuple[bool, str | None]:
    """(ok, the one-line reason when not): `code` is waitstatus_to_exitcode's (negative = signal).

    The operator reads the most specific cause: our own timeout or kill first, then what the task
    said about itself (the exception, the template error), then how the process ended.
    """
    ok = code == 0 and not timed_out and killed is None
    if spec["kind"] == "python":
        ok = ok and bool(reported and reported.get("ok"))
    elif reported is not None:
        ok = ok and bool(reported.get("ok", True))
    if ok:
        return True, None
    if timed_out:
        return False, f"timed out after {spec['execution_timeout']:g}s"
    if killed is not None:
        return False, f"killed: {killed}"
    if reported and reported.get("error"):
        return False, str(reported["error"]).strip().splitlines()[-1]
    if code < 0:
        return False, f"killed by {signal.Signals(-code).name}"
    if code != 0:
        return False, f"exit status {code}"
    return False, "the task process exited without reporting a result"
