"""What flow says about an Airflow name it does not have: the feature, and what to use instead."""

from __future__ import annotations

SIBLING = "not yet supported by flow"

NAMES: dict[str, str] = {
    "TaskGroup": f"task groups ({SIBLING}; set dependencies between the tasks directly)",
    "task_group": f"task groups ({SIBLING}; set dependencies between the tasks directly)",
    "setup": f"setup/teardown tasks ({SIBLING})",
    "teardown": f"setup/teardown tasks ({SIBLING})",
    "Asset": f"assets and data-aware scheduling ({SIBLING}; use a cron schedule)",
    "AssetAlias": f"assets and data-aware scheduling ({SIBLING})",
    "AssetAll": f"assets and data-aware scheduling ({SIBLING})",
    "AssetAny": f"assets and data-aware scheduling ({SIBLING})",
    "AssetWatcher": "event-driven asset watchers",
    "AssetAccessControl": "asset access control for teams",
    "Metadata": f"asset event metadata ({SIBLING})",
    "asset": f"@asset ({SIBLING})",
    "Dataset": f"datasets and data-aware scheduling ({SIBLING}; use a cron schedule)",
    "DatasetAlias": f"datasets and data-aware scheduling ({SIBLING})",
    "DatasetAll": f"datasets and data-aware scheduling ({SIBLING})",
    "DatasetAny": f"datasets and data-aware scheduling ({SIBLING})",
    "PokeReturnValue": f"sensors ({SIBLING}; poll in a task with retries)",
    "BaseSensorOperator": f"sensors ({SIBLING}; poll in a task with retries)",
    "ExternalTaskSensor": f"sensors ({SIBLING})",
    "ExternalTaskMarker": f"sensors ({SIBLING})",
    "TimeDeltaSensor": f"sensors ({SIBLING})",
    "TimeDeltaSensorAsync": f"sensors ({SIBLING})",
    "TimeSensor": f"sensors ({SIBLING})",
    "BashSensor": f"sensors ({SIBLING})",
    "PythonSensor": f"sensors ({SIBLING})",
    "FileSensor": f"sensors ({SIBLING})",
    "DayOfWeekSensor": f"sensors ({SIBLING})",
    "BaseNotifier": "notifier classes (use on_failure_callback, or notify_on_failure with flowd.toml notifiers)",
    "ObjectStoragePath": "object storage paths",
    "Connection": "Airflow connections (flow's connections are in connections.toml)",
    "BaseHook": "Airflow hooks",
    "SSHHook": "SSHHook (use SSHOperator or BashOperator(ssh_conn_id=...))",
    "SubDagOperator": "SubDAGs (removed in Airflow 3)",
    "ExceptionRetryPolicy": "retry policies (use retries and retry_delay)",
    "RetryAction": "retry policies (use retries and retry_delay)",
    "RetryRule": "retry policies (use retries and retry_delay)",
    "PartitionedAssetTimetable": "partitioned assets",
    "AssetOrTimeSchedule": f"asset-or-time schedules ({SIBLING})",
    "DatasetOrTimeSchedule": f"dataset-or-time schedules ({SIBLING})",
    "NEVER_EXPIRE": "the task state store",
    "HITLOperator": "human-in-the-loop operators",
    "ApprovalOperator": "human-in-the-loop operators",
    "HITLBranchOperator": "human-in-the-loop operators",
    "HITLEntryOperator": "human-in-the-loop operators",
    "TriggerDagRunOperator": "TriggerDagRunOperator yet",
    "PythonVirtualenvOperator": "PythonVirtualenvOperator yet (run the script with its interpreter in a BashOperator)",
    "BranchPythonVirtualenvOperator": "virtualenv operators yet",
    "BranchExternalPythonOperator": "external-interpreter operators yet",
    "chain_linear": "chain_linear yet (use chain or >>)",
}


def not_supported(name: str) -> str | None:
    return NAMES.get(name)
