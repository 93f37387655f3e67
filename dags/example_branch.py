"""Branching: follow one of two paths depending on the run's logical minute."""

from __future__ import annotations

import pendulum

from flow import DAG
from flow.operators import BranchPythonOperator, EmptyOperator


def choose(logical_date: pendulum.DateTime) -> str:
    return "dummy_task_1" if logical_date.minute % 2 == 0 else "dummy_task_2"


with DAG(
    dag_id="example_branch",
    schedule="* * * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example"],
    description="Every minute: even minutes take dummy_task_1, odd minutes dummy_task_2.",
) as dag:
    condition = BranchPythonOperator(task_id="condition", python_callable=choose)
    dummy_task_1 = EmptyOperator(task_id="dummy_task_1")
    dummy_task_2 = EmptyOperator(task_id="dummy_task_2")
    condition >> [dummy_task_1, dummy_task_2]
