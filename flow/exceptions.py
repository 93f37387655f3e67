"""Exceptions task code raises to steer its own outcome, with Airflow's names.

``flow.runtime`` reads them: a skip exception ends the try as *skipped*, a fail exception as
*failed without retries*; any other exception is an ordinary failure (retries apply). They live
in flow itself, not in the Airflow compatibility package, because they are part of what a task
can say about itself whichever names the DAG file imported.
"""

from __future__ import annotations


class AirflowException(Exception):
    """The base of the Airflow-named exceptions; raising it fails the try (retries apply)."""


class AirflowSkipException(AirflowException):
    """Raise inside a task to mark it skipped; downstream tasks follow their trigger rules."""


class AirflowFailException(AirflowException):
    """Raise inside a task to fail it at once, without the retries it has left."""


class AirflowTaskTimeout(AirflowException):
    pass


class AirflowSensorTimeout(AirflowException):
    pass


class AirflowNotFoundException(AirflowException):
    pass


class AirflowBadRequest(AirflowException):
    pass


class AirflowConfigException(AirflowException):
    pass


class AirflowRescheduleException(AirflowException):
    pass


class ParamValidationError(AirflowException):
    """A DAG or task param whose value does not match its schema; the message names the param."""


class DuplicateTaskIdFound(AirflowException):
    pass


class TaskDeferred(AirflowException):
    pass


class NotSupportedByFlow(ImportError):
    """An Airflow name or argument that flow does not implement: the message names the feature.

    An ImportError so that it fails the DAG file's import (one line in the import errors) and so
    that a file's own ``try: ... except ImportError`` fallback still works as it does in Airflow.
    """


SKIP_EXCEPTIONS: tuple[type[BaseException], ...] = (AirflowSkipException,)
FAIL_EXCEPTIONS: tuple[type[BaseException], ...] = (AirflowFailException,)
