"""Templating: every context key, strict errors with field and line, nested values, file templates."""

from __future__ import annotations

import pendulum
import pytest

from flow.context import build_context, ds_add, ds_format
from flow.templating import TemplateError, render_field, render_string


def make_spec(**over) -> dict:
    spec = {
        "dag_id": "d",
        "task_id": "t",
        "run_id": "scheduled__2024-03-09T10:30:00+00:00",
        "try_number": 2,
        "dag_file": "/nonexistent/d.py",
        "context": {
            "logical_date": "2024-03-09T10:30:00+00:00",
            "data_interval_start": "2024-03-08T10:30:00+00:00",
            "data_interval_end": "2024-03-09T10:30:00+00:00",
            "run_id": "scheduled__2024-03-09T10:30:00+00:00",
            "run_type": "scheduled",
            "conf": {"who": "conf-user", "extra": 1},
            "params": {"who": "param-default", "size": 10},
            "dag_id": "d",
            "task_id": "t",
            "try_number": 2,
            "max_tries": 3,
            "timezone": "Europe/Berlin",
        },
        "xcoms": {"up": {"return_value": [1, 2], "other": "x"}},
    }
    spec.update(over)
    return spec


def render(text: str, spec: dict | None = None) -> str:
    return render_string("bash_command", text, build_context(spec or make_spec()))


@pytest.mark.parametrize(
    "template,expected",
    [
        ("{{ ds }}", "2024-03-09"),
        ("{{ ds_nodash }}", "20240309"),
        ("{{ ts }}", "2024-03-09T10:30:00+00:00"),
        ("{{ ts_nodash }}", "20240309T103000"),
        ("{{ logical_date.year }}-{{ logical_date.tzinfo.name }}", "2024-UTC"),
        ("{{ data_interval_start | ds }}", "2024-03-08"),
        ("{{ data_interval_end.isoformat() }}", "2024-03-09T10:30:00+00:00"),
        ("{{ run_id }}", "scheduled__2024-03-09T10:30:00+00:00"),
        ("{{ params.who }} {{ params.size }} {{ params.extra }}", "conf-user 10 1"),
        ("{{ dag_run.conf.who }} {{ dag_run.run_id }} {{ dag_run.run_type }}", "conf-user scheduled__2024-03-09T10:30:00+00:00 scheduled"),
        ("{{ dag_run.logical_date | ds_nodash }}", "20240309"),
        ("{{ conf['extra'] }}", "1"),
        ("{{ ti.xcom_pull(task_ids='up') }}", "[1, 2]"),
        ("{{ task_instance.xcom_pull(task_ids=['up', 'none'], key='other') }}", "['x', None]"),
        ("{{ ti.try_number }}/{{ try_number }}/{{ ti.max_tries }}", "2/2/3"),
        ("{{ task.task_id }}@{{ dag.dag_id }}", "t@d"),
        ("{{ macros.ds_add(ds, 1) }}", "2024-03-10"),
        ("{{ macros.ds_format(ds, '%Y-%m-%d', '%d/%m/%Y') }}", "09/03/2024"),
        ("{{ (macros.datetime(2024, 1, 1) + macros.timedelta(days=2)).day }}", "3"),
        ("{{ task_instance_key_str }}", "d__t__20240309"),
    ],
)
def test_context_keys_render(template, expected):
    assert render(template) == expected


def test_logical_date_is_pendulum_in_utc():
    ctx = build_context(make_spec())
    assert isinstance(ctx["logical_date"], pendulum.DateTime)
    assert ctx["logical_date"] == pendulum.datetime(2024, 3, 9, 10, 30, tz="UTC")
    assert ctx["logical_date"].tzinfo.name == "UTC"


def test_offset_dates_are_converted_to_utc():
    spec = make_spec()
    spec["context"]["logical_date"] = "2024-03-09T00:30:00+01:00"
    assert render("{{ ds }} {{ ts }}", spec) == "2024-03-08 2024-03-08T23:30:00+00:00"


def test_undefined_name_fails_with_field_and_line():
    with pytest.raises(TemplateError) as info:
        render("echo a\necho b\necho {{ foo }}")
    assert str(info.value) == "template error in bash_command line 3: 'foo' is undefined"
    assert info.value.line == 3 and info.value.field == "bash_command"


def test_undefined_attribute_and_syntax_errors_have_lines():
    with pytest.raises(TemplateError, match=r"line 2: 'dict object' has no attribute 'nope'"):
        render("ok\n{{ params.nope }}")
    with pytest.raises(TemplateError, match=r"template error in bash_command line 2: "):
        render("ok\n{% if %}")


def test_nested_values_render_and_name_the_key():
    ctx = build_context(make_spec())
    env = {"DAY": "{{ ds }}", "LIST": ["{{ ds_nodash }}", 3], "N": {"deep": "{{ params.size }}"}}
    assert render_field("env", env, ctx) == {"DAY": "2024-03-09", "LIST": ["20240309", 3], "N": {"deep": "10"}}
    with pytest.raises(TemplateError, match=r"template error in env\['B'\] line 1: 'missing' is undefined"):
        render_field("env", {"A": "x", "B": "{{ missing }}"}, ctx)


def test_template_file_is_loaded_from_searchpath(tmp_path):
    (tmp_path / "job.sh").write_text("#!/bin/bash\necho {{ ds }}\necho {{ params.size }}\n")
    (tmp_path / "bad.sh").write_text("echo 1\necho 2\necho {{ typo }}\n")
    ctx = build_context(make_spec())
    assert render_string("bash_command", "job.sh", ctx, (".sh",), str(tmp_path)) == "#!/bin/bash\necho 2024-03-09\necho 10\n"
    with pytest.raises(TemplateError, match=r"template error in bash_command \(bad.sh\) line 3: 'typo' is undefined"):
        render_string("bash_command", "bad.sh", ctx, (".sh",), str(tmp_path))
    with pytest.raises(TemplateError, match="template file .*missing.sh not found"):
        render_string("bash_command", "missing.sh", ctx, (".sh",), str(tmp_path))


def test_nested_values_are_never_template_files(tmp_path):
    (tmp_path / "run.sh").write_text("SHOULD NOT BE READ")
    ctx = build_context(make_spec())
    assert render_field("env", {"SCRIPT": "run.sh"}, ctx, (".sh",), str(tmp_path)) == {"SCRIPT": "run.sh"}


def test_sandbox_blocks_python_internals():
    with pytest.raises(TemplateError, match="unsafe"):
        render("{{ ti.__class__.__mro__ }}")


def test_macros_helpers():
    assert ds_add("2024-02-28", 2) == "2024-03-01"
    assert ds_add("2024-03-01", -1) == "2024-02-29"
    assert ds_format("2024-03-01", "%Y-%m-%d", "%Y%m%d") == "20240301"


def test_xcom_pull_without_task_ids_and_own_pushes():
    ctx = build_context(make_spec())
    ti = ctx["ti"]
    assert ti.xcom_pull(key="other") == "x"
    ti.xcom_push("mine", {"a": 1})
    assert ti.xcom_pull(task_ids="t", key="mine") == {"a": 1}
    assert ti.xcom_pull(task_ids="unknown") is None
    with pytest.raises(ValueError, match="only XComs of this run's DAG"):
        ti.xcom_pull(task_ids="up", dag_id="other_dag")
