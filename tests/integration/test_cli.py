"""The `flow` command as a user runs it: the installed script, a real DAG folder, a real database."""

from __future__ import annotations

import json

from .conftest import copy_example, flow_cli, write_dag

FAILS = """
from flow import DAG
from flow.operators import BashOperator
with DAG("fails", schedule=None):
    BashOperator(task_id="boom", bash_command="echo about to fail; exit 7")
"""


def test_dags_list_json_shows_examples_and_counts_import_errors(settings):
    copy_example(settings, "example_xcom.py")
    copy_example(settings, "example_taskflow.py")
    write_dag(settings, "bad.py", "import no_such_module_here\n")
    res = flow_cli(settings, "dags", "list", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert {d["dag_id"] for d in data["dags"]} == {"example_xcom", "example_taskflow"}
    assert data["import_errors"] == 1
    tf = next(d for d in data["dags"] if d["dag_id"] == "example_taskflow")
    assert tf["schedule"] == "0 9 * * *" and "09:00" in tf["schedule_text"]
    errs = flow_cli(settings, "dags", "list-import-errors")
    assert errs.returncode == 1 and "no_such_module_here" in errs.stdout


def test_dags_test_runs_with_live_output_and_summary(settings):
    copy_example(settings, "example_xcom.py")
    res = flow_cli(settings, "dags", "test", "example_xcom")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "dot" in res.stdout and "success" in res.stdout
    assert "TASK" in res.stdout and "STATE" in res.stdout


def test_dags_test_exits_1_when_the_run_fails_and_shows_the_task_output(settings):
    write_dag(settings, "fails.py", FAILS)
    res = flow_cli(settings, "dags", "test", "fails")
    assert res.returncode == 1
    assert "boom | about to fail" in res.stdout
    assert "exit status 7" in res.stdout


def test_unknown_dag_gives_one_clear_line(settings):
    copy_example(settings, "example_xcom.py")
    res = flow_cli(settings, "dags", "test", "nope")
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0
    assert "unknown DAG 'nope'" in res.stderr and "example_xcom" in res.stderr


def test_bad_conf_is_a_usage_error(settings):
    copy_example(settings, "example_xcom.py")
    res = flow_cli(settings, "dags", "test", "example_xcom", "--conf", "{not json")
    assert res.returncode == 2 and "--conf" in res.stderr and "not valid JSON" in res.stderr
    res = flow_cli(settings, "dags", "test", "example_xcom", "--conf", "[1, 2]")
    assert res.returncode == 2 and "JSON object" in res.stderr


def test_next_runs_in_local_time_and_utc(settings):
    write_dag(settings, "seoul.py", """
        import pendulum
        from flow import DAG
        from flow.operators import EmptyOperator
        with DAG("seoul", schedule="0 9 * * *", start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Seoul")):
            EmptyOperator(task_id="t")
    """)
    res = flow_cli(settings, "dags", "next-runs", "seoul", "-n", "3", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert len(rows) == 3
    assert all(r["local"].endswith("09:00:00+09:00") and "T00:00:00" in r["logical_date"] for r in rows)


def test_dags_show_and_tasks_list(settings):
    copy_example(settings, "example_xcom.py")
    show = flow_cli(settings, "dags", "show", "example_xcom")
    assert show.returncode == 0 and "dot" in show.stdout and "└─>" in show.stdout
    listed = flow_cli(settings, "tasks", "list", "example_xcom")
    assert listed.stdout.split()[-1] == "dot"
    as_json = json.loads(flow_cli(settings, "tasks", "list", "example_xcom", "--json").stdout)
    assert next(t for t in as_json if t["task_id"] == "dot")["upstream"] == ["add1", "add2"]


def test_tasks_test_runs_one_task_and_records_nothing(settings):
    write_dag(settings, "fails.py", FAILS)
    res = flow_cli(settings, "tasks", "test", "fails", "boom")
    assert res.returncode == 1 and "about to fail" in res.stdout
    runs = flow_cli(settings, "dags", "list", "--json")
    assert json.loads(runs.stdout)["dags"][0]["last_run"] is None


def test_db_upgrade_and_a_newer_database_is_refused(settings, tmp_path):
    res = flow_cli(settings, "db", "upgrade")
    assert res.returncode == 0 and "schema revision" in res.stdout
    import sqlite3

    path = settings.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    res = flow_cli(settings, "dags", "list")
    assert res.returncode == 1 and "newer" in res.stderr


def test_unreachable_database_is_one_line(settings):
    settings.db_url = "postgresql://nobody@127.0.0.1:1/none"
    res = flow_cli(settings, "db", "upgrade")
    assert res.returncode == 1 and "cannot open the database" in res.stderr
    assert res.stderr.strip().count("\n") == 0


def test_backfill_dry_run_lists_runs(settings):
    write_dag(settings, "daily.py", """
        import pendulum
        from flow import DAG
        from flow.operators import BashOperator
        with DAG("daily", schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
            BashOperator(task_id="t", bash_command="echo {{ ds }}")
    """)
    res = flow_cli(settings, "dags", "backfill", "daily", "-s", "2026-02-01", "-e", "2026-02-03", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [f"backfill__2026-02-0{d}T00:00:00+00:00" for d in (1, 2, 3)]
    res = flow_cli(settings, "dags", "backfill", "daily", "-s", "2026-02-01", "-e", "2026-02-02")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2026-02-02" in res.stdout and res.stdout.count("run backfill__") >= 2


def test_dags_test_reports_events_in_the_order_they_happened(settings):
    copy_example(settings, "example_branch.py")
    res = flow_cli(settings, "dags", "test", "example_branch", "--date", "2026-01-01T09:04:00+00:00")
    assert res.returncode == 0, res.stdout + res.stderr
    events = [line for line in res.stdout.splitlines() if line.startswith("[")]
    assert events[-1].endswith("success: all leaves succeeded or were skipped"), events
    assert any("dummy_task_1 success" in e for e in events[:-1])
    show = flow_cli(settings, "dags", "show", "example_branch")
    assert "(BranchPythonOperator)" in show.stdout or "(@task.branch)" in show.stdout
