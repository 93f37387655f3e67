"""Nothing a try started outlives it, not even what left its session (issue 12.6).

`setsid -f` puts a process in a session of its own and lets its parent exit: a kill of the try's
process group misses it and, re-parented to init, it is no longer below the try's leader. Its
FLOW_TRY tag still finds it: when the try ends, whichever way, it is killed (SIGTERM, SIGKILL after
kill_grace), and while the try runs it counts toward the try's figures and memory_limit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from flow.daemon.proctable import tree_members
from flow.executors.base import TaskResult, TaskSpec
from flow.executors.tryprocs import try_tag

from .conftest import make_engine, run_until_idle, tis_of, write_dag
from .test_local_executor import gone, log_text, make_spec, run, running_executor, wait_until

PY = sys.executable


def escapee(pidfile: Path, *, ignore_term: bool = False) -> str:
    """A shell line that starts `sleep 1000` in a session of its own and records its pid."""
    trap = "trap '' TERM; " if ignore_term else ""
    return f"setsid -f sh -c '{trap}echo $$ > {pidfile}; exec sleep 1000'; while [ ! -s {pidfile} ]; do sleep 0.01; done"


async def _ended(spec: TaskSpec, *, kill: str | None = None, pidfile: Path) -> tuple[TaskResult, int]:
    async with running_executor() as (ex, rec):
        ex.submit(spec)
        await rec.until(lambda: spec.ref in rec.started)
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert spec.ref not in rec.finished, rec.finished[spec.ref]
            await asyncio.sleep(0.01)
        pid = int(pidfile.read_text())
        if kill is not None:
            ex.kill(spec.ref, kill)
        return await rec.result(spec.ref), pid


def test_an_escapee_is_killed_when_the_try_succeeds(tmp_path: Path) -> None:
    pidfile = tmp_path / "esc"
    spec = make_spec(tmp_path, "ok", f"{escapee(pidfile)}; echo done", kill_grace=0.3)
    result, pid = run(_ended(spec, pidfile=pidfile))
    assert result.ok and result.xcom == {"return_value": "done"}, result.error
    wait_until(lambda: gone(pid), what="the escapee to be killed")
    wait_until(lambda: "processes it started were still running when it ended (1 found by its FLOW_TRY tag"
               in log_text(spec), what="the log to say so")


def test_an_escapee_that_ignores_sigterm_gets_sigkill_after_the_grace(tmp_path: Path) -> None:
    pidfile = tmp_path / "esc"
    spec = make_spec(tmp_path, "stubborn", f"{escapee(pidfile, ignore_term=True)}; echo done", kill_grace=0.3)
    result, pid = run(_ended(spec, pidfile=pidfile))
    assert result.ok, result.error
    wait_until(lambda: gone(pid), what="the escapee to get SIGKILL")


def test_an_escapee_is_killed_when_the_try_times_out(tmp_path: Path) -> None:
    pidfile = tmp_path / "esc"
    spec = make_spec(tmp_path, "slow", f"{escapee(pidfile)}; sleep 1000", execution_timeout=0.5, kill_grace=0.3)
    result, pid = run(_ended(spec, pidfile=pidfile))
    assert result.timed_out and not result.ok
    wait_until(lambda: gone(pid), what="the escapee to be killed")


def test_an_escapee_is_killed_when_the_try_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "esc"
    spec = make_spec(tmp_path, "victim", f"{escapee(pidfile)}; sleep 1000", kill_grace=0.3)
    result, pid = run(_ended(spec, kill="cleared by the operator", pidfile=pidfile))
    assert result.killed == "cleared by the operator"
    wait_until(lambda: gone(pid), what="the escapee to be killed")


PY_ESCAPE = """
import subprocess
from flow import DAG
from flow.operators import PythonOperator

def leave(pidfile):
    subprocess.run(["setsid", "-f", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 1000"], check=True)
    import time
    while not open(pidfile).read():
        time.sleep(0.01)

with DAG("escdag", schedule=None):
    PythonOperator(task_id="leave", python_callable=leave, op_args=[PIDFILE])
"""


def test_an_escapee_of_a_python_task_is_killed_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "esc"
    pidfile.write_text("")
    (tmp_path / "escdag.py").write_text(textwrap.dedent(PY_ESCAPE).replace("PIDFILE", repr(str(pidfile))))
    spec = make_spec(tmp_path, "leave", None, kind="python", dag_id="escdag", task_id="leave",
                     dag_file=str(tmp_path / "escdag.py"), kill_grace=0.3)

    async def scenario() -> tuple[TaskResult, int]:
        async with running_executor() as (ex, rec):
            ex.submit(spec)
            result = await rec.result(spec.ref)
            return result, int(pidfile.read_text())

    result, pid = run(scenario())
    assert result.ok, result.error
    wait_until(lambda: gone(pid), what="the python task's escapee to be killed")


def test_an_escapees_memory_counts_toward_memory_limit(settings) -> None:
    """A 100 MiB limit; the try's own process holds little, a setsid child of it 300 MiB."""
    settings.sample_interval = 0.2
    settings.kill_grace = 0.5
    root = Path(settings.log_folder).parent
    pidfile, hog = root / "esc", root / "hog.py"
    hog.write_text("import time\nb = bytearray(300 << 20)\nb[::4096] = b'x' * len(b[::4096])\ntime.sleep(60)\n")
    write_dag(settings, "esc.py", f"""
        from flow import DAG
        from flow.operators.bash import BashOperator
        with DAG("esc", schedule=None):
            BashOperator(task_id="hider", memory_limit="100MiB", bash_command=
                "setsid -f sh -c 'echo $$ > {pidfile}; exec {PY} {hog}'; sleep 30")
    """)
    engine = make_engine(settings)
    run_ = engine.trigger("esc", unpause_run=True)
    run_until_idle(engine, timeout=60)
    ti = tis_of(engine, run_["key"])["hider"]
    assert ti["state"] == "failed"
    assert ti["error"].startswith("memory limit 100 MiB exceeded: "), ti["error"]
    wait_until(lambda: gone(int(pidfile.read_text())), what="the escapee to be killed with its try")


def test_the_tag_is_in_every_local_try_s_environment(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "tagged", 'echo "$FLOW_TRY"', env={"ONLY": "this"})

    async def scenario() -> TaskResult:
        async with running_executor() as (ex, rec):
            ex.submit(spec)
            return await rec.result(spec.ref)

    assert run(scenario()).xcom == {"return_value": try_tag(spec.log_path)}


def test_a_try_left_by_an_earlier_flowd_is_killed_with_what_carries_its_tag(tmp_path: Path) -> None:
    """Clear or mark of a try the next flowd adopted (recovery.Orphan) reaches its escapees too."""
    from flow.daemon.recovery import Orphan

    log = tmp_path / "attempt=1.log"
    env = dict(os.environ, FLOW_TRY=try_tag(str(log)))
    stray = subprocess.Popen(["setsid", "sleep", "1000"], env=env)
    bystander = subprocess.Popen(["setsid", "sleep", "1000"], env=dict(env, FLOW_TRY=try_tag(str(log) + "x")))
    try:
        wait_until(lambda: psutil.Process(stray.pid).cmdline()[:1] == ["sleep"], what="the stray to exec")
        Orphan(f"{log}.status.json", None).kill()
        assert stray.wait(timeout=10) == -signal.SIGTERM
        assert bystander.poll() is None
    finally:
        for proc in (stray, bystander):
            proc.kill()
            proc.wait()


def test_the_tree_holds_tagged_processes_and_their_children_but_not_strangers() -> None:
    table = {
        10: (1, 10, 0),   # the try's leader
        11: (10, 10, 0),  # its child
        20: (1, 20, 0),   # left the session, re-parented to init, carries the tag
        21: (20, 20, 0),  # its child (found through the parent link)
        30: (1, 30, 0),   # a stranger
    }
    assert tree_members({"a": 10}, table, {"a": [20, 99]}) == {"a": [10, 11, 20, 21]}
    assert tree_members({"a": 10}, table) == {"a": [10, 11]}


def _clear_or_mark_while_it_runs(settings, action: str) -> tuple[dict, int]:
    """Through the engine: the try leaves a setsid child and sleeps; `action` ends it."""
    settings.kill_grace = 0.5
    pidfile = Path(settings.log_folder).parent / "esc"
    write_dag(settings, "leaver.py", f"""
        from flow import DAG
        from flow.operators import BashOperator
        with DAG("leaver", schedule=None):
            BashOperator(task_id="t", bash_command=
                "if [ {{{{ ti.try_number }}}} = 1 ]; then {escapee(pidfile)}; sleep 1000; fi; echo done")
    """)
    engine = make_engine(settings)
    run_ = engine.trigger("leaver", unpause_run=True)

    async def scenario() -> None:
        loop_task = asyncio.create_task(engine.run(once=True, kill_on_exit=True))
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline and not loop_task.done(), "the try did not start its escapee"
            await asyncio.sleep(0.02)
        if action == "clear":
            engine.clear("leaver", run_["run_id"], ["t"])
        else:
            engine.mark("leaver", run_["run_id"], ["t"], "success")
        await asyncio.wait_for(loop_task, 30)

    asyncio.run(scenario())
    return tis_of(engine, run_["key"])["t"], int(pidfile.read_text())


def test_an_escapee_is_killed_when_its_try_is_cleared(settings) -> None:
    ti, pid = _clear_or_mark_while_it_runs(settings, "clear")
    assert ti["state"] == "success" and ti["try_number"] == 2
    wait_until(lambda: gone(pid), what="the cleared try's escapee to be killed")


def test_an_escapee_is_killed_when_its_try_is_marked(settings) -> None:
    ti, pid = _clear_or_mark_while_it_runs(settings, "mark")
    assert ti["state"] == "success" and ti["try_number"] == 1
    wait_until(lambda: gone(pid), what="the marked try's escapee to be killed")


def test_the_monitor_looks_for_the_tags_of_its_executor_s_tries_and_of_adopted_ones(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from flow.daemon.recovery import Orphan
    from flow.daemon.resources import executor_tags

    adopted = str(tmp_path / "attempt=1.log")
    engine = SimpleNamespace(executor=SimpleNamespace(tags=lambda: {"mine": "t1", "ended": "t2"}),
                             orphans={"old": Orphan(f"{adopted}.status.json", 5), "gone": Orphan("x", 6)})
    assert executor_tags(engine, {"mine": 1, "old": 5}) == {"mine": "t1", "old": try_tag(adopted)}  # type: ignore[arg-type]
