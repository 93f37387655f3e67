"""flow: Airflow-shaped DAGs for a small scheduler. ``from flow import DAG, dag, task, chain``."""

from flow.dag import DAG
from flow.decorators import dag, task
from flow.operators.base import chain, cross_downstream
from flow.xcom import XComArg

__all__ = ["DAG", "XComArg", "chain", "cross_downstream", "dag", "task"]
