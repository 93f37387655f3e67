"""A daily bash + Python pipeline: templating, params, env, a retried step, a timeout and a summary."""

from __future__ import annotations

from datetime import timedelta

import pendulum

from flow import DAG
from flow.operators import BashOperator, PythonOperator


def summarize(ti, ds: str, params: dict) -> str:
    counted = ti.xcom_pull(task_ids="count_rows")
    checked = ti.xcom_pull(task_ids="validate")
    summary = f"{params['source']} {ds}: {counted} rows, validation {checked}"
    print(summary)
    return summary


def validate(ti) -> str:
    rows = int(ti.xcom_pull(task_ids="count_rows"))
    if rows <= 0:
        raise ValueError(f"expected rows, got {rows}")
    return "ok"


with DAG(
    dag_id="example_pipeline",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={"source": "orders", "rows": 3},
    default_args={"owner": "data", "retries": 2, "retry_delay": timedelta(seconds=1)},
    dagrun_timeout=timedelta(minutes=10),
    tags=["example"],
) as dag:
    prepare = BashOperator(
        task_id="prepare",
        bash_command='echo "preparing {{ params.source }} for {{ ds }} in $WORKDIR"',
        env={"WORKDIR": "/tmp/flow-{{ ds_nodash }}"},
        append_env=True,
    )
    flaky_fetch = BashOperator(
        task_id="flaky_fetch",
        doc_md="Fails on its first try and succeeds on the second, to show retries.",
        bash_command=(
            'if [ "{{ ti.try_number }}" -lt 2 ]; then echo "try {{ ti.try_number }}: source not ready" >&2; exit 1; fi\n'
            'echo "try {{ ti.try_number }}: fetched {{ params.source }}"'
        ),
    )
    count_rows = BashOperator(
        task_id="count_rows",
        bash_command="seq 1 {{ params.rows }} | wc -l | tr -d ' '",
        execution_timeout=timedelta(seconds=30),
    )
    check = PythonOperator(task_id="validate", python_callable=validate)
    summary = PythonOperator(task_id="summary", python_callable=summarize, retries=0)

    prepare >> flaky_fetch >> count_rows >> check >> summary
