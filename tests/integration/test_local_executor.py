"""LocalExecutor and its runner against real processes: bash, Python, pipes, signals, files.

Every wait has a deadline and is driven by the executor's callbacks or by polling a real file or
process; nothing sleeps to let something happen.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from flow.executors.base import MAX_RENDERED_BYTES, TaskResult, TaskSpec, get_executor
from flow.executors.local import LocalExecutor
from flow.executors.logsink import XCOM_LINE_LIMIT, LastLine

CONTEXT = {
    "logical_date": "2024-01-02T00:00:00+00:00", "data_interval_start": "2024-01-01T00:00:00+00:00",
    "data_interval_end": "2024-01-02T00:00:00+00:00", "run_id": "manual__2024-01-02", "run_type": "manual",
    "conf": {}, "params": {}, "dag_id": "d", "task_id": "t", "try_number": 1, "max_tries": 1, "timezone": "UTC",
}


def make_spec(root: Path, ref: str, bash_command: str | None = "true", **kw: Any) -> TaskSpec:
    log = root / "logs" / f"{ref}.log"
    context = dict(CONTEXT, params=kw.pop("params", {}), task_id=kw.get("task_id", ref))
    fields: dict[str, Any] = {
        "ref": ref, "kind": "bash", "dag_id": "d", "task_id": ref, "run_id": CONTEXT["run_id"], "try_number": 1,
        "dag_file": str(root / "dag.py"), "log_path": str(log), "status_path": f"{log}.status.json",
        "bash_command": bash_command, "context": context,
    }
    fields.update(kw)
    return TaskSpec(**fields)


class Recorder:
    """Collects callbacks and lets a test wait for a condition on them, with a deadline."""

    def __init__(self) -> None:
        self.started: dict[str, int] = {}
        self.rendered: dict[str, dict | None] = {}
        self.finished: dict[str, TaskResult] = {}
        self._changed = asyncio.Event()

    def on_started(self, ref: str, pid: int, rendered: dict | None = None) -> None:
        self.started[ref] = pid
        self.rendered[ref] = rendered
        self._changed.set()

    def on_finished(self, result: TaskResult) -> None:
        assert result.ref not in self.finished, f"{result.ref} finished twice"
        self.finished[result.ref] = result
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"timed out; started={self.started} finished={list(self.finished)}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    async def result(self, ref: str, timeout: float = 15.0) -> TaskResult:
        await self.until(lambda: ref in self.finished, timeout)
        return self.finished[ref]


@asynccontextmanager
async def running_executor() -> AsyncIterator[tuple[LocalExecutor, Recorder]]:
    rec = Recorder()
    ex = LocalExecutor()
    await ex.start(rec.on_started, rec.on_finished)
    try:
        yield ex, rec
    finally:
        await ex.stop(kill_running=True)


def run(coro: Awaitable[Any], timeout: float = 60.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll something outside any event loop (a file, a process) until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def log_text(spec: TaskSpec) -> str:
    return Path(spec.log_path).read_text()


# -- bash --------------------------------------------------------------------------------------


def test_success_pushes_last_line_and_writes_log_and_status(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "ok", "echo first; echo; echo last-line; echo '  '")

    async def scenario() -> TaskResult:
        async with running_executor() as (ex, rec):
            ex.submit(spec)
            assert ex.running() == 1
            result = await rec.result("ok")
            assert rec.started["ok"] == result.pid
            assert ex.running() == 0
            return result

    result = run(scenario())
    assert result.ok and result.exit_code == 0 and result.error is None
    assert result.xcom == {"return_value": "last-line"}
    assert result.started_at and result.ended_at and result.rusage and result.rusage["wall"] > 0
    lines = log_text(spec).splitlines()
    assert lines[0].startswith(f"[flow] d.ok try 1 started {result.started_at} pid {result.pid}")
    assert lines[1:4] == ["first", "", "last-line"]
    assert lines[-1].startswith("[flow] exited with status 0 after ")
    status = json.loads(Path(spec.status_path).read_text())
    assert status == {**result.to_json(), "log_path": spec.log_path}
    assert not Path(spec.status_path + ".result").exists()


def test_exit_status_and_xcom_switch(tmp_path: Path) -> None:
    failing = make_spec(tmp_path, "fail", "echo partial; exit 3")
    quiet = make_spec(tmp_path, "quiet", "echo value", do_xcom_push=False)

    async def scenario() -> dict[str, TaskResult]:
        async with running_executor() as (ex, rec):
            ex.submit(failing)
            ex.submit(quiet)
            await rec.until(lambda: len(rec.finished) == 2)
            return rec.finished

    results = run(scenario())
    assert not results["fail"].ok
    assert results["fail"].exit_code == 3 and results["fail"].error == "exit status 3"
    assert results["fail"].xcom is None
    assert log_text(failing).splitlines()[-1].startswith("[flow] exited with status 3 after ")
    assert results["quiet"].ok and results["quiet"].xcom is None


def test_templated_command_env_and_cwd(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    spec = make_spec(
        tmp_path, "tpl", 'echo "{{ ds }} {{ params.name }} $STAMP $(pwd)"',
        env={"STAMP": "{{ ds_nodash }}"}, cwd="{{ params.dir }}", params={"name": "alice", "dir": str(workdir)},
    )
    result = run(_one(spec))
    assert result.ok, result.error
    assert result.xcom == {"return_value": f"2024-01-02 alice 20240102 {workdir}"}


def test_started_reports_what_ran_rendered_and_cuts_a_huge_script(tmp_path: Path) -> None:
    """A .sh template renders a whole script: the runner reports it (capped), no env, and nothing for
    a Python try."""
    (tmp_path / "big.sh").write_text("echo {{ ds }}\n" + "# " + "z" * 100_000 + "\n")
    workdir = tmp_path / "work"
    workdir.mkdir()
    specs = [make_spec(tmp_path, "tpl", "echo {{ ds }} $S", env={"S": "secret-{{ ds_nodash }}"}, cwd=str(workdir)),
             make_spec(tmp_path, "file", "big.sh"),
             make_spec(tmp_path, "plain", "true")]

    async def scenario() -> Recorder:
        async with running_executor() as (ex, rec):
            for spec in specs:
                ex.submit(spec)
            await rec.until(lambda: len(rec.finished) == len(specs))
            return rec

    rec = run(scenario())
    assert rec.rendered["tpl"] == {"command": "echo 2024-01-02 $S", "cwd": str(workdir)}
    assert rec.finished["tpl"].xcom == {"return_value": "2024-01-02 secret-20240102"}
    assert rec.rendered["plain"] == {"command": "true", "cwd": None}
    big = rec.rendered["file"]["command"]
    assert big.startswith("echo 2024-01-02\n# zzz") and len(big.encode()) == MAX_RENDERED_BYTES
    assert big.endswith("[flow: the rendered command was cut here; it is 100019 bytes]")


def test_template_error_is_the_result_and_no_process_starts(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "bad", "echo {{ no_such_thing.attr }}")

    async def scenario() -> tuple[TaskResult, dict[str, int]]:
        async with running_executor() as (ex, rec):
            ex.submit(spec)
            return await rec.result("bad"), rec.started

    result, started = run(scenario())
    assert not result.ok and result.pid is None and result.exit_code is None and "bad" not in started
    assert result.error == "template error in bash_command line 1: 'no_such_thing' is undefined"
    assert log_text(spec) == f"[flow] {result.error}\n"
    assert json.loads(Path(spec.status_path).read_text()) == {**result.to_json(), "log_path": spec.log_path}


def test_template_file_is_rendered_and_plain_commands_skip_the_context(tmp_path: Path) -> None:
    """A command naming a .sh file is a template even without braces; one without any template
    mark runs as it is, so it does not even read the context (here a broken one)."""
    (tmp_path / "script.sh").write_text("echo from-file {{ ds }}\n")
    broken = dict(CONTEXT, logical_date="not a date")
    specs = [
        make_spec(tmp_path, "file", "script.sh"),
        make_spec(tmp_path, "plain", "echo '{ }' \"${HOME:+set}\" $((6 * 7))", context=broken),
        make_spec(tmp_path, "needs", "echo {{ ds }}", context=broken),
        make_spec(tmp_path, "needs_env", "true", env={"X": "{{ ds }}"}, context=broken),
        make_spec(tmp_path, "comment", "echo ${#HOME}"),
    ]
    results = run(_all(specs))
    assert results["file"].xcom == {"return_value": "from-file 2024-01-02"}, results["file"].error
    assert results["plain"].xcom == {"return_value": "{ } set 42"}, results["plain"].error
    for ref in ("needs", "needs_env"):
        assert not results[ref].ok and "template error in task context" in (results[ref].error or ""), results[ref]
    assert not results["comment"].ok and "template error in bash_command" in (results["comment"].error or "")


def test_missing_cwd_is_a_clear_error_and_the_runner_stays_where_it_was(tmp_path: Path) -> None:
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    missing = make_spec(tmp_path, "nocwd", "true", cwd=str(tmp_path / "absent"))
    moved = make_spec(tmp_path, "moved", "pwd", cwd=str(workdir))

    async def scenario() -> tuple[dict[str, TaskResult], str, str]:
        async with running_executor() as (ex, rec):
            before = psutil.Process(ex.runner_pid).cwd()
            ex.submit(missing)
            ex.submit(moved)
            await rec.until(lambda: len(rec.finished) == 2)
            return rec.finished, before, psutil.Process(ex.runner_pid).cwd()

    results, before, after = run(scenario())
    assert not results["nocwd"].ok and results["nocwd"].pid is None
    assert results["nocwd"].error == f"cannot use cwd {str(tmp_path / 'absent')!r}: No such file or directory"
    assert results["moved"].xcom == {"return_value": str(workdir)}
    assert after == before


def test_a_task_gets_fds_0_1_2_default_signals_and_its_own_session(tmp_path: Path) -> None:
    """Another try runs meanwhile, so the runner holds its pipes, pidfd and log: fds that could leak."""
    other = make_spec(tmp_path, "other", "sleep 1000")
    fds = make_spec(tmp_path, "fds", "ls /proc/self/fd")
    sigs = make_spec(tmp_path, "sigs", "grep -E '^(SigBlk|SigIgn)' /proc/self/status")

    async def scenario() -> tuple[dict[str, TaskResult], tuple[int, int]]:
        async with running_executor() as (ex, rec):
            ex.submit(other)
            await rec.until(lambda: "other" in rec.started)
            pid = rec.started["other"]
            ids = (os.getsid(pid), os.getpgid(pid))
            ex.submit(fds)
            ex.submit(sigs)
            await rec.until(lambda: {"fds", "sigs"} <= set(rec.finished))
            ex.kill("other", "test done")
            await rec.result("other")
            return rec.finished, ids

    results, ids = run(scenario())
    assert ids == (results["other"].pid, results["other"].pid)
    assert results["fds"].ok and results["sigs"].ok
    assert log_text(fds).splitlines()[1:-1] == ["0", "1", "2", "3"], log_text(fds)
    blocked, ignored = (int(line.split()[1], 16) for line in log_text(sigs).splitlines()[1:-1])
    assert blocked == 0
    assert {n for n in signal.valid_signals() if ignored & (1 << (n - 1))} == set(), log_text(sigs)


async def _all(specs: list[TaskSpec], timeout: float = 15.0) -> dict[str, TaskResult]:
    async with running_executor() as (ex, rec):
        for spec in specs:
            ex.submit(spec)
        await rec.until(lambda: len(rec.finished) == len(specs), timeout)
        return rec.finished


def test_env_replaces_unless_append_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOW_TEST_OUTER", "outer")
    command = 'echo "${FLOW_TEST_OUTER:-missing}-${INNER:-none}"'
    specs = [
        make_spec(tmp_path, "replaced", command, env={"INNER": "in"}),
        make_spec(tmp_path, "appended", command, env={"INNER": "in"}, append_env=True),
        make_spec(tmp_path, "inherited", command),
    ]

    async def scenario() -> dict[str, TaskResult]:
        async with running_executor() as (ex, rec):
            for spec in specs:
                ex.submit(spec)
            await rec.until(lambda: len(rec.finished) == 3)
            return rec.finished

    results = run(scenario())
    assert {ref: r.xcom for ref, r in results.items()} == {
        "replaced": {"return_value": "missing-in"},
        "appended": {"return_value": "outer-in"},
        "inherited": {"return_value": "outer-none"},
    }


async def _one(spec: TaskSpec, timeout: float = 15.0) -> TaskResult:
    async with running_executor() as (ex, rec):
        ex.submit(spec)
        return await rec.result(spec.ref, timeout)


# -- output ------------------------------------------------------------------------------------


def test_ten_megabytes_on_both_streams_at_once(tmp_path: Path) -> None:
    size = 10 * 1024 * 1024
    spec = make_spec(tmp_path, "flood", f"(yes out | head -c {size}) & (yes err | head -c {size} >&2); wait")
    result = run(_one(spec, timeout=30))
    assert result.ok, result.error
    assert result.rusage is not None and result.rusage["wall"] < 10
    assert result.xcom == {"return_value": "out"}
    data = Path(spec.log_path).read_bytes()
    first, _, rest = data.partition(b"\n")
    body, _, footer = rest[:-1].rpartition(b"\n")
    assert first.startswith(b"[flow] d.flood try 1 started") and footer.startswith(b"[flow] exited with status 0")
    assert len(body) + 1 == 2 * size
    assert body.count(b"o") == size // 4 and body.count(b"e") == size // 4


def test_output_reaches_the_log_while_the_task_runs(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "live", "echo first-marker; sleep 30")

    async def scenario() -> TaskResult:
        async with running_executor() as (ex, rec):
            ex.submit(spec)
            deadline = time.monotonic() + 10
            while "first-marker" not in (log_text(spec) if Path(spec.log_path).exists() else ""):
                assert time.monotonic() < deadline, "output did not reach the log"
                await asyncio.sleep(0.01)
            assert "live" not in rec.finished
            ex.kill("live", "test done")
            return await rec.result("live")

    result = run(scenario())
    assert result.killed == "test done"


def test_background_child_holding_the_pipe_does_not_hold_the_try(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "bg", "sleep 30 & echo main-done")
    try:
        result = run(_one(spec, timeout=10))
        assert result.ok and result.xcom == {"return_value": "main-done"}
        assert result.rusage is not None and result.rusage["wall"] < 5
    finally:
        if Path(spec.status_path).exists():
            pid = json.loads(Path(spec.status_path).read_text())["pid"]
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- timeouts and kills ------------------------------------------------------------------------


def test_execution_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    spec = make_spec(
        tmp_path, "slow", f"sleep 1000 & echo $! > {pids}; sleep 1000 & echo $! >> {pids}; wait",
        execution_timeout=0.5, kill_grace=1.0,
    )
    result = run(_one(spec))
    assert not result.ok and result.timed_out and result.killed is None
    assert result.signal == signal.SIGTERM and result.error == "timed out after 0.5s"
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    wait_until(lambda: all(gone(p) for p in children), what="background sleeps to die")
    text = log_text(spec)
    assert "[flow] timed out after 0.5s: sent SIGTERM to the process group, SIGKILL after 1s" in text
    assert text.splitlines()[-1].startswith("[flow] killed by SIGTERM after ")


def test_term_ignored_escalates_to_kill(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "stubborn", "trap '' TERM; sleep 1000", execution_timeout=0.3, kill_grace=0.3)
    result = run(_one(spec))
    assert result.timed_out and result.signal == signal.SIGKILL
    assert "grace period over: sent SIGKILL to the process group" in log_text(spec)


def test_kill_of_a_running_try(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "victim", "sleep 1000")

    async def scenario() -> TaskResult:
        async with running_executor() as (ex, rec):
            ex.submit(spec)
            await rec.until(lambda: "victim" in rec.started)
            ex.kill("victim", "operator asked")
            ex.kill("no-such-try", "ignored")
            return await rec.result("victim")

    result = run(scenario())
    assert not result.ok and result.killed == "operator asked" and not result.timed_out
    assert result.signal == signal.SIGTERM and result.error == "killed: operator asked"
    assert gone(result.pid)  # type: ignore[arg-type]
    assert "kill requested (operator asked)" in log_text(spec)


def test_stop_with_kill_running_reports_every_try(tmp_path: Path) -> None:
    specs = [make_spec(tmp_path, f"long{i}", "sleep 1000") for i in range(3)]

    async def scenario() -> tuple[Recorder, int | None]:
        rec = Recorder()
        ex = LocalExecutor()
        await ex.start(rec.on_started, rec.on_finished)
        for spec in specs:
            ex.submit(spec)
        await rec.until(lambda: len(rec.started) == 3)
        await ex.stop(kill_running=True)
        return rec, ex.runner_pid

    rec, runner_pid = run(scenario())
    assert sorted(rec.finished) == ["long0", "long1", "long2"]
    assert all(r.killed == "the executor is stopping" for r in rec.finished.values())
    assert runner_pid is not None and gone(runner_pid)


def test_fifty_parallel_tries(tmp_path: Path) -> None:
    specs = [make_spec(tmp_path, f"p{i:02d}", f"echo value-{i}") for i in range(50)]

    async def scenario() -> dict[str, TaskResult]:
        async with running_executor() as (ex, rec):
            for spec in specs:
                ex.submit(spec)
            await rec.until(lambda: len(rec.finished) == 50, timeout=30)
            return rec.finished

    results = run(scenario())
    assert len(results) == 50
    assert all(results[f"p{i:02d}"].ok and results[f"p{i:02d}"].xcom == {"return_value": f"value-{i}"}
               for i in range(50))


# -- python ------------------------------------------------------------------------------------

PY_DAG = """
from flow import DAG
from flow.operators import PythonOperator

def give():
    print("printing from python")
    return {"n": 42}

def boom():
    raise ValueError("boom happened")

with DAG("pydag", schedule=None):
    PythonOperator(task_id="give", python_callable=give)
    PythonOperator(task_id="boom", python_callable=boom)
"""


def test_python_tasks_return_values_and_exceptions(tmp_path: Path) -> None:
    (tmp_path / "pydag.py").write_text(textwrap.dedent(PY_DAG))
    specs = [make_spec(tmp_path, task, None, kind="python", dag_id="pydag", task_id=task,
                       dag_file=str(tmp_path / "pydag.py")) for task in ("give", "boom")]

    async def scenario() -> dict[str, TaskResult]:
        async with running_executor() as (ex, rec):
            for spec in specs:
                ex.submit(spec)
            await rec.until(lambda: len(rec.finished) == 2)
            return rec.finished

    results = run(scenario())
    give, boom = results["give"], results["boom"]
    assert give.ok and give.xcom == {"return_value": {"n": 42}}, give.error
    assert "printing from python" in log_text(specs[0])
    assert not boom.ok and boom.exit_code == 1
    assert boom.error is not None and "ValueError: boom happened" in boom.error
    log = log_text(specs[1])
    assert "Traceback (most recent call last)" in log and 'raise ValueError("boom happened")' in log


CALLBACK_DAG = """
from pathlib import Path
from flow import DAG
from flow.operators import PythonOperator

OUT = Path(__file__).parent / "out"

def task_failed(context):
    print("failure callback for", context["ti"].task_id)
    (OUT / f"failed-{context['ti'].task_id}.txt").write_text(f"{context['reason']}|{context['task'].task_id}")

def dag_succeeded(context):
    (OUT / "dag-success.txt").write_text(f"{context['dag'].dag_id}|{context['run_id']}|{context['reason']}")

def explode(context):
    raise RuntimeError("callback exploded")

with DAG("cbdag", schedule=None, on_success_callback=dag_succeeded):
    PythonOperator(task_id="work", python_callable=lambda: None, on_failure_callback=task_failed)
    PythonOperator(task_id="fragile", python_callable=lambda: None, on_failure_callback=explode)
"""


def callback_spec(root: Path, task_id: str, which: str, reason: str | None) -> TaskSpec:
    return make_spec(root, f"cb-{task_id or 'dag'}-{which}", None, kind="callback", dag_id="cbdag",
                     task_id=task_id, dag_file=str(root / "cbdag.py"), extra={"which": which, "reason": reason})


def test_callbacks_of_a_task_and_of_the_dag_run_in_a_child(tmp_path: Path) -> None:
    (tmp_path / "cbdag.py").write_text(textwrap.dedent(CALLBACK_DAG))
    (tmp_path / "out").mkdir()
    specs = [callback_spec(tmp_path, "work", "on_failure_callback", "exit status 3"),
             callback_spec(tmp_path, "", "on_success_callback", None),
             callback_spec(tmp_path, "fragile", "on_failure_callback", "exit status 1"),
             callback_spec(tmp_path, "work", "on_retry_callback", None)]

    async def scenario() -> tuple[dict[str, TaskResult], dict[str, int]]:
        async with running_executor() as (ex, rec):
            for spec in specs:
                ex.submit(spec)
            await rec.until(lambda: len(rec.finished) == len(specs))
            return rec.finished, rec.started

    results, started = run(scenario())
    failed, dag_ok, fragile, retry = (results[s.ref] for s in specs)
    assert failed.ok and dag_ok.ok and retry.ok, (failed.error, dag_ok.error, retry.error)
    assert failed.pid == started[specs[0].ref] and failed.pid != os.getpid()
    assert (tmp_path / "out" / "failed-work.txt").read_text() == "exit status 3|work"
    assert (tmp_path / "out" / "dag-success.txt").read_text() == f"cbdag|{CONTEXT['run_id']}|None"
    assert not (tmp_path / "out" / "failed-fragile.txt").exists()
    assert not fragile.ok and fragile.exit_code == 1
    assert fragile.error == "RuntimeError: callback exploded (at cbdag.py:16)"
    log = log_text(specs[0])
    assert log.startswith("[flow] cbdag.work on_failure_callback for try 1 started ")
    assert "failure callback for work\n" in log
    assert log_text(specs[1]).startswith("[flow] cbdag on_success_callback for try 1 started ")
    fragile_log = log_text(specs[2])
    assert 'raise RuntimeError("callback exploded")' in fragile_log
    assert f"[flow] on_failure_callback failed: {fragile.error}" in fragile_log
    for spec, result in zip(specs, (failed, dag_ok, fragile, retry), strict=True):
        assert json.loads(Path(spec.status_path).read_text()) == {**result.to_json(), "log_path": spec.log_path}
        assert not Path(spec.status_path + ".result").exists()


def test_a_hanging_callback_is_stopped_by_its_execution_timeout(tmp_path: Path) -> None:
    (tmp_path / "cbdag.py").write_text(textwrap.dedent(CALLBACK_DAG).replace(
        'raise RuntimeError("callback exploded")', "import time; time.sleep(1000)"))
    spec = callback_spec(tmp_path, "fragile", "on_failure_callback", "x")
    spec.execution_timeout, spec.kill_grace = 0.5, 1.0
    result = run(_one(spec))
    assert result.timed_out and result.signal == signal.SIGTERM and result.error == "timed out after 0.5s"


# -- the runner on its own ---------------------------------------------------------------------


class RawRunner:
    """Talks the runner's protocol directly, as a misbehaving or crashing executor would."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.sock, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flow.executors.runner", "--fd", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), start_new_session=True, env={**os.environ, **(env or {})},
        )
        theirs.close()
        self.sock.settimeout(15)
        self.reader = self.sock.makefile("rb")

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def receive(self, op: str) -> dict[str, Any]:
        while True:
            line = self.reader.readline()
            assert line, "runner closed the socket"
            msg = json.loads(line)
            if msg["op"] == op:
                return msg

    def spawn(self, spec: TaskSpec) -> None:
        self.send(json.dumps({"op": "spawn", "spec": spec.to_json()}).encode() + b"\n")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()
        try:
            self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def test_runner_survives_bad_requests(tmp_path: Path) -> None:
    runner = RawRunner()
    try:
        assert runner.receive("hello")["pid"] == runner.proc.pid
        runner.send(b"this is not json\n")
        bad = runner.receive("finished")["result"]
        assert bad["ref"] is None and not bad["ok"] and "bad request" in bad["error"]
        runner.send(b'{"op": "spawn", "spec": {"ref": "x"}}\n')
        missing = runner.receive("finished")["result"]
        assert missing["ref"] == "x" and "bad spawn request" in missing["error"]
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        runner.spawn(make_spec(tmp_path, "nolog", "true", log_path=str(blocker / "sub" / "t.log"),
                               status_path=str(tmp_path / "nolog.status.json")))
        nolog = runner.receive("finished")["result"]
        assert nolog["ref"] == "nolog" and nolog["error"].startswith(f"cannot open log file {blocker}/sub/t.log")
        assert json.loads((tmp_path / "nolog.status.json").read_text())["error"] == nolog["error"]
        for field, value, complaint in (("log_path", 5, "'log_path' must be a non-empty string"),
                                        ("execution_timeout", "soon", "'execution_timeout' must be a non-negative"),
                                        ("kind", "perl", "unknown task kind 'perl'"),
                                        ("task_id", "", "'task_id' must be a non-empty string"),
                                        ("bash_command", ["ls"], "'bash_command' must be a string"),
                                        ("kind", "callback", "a callback needs extra.which")):
            runner.send(json.dumps({"op": "spawn", "spec": {**make_spec(tmp_path, "typed").to_json(),
                                                            field: value}}).encode() + b"\n")
            typed = runner.receive("finished")["result"]
            assert typed["ref"] == "typed" and complaint in typed["error"], typed
        runner.send(b'{"op": "kill", "ref": ["not", "a", "ref"]}\n')
        runner.send(b'{"op": "kill", "ref": "never-spawned", "reason": "x"}\n{"op": "dance"}\n')
        assert "unknown op" in runner.receive("finished")["result"]["error"]
        runner.spawn(make_spec(tmp_path, "nul", "echo a\0b"))
        nul = runner.receive("finished")["result"]
        assert nul["ref"] == "nul" and nul["error"] == "could not start: embedded null byte", nul
        assert log_text(make_spec(tmp_path, "nul")) == f"[flow] {nul['error']}\n"
        runner.spawn(make_spec(tmp_path, "fine", "echo still-here"))
        fine = runner.receive("finished")["result"]
        assert fine["ok"] and fine["xcom"] == {"return_value": "still-here"}
    finally:
        runner.close()
    assert runner.proc.returncode == 0


def test_runner_without_pidfd_uses_sigchld(tmp_path: Path) -> None:
    runner = RawRunner(env={"FLOW_RUNNER_PIDFD": "0"})
    try:
        assert runner.receive("hello")["pidfd"] is False
        runner.spawn(make_spec(tmp_path, "quick", "echo via-sigchld"))
        runner.spawn(make_spec(tmp_path, "slow", "sleep 1000", execution_timeout=0.3, kill_grace=1.0))
        results = {}
        while len(results) < 2:
            result = runner.receive("finished")["result"]
            results[result["ref"]] = result
        assert results["quick"]["xcom"] == {"return_value": "via-sigchld"}
        assert results["slow"]["timed_out"] and results["slow"]["signal"] == signal.SIGTERM
    finally:
        runner.close()


def test_runner_stops_and_records_every_try_on_sigterm(tmp_path: Path) -> None:
    runner = RawRunner()
    try:
        runner.receive("hello")
        spec = make_spec(tmp_path, "longer", "sleep 1000", status_path=str(tmp_path / "elsewhere" / "s.json"))
        runner.spawn(spec)
        runner.receive("started")
        runner.proc.send_signal(signal.SIGTERM)
        result = runner.receive("finished")["result"]
        assert result["killed"] == "the runner got SIGTERM" and result["signal"] == signal.SIGTERM
        assert json.loads((tmp_path / "elsewhere" / "s.json").read_text())["killed"] == result["killed"]
        assert runner.proc.wait(timeout=15) == 0
    finally:
        runner.close()


FAKE_FLOWD = """
import asyncio, json, os, sys
from flow.executors.base import TaskSpec
from flow.executors.local import LocalExecutor

async def main():
    started = asyncio.get_running_loop().create_future()
    ex = LocalExecutor()
    await ex.start(lambda ref, pid, rendered: started.set_result(pid), lambda result: None)
    ex.submit(TaskSpec.from_json(json.loads(sys.argv[1])))
    pid = await started
    print(json.dumps({"runner": ex.runner_pid, "task": pid}), flush=True)
    os._exit(0)

asyncio.run(main())
"""


def test_tries_outlive_a_dead_flowd(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "orphan", "sleep 1; echo done")
    with subprocess.Popen([sys.executable, "-c", FAKE_FLOWD, json.dumps(spec.to_json())],
                          stdout=subprocess.PIPE, text=True) as flowd:
        assert flowd.stdout is not None
        pids = json.loads(flowd.stdout.readline())
        assert flowd.wait(timeout=15) == 0
    assert not Path(spec.status_path).exists()
    wait_until(lambda: Path(spec.status_path).exists(), what="the status file")
    status = json.loads(Path(spec.status_path).read_text())
    assert status["ok"] and status["pid"] == pids["task"] and status["xcom"] == {"return_value": "done"}
    assert "done" in log_text(spec)
    wait_until(lambda: gone(pids["runner"]), what="the runner to exit")


def test_a_dead_runner_fails_its_tries_and_is_replaced(tmp_path: Path) -> None:
    first = make_spec(tmp_path, "first", "sleep 1000")
    second = make_spec(tmp_path, "second", "echo again")

    async def scenario() -> tuple[Recorder, int | None, int | None]:
        async with running_executor() as (ex, rec):
            old_runner = ex.runner_pid
            ex.submit(first)
            await rec.until(lambda: "first" in rec.started)
            os.kill(old_runner, signal.SIGKILL)  # type: ignore[arg-type]
            await rec.result("first")
            ex.submit(second)
            await rec.result("second")
            return rec, old_runner, ex.runner_pid

    rec, old_runner, new_runner = run(scenario())
    assert not rec.finished["first"].ok and "died while the try ran" in (rec.finished["first"].error or "")
    wait_until(lambda: gone(rec.started["first"]), what="the orphaned try to be killed")
    assert new_runner != old_runner and rec.finished["second"].xcom == {"return_value": "again"}


def test_registry_and_misuse() -> None:
    assert isinstance(get_executor("local"), LocalExecutor)
    with pytest.raises(RuntimeError, match="before start"):
        LocalExecutor().submit(make_spec(Path("/tmp"), "x"))


# -- last stdout line (pure) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\nb\n"], "b"),
        ([b"a\n", b"\n  \n"], "a"),
        ([b"par", b"tial\n", b"\n"], "partial"),
        ([b"x\nno newline at end"], "no newline at end"),
        ([b"one\r\n"], "one"),
        ([b""], None),
        ([b"\xff\xfebad utf8\n"], "\ufffd\ufffdbad utf8"),
    ],
)
def test_last_line(chunks: list[bytes], expected: str | None) -> None:
    last = LastLine()
    for chunk in chunks:
        last.feed(chunk)
    assert last.finish() == (expected, False)


def test_last_line_over_the_limit_is_refused_then_recovers() -> None:
    last = LastLine()
    last.feed(b"short\n")
    for _ in range(3):
        last.feed(b"y" * (XCOM_LINE_LIMIT // 2))
    assert last.finish() == (None, True)
    last.feed(b"\nfine\n")
    assert last.finish() == ("fine", False)
