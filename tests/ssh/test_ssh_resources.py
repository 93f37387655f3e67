"""Resource figures of remote tries, sampled over the real sshd: the engine with the routing executor,
then a real flowd and the `flow` CLI.

The sshd runs on this host, so the remote /proc is this one's; the local sampler leaves remote tries
alone (their pid is a session on "another" host), so every figure here came over SSH, and the
remote sampler's own tick counter says so.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flow.executors.base import build_executor

from ..daemon.conftest import Flowd, make_flowd, running
from ..daemon.test_resources_flowd import call, load_dag, poll, run_state, tis, trigger
from ..integration.conftest import run_until_idle, tis_of, write_dag
from .conftest import Sshd, write_connections

MIB = 1 << 20


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The integration tests' settings: a fresh DAG folder, SQLite database and log folder."""
    from flow.daemon.config import load_settings

    for var in ("FLOW_DAGS_FOLDER", "FLOW_DB_URL", "FLOW_LOG_FOLDER", "FLOW_CONFIG", "FLOW_PARALLELISM"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "dags").mkdir()
    return load_settings({"dags_folder": str(tmp_path / "dags"), "db_url": f"sqlite:///{tmp_path / 'flow.db'}",
                          "log_folder": str(tmp_path / "logs"), "default_timezone": "UTC"},
                         config_file=tmp_path / "absent.toml")


@pytest.fixture
def conf(tmp_path: Path, sshd: Sshd) -> Path:
    (tmp_path / "conf").mkdir(exist_ok=True)
    return write_connections(tmp_path / "conf" / "connections.toml", sshd)


def remote_engine(settings: Any, conf: Path) -> Any:
    from flow.daemon.engine import Engine
    from flow.daemon.store import Store
    from flow.daemon.watch import FolderWatcher

    settings.sample_interval = 0.2
    engine = Engine(Store.open(settings.db_url), build_executor("local", connections_file=str(conf)), settings)
    engine.load()
    FolderWatcher(engine).refresh_sync()
    return engine


def dag(name: str, *tasks: str, default_args: str = "{}") -> str:
    body = "\n".join(f"    {t}" for t in tasks)
    return (f"from flow import DAG\nfrom flow.operators import BashOperator\n"
            f"with DAG({name!r}, schedule=None, default_args={default_args}):\n{body}\n")


def py(code: str) -> str:
    """A bash command that replaces itself with python3 running `code` (so the tree is one process)."""
    return f"exec python3 -c {shlex.quote(code)}"


def figures(engine: Any, run_key: int, task_id: str, try_number: int = 1) -> dict[str, Any]:
    got = engine.store.try_resources(run_key).get((task_id, try_number))
    assert got is not None, f"no figures recorded for remote {task_id} try {try_number}"
    return got


def run_remote_dag(settings: Any, conf: Path, name: str, *tasks: str, timeout: float = 90,
                   default_args: str = "{}") -> tuple[Any, dict[str, Any]]:
    write_dag(settings, f"{name}.py", dag(name, *tasks, default_args=default_args))
    engine = remote_engine(settings, conf)
    run = engine.trigger(name, unpause_run=True)
    run_until_idle(engine, timeout=timeout)
    assert engine.monitor.remote.ticks > 0, "the remote sampler never ran"
    return engine, run


def test_remote_memory_held_is_recorded_within_fifteen_percent(settings, conf):
    hold = py("import time; b = b'x' * (100 << 20); time.sleep(3)")
    engine, run = run_remote_dag(settings, conf, "rmem", f"BashOperator(task_id='hold', ssh_conn_id='local', "
                                                         f"bash_command={hold!r})")
    assert tis_of(engine, run["key"])["hold"]["state"] == "success"
    f = figures(engine, run["key"], "hold")
    assert 100 * MIB * 0.85 <= f["peak_rss"] <= 100 * MIB * 1.15, f["peak_rss"] / MIB
    assert max(f["series"]["rss"]) >= 90 * MIB, f["series"]
    assert f["wall"] >= 3.0 and f["max_procs"] >= 1 and f["max_threads"] >= 1


def test_remote_cpu_bound_task_records_its_cpu_seconds(settings, conf):
    # It burns 2 CPU seconds by its own count, then idles so a sample sees the total (a remote try
    # has no rusage at its end). Wall time depends on how loaded the machine is; CPU never exceeds it.
    spin = py("import time; t = time.process_time()\nwhile time.process_time() - t < 2: pass\ntime.sleep(1)")
    engine, run = run_remote_dag(settings, conf, "rburn", f"BashOperator(task_id='spin', ssh_conn_id='local', "
                                                          f"bash_command={spin!r})")
    assert tis_of(engine, run["key"])["spin"]["state"] == "success"
    f = figures(engine, run["key"], "spin")
    cpu = f["cpu_user"] + f["cpu_system"]
    assert 1.9 <= cpu <= 2.6, f
    assert cpu <= f["wall"] * 1.05, f
    assert max(f["series"]["cpu"]) > 30, f


def test_remote_children_and_orphans_are_counted(settings, conf):
    # three children of 30 MiB each; one double-forks so its parent exits (an orphan in the session)
    code = ("import os, time\n"
            "for i in range(3):\n"
            "    if os.fork() == 0:\n"
            "        if i == 2 and os.fork() != 0: os._exit(0)\n"
            "        b = b'x' * (30 << 20); time.sleep(3); os._exit(0)\n"
            "time.sleep(3.5)\n")
    engine, run = run_remote_dag(settings, conf, "rforks", f"BashOperator(task_id='fan', ssh_conn_id='local', "
                                                           f"bash_command={py(code)!r})")
    assert tis_of(engine, run["key"])["fan"]["state"] == "success"
    f = figures(engine, run["key"], "fan")
    assert f["max_procs"] >= 4, f
    assert f["peak_rss"] >= 3 * 30 * MIB, f["peak_rss"] / MIB


def test_remote_task_over_its_memory_limit_is_killed_with_the_reason(settings, conf):
    greedy = py("import time; b = b'x' * (200 << 20); time.sleep(60)")
    engine, run = run_remote_dag(
        settings, conf, "rlimit",
        f"BashOperator(task_id='greedy', ssh_conn_id='local', memory_limit='100MiB', bash_command={greedy!r})",
        "BashOperator(task_id='sibling', ssh_conn_id='local', bash_command='sleep 2; echo fine')")
    got = tis_of(engine, run["key"])
    assert got["sibling"]["state"] == "success"
    assert got["greedy"]["state"] == "failed"
    (t,) = engine.store.tries(run["key"], "greedy")
    assert t["error"].startswith("memory limit 100 MiB exceeded: "), t["error"]
    assert t["error"].endswith("(tree RSS)")
    assert t["duration"] < 45, "killed by the limit, not at the end of its sleep"
    assert figures(engine, run["key"], "greedy")["peak_rss"] > 100 * MIB


def test_remote_cpu_time_limit_kills_a_spinning_task(settings, conf):
    engine, run = run_remote_dag(settings, conf, "rcpulimit",
                                 "BashOperator(task_id='spin', ssh_conn_id='local', cpu_time_limit='1s', "
                                 f"bash_command={py('while True: pass')!r})")
    ti = tis_of(engine, run["key"])["spin"]
    assert ti["state"] == "failed"
    assert ti["error"].startswith("cpu time limit 1.0s exceeded: "), ti["error"]


# -- through a real flowd ----------------------------------------------------------------------


@pytest.fixture
def daemon(tmp_path: Path, conf: Path) -> Iterator[Flowd]:
    f = make_flowd(tmp_path)
    f.env["FLOW_CONNECTIONS"] = str(conf)
    f.env["FLOW_SAMPLE_INTERVAL"] = "0.3"
    with running(f):
        yield f


def test_remote_figures_through_flowd_and_the_cli(daemon: Flowd, tmp_path: Path):
    flag = tmp_path / "release"
    code = "import time; b = b'x' * (60 << 20); time.sleep(600)"
    hold = f"python3 -c {shlex.quote(code)} & while [ ! -e {flag} ]; do sleep 0.1; done; kill $!"
    load_dag(daemon, "from flow import DAG\nfrom flow.operators import BashOperator\n"
             "with DAG('{name}', schedule=None):\n"
             "    BashOperator(task_id='hold', ssh_conn_id='local', bash_command={cmd!r})\n",
             "rfig", cmd=hold)
    run_id = trigger(daemon, "rfig")

    def live() -> dict[str, Any] | None:
        ti = tis(daemon, "rfig", run_id)["hold"]
        res = ti["tries"][-1]["resources"] if ti["state"] == "running" and ti["tries"] else None
        return res if res and res["peak_rss"] >= 60 * MIB else None

    got = poll("live figures of the remote try", live, timeout=60)
    assert got["max_procs"] >= 2 and got["wall"] > 0 and set(got["series"]) == {"t", "cpu", "rss"}
    flag.write_text("go")
    poll("the run to end", lambda: run_state(daemon, "rfig", run_id) in ("success", "failed"), timeout=60)
    done = tis(daemon, "rfig", run_id)["hold"]["tries"][-1]["resources"]
    assert done["peak_rss"] >= 60 * MIB and done["wall"] > 0
    summary = next(d for d in call(daemon, "dags.list")["dags"] if d["dag_id"] == "rfig")
    assert summary["last_run_peak_rss"] == done["peak_rss"]
    res = daemon.cli("tasks", "stats", "rfig", "hold", "--json")
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)["tries"]
    assert row["resources"]["peak_rss"] == done["peak_rss"]
    status = call(daemon, "status")
    assert status["remote_sampling"]["ticks"] > 0, status["remote_sampling"]


def test_the_sampler_never_connects_nor_takes_a_session_a_try_needs(conf: Path):
    from flow.executors.ssh_pool import Pool

    pool = Pool(conf)
    conn = pool.connection("local")
    try:
        assert pool.run_if_free(conn, "echo hi", 5) is None, "no connection yet: sampling must not make one"
        pool.transport(conn)
        assert pool.run_if_free(conn, "echo hi", 5) == (0, "hi\n")
        slots = pool.link(conn).slots
        for _ in range(conn.max_sessions):
            assert slots.acquire(timeout=5)
        try:
            assert pool.run_if_free(conn, "echo hi", 5) is None, "every session is a try's: skip the tick"
        finally:
            for _ in range(conn.max_sessions):
                slots.release()
        assert pool.run_if_free(conn, "echo hi", 5) == (0, "hi\n")
    finally:
        pool.close()
