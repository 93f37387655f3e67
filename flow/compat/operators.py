"""``airflow.operators.*``, ``airflow.providers.standard.*``, ``airflow.providers.ssh`` and ``.smtp``."""

from __future__ import annotations

from flow.context import get_current_context
from flow.operators import (
    BaseBranchOperator,
    BaseOperator,
    BashOperator,
    BranchPythonOperator,
    DummyOperator,
    EmailOperator,
    EmptyOperator,
    PythonOperator,
    ShortCircuitOperator,
    SSHOperator,
)
from flow.operators.external_python import ExternalPythonOperator
from flow.operators.latest_only import LatestOnlyOperator
from flow.operators.weekday import BranchDateTimeOperator, BranchDayOfWeekOperator, WeekDay

BranchMixIn = BaseBranchOperator
SmtpOperator = EmailOperator


def is_venv_installed() -> bool:
    """Airflow's check whether virtualenv tasks can run; flow does not run them (yet)."""
    return False


__all__ = [
    "BaseBranchOperator", "BaseOperator", "BashOperator", "BranchDateTimeOperator", "BranchDayOfWeekOperator",
    "BranchMixIn", "BranchPythonOperator", "DummyOperator", "EmailOperator", "EmptyOperator", "ExternalPythonOperator",
    "LatestOnlyOperator",
    "PythonOperator", "SSHOperator", "ShortCircuitOperator", "SmtpOperator", "WeekDay", "get_current_context",
    "is_venv_installed",
]
