"""Remote tasks over SSH: a command on a host named by connection "localhost", and its XCom used here.

Needs a "localhost" connection in connections.toml (beside flowd.toml; see the README's SSH
section) and the host key trusted with `flow connections trust localhost`. Without them the
remote tasks fail with a message that says which of the two is missing; nothing else is affected.
"""

from __future__ import annotations

from datetime import timedelta

from flow import DAG
from flow.operators import BashOperator, SSHOperator

with DAG(
    dag_id="example_ssh",
    schedule=None,
    tags=["example", "ssh"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=10)},
) as dag:
    inventory = SSHOperator(
        task_id="inventory",
        ssh_conn_id="localhost",
        command='echo "run {{ run_id }} on $(hostname) as $(id -un) in $PWD"; df -hP "$PWD" | tail -1; uname -sr',
        cwd="/tmp",
        env={"REPORT_DAY": "{{ ds }}"},
        execution_timeout=timedelta(minutes=5),
    )
    disk_report = BashOperator(
        task_id="disk_report",
        ssh_conn_id="localhost",
        bash_command='echo "report for $REPORT_DAY"; du -sh /tmp 2>/dev/null | cut -f1',
        env={"REPORT_DAY": "{{ ds }}"},
    )
    summary = BashOperator(
        task_id="summary",
        bash_command='echo "remote kernel: {{ ti.xcom_pull(task_ids=\'inventory\') }}"',
    )
    inventory >> disk_report >> summary
