"""The operators DAG authors use; the names match Airflow's so existing DAGs port with few edits."""

from flow.operators.base import BaseOperator, TriggerRule, chain, cross_downstream
from flow.operators.bash import BashOperator
from flow.operators.email import EmailOperator
from flow.operators.empty import DummyOperator, EmptyOperator
from flow.operators.python import (
    BaseBranchOperator,
    BranchPythonOperator,
    PythonOperator,
    ShortCircuitOperator,
)
from flow.operators.ssh import SSHOperator

__all__ = [
    "BaseBranchOperator",
    "BaseOperator",
    "BashOperator",
    "BranchPythonOperator",
    "DummyOperator",
    "EmailOperator",
    "EmptyOperator",
    "PythonOperator",
    "SSHOperator",
    "ShortCircuitOperator",
    "TriggerRule",
    "chain",
    "cross_downstream",
]
