"""How a try's process comes to exist: bash is spawned, our own Python code runs in a fork.

Bash tries: the runner renders the command itself and starts bash with ``posix_spawn``, which
(vfork + exec) costs a fraction of forking the ~30 MB runner, whose page tables fork must copy
only for exec to throw them away. Most commands have no template at all; they skip Jinja and
the context entirely. A template that fails is the try's result and no process is started.

Python tasks and callbacks: the runner forks and the child runs the callable warm, with
everything `preload` imported already. `become_task` runs in that child and must never return
into the runner's loop, so it ends in ``os._exit`` whatever happens; what it has to say goes to
stderr (the try's log) and to a result file that logsink.read_result turns into the record.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import sys
from typing import Any, NoReturn

from flow import filemodes
from flow.executors.base import TaskSpec
from flow.executors.logsink import FORKED_KINDS, result_path
from flow.executors.tryprocs import TAG_VAR, try_tag

KINDS = ("bash", *FORKED_KINDS)
CALLBACKS = ("on_success_callback", "on_failure_callback", "on_retry_callback")

_RESET_SIGNALS = (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD,
    signal.SIGPIPE, signal.SIGXFSZ, signal.SIGUSR1, signal.SIGUSR2,
)
"""Every signal the runner handles or ignores. Python ignores SIGPIPE and SIGXFSZ, and an ignored
signal stays ignored across exec: a task's `yes | head` would spin on EPIPE instead of ending."""
_DEFAULT_SIGNALS = tuple(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})
"""What bash starts with at default disposition: all of them, so that a signal ignored by whoever
started flowd (nohup, a shell's `&`) is not ignored in tasks either. (glibc's posix_spawn leaves
its two internal signals, 32 and 33, ignored; glibc installs its own handlers before using them.)"""

_TEMPLATE_MARKS = ("{{", "{%", "{#")
"""Jinja's three delimiters: a string with none of them renders to itself. `{#` belongs here
because bash's `${#var}` opens a Jinja comment, and whether that fails must not depend on us."""
_TEMPLATE_FILE_EXT = (".sh", ".bash")
"""flow.runtime's BashOperator template_ext: such a command names a template file to render."""


class StartRefused(Exception):
    """The try cannot start (a template error, an unusable cwd): str() is the one line to report."""


def warn(message: str) -> None:
    try:
        os.write(2, f"flow-runner[{os.getpid()}]: {message}\n".encode("utf-8", errors="replace"))
    except OSError:
        pass


def check_spec(spec: Any) -> None:
    """Enough to be sure the runner itself cannot trip over the request; the rest is the task's."""
    if not isinstance(spec, dict):
        raise ValueError("'spec' must be an object")
    TaskSpec.from_json(spec)
    if spec["kind"] not in KINDS:
        raise ValueError(f"unknown task kind {spec['kind']!r} (expected one of {', '.join(KINDS)})")
    callback = spec["kind"] == "callback"
    for key in ("ref", "dag_id", "task_id", "log_path", "status_path"):
        if not isinstance(spec[key], str) or not (spec[key] or (callback and key == "task_id")):
            raise ValueError(f"{key!r} must be a non-empty string, not {spec[key]!r}")
    for key in ("execution_timeout", "kill_grace"):
        value = spec[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise ValueError(f"{key!r} must be a non-negative number of seconds, not {value!r}")
    if spec["kill_grace"] is None:
        raise ValueError("'kill_grace' must be a number of seconds, not None")
    if spec["kind"] == "bash" and not isinstance(spec["bash_command"], str | None):
        raise ValueError(f"'bash_command' must be a string, not {spec['bash_command']!r}")
    if callback:
        which = spec["extra"].get("which") if isinstance(spec["extra"], dict) else None
        if which not in CALLBACKS:
            raise ValueError(f"a callback needs extra.which, one of {', '.join(CALLBACKS)}; not {which!r}")


def describe(spec: dict[str, Any]) -> str:
    """What the log's `started` line calls this try."""
    name = f"{spec['dag_id']}.{spec['task_id']}" if spec["task_id"] else spec["dag_id"]
    if spec["kind"] == "callback":
        return f"{name} {spec['extra']['which']} for try {spec['try_number']}"
    return f"{name} try {spec['try_number']}"


# -- bash: rendered here, spawned without a fork ---------------------------------------------


def _plain(value: Any) -> bool:
    return isinstance(value, str) and not any(mark in value for mark in _TEMPLATE_MARKS)


def _needs_rendering(spec: dict[str, Any]) -> bool:
    command, env, cwd = spec.get("bash_command") or "", spec.get("env"), spec.get("cwd")
    if not _plain(command) or command.endswith(_TEMPLATE_FILE_EXT):
        return True
    if env is not None and not (isinstance(env, dict) and all(_plain(v) for v in env.values())):
        return True
    return cwd is not None and not _plain(cwd)


def render_bash_command(spec: dict[str, Any]) -> tuple[str, dict[str, str], str | None]:
    """(command, the whole environment, cwd) for bash; raises StartRefused on a template error.

    The environment always carries the try's tag (tryprocs.py), whatever `env` says.

    Without a template mark the fields are used as they are: the same strings Jinja would return,
    for none of the cost of building the context (which is then not checked either: a try that
    uses no template cannot be failed by a malformed one).
    """
    if _needs_rendering(spec):
        from flow.runtime import TemplateError, render_bash

        try:
            command, env, cwd = render_bash(spec)
        except TemplateError as exc:
            raise StartRefused(str(exc)) from None
    else:
        command, env, cwd = spec.get("bash_command") or "", spec.get("env"), spec.get("cwd")
    if env is None:
        env = dict(os.environ)
    elif spec.get("append_env"):
        env = {**os.environ, **env}
    else:
        env = dict(env)
    env[TAG_VAR] = try_tag(spec["log_path"])
    return command, env, cwd


def spawn_bash(command: str, env: dict[str, str], cwd: str | None, stdout_fd: int, stderr_fd: int) -> int:
    """Start ``bash -c command`` in its own session; returns its pid once it has exec'd.

    Only fds 0-2 reach bash: every fd of the runner is close-on-exec (Python's default, and the
    runner's own pipes, pidfds and log files say so explicitly). posix_spawn has no chdir before
    Python 3.13, so the runner, which is single-threaded, steps into `cwd` for the call and back.
    Raises StartRefused for an unusable cwd; OSError, ValueError or TypeError if bash cannot be started
    (no /bin/bash, a NUL byte or a bad name in the command or the environment).
    """
    home = -1
    if cwd:
        home = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(cwd)
        except OSError as exc:
            os.close(home)
            raise StartRefused(f"cannot use cwd {cwd!r}: {exc.strerror}") from None
    try:
        return os.posix_spawn(
            "/bin/bash", ["bash", "-c", command], env, setsid=True, setsigmask=(), setsigdef=_DEFAULT_SIGNALS,
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                          (os.POSIX_SPAWN_DUP2, stdout_fd, 1), (os.POSIX_SPAWN_DUP2, stderr_fd, 2)],
        )
    finally:
        if home >= 0:
            try:
                os.fchdir(home)
            except OSError as exc:
                warn(f"cannot return to the runner's folder after spawning in {cwd!r}: {exc}")
            os.close(home)


def keep_inherited_fds_from_tasks(keep: int) -> None:
    """Mark every fd this process inherited (but `keep`) close-on-exec: bash tries are started with
    posix_spawn, which passes on whatever is inheritable, and whoever started flowd may have left
    fds open for it (a shell's, a supervisor's). Python's own fds are non-inheritable already."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd != keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


# -- Python tasks and callbacks: run in a fork -----------------------------------------------


def fork_task(spec: dict[str, Any], stdout_fd: int, stderr_fd: int, blocked: set[signal.Signals]) -> int:
    """Fork a child that becomes the try; `blocked` (the runner's handled signals) stay blocked
    across fork until the child has reset its handlers: a signal to it before that would run the
    runner's handler and land in the runner's wake-up pipe, which the child still shares."""
    signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    pid = -1
    try:
        pid = os.fork()
    finally:
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
    if pid == 0:
        try:
            become_task(spec, stdout_fd, stderr_fd)
        finally:
            os._exit(70)
    return pid


def become_task(spec: dict[str, Any], stdout_fd: int, stderr_fd: int) -> NoReturn:
    """Turn this freshly forked process into the try described by `spec`."""
    code = 70
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
        os.environ[TAG_VAR] = try_tag(spec["log_path"])
        code = _run_python(spec)
    except BaseException as exc:  # noqa: B036 - nothing may escape into the runner's copy
        _report(spec, f"could not start the task: {type(exc).__name__}: {exc}")
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
        filemodes.write_file(result_path(spec["status_path"]), data.encode())
    except OSError as exc:
        os.write(2, f"[flow] cannot write the result file: {exc}\n".encode())


def _run_python(spec: dict[str, Any]) -> int:
    """Run the operator or the callbacks here: the runner already imported flow, so this is warm.

    A DAG-level callback comes with task_id "" (a TaskSpec's task_id is a string); run_callback
    reads task_id None as "the DAG's own callbacks".
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.reconfigure(line_buffering=True)
    from flow.runtime import run_callback, run_task

    try:
        if spec["kind"] == "callback":
            result = run_callback(dict(spec, task_id=spec["task_id"] or None), spec["extra"]["which"])
            if not result.get("ok"):
                print(f"[flow] {spec['extra']['which']} failed: {result.get('error')}", file=sys.stderr)
        else:
            if "email_notifier" in (spec.get("extra") or {}):
                _install_mail_transport(spec["extra"])
            result = run_task(spec)
    except BaseException as exc:  # noqa: B036 - run_task promises not to raise; SystemExit still can
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    _flush_streams()
    _write_result(spec, result)
    if result.get("ok") and isinstance(result.get("exec_bash"), dict):
        _exec_bash(result["exec_bash"])  # @task.bash: this process becomes the command; never returns
    return 0 if result.get("ok") else 1


def _exec_bash(run: dict[str, Any]) -> None:
    """Replace the worker by ``bash -c`` (same pid, session, pipes and limits): its exit status is the try's."""
    env = run.get("env")
    env = dict(os.environ) if env is None else ({**os.environ, **env} if run.get("append_env") else dict(env))
    if run.get("cwd"):
        os.chdir(run["cwd"])
    os.execve("/bin/bash", ["bash", "-c", run["command"]], env)


def _install_mail_transport(extra: dict[str, Any]) -> None:
    """EmailOperator sends through the SMTP notifier flowd put in the spec (see daemon/specs.py)."""
    from flow.operators import email

    conf = extra.get("smtp")
    if not isinstance(conf, dict):
        email.set_transport(None, str(extra.get("smtp_error") or "no SMTP notifier is configured"))
        return
    from flow.executors.mail import send_mail

    email.set_transport(lambda mail: send_mail(conf, mail))


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
    use, which every child (and the first templated bash try) would otherwise redo, compiling from
    source when bytecode writing is off. So one bash command is rendered and one built-in Python
    task runs in this process.
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
