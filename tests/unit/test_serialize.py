"""The serialized DAG: the exact shape of docs/design.md section 1, JSON round trip, order and kind."""

from __future__ import annotations

import json
from datetime import timedelta

import pendulum
import pytest

from flow import DAG, task
from flow.dag import CycleError, DagDefinitionError
from flow.operators import (
    BashOperator,
    BranchPythonOperator,
    EmptyOperator,
    PythonOperator,
    ShortCircuitOperator,
)
from flow.plantypes import DagDef
from flow.serialize import serialize_dag

DAG_KEYS = [
    "dag_id", "fileloc", "schedule", "schedule_interval_seconds", "timezone", "start_date", "end_date",
    "catchup", "is_paused_upon_creation", "tags", "owner", "description", "doc_md", "params",
    "max_active_runs", "max_active_tasks", "dagrun_timeout", "has_on_success_callback",
    "has_on_failure_callback", "tasks", "params_schema", "display_name", "edge_labels", "warnings",
    "create_cron_data_intervals",
]
TASK_KEYS = [
    "task_id", "operator", "kind", "upstream", "downstream", "trigger_rule", "retries", "retry_delay",
    "retry_exponential_backoff", "max_retry_delay", "execution_timeout", "memory_limit", "cpu_time_limit",
    "depends_on_past", "priority_weight", "owner", "do_xcom_push", "is_branch", "is_short_circuit", "bash_command", "env",
    "append_env", "cwd", "callable", "has_on_success_callback", "has_on_failure_callback",
    "has_on_retry_callback", "email", "email_on_failure", "email_on_retry", "notify_on_failure",
    "notify_on_retry", "notify_on_success", "doc", "extra", "display_name",
]


def notify(context):
    return None


def compute():
    return 1


def build() -> DAG:
    with DAG(
        "shape",
        schedule="0 9 * * *",
        start_date=pendulum.datetime(2024, 1, 1, tz="Europe/Berlin"),
        end_date=pendulum.datetime(2025, 1, 1, tz="Europe/Berlin"),
        catchup=True,
        tags=["a", "b"],
        description="desc",
        doc_md="# doc",
        params={"n": 1, "names": ["x"]},
        max_active_runs=2,
        max_active_tasks=3,
        dagrun_timeout=timedelta(hours=1),
        on_failure_callback=notify,
        is_paused_upon_creation=False,
        default_args={"owner": "team"},
    ) as d:
        join = EmptyOperator(task_id="join", trigger_rule="none_failed_min_one_success")
        bash = BashOperator(
            task_id="bash", bash_command="echo {{ ds }}", env={"A": "{{ ds }}"}, append_env=True, cwd="/tmp",
            retries=2, retry_delay=timedelta(seconds=30), retry_exponential_backoff=True,
            max_retry_delay=timedelta(minutes=10), execution_timeout=timedelta(seconds=90),
            depends_on_past=True, priority_weight=5, on_retry_callback=notify, doc_md="runs bash",
            owner="alice",
        )
        py = PythonOperator(task_id="py", python_callable=compute, do_xcom_push=False, on_success_callback=[notify])
        br = BranchPythonOperator(task_id="br", python_callable=compute)
        sc = ShortCircuitOperator(task_id="sc", python_callable=compute)
        br >> [bash, py] >> join
        sc >> br
    return d


def test_exact_shape_and_json_round_trip():
    data = serialize_dag(build())
    assert list(data) == DAG_KEYS
    assert json.loads(json.dumps(data)) == data
    for t in data["tasks"]:
        assert list(t) == TASK_KEYS
    assert data["schedule"] == "0 9 * * *" and data["schedule_interval_seconds"] is None
    assert data["timezone"] == "Europe/Berlin"
    assert data["start_date"] == "2023-12-31T23:00:00+00:00"
    assert data["end_date"] == "2024-12-31T23:00:00+00:00"
    assert data["catchup"] is True and data["is_paused_upon_creation"] is False
    assert data["tags"] == ["a", "b"] and data["description"] == "desc" and data["doc_md"] == "# doc"
    assert data["params"] == {"n": 1, "names": ["x"]}
    assert (data["max_active_runs"], data["max_active_tasks"], data["dagrun_timeout"]) == (2, 3, 3600.0)
    assert data["has_on_failure_callback"] is True and data["has_on_success_callback"] is False
    assert data["owner"] == "alice, team"
    assert data["fileloc"] == __file__


def test_task_fields():
    tasks = {t["task_id"]: t for t in serialize_dag(build())["tasks"]}
    bash = tasks["bash"]
    assert bash["kind"] == "bash" and bash["operator"] == "BashOperator"
    assert bash["bash_command"] == "echo {{ ds }}" and bash["env"] == {"A": "{{ ds }}"}
    assert bash["append_env"] is True and bash["cwd"] == "/tmp"
    assert (bash["retries"], bash["retry_delay"], bash["max_retry_delay"], bash["execution_timeout"]) == (2, 30.0, 600.0, 90.0)
    assert bash["retry_exponential_backoff"] is True and bash["depends_on_past"] is True
    assert bash["priority_weight"] == 5 and bash["owner"] == "alice" and bash["doc"] == "runs bash"
    assert bash["has_on_retry_callback"] is True and bash["callable"] is None
    py = tasks["py"]
    assert py["kind"] == "python" and py["callable"].endswith("test_serialize.compute")
    assert py["do_xcom_push"] is False and py["has_on_success_callback"] is True and py["bash_command"] is None
    assert tasks["join"]["kind"] == "empty" and tasks["join"]["trigger_rule"] == "none_failed_min_one_success"
    assert tasks["br"]["is_branch"] is True and tasks["sc"]["is_short_circuit"] is True
    assert tasks["br"]["upstream"] == ["sc"] and tasks["br"]["downstream"] == ["bash", "py"]
    assert tasks["join"]["upstream"] == ["bash", "py"]


def test_topological_order_ties_in_definition_order():
    order = [t["task_id"] for t in serialize_dag(build())["tasks"]]
    assert order == ["sc", "br", "bash", "py", "join"]


def test_serialized_form_feeds_the_planner():
    dag_def = DagDef.from_serialized(serialize_dag(build()))
    assert list(dag_def.tasks) == ["sc", "br", "bash", "py", "join"]
    assert dag_def.tasks["join"].kind == "empty" and dag_def.leaves == ("join",)


def test_kind_follows_execute_overrides():
    class LoudBash(BashOperator):
        def execute(self, context):
            return "python decides"

    class TemplatedBash(BashOperator):
        template_fields = ("bash_command",)

    class Busy(EmptyOperator):
        def execute(self, context):
            return 1

    with DAG("kinds") as d:
        LoudBash(task_id="loud", bash_command="echo")
        TemplatedBash(task_id="templated", bash_command="echo")
        Busy(task_id="busy")
    kinds = {t["task_id"]: t["kind"] for t in serialize_dag(d)["tasks"]}
    assert kinds == {"loud": "python", "templated": "bash", "busy": "python"}


def test_timedelta_schedule_and_taskflow_callable():
    @task
    def hello():
        """Says hello."""
        return "hi"

    with DAG("delta", schedule=timedelta(minutes=30)) as d:
        hello()
    data = serialize_dag(d)
    assert data["schedule"] is None and data["schedule_interval_seconds"] == 1800.0
    t = data["tasks"][0]
    assert t["operator"] == "@task" and t["kind"] == "python"
    assert t["callable"].endswith("hello") and t["doc"] == "Says hello."


def test_cycle_and_non_json_params_fail_serialization():
    with DAG("cyc") as d:
        a, b = EmptyOperator(task_id="a"), EmptyOperator(task_id="b")
        a >> b >> a
    with pytest.raises(CycleError, match="a -> b -> a"):
        serialize_dag(d)
    bad = DAG("badparams", params={"when": object()})
    with pytest.raises(DagDefinitionError, match="DAG 'badparams': params must be JSON-serialisable"):
        serialize_dag(bad)
