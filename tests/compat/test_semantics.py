"""Airflow semantics through a real engine and real task processes: what used to go silently wrong.

One DAG file holds a DAG per behaviour; one engine runs them all, so the file stays fast.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.integration.conftest import flow_cli, make_engine, run_until_idle, write_dag

WHEN = datetime(2026, 1, 1, tzinfo=UTC)

SOURCE = '''
import json
import logging
import pendulum
from airflow import DAG
from airflow.decorators import task
from airflow.exceptions import AirflowFailException, AirflowSkipException
from airflow.models.param import Param
from airflow.models.variable import Variable
from airflow.models.xcom_arg import XComArg
from airflow.operators.bash import BashOperator
from airflow.operators.empty import EmptyOperator
from airflow.operators.latest_only import LatestOnlyOperator
from airflow.operators.python import PythonOperator, ShortCircuitOperator, get_current_context
from airflow.utils.edgemodifier import Label
from airflow.utils.trigger_rule import TriggerRule

start = pendulum.datetime(2025, 1, 1, tz="UTC")

with DAG("xcom_templates", start_date=start, schedule=None):
    push = BashOperator(task_id="push", bash_command='echo "{{ ti.xcom_push(key="manual", value="pushed") }}" && echo last')
    pull = BashOperator(task_id="pull", bash_command="echo \\"got=$MANUAL/$RET\\"",
                        env={"MANUAL": str(XComArg(push, key="manual")), "RET": f"{XComArg(push)}"})
    push >> pull

    @task
    def check(ti=None):
        assert ti.xcom_pull(task_ids="push", key="manual") == "pushed"
        assert ti.xcom_pull(task_ids="pull") == "got=pushed/last", ti.xcom_pull(task_ids="pull")

    pull >> check()

with DAG("skips", start_date=start, schedule=None):
    def _skip():
        raise AirflowSkipException("nothing to do today")

    def _fail():
        raise AirflowFailException("bad input, retrying will not help")

    skipper = PythonOperator(task_id="skipper", python_callable=_skip)
    after_skip = EmptyOperator(task_id="after_skip")
    skipper >> after_skip
    PythonOperator(task_id="fail_now", python_callable=_fail, retries=3)
    BashOperator(task_id="exit_99", bash_command="exit 99")
    BashOperator(task_id="exit_3", bash_command="exit 3", skip_on_exit_code=[3, 4])
    BashOperator(task_id="exit_1", bash_command="exit 1")

with DAG("short_circuit", start_date=start, schedule=None):
    sc = ShortCircuitOperator(task_id="sc", python_callable=lambda: False, ignore_downstream_trigger_rules=False)
    direct = EmptyOperator(task_id="direct")
    done = EmptyOperator(task_id="done", trigger_rule=TriggerRule.ALL_DONE)
    sc >> direct >> done

with DAG("params_vars", start_date=start, schedule=None,
         params={"n": Param(3, type="integer", minimum=1), "who": Param("x", enum=["x", "y"])}):
    def _use(params, **context):
        assert params == {"n": 3, "who": "x"}, params
        assert Variable.get("colour") == "blue"
        assert Variable.get("missing", default_var="dflt") == "dflt"
        assert get_current_context()["ti"].task_id == "use"
        logging.getLogger("mine").info("logged through logging")
        return context["templates_dict"]["colour"]

    PythonOperator(task_id="use", python_callable=_use, templates_dict={"colour": "{{ var.value.colour }}"})

with DAG("bad_param", start_date=start, schedule=None, params={"n": Param(0, type="integer", minimum=1)}):
    PythonOperator(task_id="use", python_callable=lambda: None)

with DAG("latest_and_labels", start_date=start, schedule="@daily"):
    latest = LatestOnlyOperator(task_id="latest")
    after = EmptyOperator(task_id="after")
    latest >> Label("only the newest") >> after

with DAG("bash_json", start_date=start, schedule=None):
    produce = BashOperator(task_id="produce", bash_command="echo '{\\"a\\": 1, \\"b\\": [2]}'",
                           multiple_outputs=True, output_processor=json.loads)

    @task
    def consume(ti=None):
        assert ti.xcom_pull(task_ids="produce", key="a") == 1
        assert ti.xcom_pull(task_ids="produce") == {"a": 1, "b": [2]}

    produce >> consume()

with DAG("bash_decorator", start_date=start, schedule=None):
    @task.bash(env={"DAY": "{{ ds }}"}, append_env=True)
    def say(word: str, task_instance_key_str=None) -> str:
        return f'echo "{word} $DAY {task_instance_key_str} {{{{ ds_nodash }}}}"'

    @task.bash
    def skip_me() -> str:
        return "exit 99"

    @task.bash
    def broken() -> str:
        return "exit 2"

    said = say("hi")
    said >> skip_me()
    broken()

    @task
    def check_said(value):
        assert value == "hi 2026-01-01 bash_decorator__say__20260101 20260101", value

    check_said(said)

with DAG("external_python", start_date=start, schedule=None):
    import sys as _sys
    from airflow.operators.python import ExternalPythonOperator

    def add(a, b):
        import sys
        print("in", sys.executable)
        return {"sum": a + b}

    ExternalPythonOperator(task_id="ext", python=_sys.executable, python_callable=add, op_args=[1, 2])
    ExternalPythonOperator(task_id="no_python", python="/nonexistent/bin/python", python_callable=add)

    @task.external_python(python=_sys.executable)
    def times(x):
        return x * 3

    times(5)
'''


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    from flow.daemon.config import load_settings

    tmp = tmp_path_factory.mktemp("semantics")
    (tmp / "dags").mkdir()
    settings = load_settings(
        {"dags_folder": str(tmp / "dags"), "db_url": f"sqlite:///{tmp / 'flow.db'}",
         "log_folder": str(tmp / "logs"), "default_timezone": "UTC"},
        config_file=tmp / "absent.toml",
    )
    write_dag(settings, "semantics.py", SOURCE)
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_VAR_COLOUR", "blue")
    try:
        engine = make_engine(settings)
        assert engine.store.import_errors() == []
        keys = {d: engine.trigger(d, logical_date=WHEN, unpause_run=True)["key"] for d in
                ("xcom_templates", "skips", "short_circuit", "params_vars", "latest_and_labels",
                 "bash_json", "bash_decorator", "external_python")}
        run_until_idle(engine, timeout=120)
    finally:
        mp.undo()
    return engine, keys, settings


def states(finished, dag_id: str) -> dict[str, tuple[str, int, str | None]]:
    engine, keys, _ = finished
    return {t["task_id"]: (t["state"], t["try_number"], t.get("error")) for t in engine.store.task_instances(keys[dag_id])}


def xcoms(finished, dag_id: str, task_id: str) -> dict:
    engine, keys, _ = finished
    return engine.store.xcoms(keys[dag_id]).get(task_id, {})


def test_template_xcom_push_is_stored_and_str_xcomarg_pulls(finished):
    got = states(finished, "xcom_templates")
    assert {t: s[0] for t, s in got.items()} == {"push": "success", "pull": "success", "check": "success"}, got


def test_skip_and_fail_exceptions_and_exit_codes(finished):
    got = states(finished, "skips")
    assert got["skipper"][0] == "skipped" and got["after_skip"][0] == "skipped"
    assert got["fail_now"][:2] == ("failed", 1), got["fail_now"]  # no retries after AirflowFailException
    assert "AirflowFailException: bad input" in (got["fail_now"][2] or "")
    assert got["exit_99"][0] == "skipped" and got["exit_3"][0] == "skipped"
    assert got["exit_1"][0] == "failed"


def test_short_circuit_respecting_downstream_trigger_rules(finished):
    got = {t: s[0] for t, s in states(finished, "short_circuit").items()}
    assert got == {"sc": "success", "direct": "skipped", "done": "success"}


def test_params_variables_context_and_logging(finished):
    got = states(finished, "params_vars")
    assert got["use"][0] == "success", got
    engine, keys, settings = finished
    run = engine.store.run_by_key(keys["params_vars"])
    from flow.daemon.specs import log_path

    text = open(log_path(settings.log_folder, "params_vars", run["run_id"], "use", 1)).read()
    assert "logged through logging" in text and "mine" in text and "INFO" in text
    assert xcoms(finished, "params_vars", "use") == {"return_value": "blue"}


def test_param_validation_at_trigger_names_the_param(finished):
    from flow.daemon.ops import EngineError

    engine, _, _ = finished
    with pytest.raises(EngineError, match=r"DAG 'bad_param': param 'n': invalid value 0: 0 is less than the minimum"):
        engine.trigger("bad_param", logical_date=WHEN)
    with pytest.raises(EngineError, match=r"param 'who': invalid value 'z': 'z' is not one of \['x', 'y'\]"):
        engine.trigger("params_vars", conf={"who": "z"}, logical_date=WHEN)
    assert engine.trigger("bad_param", conf={"n": 2}, logical_date=WHEN)["state"] == "queued"


def test_latest_only_lets_a_manual_run_through_and_labels_are_serialized(finished):
    got = {t: s[0] for t, s in states(finished, "latest_and_labels").items()}
    assert got == {"latest": "success", "after": "success"}
    engine, _, _ = finished
    assert engine.dags["latest_and_labels"]["edge_labels"] == [["latest", "after", "only the newest"]]


def test_bash_multiple_outputs_with_json_output_processor(finished):
    assert {t: s[0] for t, s in states(finished, "bash_json").items()} == {"produce": "success", "consume": "success"}
    assert xcoms(finished, "bash_json", "produce") == {"return_value": {"a": 1, "b": [2]}, "a": 1, "b": [2]}


def test_list_import_errors_shows_warnings_without_failing(settings):
    write_dag(settings, "sla.py", """
        import datetime
        from airflow import DAG
        from airflow.operators.empty import EmptyOperator
        with DAG("with_sla", schedule=None):
            EmptyOperator(task_id="t", sla=datetime.timedelta(hours=1))
    """)
    res = flow_cli(settings, "dags", "list-import-errors")
    assert res.returncode == 0, res.stderr
    assert "warning: " in res.stdout and "task 't': sla is accepted but not enforced by flow" in res.stdout
    write_dag(settings, "broken.py", "from airflow.sdk import TaskGroup\n")
    res = flow_cli(settings, "dags", "list-import-errors", "--json")
    assert res.returncode == 1
    assert '"kind": "error"' in res.stdout and '"kind": "warning"' in res.stdout


def test_task_bash_runs_the_returned_command(finished):
    got = states(finished, "bash_decorator")
    assert {t: s[0] for t, s in got.items()} == {"say": "success", "skip_me": "skipped", "broken": "failed",
                                                 "check_said": "success"}, got
    assert got["broken"][2] == "exit status 2"


def test_external_python_runs_the_function_in_that_interpreter(finished):
    got = states(finished, "external_python")
    assert got["ext"][0] == "success" and got["times"][0] == "success", got
    assert xcoms(finished, "external_python", "ext") == {"return_value": {"sum": 3}}
    assert xcoms(finished, "external_python", "times") == {"return_value": 15}
    state, _, error = got["no_python"]
    assert state == "failed" and "the interpreter /nonexistent/bin/python does not exist" in error, error
