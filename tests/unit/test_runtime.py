"""run_task and render_bash on real DAG files, called with TaskSpec JSON as the runner does."""

from __future__ import annotations

import json
import pathlib
import textwrap

import pytest

from flow.executors.base import TaskSpec
from flow.runtime import TemplateError, render_bash, run_callback, run_task

ROOT = pathlib.Path(__file__).resolve().parents[2]

DAG_FILE = """
import json
from flow import DAG, task
from flow.operators import BranchPythonOperator, PythonOperator, ShortCircuitOperator, BashOperator

def plain(a, b, ds=None):
    return f"{a}+{b}@{ds}"

def wants_context(**context):
    return sorted(k for k in ("ti", "task_instance", "logical_date", "params", "ds", "dag_run", "templates_dict") if k in context)

def named(ti, params, dag_run, logical_date, templates_dict):
    ti.xcom_push("seen", [params["n"], dag_run.conf.get("c"), logical_date.year, templates_dict["day"]])
    return None

def boom():
    x = 1
    raise RuntimeError(f"bad thing {x}")

def not_json():
    return {1, 2}

def too_big():
    return "x" * (1024 * 1024 + 1)

def push_bad(ti):
    ti.xcom_push("when", object())

def choose(params):
    return params["go"]

def falsy():
    return 0

def record(context):
    with open(context["params"]["out"], "a") as f:
        f.write(f"{context['task'].task_id}:{context['reason']}\\n")

@task
def double(x):
    return x * 2

@task
def combine(a, b, factor=1):
    return {"sum": (a + b) * factor, "pieces": [a, b]}

@task
def ctx_args(x, ti, ds):
    return [x, ti.task_id, ds]

@task(multiple_outputs=True)
def split():
    return {"left": 1, "right": 2}

with DAG("rt", params={"n": 5, "go": "left", "out": "/dev/null"}) as dag:
    PythonOperator(task_id="plain", python_callable=plain, op_args=["{{ params.n }}"], op_kwargs={"b": "{{ ds_nodash }}"})
    PythonOperator(task_id="ctx", python_callable=wants_context)
    PythonOperator(task_id="named", python_callable=named, templates_dict={"day": "{{ ds }}"})
    PythonOperator(task_id="boom", python_callable=boom)
    PythonOperator(task_id="not_json", python_callable=not_json)
    PythonOperator(task_id="too_big", python_callable=too_big)
    PythonOperator(task_id="push_bad", python_callable=push_bad)
    PythonOperator(task_id="quiet", python_callable=not_json, do_xcom_push=False)
    PythonOperator(task_id="bad_template", python_callable=plain, op_args=["{{ nope }}", 1])
    br = BranchPythonOperator(task_id="branch", python_callable=choose)
    left = PythonOperator(task_id="left", python_callable=falsy, on_failure_callback=record)
    right = PythonOperator(task_id="right", python_callable=falsy)
    br >> [left, right]
    ShortCircuitOperator(task_id="gate", python_callable=falsy)
    BashOperator(task_id="script", bash_command="job.sh", env={"DAY": "{{ ds }}"}, cwd="/tmp/{{ ds_nodash }}")
    up = double(3)
    combine(up, double(4), factor=up)
    split()
    ctx_args(9)
"""


@pytest.fixture
def dag_file(tmp_path):
    path = tmp_path / "rt_dag.py"
    path.write_text(textwrap.dedent(DAG_FILE))
    (tmp_path / "job.sh").write_text("echo start\necho {{ ds }} {{ params.n }}\n")
    return str(path)


def spec(dag_file: str, task_id: str, *, dag_id: str = "rt", xcoms=None, conf=None, params=None, try_number=1) -> dict:
    """Built through TaskSpec so the tests use exactly the JSON the executor sends."""
    return TaskSpec(
        ref="r", kind="python", dag_id=dag_id, task_id=task_id, run_id="manual__1", try_number=try_number,
        dag_file=dag_file, log_path="/dev/null", status_path="/dev/null",
        context={
            "logical_date": "2024-06-01T12:00:00+00:00",
            "data_interval_start": "2024-06-01T12:00:00+00:00",
            "data_interval_end": "2024-06-01T12:00:00+00:00",
            "run_id": "manual__1", "run_type": "manual", "conf": conf or {},
            "params": params if params is not None else {"n": 5, "go": "left", "out": "/dev/null"},
            "dag_id": dag_id, "task_id": task_id, "try_number": try_number, "max_tries": 0, "timezone": "UTC",
        },
        xcoms=xcoms or {},
    ).to_json()


def test_python_operator_with_templated_args(dag_file):
    result = run_task(spec(dag_file, "plain"))
    assert result == {"ok": True, "error": None, "xcom": {"return_value": "5+20240601@2024-06-01"},
                      "branch": None, "skip_downstream": False, "outcome": None}


def test_context_injection_by_kwargs_and_by_name(dag_file):
    assert run_task(spec(dag_file, "ctx"))["xcom"]["return_value"] == [
        "dag_run", "ds", "logical_date", "params", "task_instance", "templates_dict", "ti"]
    result = run_task(spec(dag_file, "named", conf={"c": "conf!", "n": 7}))
    assert result["ok"] and result["xcom"] == {"seen": [7, "conf!", 2024, "2024-06-01"]}


def test_taskflow_inputs_come_from_spec_xcoms(dag_file):
    xcoms = {"double": {"return_value": 6}, "double__1": {"return_value": 8}}
    result = run_task(spec(dag_file, "combine", xcoms=xcoms))
    assert result["ok"], result
    assert result["xcom"] == {"return_value": {"sum": 84, "pieces": [6, 8]}}
    assert run_task(spec(dag_file, "double__1"))["xcom"] == {"return_value": 8}


def test_taskflow_context_parameters_without_defaults(dag_file):
    assert run_task(spec(dag_file, "ctx_args"))["xcom"] == {"return_value": [9, "ctx_args", "2024-06-01"]}


def test_multiple_outputs_pushes_each_key(dag_file):
    assert run_task(spec(dag_file, "split"))["xcom"] == {"left": 1, "right": 2, "return_value": {"left": 1, "right": 2}}


def test_exception_gives_one_line_with_the_raising_line(dag_file, capsys):
    result = run_task(spec(dag_file, "boom"))
    assert result["ok"] is False
    line = pathlib.Path(dag_file).read_text().splitlines().index('    raise RuntimeError(f"bad thing {x}")') + 1
    assert result["error"] == f"RuntimeError: bad thing 1 (at rt_dag.py:{line})"
    err = capsys.readouterr().err
    assert "Traceback" in err and 'raise RuntimeError(f"bad thing {x}")' in err


def test_xcom_that_is_not_json_or_too_big_fails_clearly(dag_file):
    result = run_task(spec(dag_file, "not_json"))
    assert not result["ok"]
    assert "XCom 'return_value' is not JSON-serialisable" in result["error"] and "set" in result["error"]
    result = run_task(spec(dag_file, "too_big"))
    assert not result["ok"] and "XCom 'return_value' is 1.00 MiB as JSON; the limit is 1 MiB" in result["error"]
    result = run_task(spec(dag_file, "push_bad"))
    line = pathlib.Path(dag_file).read_text().splitlines().index('    ti.xcom_push("when", object())') + 1
    assert result["error"] == (f"XComError: task 'push_bad': XCom 'when' is not JSON-serialisable "
                               f"(Object of type object is not JSON serializable) (at rt_dag.py:{line})")
    assert run_task(spec(dag_file, "quiet")) == {"ok": True, "error": None, "xcom": None, "branch": None,
                                                 "skip_downstream": False, "outcome": None}


def test_template_error_in_python_task(dag_file):
    result = run_task(spec(dag_file, "bad_template"))
    assert result["error"] == "template error in op_args[0] line 1: 'nope' is undefined"


def test_branch_returns_chosen_ids_and_rejects_unknown(dag_file):
    result = run_task(spec(dag_file, "branch"))
    assert result["ok"] and result["branch"] == ["left"] and result["xcom"] == {"return_value": "left"}
    bad = run_task(spec(dag_file, "branch", conf={"go": "nowhere"}))
    assert not bad["ok"] and "chose 'nowhere', not a task of DAG 'rt'" in bad["error"]
    both = run_task(spec(dag_file, "branch", conf={"go": ["left", "right"]}))
    assert both["branch"] == ["left", "right"]


def test_short_circuit_skips_downstream_on_falsy(dag_file):
    result = run_task(spec(dag_file, "gate"))
    assert result["ok"] and result["skip_downstream"] is True
    assert run_task(spec(dag_file, "left"))["skip_downstream"] is False


def test_missing_dag_task_and_broken_file(dag_file, tmp_path):
    assert run_task(spec(dag_file, "ghost"))["error"] == f"DAG 'rt' has no task 'ghost' (in {dag_file})"
    assert run_task(spec(dag_file, "plain", dag_id="other"))["error"] == f"DAG 'other' is not defined in {dag_file}"
    broken = tmp_path / "broken.py"
    broken.write_text("import nothing_here_xyz\n")
    result = run_task(spec(str(broken), "t"))
    assert not result["ok"]
    assert result["error"] == f"cannot import DAG file: {broken}:1: ModuleNotFoundError: No module named 'nothing_here_xyz'"


def test_render_bash_loads_script_template_next_to_dag_file(dag_file):
    s = spec(dag_file, "script")
    s.update(kind="bash", bash_command="job.sh", env={"DAY": "{{ ds }}", "N": "{{ params.n }}"}, cwd="/tmp/{{ ds_nodash }}")
    assert render_bash(s) == ("echo start\necho 2024-06-01 5\n", {"DAY": "2024-06-01", "N": "5"}, "/tmp/20240601")


def test_render_bash_inline_xcom_and_errors(dag_file):
    s = spec(dag_file, "script", xcoms={"count": {"return_value": "42"}}, try_number=3)
    s.update(bash_command="echo {{ ti.xcom_pull(task_ids='count') }} try {{ ti.try_number }}", env=None, cwd=None)
    assert render_bash(s) == ("echo 42 try 3", None, None)
    s["bash_command"] = "echo ok\nexit {{ code }}"
    with pytest.raises(TemplateError, match="^template error in bash_command line 2: 'code' is undefined$"):
        render_bash(s)
    s["bash_command"] = "missing.sh"
    with pytest.raises(TemplateError, match="missing.sh not found"):
        render_bash(s)
    s["bash_command"] = "echo"
    s["context"]["logical_date"] = "not a date"
    with pytest.raises(TemplateError, match="task context"):
        render_bash(s)


def test_run_callback_calls_task_callbacks_with_reason(dag_file, tmp_path):
    out = tmp_path / "calls.txt"
    s = spec(dag_file, "left", params={"n": 5, "go": "left", "out": str(out)})
    s["extra"] = {"reason": "exit status 1"}
    assert run_callback(s, "on_failure_callback") == {"ok": True, "error": None}
    assert out.read_text() == "left:exit status 1\n"
    assert run_callback(s, "on_success_callback") == {"ok": True, "error": None}
    assert run_callback(s, "on_nothing")["ok"] is False


def load_example(name: str) -> str:
    return str(ROOT / "dags" / f"{name}.py")


def test_example_xcom_computes_12():
    f = load_example("example_xcom")
    base = dict(dag_id="example_xcom", params={"x": 2})
    add1 = run_task(spec(f, "add1", **base))["xcom"]
    add2 = run_task(spec(f, "add2", **base))["xcom"]
    dot = run_task(spec(f, "dot", xcoms={"add1": add1, "add2": add2}, **base))
    assert (add1["return_value"], add2["return_value"], dot["xcom"]["return_value"]) == (3, 4, 12)


def test_example_branch_picks_by_minute():
    f = load_example("example_branch")
    s = spec(f, "condition", dag_id="example_branch", params={})
    assert run_task(s)["branch"] == ["dummy_task_1"]
    s["context"]["logical_date"] = "2024-06-01T12:01:00+00:00"
    assert run_task(s)["branch"] == ["dummy_task_2"]


def test_example_taskflow_chain():
    f = load_example("example_taskflow")
    base = dict(dag_id="example_taskflow", params={})
    extracted = run_task(spec(f, "extract", **base))["xcom"]
    transformed = run_task(spec(f, "transform", xcoms={"extract": extracted}, **base))["xcom"]
    assert transformed["return_value"] == {"total_value": 1236.7, "count": 3}
    loaded = run_task(spec(f, "load", xcoms={"extract": extracted, "transform": transformed}, **base))
    assert loaded["xcom"]["return_value"] == "2024-06-01: 3 orders, total 1236.70"


def test_example_pipeline_flaky_step_fails_only_on_first_try():
    f = load_example("example_pipeline")
    from flow.dagbag import load_file
    from flow.serialize import serialize_dag

    (d,), _ = load_file(f)
    task = next(t for t in serialize_dag(d)["tasks"] if t["task_id"] == "flaky_fetch")
    s = spec(f, "flaky_fetch", dag_id="example_pipeline", params=d.params)
    s.update(bash_command=task["bash_command"], env=task["env"], cwd=task["cwd"])
    first, _, _ = render_bash(s)
    s["try_number"] = s["context"]["try_number"] = 2
    second, _, _ = render_bash(s)
    assert '[ "1" -lt 2 ]' in first and '[ "2" -lt 2 ]' in second
    summary = run_task(spec(f, "summary", dag_id="example_pipeline", params=d.params,
                            xcoms={"count_rows": {"return_value": "3"}, "validate": {"return_value": "ok"}}))
    assert json.dumps(summary["xcom"]) == '{"return_value": "orders 2024-06-01: 3 rows, validation ok"}'
