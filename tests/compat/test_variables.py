"""Variables in flow's database: the `flow variables` commands, and tries that read them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from click.testing import CliRunner

from flow.daemon import cli_variables  # noqa: F401  (registers the commands)
from flow.daemon.cli import cli
from tests.integration.conftest import make_engine, run_until_idle, write_dag


def flow(settings, *args: str):
    return CliRunner().invoke(cli, ["--dags-folder", settings.dags_folder, "--db", settings.db_url,
                                    "--log-folder", settings.log_folder, *args])


def test_variables_commands(settings, tmp_path):
    assert flow(settings, "variables", "set", "colour", "blue", "--description", "paint").exit_code == 0
    source = tmp_path / "vars.json"
    source.write_text(json.dumps({"db_password": "hunter2", "cfg": {"a": [1, 2]}}))
    res = flow(settings, "variables", "import", str(source))
    assert res.exit_code == 0 and "imported 2 variable(s)" in res.output
    listed = json.loads(flow(settings, "variables", "list", "--json").output)
    assert listed == [
        {"key": "cfg", "value": '{"a": [1, 2]}', "description": None},
        {"key": "colour", "value": "blue", "description": "paint"},
        {"key": "db_password", "value": "***", "description": None},
    ]
    assert "hunter2" not in flow(settings, "variables", "list").output
    assert flow(settings, "variables", "get", "db_password").output == "hunter2\n"
    assert json.loads(flow(settings, "variables", "get", "cfg", "--json").output) == {"a": [1, 2]}
    out = tmp_path / "out.json"
    assert flow(settings, "variables", "export", str(out)).exit_code == 0
    assert json.loads(out.read_text()) == {"cfg": {"a": [1, 2]}, "colour": "blue", "db_password": "hunter2"}
    assert flow(settings, "variables", "delete", "colour").exit_code == 0
    missing = flow(settings, "variables", "get", "colour")
    assert missing.exit_code == 1 and "variable 'colour' does not exist" in missing.output
    source.write_text("[1, 2]")
    bad = flow(settings, "variables", "import", str(source))
    assert bad.exit_code == 1 and "expected a JSON object" in bad.output


def test_tries_read_stored_variables(settings):
    assert flow(settings, "variables", "set", "colour", "green").exit_code == 0
    write_dag(settings, "v.py", """
        from airflow import DAG
        from airflow.models import Variable
        from airflow.operators.bash import BashOperator
        from airflow.operators.python import PythonOperator

        def read():
            assert Variable.get("colour") == "green"
            return Variable.get("absent", default_var="fallback")

        with DAG("v", schedule=None):
            PythonOperator(task_id="py", python_callable=read) >> BashOperator(
                task_id="sh", bash_command="echo {{ var.value.colour }}")
            PythonOperator(task_id="missing", python_callable=lambda: Variable.get("absent"))
    """)
    engine = make_engine(settings)
    key = engine.trigger("v", logical_date=datetime(2026, 1, 1, tzinfo=UTC), unpause_run=True)["key"]
    run_until_idle(engine)
    tis = {t["task_id"]: t for t in engine.store.task_instances(key)}
    assert tis["py"]["state"] == "success" and tis["sh"]["state"] == "success"
    assert engine.store.xcoms(key) == {"py": {"return_value": "fallback"}, "sh": {"return_value": "green"}}
    assert tis["missing"]["state"] == "failed"
    assert "Variable 'absent' does not exist" in tis["missing"]["error"]
