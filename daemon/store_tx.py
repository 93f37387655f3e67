"""The write side of the store: one `Tx` per transaction, cached Core statements, no ORM session."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from datetime import datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from .models import (
    ID_LENGTH,
    audit_log,
    dag,
    dag_run,
    import_error,
    task_instance,
    task_try,
    xcom,
)
from .store_reads import chunks, execute
from .store_resources import ResourceTx
from .store_variables import VariableTx


class StoreError(Exception):
    """The database cannot be used as asked; the message says which database and why."""


class DuplicateRunError(StoreError):
    """A run with this (dag_id, run_id) exists already; the transaction stays usable."""



def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _check_id(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{kind} must be a non-empty string, got {value!r}")
    if len(value) > ID_LENGTH:
        raise ValueError(f"{kind} {value[:40]!r}... has {len(value)} characters; {ID_LENGTH} at most")
    return value


def _schedule_text(serialized: dict[str, Any]) -> str | None:
    """What the console shows as the schedule; planning always reads the serialized DAG itself."""
    schedule = serialized.get("schedule")
    if schedule is not None:
        return str(schedule)
    seconds = serialized.get("schedule_interval_seconds")
    if seconds is None:
        return None
    seconds = float(seconds)
    return f"every {int(seconds)}s" if seconds.is_integer() else f"every {seconds}s"


_KEYS = {"id", "dag_run_id", "dag_id", "run_id", "task_id", "try_number"}
_UPDATABLE = {
    "dag_run": frozenset(dag_run.c.keys()) - {"id", "dag_id", "run_id"},
    "task_instance": frozenset(task_instance.c.keys()) - (_KEYS - {"try_number"}),
    "task_try": frozenset(task_try.c.keys()) - _KEYS,
}

# Built once: SQLAlchemy then reuses the compiled SQL for every call with the same set of fields.
_UPDATE_DAG = sa.update(dag).where(dag.c.dag_id == sa.bindparam("k_dag"))
_UPDATE_RUN = sa.update(dag_run).where(dag_run.c.id == sa.bindparam("k_run"))
_UPDATE_TI = sa.update(task_instance).where(
    task_instance.c.dag_run_id == sa.bindparam("k_run"), task_instance.c.task_id == sa.bindparam("k_task")
)
_UPDATE_TRY = sa.update(task_try).where(
    task_try.c.dag_run_id == sa.bindparam("k_run"),
    task_try.c.task_id == sa.bindparam("k_task"),
    task_try.c.try_number == sa.bindparam("k_try"),
)
_RUN_EXISTS = sa.select(dag_run.c.id).where(
    dag_run.c.dag_id == sa.bindparam("k_dag"), dag_run.c.run_id == sa.bindparam("k_run_id")
)
_DAG_EXISTS = sa.select(dag.c.dag_id).where(dag.c.dag_id == sa.bindparam("k_dag"))
_DEACTIVATE = (
    sa.update(dag).where(dag.c.dag_id.in_(sa.bindparam("k_ids", expanding=True))).values(is_active=False)
)
_DELETE_ERRORS = sa.delete(import_error).where(
    import_error.c.filename.in_(sa.bindparam("k_files", expanding=True))
)
_DELETE_XCOMS = sa.delete(xcom).where(
    xcom.c.dag_run_id == sa.bindparam("k_run"), xcom.c.task_id.in_(sa.bindparam("k_tasks", expanding=True))
)


def _xcom_upsert(insert: Any) -> Any:
    stmt = insert(xcom)
    return stmt.on_conflict_do_update(
        index_elements=[xcom.c.dag_run_id, xcom.c.task_id, xcom.c.key], set_={"value": stmt.excluded.value}
    )


_SET_XCOM = {"sqlite": _xcom_upsert(sqlite.insert), "postgresql": _xcom_upsert(postgresql.insert)}


class Tx(ResourceTx, VariableTx):
    """One write transaction. States may be given as TaskState/RunState or their string values."""

    def __init__(self, conn: Connection, dialect: str) -> None:
        self._conn = conn
        self._dialect = dialect

    def _exec(self, stmt: sa.Executable, params: Any = None) -> sa.CursorResult[Any]:
        return execute(self._conn, stmt, params)

    def _values(self, table: sa.Table, fields: dict[str, Any], what: str) -> dict[str, Any]:
        allowed = _UPDATABLE[table.name]
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(
                f"{what}: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(allowed))}"
            )
        if not fields:
            raise ValueError(f"{what}: no fields to update")
        return {name: _plain(value) for name, value in fields.items()}

    # -- DAGs and parsing ---------------------------------------------------------------------

    def upsert_dag(self, serialized: dict[str, Any], *, now: datetime, paused_default: bool = False) -> bool:
        """Record a freshly parsed DAG; True if it was new. A known DAG keeps is_paused and first_seen."""
        if not isinstance(serialized, dict):
            raise ValueError(f"upsert_dag: expected a serialized DAG dict, got {type(serialized).__name__}")
        dag_id = _check_id("dag_id", serialized.get("dag_id"))
        values = {
            "fileloc": str(serialized.get("fileloc") or ""), "is_active": True, "serialized": serialized,
            "schedule": _schedule_text(serialized), "timezone": str(serialized.get("timezone") or "UTC"),
            "owner": str(serialized.get("owner") or ""), "tags": list(serialized.get("tags") or []),
            "description": serialized.get("description"), "last_parsed": now,
        }
        if self._exec(_UPDATE_DAG, {"k_dag": dag_id, **values}).rowcount:
            return False
        paused = serialized.get("is_paused_upon_creation")
        paused = bool(paused_default if paused is None else paused)
        row = {"dag_id": dag_id, "is_paused": paused, "next_dagrun": None, "first_seen": now, **values}
        self._exec(sa.insert(dag), row)
        return True

    def deactivate_dags(self, dag_ids: Iterable[str]) -> None:
        for chunk in chunks(list(dag_ids)):
            self._exec(_DEACTIVATE, {"k_ids": chunk})

    def set_paused(self, dag_id: str, paused: bool) -> bool:
        """False if no such DAG is stored."""
        return bool(self._exec(_UPDATE_DAG, {"k_dag": dag_id, "is_paused": bool(paused)}).rowcount)

    def set_next_dagrun(self, dag_id: str, when: datetime | None) -> None:
        self._exec(_UPDATE_DAG, {"k_dag": dag_id, "next_dagrun": when})

    def replace_import_errors(
        self, parsed_files: Iterable[str], errors: dict[str, tuple[str, str]], now: datetime
    ) -> None:
        """Forget the old errors of every file just parsed, then record the new ones."""
        rows = []
        for filename, pair in errors.items():
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                what = f"replace_import_errors: the error of {filename!r}"
                raise ValueError(f"{what} must be (message, traceback), got {pair!r}")
            rows.append({"filename": filename, "message": str(pair[0]), "traceback": str(pair[1] or ""),
                         "timestamp": now})
        for chunk in chunks(list(dict.fromkeys([*parsed_files, *errors]))):
            self._exec(_DELETE_ERRORS, {"k_files": chunk})
        if rows:
            self._exec(sa.insert(import_error), rows)

    # -- runs and task instances ------------------------------------------------------------

    def create_run(
        self, *, dag_id: str, run_id: str, run_type: str, logical_date: datetime,
        data_interval_start: datetime, data_interval_end: datetime, conf: dict[str, Any] | None, state: Any,
        queued_at: datetime, tasks: list[dict[str, Any]],
    ) -> int:
        """Insert a run and one task instance per task (state NONE unless the dict says otherwise).

        Returns the run key. Raises DuplicateRunError, leaving the transaction usable, if the
        DAG already has a run with this run_id.
        """
        _check_id("dag_id", dag_id)
        _check_id("run_id", run_id)
        what = f"create_run {run_id!r}: task #"
        ti_rows = [self._ti_row(0, dag_id, task, f"{what}{i}") for i, task in enumerate(tasks)]
        duplicate = DuplicateRunError(f"DAG {dag_id!r} already has a run {run_id!r}")
        if self._exec(_RUN_EXISTS, {"k_dag": dag_id, "k_run_id": run_id}).first():
            raise duplicate
        if not self._exec(_DAG_EXISTS, {"k_dag": dag_id}).first():
            raise StoreError(f"cannot create run {run_id!r}: DAG {dag_id!r} is not in the store")
        row = {
            "dag_id": dag_id, "run_id": run_id, "run_type": _plain(run_type), "logical_date": logical_date,
            "data_interval_start": data_interval_start, "data_interval_end": data_interval_end,
            "state": _plain(state), "conf": conf or {}, "queued_at": queued_at,
            "start_date": None, "end_date": None,
        }
        try:
            # Another writer may insert the same run between the check and here (PostgreSQL only:
            # SQLite writers are serialised); the savepoint keeps this transaction alive if so.
            with self._conn.begin_nested() if self._dialect == "postgresql" else nullcontext():
                key = int(self._exec(sa.insert(dag_run), row).inserted_primary_key[0])
        except sa.exc.IntegrityError as exc:
            if self._exec(_RUN_EXISTS, {"k_dag": dag_id, "k_run_id": run_id}).first():
                raise duplicate from None
            raise StoreError(f"cannot create run {run_id!r} of DAG {dag_id!r}: {exc.orig}") from None
        if ti_rows:
            for ti in ti_rows:
                ti["dag_run_id"] = key
            self._exec(sa.insert(task_instance), ti_rows)
        return key

    @staticmethod
    def _ti_row(run_key: int, dag_id: str, task: dict[str, Any], what: str) -> dict[str, Any]:
        missing = [k for k in ("task_id", "operator") if k not in task]
        if missing:
            raise ValueError(f"{what} lacks {', '.join(missing)}")
        return {
            "dag_run_id": run_key, "dag_id": dag_id, "task_id": _check_id("task_id", task["task_id"]),
            "state": _plain(task.get("state", "none")), "try_number": 0,
            "max_tries": int(task.get("max_tries", 1)), "operator": str(task["operator"]),
            "priority_weight": int(task.get("priority_weight", 1)),
        }

    def update_run(self, run_key: int, **fields: Any) -> bool:
        """False if the run does not exist."""
        values = self._values(dag_run, fields, "update_run")
        return bool(self._exec(_UPDATE_RUN, {"k_run": run_key, **values}).rowcount)

    def add_ti(self, run_key: int, task_id: str, operator: str, priority_weight: int, max_tries: int,
               state: Any) -> None:
        """A task added to the DAG file after the run was created."""
        dag_id = self._exec(sa.select(dag_run.c.dag_id).where(dag_run.c.id == run_key)).scalar()
        if dag_id is None:
            raise StoreError(f"add_ti {task_id!r}: no run with key {run_key}")
        task = {"task_id": task_id, "operator": operator, "priority_weight": priority_weight,
                "max_tries": max_tries, "state": state}
        self._exec(sa.insert(task_instance), self._ti_row(run_key, dag_id, task, "add_ti"))

    def update_ti(self, run_key: int, task_id: str, **fields: Any) -> bool:
        """False if the task instance does not exist."""
        values = self._values(task_instance, fields, "update_ti")
        return bool(self._exec(_UPDATE_TI, {"k_run": run_key, "k_task": task_id, **values}).rowcount)

    def update_tis_bulk(self, rows: list[dict[str, Any]]) -> None:
        """Many update_ti calls at once: each row holds run_key, task_id and the fields to set.

        Rows that set the same fields go to the database as one executemany.
        """
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            if "run_key" not in row or "task_id" not in row:
                raise ValueError(f"update_tis_bulk: row {row!r} lacks run_key or task_id")
            fields = {k: v for k, v in row.items() if k not in ("run_key", "task_id")}
            values = self._values(task_instance, fields, "update_tis_bulk")
            params = {"k_run": row["run_key"], "k_task": row["task_id"], **values}
            groups.setdefault(tuple(sorted(values)), []).append(params)
        for batch in groups.values():
            self._exec(_UPDATE_TI, batch)

    # -- tries, XComs, audit ----------------------------------------------------------------

    def insert_try(self, run_key: int, task_id: str, try_number: int, *, state: Any, start_date: datetime,
                   hostname: str, pid: int | None, log_path: str) -> int:
        row = {"dag_run_id": run_key, "task_id": task_id, "try_number": try_number, "state": _plain(state),
               "start_date": start_date, "hostname": hostname, "pid": pid, "log_path": str(log_path)}
        return int(self._exec(sa.insert(task_try), row).inserted_primary_key[0])

    def insert_tries_bulk(self, rows: list[dict[str, Any]]) -> None:
        """Many insert_try calls as one executemany: each row holds run_key, task_id, try_number and
        insert_try's keyword arguments."""
        if rows:
            self._exec(sa.insert(task_try), [
                {"dag_run_id": r["run_key"], "task_id": r["task_id"], "try_number": r["try_number"],
                 "state": _plain(r["state"]), "start_date": r["start_date"], "hostname": r["hostname"],
                 "pid": r["pid"], "log_path": str(r["log_path"])} for r in rows])

    def update_tries_bulk(self, rows: list[dict[str, Any]]) -> None:
        """Many update_try calls: rows that set the same fields go to the database as one executemany."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            fields = {k: v for k, v in row.items() if k not in ("run_key", "task_id", "try_number")}
            values = self._values(task_try, fields, "update_tries_bulk")
            params = {"k_run": row["run_key"], "k_task": row["task_id"], "k_try": row["try_number"], **values}
            groups.setdefault(tuple(sorted(values)), []).append(params)
        for batch in groups.values():
            self._exec(_UPDATE_TRY, batch)

    def update_try(self, run_key: int, task_id: str, try_number: int, **fields: Any) -> bool:
        """False if the try does not exist."""
        values = self._values(task_try, fields, "update_try")
        params = {"k_run": run_key, "k_task": task_id, "k_try": try_number, **values}
        return bool(self._exec(_UPDATE_TRY, params).rowcount)

    def set_xcom(self, run_key: int, task_id: str, key: str, value: Any) -> None:
        """Insert or replace one XCom; ``value`` must be JSON-able."""
        params = {"dag_run_id": run_key, "task_id": task_id, "key": key, "value": value}
        self._exec(_SET_XCOM[self._dialect], params)

    def delete_xcoms(self, run_key: int, task_ids: Iterable[str]) -> None:
        for chunk in chunks(list(task_ids)):
            self._exec(_DELETE_XCOMS, {"k_run": run_key, "k_tasks": chunk})

    def add_audit(self, *, time: datetime, uid: int | None, user: str | None, action: str,
                  dag_id: str | None = None, run_id: str | None = None, task_id: str | None = None,
                  params: dict[str, Any] | None = None) -> int:
        row = {"time": time, "uid": uid, "user": user, "action": action, "dag_id": dag_id, "run_id": run_id,
               "task_id": task_id, "params": params}
        return int(self._exec(sa.insert(audit_log), row).inserted_primary_key[0])
