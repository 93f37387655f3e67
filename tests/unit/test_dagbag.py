"""load_file: collecting DAGs from real files, and import errors as one line naming file and line."""

from __future__ import annotations

import pathlib
import sys
import textwrap

import pytest

from flow.dagbag import load_file
from flow.serialize import serialize_dag

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ["example_branch", "example_xcom", "example_pipeline", "example_taskflow"]


def write(path: pathlib.Path, code: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return str(path)


GOOD = """
from flow import DAG
from flow.operators import EmptyOperator

with DAG("good", schedule="@daily") as dag:
    EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
"""


def test_good_file(tmp_path):
    path = write(tmp_path / "good.py", GOOD)
    dags, error = load_file(path)
    assert error is None
    assert [d.dag_id for d in dags] == ["good"]
    assert dags[0].fileloc == path and dags[0].task_ids == ["a", "b"]


def test_dags_without_assignment_are_collected(tmp_path):
    path = write(tmp_path / "unassigned.py", """
        from flow import DAG, dag, task
        from flow.operators import EmptyOperator

        with DAG("from_with"):
            EmptyOperator(task_id="x")

        def factory(name):
            d = DAG(name)
            EmptyOperator(task_id="y", dag=d)

        for name in ("made_1", "made_2"):
            factory(name)

        @dag
        def decorated():
            @task
            def t():
                return 1
            t()

        decorated()
    """)
    dags, error = load_file(path)
    assert error is None
    assert [d.dag_id for d in dags] == ["from_with", "made_1", "made_2", "decorated"]


def test_syntax_error_is_one_line_with_file_and_line(tmp_path):
    path = write(tmp_path / "broken.py", "from flow import DAG\n\nx = (\n")
    dags, error = load_file(path)
    assert dags == []
    assert error.message == f"{path}:3: SyntaxError: '(' was never closed"
    assert "SyntaxError" in error.traceback


def test_import_error_names_the_line(tmp_path):
    path = write(tmp_path / "missing_dep.py", "import os\nimport definitely_not_a_module_xyz\n")
    dags, error = load_file(path)
    assert dags == []
    assert error.message == f"{path}:2: ModuleNotFoundError: No module named 'definitely_not_a_module_xyz'"
    assert "Traceback" in error.traceback


def test_error_raised_inside_flow_points_at_the_users_line(tmp_path):
    path = write(tmp_path / "dup.py", """
        from flow import DAG
        from flow.operators import EmptyOperator

        with DAG("dup"):
            EmptyOperator(task_id="a")
            EmptyOperator(task_id="a")
    """)
    _, error = load_file(path)
    assert error.message == f"{path}:7: DuplicateTaskIdError: DAG 'dup': task id 'a' is already used"


def test_cycle_is_an_import_error_at_the_dag_line(tmp_path):
    path = write(tmp_path / "cycle.py", """
        from flow import DAG
        from flow.operators import EmptyOperator

        with DAG("cyc") as dag:
            a = EmptyOperator(task_id="a")
            b = EmptyOperator(task_id="b")
            a >> b >> a
    """)
    dags, error = load_file(path)
    assert dags == []
    assert error.message == f"{path}:5: CycleError: DAG 'cyc' has a cycle: a -> b -> a"


def test_same_dag_id_twice_in_one_file(tmp_path):
    path = write(tmp_path / "twice.py", """
        from flow import DAG
        DAG("same")
        DAG("same")
    """)
    dags, error = load_file(path)
    assert dags == []
    assert "DAG id 'same' is declared twice in this file (lines 3 and 4)" in error.message


def test_bad_schedule_and_sys_exit(tmp_path):
    path = write(tmp_path / "badsched.py", 'from flow import DAG\nDAG("s", schedule="every day")\n')
    _, error = load_file(path)
    assert error.message.startswith(f"{path}:2: ScheduleError: DAG 's': ")
    path = write(tmp_path / "exits.py", "import sys\nsys.exit(3)\n")
    _, error = load_file(path)
    assert error.message == f"{path}:2: SystemExit: 3"


def test_unreadable_file(tmp_path):
    dags, error = load_file(str(tmp_path / "nope.py"))
    assert dags == [] and "cannot read DAG file" in error.message


def test_two_files_with_the_same_basename_do_not_collide(tmp_path):
    one = write(tmp_path / "team_a" / "etl.py", GOOD.replace('"good"', '"etl_a"'))
    two = write(tmp_path / "team_b" / "etl.py", GOOD.replace('"good"', '"etl_b"'))
    (d1,), e1 = load_file(one)
    (d2,), e2 = load_file(two)
    assert e1 is None and e2 is None
    assert (d1.dag_id, d2.dag_id) == ("etl_a", "etl_b")
    assert (d1.fileloc, d2.fileloc) == (one, two)


def test_reimport_picks_up_changes_and_helper_modules_in_the_folder(tmp_path):
    write(tmp_path / "helpers_for_reload.py", "TASK = 'from_helper'\n")
    path = write(tmp_path / "reload.py", """
        from flow import DAG
        from flow.operators import EmptyOperator
        from helpers_for_reload import TASK

        with DAG("reload"):
            EmptyOperator(task_id=TASK)
    """)
    (first,), _ = load_file(path)
    assert first.task_ids == ["from_helper"]
    assert str(tmp_path) in sys.path
    text = pathlib.Path(path).read_text().replace("EmptyOperator(task_id=TASK)", "EmptyOperator(task_id='v2')")
    pathlib.Path(path).write_text(text)
    (second,), _ = load_file(path)
    assert second.task_ids == ["v2"]


def test_file_without_dags(tmp_path):
    assert load_file(write(tmp_path / "plain.py", "X = 1\n")) == ([], None)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_dags_load_and_serialize(name):
    dags, error = load_file(str(ROOT / "dags" / f"{name}.py"))
    assert error is None, error
    assert [d.dag_id for d in dags] == [name]
    assert serialize_dag(dags[0])["tasks"]


def test_example_shapes():
    def load(name):
        (d,), _ = load_file(str(ROOT / "dags" / f"{name}.py"))
        return serialize_dag(d)

    branch = load("example_branch")
    assert branch["schedule"] == "* * * * *"
    assert [t["task_id"] for t in branch["tasks"]] == ["condition", "dummy_task_1", "dummy_task_2"]
    assert branch["tasks"][0]["is_branch"] is True
    xcom = load("example_xcom")
    assert xcom["schedule"] is None
    assert {t["task_id"]: t["upstream"] for t in xcom["tasks"]} == {"add1": [], "add2": [], "dot": ["add1", "add2"]}
    pipeline = load("example_pipeline")
    assert pipeline["schedule"] == "@daily"
    by_id = {t["task_id"]: t for t in pipeline["tasks"]}
    assert by_id["flaky_fetch"]["retries"] == 2 and by_id["flaky_fetch"]["retry_delay"] == 1.0
    assert any(t["execution_timeout"] for t in pipeline["tasks"])
    assert pipeline["tasks"][-1]["task_id"] == "summary"
    taskflow = load("example_taskflow")
    assert taskflow["schedule"] == "0 9 * * *"
    assert [t["task_id"] for t in taskflow["tasks"]] == ["extract", "transform", "load"]
