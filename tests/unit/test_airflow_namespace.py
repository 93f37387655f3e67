"""The ``airflow`` import namespace: present in flow's processes, the same objects, clear errors, no shadowing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import flow
from flow.compat import hook
from flow.dagbag import load_file
from flow.exceptions import NotSupportedByFlow


@pytest.fixture
def airflow_names():
    hook.install()
    yield
    hook.uninstall()


def test_airflow_names_are_flow_objects(airflow_names):
    import airflow
    from airflow.decorators import task
    from airflow.models.baseoperator import chain
    from airflow.operators.bash import BashOperator
    from airflow.operators.dummy import DummyOperator
    from airflow.operators.python_operator import PythonOperator
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, Label, Param, Variable, XComArg
    from airflow.utils.dates import days_ago
    from airflow.utils.trigger_rule import TriggerRule

    import flow.operators as ops

    assert airflow.DAG is flow.DAG is DAG
    assert BashOperator is ops.BashOperator and PythonOperator is ops.PythonOperator
    assert EmptyOperator is ops.EmptyOperator and DummyOperator is ops.EmptyOperator
    assert task is flow.task and chain is flow.chain and XComArg is flow.XComArg
    assert TriggerRule.ALL_DONE == "all_done"
    assert Label("x").label == "x" and Param(3).value == 3 and Variable.get("nope", "d") == "d"
    assert days_ago(1).hour == 0


def test_unsupported_name_fails_with_the_feature(airflow_names):
    with pytest.raises(NotSupportedByFlow, match=r"airflow\.sdk\.TaskGroup: flow does not support task groups"):
        from airflow.sdk import TaskGroup  # noqa: F401
    with pytest.raises(NotSupportedByFlow, match="flow does not support 'Nonsense'"):
        from airflow.sdk import Nonsense  # noqa: F401
    with pytest.raises(NotSupportedByFlow, match="import airflow.providers.cncf: flow does not support Kubernetes"):
        import airflow.providers.cncf.kubernetes.operators.pod  # noqa: F401
    with pytest.raises(NotSupportedByFlow, match="sensors"):
        import airflow.sensors.bash  # noqa: F401


def test_a_dag_file_with_an_unsupported_import_names_file_line_and_feature(tmp_path: Path):
    path = tmp_path / "groups.py"
    path.write_text("import pendulum\nfrom airflow.sdk import DAG\nfrom airflow.utils.task_group import TaskGroup\n")
    dags, error = load_file(str(path))
    assert dags == [] and error is not None
    assert error.message == (f"{path}:3: NotSupportedByFlow: airflow.utils.task_group.TaskGroup: flow does not "
                             "support task groups (not yet supported by flow; set dependencies between the tasks "
                             "directly)")


def test_airflow_arguments_are_accepted_and_sla_warns(tmp_path: Path):
    path = tmp_path / "args.py"
    path.write_text(textwrap.dedent("""
        import datetime
        from airflow import DAG
        from airflow.operators.bash import BashOperator
        with DAG("args", dag_display_name="Nice name", owner_links={"a": "https://x"}, access_control={},
                 render_template_as_native_obj=False, is_paused_upon_creation=True, schedule_interval="@daily",
                 doc_md="doc", start_date=datetime.datetime(2026, 1, 1)) as dag:
            BashOperator(task_id="t", bash_command="true", task_display_name="T!", provide_context=True,
                         pool="p", queue="q", sla=datetime.timedelta(hours=1), doc_rst="x")
    """))
    dags, error = load_file(str(path))
    assert error is None, error
    (dag,) = dags
    assert dag.dag_display_name == "Nice name" and dag.task_dict["t"].task_display_name == "T!"
    assert dag.warnings == ["DAG 'args': task 't': sla is accepted but not enforced by flow"]


def test_sla_in_default_args_warns_too(tmp_path: Path):
    path = tmp_path / "sla.py"
    path.write_text("import datetime\nfrom airflow import DAG\nfrom airflow.operators.empty import EmptyOperator\n"
                    "with DAG('s', default_args={'sla': datetime.timedelta(hours=2), 'pool': 'x'}):\n"
                    "    EmptyOperator(task_id='a')\n")
    dags, error = load_file(str(path))
    assert error is None, error
    assert dags[0].warnings == ["DAG 's': task 'a': sla is accepted but not enforced by flow"]


def test_outside_flow_a_real_airflow_is_not_shadowed(tmp_path: Path):
    """A package named airflow on sys.path wins after `import flow`; inside load_file flow's names win."""
    fake = tmp_path / "site" / "airflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("REAL = True\n")
    dag_file = tmp_path / "dags" / "d.py"
    dag_file.parent.mkdir()
    dag_file.write_text("import flow\nfrom airflow import DAG\nassert DAG is flow.DAG\nDAG('d')\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path / 'site')!r})
        import flow, flow.dagbag, flow.runtime
        import airflow
        assert airflow.REAL, "flow shadowed a real airflow"
        dags, error = flow.dagbag.load_file({str(dag_file)!r})
        assert error is None, error.message
        assert [d.dag_id for d in dags] == ["d"]
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_str_of_xcomarg_is_airflows_pull_template(airflow_names):
    from airflow.operators.bash import BashOperator
    from airflow.sdk import DAG

    with DAG("d"):
        push = BashOperator(task_id="push", bash_command="echo 1")
    arg = flow.XComArg(push, key="k")
    assert str(arg) == "{{ task_instance.xcom_pull(task_ids='push', dag_id='d', key='k') }}"
    assert f"v={flow.XComArg(push)}" == "v={{ task_instance.xcom_pull(task_ids='push', dag_id='d', key='return_value') }}"


@pytest.mark.parametrize("hour,inside", [(10, False), (15, True), (23, True), (0, False)])
def test_branch_datetime_with_an_upper_bound_past_midnight(hour, inside):
    import datetime as dt

    import pendulum

    from flow.operators.weekday import BranchDateTimeOperator

    with flow.DAG("b"):
        op = BranchDateTimeOperator(task_id="b", follow_task_ids_if_true="yes", follow_task_ids_if_false="no",
                                    target_lower=dt.time(15), target_upper=dt.time(0), use_task_logical_date=True)
    when = pendulum.datetime(2026, 3, 4, hour, 30, tz="UTC")
    assert op.choose_branch({"logical_date": when, "dag": op.dag}) == (["yes"] if inside else ["no"])


def test_branch_day_of_week_by_logical_date():
    import pendulum

    from flow.operators.weekday import BranchDayOfWeekOperator, WeekDay

    with flow.DAG("w"):
        op = BranchDayOfWeekOperator(task_id="w", follow_task_ids_if_true="end", follow_task_ids_if_false="mid",
                                     week_day={WeekDay.SATURDAY, "sunday"}, use_task_logical_date=True)
    assert op.choose_branch({"logical_date": pendulum.datetime(2026, 12, 5, tz="UTC")}) == ["end"]  # a Saturday
    assert op.choose_branch({"logical_date": pendulum.datetime(2026, 12, 7, tz="UTC")}) == ["mid"]  # a Monday
    with pytest.raises(AttributeError, match="Invalid Week Day"):
        WeekDay.get_weekday_number("Funday")


def test_airflow_1_custom_operator_with_apply_defaults(tmp_path: Path):
    path = tmp_path / "custom.py"
    path.write_text(textwrap.dedent("""
        from airflow import DAG
        from airflow.models import BaseOperator
        from airflow.utils.decorators import apply_defaults
        from airflow.utils.dates import days_ago

        class Hello(BaseOperator):
            template_fields = ("name",)

            @apply_defaults
            def __init__(self, name, **kwargs):
                super().__init__(**kwargs)
                self.name = name

            def execute(self, context):
                return f"hello {self.name}"

        with DAG("custom", start_date=days_ago(1), schedule_interval="@daily", default_args={"retries": 2}):
            Hello(task_id="hi", name="{{ ds }}")
    """))
    dags, error = load_file(str(path))
    assert error is None, error
    assert dags[0].task_dict["hi"].retries == 2
