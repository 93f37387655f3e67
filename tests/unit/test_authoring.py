"""Declaring DAGs and tasks: the three styles, default_args, dependencies and definition-time errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pendulum
import pytest

from flow import DAG, XComArg, chain, cross_downstream, dag, task
from flow.dag import CycleError, DagDefinitionError, DuplicateTaskIdError
from flow.operators import (
    BaseOperator,
    BashOperator,
    BranchPythonOperator,
    DummyOperator,
    EmptyOperator,
    PythonOperator,
    ShortCircuitOperator,
    TriggerRule,
)
from flow.schedule import ScheduleError


def ids(tasks) -> list[str]:
    return sorted(t.task_id for t in tasks)


def test_with_block_collects_tasks_and_links_them():
    with DAG("styles_with", schedule="@daily") as d:
        a = EmptyOperator(task_id="a")
        b = BashOperator(task_id="b", bash_command="echo hi")
        a >> b
    assert d.task_ids == ["a", "b"]
    assert a.dag is d and b.dag is d
    assert list(b.upstream_task_ids) == ["a"]
    assert list(a.downstream_task_ids) == ["b"]


def test_dag_passed_as_argument():
    d = DAG("styles_arg")
    a = EmptyOperator(task_id="a", dag=d)
    b = EmptyOperator(task_id="b", dag=d)
    b.set_upstream(a)
    assert d.task_ids == ["a", "b"] and list(a.downstream_task_ids) == ["b"]


def test_dag_decorator_builds_dag_with_params_from_signature():
    @dag(schedule=None, tags=["t"])
    def my_pipeline(size: int = 3, name: str = "x"):
        """Docs for the pipeline."""
        EmptyOperator(task_id="only")

    built = my_pipeline()
    assert isinstance(built, DAG)
    assert built.dag_id == "my_pipeline"
    assert built.params == {"size": 3, "name": "x"}
    assert built.doc_md == "Docs for the pipeline."
    assert built.task_ids == ["only"]
    assert my_pipeline(size=5).params["size"] == 5


def test_dag_decorator_with_explicit_id_and_params_without_default_rejected():
    @dag("explicit_id")
    def f():
        pass

    assert f().dag_id == "explicit_id"

    @dag()
    def g(x):
        pass

    with pytest.raises(TypeError, match="parameter 'x' needs a default"):
        g()


def test_operator_outside_dag_joins_the_dag_of_its_neighbour():
    with DAG("late_join") as d:
        a = EmptyOperator(task_id="a")
    b = EmptyOperator(task_id="b")
    assert b.dag is None
    a >> b
    assert b.dag is d and d.task_ids == ["a", "b"]


def test_default_args_fill_unset_arguments_only():
    args = {"owner": "ops", "retries": 3, "retry_delay": timedelta(seconds=7), "email": "x@y", "bash_command": "no"}
    with DAG("defaults", default_args=args):
        a = EmptyOperator(task_id="a")
        b = EmptyOperator(task_id="b", retries=0, owner="me")
        c = BashOperator(task_id="c", bash_command="echo c")
        p = PythonOperator(task_id="p", python_callable=print)
    assert (a.owner, a.retries, a.retry_delay) == ("ops", 3, 7.0)
    assert (b.owner, b.retries) == ("me", 0)
    assert c.bash_command == "echo c"
    assert p.retries == 3


def test_default_args_start_date_becomes_dag_start_date():
    d = DAG("defaults_start", default_args={"start_date": pendulum.datetime(2024, 5, 1, tz="Europe/Berlin")})
    assert d.timezone == "Europe/Berlin"
    assert d.start_date == datetime(2024, 4, 30, 22, 0, tzinfo=UTC)


def test_rshift_lshift_with_lists_and_chain():
    with DAG("deps") as d:
        a, b, c, e, f = (EmptyOperator(task_id=n) for n in "abcef")
        result = a >> [b, c]
        [b, c] >> e
        f << e
    assert result == [b, c]
    assert ids(a.downstream_list) == ["b", "c"]
    assert ids(e.upstream_list) == ["b", "c"]
    assert list(f.upstream_task_ids) == ["e"]
    assert [t.task_id for t in d.topological_sort()] == ["a", "b", "c", "e", "f"]


def test_chain_pairs_adjacent_lists_and_fans_out():
    with DAG("chains"):
        t = {n: EmptyOperator(task_id=n) for n in ["a", "b1", "b2", "c1", "c2", "d"]}
        chain(t["a"], [t["b1"], t["b2"]], [t["c1"], t["c2"]], t["d"])
    assert ids(t["a"].downstream_list) == ["b1", "b2"]
    assert list(t["c1"].upstream_task_ids) == ["b1"]
    assert list(t["c2"].upstream_task_ids) == ["b2"]
    assert ids(t["d"].upstream_list) == ["c1", "c2"]


def test_chain_rejects_lists_of_different_length():
    with DAG("chains_bad"):
        a, b, c = (EmptyOperator(task_id=n) for n in "abc")
        with pytest.raises(DagDefinitionError, match="same length"):
            chain([a, b], [c])


def test_cross_downstream():
    with DAG("cross"):
        a, b, c, e = (EmptyOperator(task_id=n) for n in "abce")
        cross_downstream([a, b], [c, e])
    assert ids(c.upstream_list) == ["a", "b"] and ids(e.upstream_list) == ["a", "b"]


def test_duplicate_task_id_names_dag_and_task():
    with DAG("dups"):
        EmptyOperator(task_id="same")
        with pytest.raises(DuplicateTaskIdError, match="DAG 'dups': task id 'same' is already used"):
            EmptyOperator(task_id="same")


def test_cycle_is_reported_with_its_path():
    with DAG("cyclic") as d:
        a, b, c = (EmptyOperator(task_id=n) for n in "abc")
        a >> b >> c >> a
    with pytest.raises(CycleError, match=r"DAG 'cyclic' has a cycle: a -> b -> c -> a"):
        d.validate()


def test_self_dependency_rejected_at_once():
    with DAG("selfdep"):
        a = EmptyOperator(task_id="a")
        with pytest.raises(DagDefinitionError, match="cannot depend on itself"):
            a >> a


def test_cross_dag_link_rejected():
    a = EmptyOperator(task_id="a", dag=DAG("one"))
    b = EmptyOperator(task_id="b", dag=DAG("two"))
    with pytest.raises(DagDefinitionError, match="tasks must share a DAG"):
        a >> b


def test_bad_trigger_rule_names_dag_task_and_choices():
    with DAG("rules"):
        ok = EmptyOperator(task_id="ok", trigger_rule=TriggerRule.ONE_FAILED)
        with pytest.raises(DagDefinitionError, match=r"DAG 'rules', EmptyOperator 'bad': invalid trigger_rule 'all_sucess'"):
            EmptyOperator(task_id="bad", trigger_rule="all_sucess")
    assert ok.trigger_rule == "one_failed"


def test_trigger_rules_match_the_planner():
    from flow.operators.base import TRIGGER_RULES
    from flow.triggerrules import TRIGGER_RULES as PLANNER_RULES

    assert TRIGGER_RULES == set(PLANNER_RULES)


def test_unknown_keyword_names_operator_and_argument():
    with DAG("kw"):
        with pytest.raises(TypeError, match=r"DAG 'kw', BashOperator 't'.*bash_command.*unexpected: bash_comand"):
            BashOperator(task_id="t", bash_comand="echo")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match=r"DAG 'kw', BashOperator 'u': unexpected argument\(s\) colour"):
            BashOperator(task_id="u", bash_command="echo", colour="red")  # type: ignore[call-arg]


def test_unknown_dag_argument_and_positional_operator_args():
    with pytest.raises(TypeError, match="no_such_argument"):
        DAG("x", no_such_argument=3)
    with pytest.raises(TypeError, match="pass arguments by keyword"):
        EmptyOperator("t")  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"retries": "3"}, "retries must be an int"),
        ({"retry_delay": "5m"}, "retry_delay must be a timedelta"),
        ({"execution_timeout": -1}, "execution_timeout must be positive"),
        ({"priority_weight": 1.5}, "priority_weight must be an int"),
        ({"on_failure_callback": "notify"}, "on_failure_callback must be a callable"),
        ({"task_id": "has space"}, "task_id 'has space' must be"),
    ],
)
def test_bad_task_argument_types(kwargs, match):
    with DAG("types"):
        with pytest.raises((TypeError, DagDefinitionError), match=match):
            EmptyOperator(**{"task_id": "t", **kwargs})


def test_schedule_validation_and_alias():
    with pytest.raises(ScheduleError, match="DAG 'badcron'.*61 \\* \\* \\* \\*"):
        DAG("badcron", schedule="61 * * * *")
    with pytest.raises(DagDefinitionError, match="not both"):
        DAG("both", schedule="@daily", schedule_interval="@hourly")
    with pytest.raises(TypeError, match="schedule must be"):
        DAG("wrongtype", schedule=5)
    assert DAG("alias", schedule_interval="@hourly").schedule == "@hourly"
    assert DAG("delta", schedule=timedelta(hours=2)).schedule_interval == timedelta(hours=2)
    assert DAG("none").schedule is None


def test_timezone_from_aware_start_date_else_environment(monkeypatch):
    assert DAG("tz1", start_date=pendulum.datetime(2024, 1, 1, tz="America/New_York")).timezone == "America/New_York"
    assert DAG("tz2", start_date=datetime(2024, 1, 1, tzinfo=UTC)).timezone == "UTC"
    fixed = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    assert DAG("tz3", start_date=fixed).timezone == "Etc/GMT-2"
    monkeypatch.setenv("FLOW_DEFAULT_TIMEZONE", "Asia/Tokyo")
    naive = DAG("tz4", start_date=datetime(2024, 1, 1, 9, 0))
    assert naive.timezone == "Asia/Tokyo"
    assert naive.start_date == datetime(2024, 1, 1, 0, 0, tzinfo=UTC)
    monkeypatch.setenv("FLOW_DEFAULT_TIMEZONE", "Mars/Olympus")
    with pytest.raises(DagDefinitionError, match="FLOW_DEFAULT_TIMEZONE='Mars/Olympus'"):
        DAG("tz5")


def test_custom_operator_subclass():
    class Greet(BaseOperator):
        template_fields = ("name",)

        def __init__(self, *, name: str, **kwargs):
            super().__init__(**kwargs)
            self.name = name

        def execute(self, context):
            return f"hello {self.name}"

    with DAG("custom", default_args={"name": "from-defaults"}):
        g = Greet(task_id="g")
    assert g.name == "from-defaults"
    assert g.execute({}) == "hello from-defaults"


def test_operator_aliases_and_flags():
    assert DummyOperator is EmptyOperator
    with DAG("flags"):
        b = BranchPythonOperator(task_id="b", python_callable=lambda: "x")
        s = ShortCircuitOperator(task_id="s", python_callable=lambda: True)
    assert b.is_branch and not b.is_short_circuit
    assert s.is_short_circuit and not s.is_branch


def test_taskflow_wires_dependencies_and_xcomargs():
    @task
    def extract() -> int:
        return 1

    @task(retries=4, task_id="double_it")
    def double(x: int, factor: int = 2) -> int:
        return x * factor

    @task
    def report(a, b):
        return a + b

    with DAG("taskflow") as d:
        e = extract()
        doubled = double(e, factor=e)
        r = report(doubled, b={"nested": [e]})
    assert isinstance(e, XComArg) and e.operator.task_id == "extract"
    assert doubled.operator.task_id == "double_it" and doubled.operator.retries == 4
    assert list(doubled.operator.upstream_task_ids) == ["extract"]
    assert ids(r.operator.upstream_list) == ["double_it", "extract"]
    assert [t.task_id for t in d.topological_sort()] == ["extract", "double_it", "report"]


def test_taskflow_repeated_calls_get_numbered_ids_and_override():
    @task
    def step():
        return None

    with DAG("numbered") as d:
        a = step()
        b = step()
        c = step()
        o = step.override(task_id="custom", retries=2)()
        a >> b >> c
    assert d.task_ids == ["step", "step__1", "step__2", "custom"]
    assert o.operator.retries == 2
    assert list(c.operator.upstream_task_ids) == ["step__1"]


def test_taskflow_branch_short_circuit_and_multiple_outputs():
    @task.branch
    def pick():
        return "a"

    @task.short_circuit()
    def gate():
        return False

    @task
    def split() -> dict[str, int]:
        return {"a": 1}

    @task(multiple_outputs=False)
    def whole() -> dict[str, int]:
        return {"a": 1}

    with DAG("kinds"):
        p, g, s, w = pick(), gate(), split(), whole()
    assert p.operator.is_branch and g.operator.is_short_circuit
    assert s.operator.multiple_outputs is True
    assert w.operator.multiple_outputs is False
    assert s["a"].key == "a" and s["a"].operator is s.operator


def test_taskflow_bad_call_arguments_are_reported_at_definition():
    @task
    def needs_two(a, b):
        return a + b

    @task
    def with_context(x, ti, ds):
        return x

    with DAG("badcall"):
        with pytest.raises(TypeError, match="@task needs_two: missing argument\\(s\\) b"):
            needs_two(1)
        with pytest.raises(TypeError, match="@task needs_two: got an unexpected keyword argument 'c'"):
            needs_two(1, 2, c=3)
        assert with_context(1).operator.task_id == "with_context"


def test_bash_operator_env_must_be_strings():
    with DAG("envs"):
        with pytest.raises(TypeError, match="env must map str to str"):
            BashOperator(task_id="t", bash_command="echo", env={"N": 1})


def test_xcomarg_supports_shift_and_classic_operators_depend_on_it():
    @task
    def produce():
        return "v"

    with DAG("mixed") as d:
        value = produce()
        after = EmptyOperator(task_id="after")
        before = EmptyOperator(task_id="before")
        assert (value >> after) is after
        before >> value
        consumer = PythonOperator(task_id="consumer", python_callable=print, op_kwargs={"v": value})
    assert list(after.upstream_task_ids) == ["produce"]
    assert list(value.operator.upstream_task_ids) == ["before"]
    assert list(consumer.upstream_task_ids) == ["produce"]
    assert [t.task_id for t in d.topological_sort()] == ["before", "produce", "after", "consumer"]
