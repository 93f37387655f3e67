"""``airflow.exceptions`` and ``airflow.sdk.exceptions``: flow's own exception classes."""

from flow.exceptions import (
    AirflowBadRequest,
    AirflowConfigException,
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AirflowTaskTimeout,
    DuplicateTaskIdFound,
    ParamValidationError,
    TaskDeferred,
)

AirflowTaskTerminated = AirflowException
AirflowRuntimeError = AirflowException
DownstreamTasksSkipped = AirflowSkipException

__all__ = [
    "AirflowBadRequest", "AirflowConfigException", "AirflowException", "AirflowFailException",
    "AirflowNotFoundException", "AirflowRescheduleException", "AirflowRuntimeError", "AirflowSensorTimeout",
    "AirflowSkipException", "AirflowTaskTerminated", "AirflowTaskTimeout", "DownstreamTasksSkipped",
    "DuplicateTaskIdFound", "ParamValidationError", "TaskDeferred",
]
