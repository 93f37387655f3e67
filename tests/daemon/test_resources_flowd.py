"""Resource figures, wait reasons and admission control through a real flowd and the `flow` CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flow.daemon.client import Client

from .conftest import Flowd, make_flowd, running

SLEEPY = """
from flow import DAG
from flow.operators import BashOperator
with DAG("{name}", schedule=None, max_active_tasks=1):
    a = BashOperator(task_id="a", bash_command="while [ ! -e {flag} ]; do sleep 0.05; done")
    b = BashOperator(task_id="b", bash_command="echo b")
    c = BashOperator(task_id="c", bash_command="echo c")
    a >> c
"""

ONE = """
from flow import DAG
from flow.operators import BashOperator
with DAG("{name}", schedule=None):
    BashOperator(task_id="work", bash_command="echo working")
"""


def poll(what: str, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """fn()'s first truthy value; fails after `timeout` (generous: the machine may be loaded)."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; last value {got!r}")
        time.sleep(0.1)


def call(daemon: Flowd, method: str, **params: Any) -> dict[str, Any]:
    with Client.connect(daemon.socket_path, timeout=10) as client:
        return client.call(method, **params)


def load_dag(daemon: Flowd, template: str, name: str, **fmt: Any) -> None:
    daemon.add_dag(f"{name}.py", template.format(name=name, **fmt))
    poll(f"DAG {name} to load", lambda: any(d["dag_id"] == name for d in call(daemon, "dags.list")["dags"]))


def trigger(daemon: Flowd, dag_id: str) -> str:
    return call(daemon, "dags.trigger", dag_id=dag_id)["run"]["run_id"]


def tis(daemon: Flowd, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    return {ti["task_id"]: ti for ti in call(daemon, "runs.get", dag_id=dag_id, run_id=run_id)["task_instances"]}


def run_state(daemon: Flowd, dag_id: str, run_id: str) -> str:
    return call(daemon, "runs.get", dag_id=dag_id, run_id=run_id)["run"]["state"]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flowd]:
    f = make_flowd(tmp_path_factory.mktemp("flowd"))
    f.env["FLOW_SAMPLE_INTERVAL"] = "0.3"
    with running(f):
        yield f


def test_live_figures_and_wait_reasons_while_a_run_is_going(daemon, tmp_path):
    flag = tmp_path / "release"
    load_dag(daemon, SLEEPY, "sleepy", flag=flag)
    run_id = trigger(daemon, "sleepy")

    def running_with_figures() -> dict[str, Any] | None:
        got = tis(daemon, "sleepy", run_id)
        a = got["a"]
        return got if a["state"] == "running" and a["tries"] and a["tries"][-1]["resources"] else None

    got = poll("live figures of the running try", running_with_figures)
    live = got["a"]["tries"][-1]["resources"]
    assert live["peak_rss"] > 0 and live["max_procs"] >= 1 and live["wall"] > 0
    assert set(live["series"]) == {"t", "cpu", "rss"}
    assert got["a"]["wait_reason"] is None
    assert got["b"]["state"] == "scheduled"
    assert got["b"]["wait_reason"] == "DAG's max_active_tasks reached (1)"
    assert got["c"]["wait_reason"] == "upstream pending: a"
    flag.write_text("go")
    poll("the run to end", lambda: run_state(daemon, "sleepy", run_id) == "success")
    done = tis(daemon, "sleepy", run_id)
    assert all(ti["wait_reason"] is None for ti in done.values())
    assert all(ti["tries"][-1]["resources"]["wall"] > 0 for ti in done.values())
    summary = next(d for d in call(daemon, "dags.list")["dags"] if d["dag_id"] == "sleepy")
    peak = max(ti["tries"][-1]["resources"]["peak_rss"] for ti in done.values())
    assert summary["last_run_peak_rss"] == peak
    assert call(daemon, "dags.get", dag_id="sleepy")["dag"]["last_run_peak_rss"] == peak


def test_tasks_stats_lists_tries_newest_first(daemon):
    load_dag(daemon, ONE, "stats_one")
    runs = []
    for _ in range(2):
        run_id = trigger(daemon, "stats_one")
        poll("the run to end", lambda run_id=run_id: run_state(daemon, "stats_one", run_id) == "success")
        runs.append(run_id)
    res = daemon.cli("tasks", "stats", "stats_one", "work", "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert [t["run_id"] for t in got["tries"]] == runs[::-1]
    for t in got["tries"]:
        r = t["resources"]
        assert r["peak_rss"] > 0 and r["wall"] > 0 and r["cpu_user"] >= 0
    assert len(json.loads(daemon.cli("tasks", "stats", "stats_one", "work", "-n", "1", "--json").stdout)["tries"]) == 1
    text = daemon.cli("tasks", "stats", "stats_one", "work")
    assert text.returncode == 0 and "PEAK RSS" in text.stdout and runs[0] in text.stdout
    bad = daemon.cli("tasks", "stats", "stats_one", "nope")
    assert bad.returncode == 1 and "has no task 'nope'" in bad.stderr


def test_status_reports_host_footprint_and_admission(daemon):
    st = call(daemon, "status")
    deadline = time.monotonic() + 10
    while st["db_size"] is None and time.monotonic() < deadline:  # measured in a thread after start
        time.sleep(0.1)
        st = call(daemon, "status")
    assert st["host"]["mem_total"] > st["host"]["mem_available"] > 0
    assert 0 < st["host"]["mem_free_percent"] <= 100 and st["host"]["cpu_count"] >= 1
    assert st["admission"] == {"min_free_memory": None, "holding": False, "reason": None}
    assert st["db_size"] > 0 and isinstance(st["log_size"], int) and st["open_files"] > 0
    assert st["sample_interval"] == 0.3
    assert st["running"] >= 0 and st["pid"] == daemon.proc.pid  # the existing fields stay
    text = daemon.cli("status")
    assert text.returncode == 0
    assert "admission  off" in text.stdout and "memory available" in text.stdout


def test_admission_control_holds_new_tasks_and_releases_them_on_reload(tmp_path):
    config = tmp_path / "flowd.toml"
    config.write_text('min_free_memory = "100%"\n')  # available memory is always below the total
    f = make_flowd(tmp_path)
    f.extra_args = ["--config", str(config)]
    try:
        f.start()
        load_dag(f, ONE, "held")
        run_id = trigger(f, "held")
        work = poll("the task to wait on admission control",
                    lambda: (t := tis(f, "held", run_id)["work"])["wait_reason"] and t)
        assert work["state"] == "scheduled"
        assert work["wait_reason"].startswith("admission control: free memory ")
        assert work["wait_reason"].endswith("< min_free_memory 100%")
        st = call(f, "status")
        assert st["admission"]["holding"] is True and st["admission"]["min_free_memory"] == "100%"
        assert st["admission"]["reason"] == work["wait_reason"]
        assert "HOLDING new tasks" in f.cli("status").stdout
        time.sleep(1.0)  # a few scheduling passes: it must still be held (not a timing assertion)
        assert tis(f, "held", run_id)["work"]["state"] == "scheduled"

        config.write_text('min_free_memory = "1KiB"\n')
        f.proc.send_signal(signal.SIGHUP)
        poll("the held run to finish after the reload", lambda: run_state(f, "held", run_id) == "success")
        st = call(f, "status")
        assert st["admission"] == {"min_free_memory": "1KiB", "holding": False, "reason": None}
    finally:
        f.discard()


def test_a_bad_min_free_memory_stops_start_up_with_one_clear_line(tmp_path):
    config = tmp_path / "flowd.toml"
    config.write_text('min_free_memory = "lots"\n')
    f = make_flowd(tmp_path)
    res = subprocess.run([*f.command(), "--config", str(config)], env=f.full_env(),
                                       capture_output=True, text=True, timeout=30)
    f.listener.close()
    assert res.returncode == 1
    assert "min_free_memory = 'lots'" in res.stderr and str(Path(config)) in res.stderr
