"""Builders shared by the store tests: a serialized DAG and a run, with fixed aware times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flow.daemon.store import Store
from flow.states import RunState

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def serialized(dag_id: str = "etl", **overrides: Any) -> dict[str, Any]:
    ser: dict[str, Any] = {
        "dag_id": dag_id,
        "fileloc": f"/srv/dags/{dag_id}.py",
        "schedule": "0 9 * * *",
        "schedule_interval_seconds": None,
        "timezone": "Europe/Berlin",
        "start_date": "2024-01-01T00:00:00+00:00",
        "catchup": False,
        "is_paused_upon_creation": None,
        "tags": ["nightly", "ünïcode"],
        "owner": "alice",
        "description": "loads things",
        "tasks": [
            {"task_id": "extract", "operator": "BashOperator", "priority_weight": 3, "retries": 2},
            {"task_id": "load", "operator": "PythonOperator", "priority_weight": 1, "retries": 0},
        ],
    }
    ser.update(overrides)
    return ser


def tasks(*task_ids: str) -> list[dict[str, Any]]:
    return [
        {"task_id": t, "operator": "BashOperator", "priority_weight": i + 1, "max_tries": 2}
        for i, t in enumerate(task_ids or ("extract", "load"))
    ]


def add_dag(store: Store, dag_id: str = "etl", **overrides: Any) -> None:
    with store.begin() as tx:
        tx.upsert_dag(serialized(dag_id, **overrides), now=T0)


def add_run(
    store: Store,
    dag_id: str = "etl",
    *,
    day: int = 0,
    run_type: str = "scheduled",
    state: Any = RunState.QUEUED,
    task_ids: tuple[str, ...] = (),
    run_id: str | None = None,
) -> int:
    logical = T0 + timedelta(days=day)
    with store.begin() as tx:
        return tx.create_run(
            dag_id=dag_id,
            run_id=run_id or f"{run_type}__{logical.isoformat()}",
            run_type=run_type,
            logical_date=logical,
            data_interval_start=logical - timedelta(days=1),
            data_interval_end=logical,
            conf={"day": day},
            state=state,
            queued_at=logical + timedelta(minutes=1),
            tasks=tasks(*task_ids),
        )
