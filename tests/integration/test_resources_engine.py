"""Resource accounting and limits through the real engine, runner and processes (no fakes)."""

from __future__ import annotations

import json
import sys

from .conftest import make_engine, run_until_idle, tis_of, write_dag

MIB = 1 << 20
PY = sys.executable


def fast_sampling(settings):
    settings.sample_interval = 0.2
    return settings


def figures(engine, run_key, task_id, try_number=1):
    got = engine.store.try_resources(run_key).get((task_id, try_number))
    assert got is not None, f"no figures recorded for {task_id} try {try_number}"
    return got


def test_memory_held_is_recorded_within_ten_percent(settings):
    fast_sampling(settings)
    write_dag(settings, "mem.py", f"""
        from flow import DAG
        from flow.operators.bash import BashOperator
        with DAG("mem", schedule=None):
            BashOperator(task_id="hold", bash_command=
                "{PY} -c 'import time; b = bytearray(200 << 20); b[::4096] = b\\"x\\" * len(b[::4096]); time.sleep(3)'")
    """)
    engine = make_engine(settings)
    run = engine.trigger("mem", unpause_run=True)
    run_until_idle(engine)
    assert tis_of(engine, run["key"])["hold"]["state"] == "success"
    f = figures(engine, run["key"], "hold")
    assert 200 * MIB * 0.9 <= f["peak_rss"] <= 200 * MIB * 1.1 + 30 * MIB, f["peak_rss"] / MIB
    assert f["wall"] >= 3.0
    assert f["max_procs"] >= 1
    # sampled while it ran, not only the kernel's figure at the end
    assert max(f["series"]["rss"]) >= 180 * MIB, f["series"]


def test_cpu_bound_task_records_cpu_seconds_close_to_wall(settings):
    fast_sampling(settings)
    write_dag(settings, "burn.py", f"""
        from flow import DAG
        from flow.operators.bash import BashOperator
        with DAG("burn", schedule=None):
            BashOperator(task_id="spin", bash_command=
                "{PY} -c 'import time; t = time.process_time(); exec(\\"while time.process_time() - t < 2: pass\\")'")
    """)
    engine = make_engine(settings)
    run = engine.trigger("burn", unpause_run=True)
    run_until_idle(engine)
    f = figures(engine, run["key"], "spin")
    cpu = f["cpu_user"] + f["cpu_system"]
    # The task burns 2 CPU seconds by its own count; how much wall time that takes depends on how
    # busy the machine is, so the check is against the CPU it used, and CPU can never exceed wall.
    assert 1.9 <= cpu <= 2.5, f
    assert cpu <= f["wall"] * 1.05, f
    assert abs(f["avg_cpu_percent"] - cpu / f["wall"] * 100) < 1.0, f
    assert max(f["series"]["cpu"]) > 0, f  # the samples taken while it ran saw it busy


def test_children_and_orphaned_grandchildren_are_counted(settings):
    fast_sampling(settings)
    # three children of 40 MiB each; one of them double-forks so its parent exits (an orphan in the session)
    code = ("import os, time\n"
            "for i in range(3):\n"
            "    if os.fork() == 0:\n"
            "        if i == 2 and os.fork() != 0: os._exit(0)\n"
            "        b = bytearray(40 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(2.5); os._exit(0)\n"
            "time.sleep(3)\n")
    write_dag(settings, "forks.py", f"""
        from flow import DAG
        from flow.operators.python import PythonOperator
        def go():
            exec({code!r})
        with DAG("forks", schedule=None):
            PythonOperator(task_id="fan", python_callable=go)
    """)
    engine = make_engine(settings)
    run = engine.trigger("forks", unpause_run=True)
    run_until_idle(engine)
    assert tis_of(engine, run["key"])["fan"]["state"] == "success"
    f = figures(engine, run["key"], "fan")
    assert f["max_procs"] >= 4, f  # the task process and its three workers (one re-parented)
    assert f["peak_rss"] >= 3 * 40 * MIB, f["peak_rss"] / MIB


def test_memory_limit_kills_the_tree_and_leaves_the_sibling_alone(settings):
    fast_sampling(settings)
    write_dag(settings, "limits.py", f"""
        from flow import DAG
        from flow.operators.bash import BashOperator
        with DAG("limits", schedule=None, default_args={{"retries": 1, "retry_delay": 0}}):
            BashOperator(task_id="greedy", memory_limit="100MiB", bash_command=
                "{PY} -c 'import time; b = bytearray(300 << 20); b[::4096] = b\\"x\\" * len(b[::4096]); time.sleep(30)'")
            BashOperator(task_id="sibling", bash_command="sleep 2; echo fine")
    """)
    engine = make_engine(settings)
    run = engine.trigger("limits", unpause_run=True)
    run_until_idle(engine, timeout=90)
    tis = tis_of(engine, run["key"])
    assert tis["sibling"]["state"] == "success"
    assert tis["greedy"]["state"] == "failed"
    tries = engine.store.tries(run["key"], "greedy")
    assert len(tries) == 2, "retries apply to a limit kill as to any failure"
    for t in tries:
        assert t["error"].startswith("memory limit 100 MiB exceeded: "), t["error"]
        assert t["error"].endswith("(tree RSS)")
        assert t["duration"] < 25, "killed by the limit, not at the end of its sleep"
    assert figures(engine, run["key"], "greedy", 2)["peak_rss"] > 100 * MIB


def test_cpu_time_limit_kills_a_spinning_task(settings):
    fast_sampling(settings)
    write_dag(settings, "cpulimit.py", f"""
        from flow import DAG
        from flow.operators.bash import BashOperator
        with DAG("cpulimit", schedule=None):
            BashOperator(task_id="spin", cpu_time_limit="1s", bash_command="{PY} -c 'while True: pass'")
    """)
    engine = make_engine(settings)
    run = engine.trigger("cpulimit", unpause_run=True)
    run_until_idle(engine, timeout=60)
    ti = tis_of(engine, run["key"])["spin"]
    assert ti["state"] == "failed"
    assert ti["error"].startswith("cpu time limit 1.0s exceeded: "), ti["error"]


def test_a_short_try_still_gets_figures_and_its_series_stays_small(settings):
    fast_sampling(settings)
    write_dag(settings, "quick.py", """
        from flow import DAG
        from flow.operators.bash import BashOperator
        with DAG("quick", schedule=None):
            BashOperator(task_id="echo", bash_command="echo hi")
    """)
    engine = make_engine(settings)
    run = engine.trigger("quick", unpause_run=True)
    run_until_idle(engine)
    f = figures(engine, run["key"], "echo")
    assert f["peak_rss"] > 0 and f["wall"] > 0
    assert len(json.dumps(f).encode()) < 4096


def test_log_folder_size_grows_with_each_finished_try_without_walking_the_folder(settings, monkeypatch):
    from pathlib import Path

    from flow.daemon import footprint

    write_dag(settings, "talk.py", """
        from flow import DAG
        from flow.operators.bash import BashOperator
        with DAG("talk", schedule=None):
            BashOperator(task_id="say", bash_command="head -c 5000 /dev/zero | tr '\\\\0' x; echo")
    """)
    engine = make_engine(settings)
    walks: list[str] = []
    real = footprint.folder_size
    monkeypatch.setattr(footprint, "folder_size", lambda path: walks.append(path) or real(path))
    engine.monitor.footprint.refresh(engine)
    before = engine.monitor.footprint.log_size
    run = engine.trigger("talk", unpause_run=True)
    run_until_idle(engine)
    logs = [p for p in Path(settings.log_folder).rglob("*.log")]
    assert len(logs) == 1 and logs[0].stat().st_size > 5000
    assert engine.monitor.footprint.log_size - before == logs[0].stat().st_size
    engine.monitor.footprint.refresh(engine)  # a later refresh reads the database size, walks nothing
    assert walks == [settings.log_folder]
    assert tis_of(engine, run["key"])["say"]["state"] == "success"
