"""A task instance's detail through a real flowd: each try's rendered command, and its XComs
(`xcom.get` and `flow tasks xcom`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flow.daemon.client import Client, RemoteError

from .conftest import Flowd, make_flowd, running
from .test_resources_flowd import call, load_dag, poll, run_state, tis

ROOT = Path(__file__).resolve().parents[2]

# The command prints itself as bash received it ($BASH_EXECUTION_STRING), so the log holds exactly
# what ran; try 1 fails (and leaves the flag), try 2 succeeds. cwd is templated too.
TEMPLATED = """
from flow import DAG
from flow.operators import BashOperator, PythonOperator

def pushes(ti):
    ti.xcom_push(key="small", value={"a": [1, 2], "b": "é"})
    return "x" * 100_000

with DAG("NAME", schedule=None, params={"x": "from-params"}):
    BashOperator(
        task_id="show",
        bash_command=(
            "printf '%s\\\\n' \\"$BASH_EXECUTION_STRING\\"  # {{ ds }} {{ params.x }} {{ dag_run.conf.c }}\\n"
            "echo try={{ ti.try_number }} in $(pwd)\\n"
            "test -e FLAG || { touch FLAG; exit 1; }"
        ),
        cwd="BASE/{{ ds_nodash }}",
        retries=1,
        retry_delay=1,
    )
    PythonOperator(task_id="big", python_callable=pushes)
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flowd]:
    f = make_flowd(tmp_path_factory.mktemp("flowd"))
    with running(f):
        yield f


def finished(daemon: Flowd, dag_id: str, run_id: str) -> str:
    return poll(f"run {run_id} to end", lambda: run_state(daemon, dag_id, run_id) in ("success", "failed") and
                run_state(daemon, dag_id, run_id))


def log_text(daemon: Flowd, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
    got = call(daemon, "logs.read", dag_id=dag_id, run_id=run_id, task_id=task_id, try_number=try_number,
               length=1 << 20)
    return got["data"]


@pytest.fixture(scope="module")
def templated_run(daemon: Flowd, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    base = tmp_path_factory.mktemp("cwd")
    (base / "20240301").mkdir()
    flag = base / "flag"
    source = TEMPLATED.replace("NAME", "templated").replace("FLAG", str(flag)).replace("BASE", str(base))
    load_dag(daemon, source.replace("{", "{{").replace("}", "}}"), "templated")
    run_id = call(daemon, "dags.trigger", dag_id="templated", conf={"c": "from-conf"},
                  logical_date="2024-03-01T00:00:00Z")["run"]["run_id"]
    assert finished(daemon, "templated", run_id) == "success"
    return run_id, base


def test_each_try_records_the_command_it_ran_rendered(daemon: Flowd, templated_run: tuple[str, Path]) -> None:
    run_id, base = templated_run
    show = tis(daemon, "templated", run_id)["show"]
    assert [t["state"] for t in show["tries"]] == ["failed", "success"]
    flag = base / "flag"
    for attempt in show["tries"]:
        n = attempt["try_number"]
        expected = (f"printf '%s\\n' \"$BASH_EXECUTION_STRING\"  # 2024-03-01 from-params from-conf\n"
                    f"echo try={n} in $(pwd)\n"
                    f"test -e {flag} || {{ touch {flag}; exit 1; }}")
        assert attempt["rendered"] == expected
        assert attempt["rendered_cwd"] == str(base / "20240301")
        log = log_text(daemon, "templated", run_id, "show", n)
        assert expected + "\n" in log, f"try {n} ran something else than flowd recorded:\n{log}"
        assert f"try={n} in {base / '20240301'}" in log
    big = tis(daemon, "templated", run_id)["big"]
    assert [(t["state"], t["rendered"], t["rendered_cwd"]) for t in big["tries"]] == [("success", None, None)]
    with Client.connect(daemon.socket_path) as client:  # what the console's grid asks for: no commands
        lean = client.call("runs.get", dag_id="templated", run_id=run_id, rendered=False)["task_instances"]
    assert [t["state"] for ti in lean for t in ti["tries"] if ti["task_id"] == "show"] == ["failed", "success"]
    assert all("rendered" not in t and "rendered_cwd" not in t for ti in lean for t in ti["tries"])


def test_a_cleared_try_records_its_own_rendering(daemon: Flowd, templated_run: tuple[str, Path]) -> None:
    run_id, base = templated_run
    res = daemon.cli("tasks", "clear", "templated", "show", "--run", run_id, "--yes")
    assert res.returncode == 0, res.stderr
    poll("try 3 to end", lambda: [t["state"] for t in tis(daemon, "templated", run_id)["show"]["tries"]][2:] ==
         ["success"])
    tries = tis(daemon, "templated", run_id)["show"]["tries"]
    assert "echo try=3 in" in tries[2]["rendered"] and "echo try=2 in" in tries[1]["rendered"]
    assert "echo try=3 in $(pwd)" in log_text(daemon, "templated", run_id, "show", 3)


def test_xcom_get_returns_values_as_pushed_and_cuts_a_huge_one(daemon: Flowd,
                                                               templated_run: tuple[str, Path]) -> None:
    run_id, _ = templated_run
    got = call(daemon, "xcom.get", dag_id="templated", run_id=run_id, task_id="big")
    assert got["xcom"] == {"small": {"a": [1, 2], "b": "é"}}
    cut = got["truncated"]["return_value"]
    assert cut["bytes"] == 100_002 and cut["head"] == '"' + "x" * (16 * 1024 - 1)
    only = call(daemon, "xcom.get", dag_id="templated", run_id=run_id, task_id="big", key="small")
    assert only["xcom"] == {"small": {"a": [1, 2], "b": "é"}} and only["truncated"] == {}
    show = call(daemon, "xcom.get", dag_id="templated", run_id=run_id, task_id="show")
    assert show["xcom"]["return_value"].startswith("try=") and show["truncated"] == {}


@pytest.fixture(scope="module")
def xcom_run(daemon: Flowd) -> str:
    shutil.copy(ROOT / "dags" / "example_xcom.py", Path(daemon.dags_folder) / "example_xcom.py")
    poll("example_xcom to load", lambda: any(d["dag_id"] == "example_xcom" for d in call(daemon, "dags.list")["dags"]))
    run_id = call(daemon, "dags.trigger", dag_id="example_xcom")["run"]["run_id"]
    assert finished(daemon, "example_xcom", run_id) == "success"
    return run_id


def test_xcom_get_of_the_example_and_its_refusals(daemon: Flowd, xcom_run: str) -> None:
    values = {t: call(daemon, "xcom.get", dag_id="example_xcom", run_id=xcom_run, task_id=t)["xcom"]
              for t in ("add1", "add2", "dot")}
    assert values == {"add1": {"return_value": 3}, "add2": {"return_value": 4}, "dot": {"return_value": 12}}
    got = call(daemon, "xcom.get", dag_id="example_xcom", run_id=xcom_run, task_id="dot", key="return_value")
    assert got == {"dag_id": "example_xcom", "run_id": xcom_run, "task_id": "dot", "xcom": {"return_value": 12},
                   "truncated": {}}
    assert call(daemon, "xcom.get", dag_id="example_xcom", run_id=xcom_run, task_id="dot", key="nope")["xcom"] == {}
    for params, message in (
        ({"run_id": "nope", "task_id": "dot"}, "DAG 'example_xcom' has no run 'nope'"),
        ({"run_id": xcom_run, "task_id": "nope"}, "has no task 'nope' (tasks: add1, add2, dot)"),
    ):
        with Client.connect(daemon.socket_path) as client, pytest.raises(RemoteError) as err:
            client.call("xcom.get", dag_id="example_xcom", **params)
        assert err.value.code == "not_found" and message in err.value.message
    with Client.connect(daemon.socket_path) as client, pytest.raises(RemoteError) as err:
        client.call("xcom.get", dag_id="nope", run_id=xcom_run, task_id="dot")
    assert err.value.code == "not_found" and "unknown DAG 'nope'" in err.value.message


def test_cli_tasks_xcom_prints_values_json_and_one_line_errors(daemon: Flowd, xcom_run: str,
                                                               templated_run: tuple[str, Path]) -> None:
    res = daemon.cli("tasks", "xcom", "example_xcom", xcom_run, "dot")
    assert (res.returncode, res.stdout, res.stderr) == (0, "return_value = 12\n", "")
    res = daemon.cli("tasks", "xcom", "example_xcom", xcom_run, "add1", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["xcom"] == {"return_value": 3}
    res = daemon.cli("tasks", "xcom", "templated", templated_run[0], "big")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "return_value = (cut by flowd: 100002 bytes as JSON; the first 16384 follow)"
    assert lines[1] == '  "' + "x" * (16 * 1024 - 1) + " …"
    assert lines[2] == 'small = {"a": [1, 2], "b": "é"}'
    res = daemon.cli("tasks", "xcom", "example_xcom", xcom_run, "dot", "--key", "nope")
    assert res.returncode == 1 and res.stderr == f"flow: task 'dot' pushed no XCom 'nope' in run '{xcom_run}' of example_xcom\n"
    res = daemon.cli("tasks", "xcom", "example_xcom", "nope", "dot")
    assert res.returncode == 1 and res.stderr.startswith("flow: DAG 'example_xcom' has no run 'nope'")


def test_runs_get_keeps_rendered_commands_within_its_budget() -> None:
    from flow.daemon.handlers_detail import RENDERED_CUT_BYTES, fit_rendered

    tries: list[dict[str, Any]] = [{"rendered": "y" * 60_000} for _ in range(40)]
    fit_rendered([{"tries": tries[:20]}, {"tries": [{"rendered": None}, *tries[20:]]}])
    whole = [t for t in tries if t["rendered"] == "y" * 60_000]
    assert len(whole) == 34  # 34 * 60,000 bytes fit in 2 MiB
    cut = [t["rendered"] for t in tries if t["rendered"] != "y" * 60_000]
    assert len(cut[0].encode()) == 2 * 1024 * 1024 - 34 * 60_000
    assert all(len(c.encode()) == RENDERED_CUT_BYTES for c in cut[1:])
    assert all(c.endswith("[flow: the rendered command (in this runs.get reply) was cut here; it is 60000 bytes]")
               for c in cut)
