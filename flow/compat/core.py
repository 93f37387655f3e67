"""``airflow``, ``airflow.sdk``, ``airflow.decorators``, ``airflow.models.*``: the authoring names."""

from __future__ import annotations

from flow.compat import timezone
from flow.context import DagRun, TaskInstance, get_current_context
from flow.dag import DAG
from flow.decorators import dag, task
from flow.edges import Label
from flow.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from flow.operators import (
    BaseBranchOperator,
    BaseOperator,
    BashOperator,
    BranchPythonOperator,
    EmptyOperator,
    PythonOperator,
    ShortCircuitOperator,
)
from flow.operators.base import TriggerRule, chain, cross_downstream
from flow.operators.weekday import WeekDay
from flow.params import Param, ParamsDict
from flow.states import RunState as DagRunState
from flow.states import TaskState as TaskInstanceState
from flow.variables import Variable
from flow.xcom import XComArg

EdgeModifier = Label
Context = dict
DagModel = DAG
Operator = BaseOperator
BranchMixIn = BaseBranchOperator
PlainXComArg = XComArg

__all__ = [
    "DAG", "AirflowException", "AirflowFailException", "AirflowSkipException", "BaseBranchOperator",
    "BaseOperator", "BashOperator", "BranchMixIn", "BranchPythonOperator", "Context", "DagModel", "DagRun",
    "DagRunState", "EdgeModifier", "EmptyOperator", "Label", "Operator", "Param", "ParamsDict", "PlainXComArg",
    "PythonOperator", "ShortCircuitOperator", "TaskInstance", "TaskInstanceState", "TriggerRule", "Variable",
    "WeekDay", "XComArg", "chain", "cross_downstream", "dag", "get_current_context", "task", "timezone",
]
