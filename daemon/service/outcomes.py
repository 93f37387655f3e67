"""Task and run outcomes as lines of flowd's own log, each with the fields the journal indexes.

A sysadmin reads `journalctl -u flowd` before any console: a failed task should be there, with
DAG_ID=, RUN_ID=, TASK_ID= and TRY= so `journalctl -u flowd DAG_ID=etl -p err` finds exactly it.
Fed by the engine's events (an engine listener, like the socket server and the metrics), so the
engine logs nothing itself and a line is written only after the change is committed.
"""

from __future__ import annotations

import logging
from typing import Any

from flow.states import RunState, TaskState

from ..rpc.logsafe import loggable

log = logging.getLogger("flow.tasks")

_TRY_LEVEL = {TaskState.FAILED.value: logging.ERROR, TaskState.UP_FOR_RETRY.value: logging.WARNING,
              TaskState.SUCCESS.value: logging.INFO}
_RUN_LEVEL = {RunState.FAILED.value: logging.ERROR, RunState.SUCCESS.value: logging.INFO}


def observe(kind: str, payload: dict[str, Any]) -> None:
    """An engine listener; never raises."""
    try:
        if kind == "ti" and payload.get("state") in _TRY_LEVEL:
            state = payload["state"]
            reason = payload.get("reason") or ""
            log.log(_TRY_LEVEL[state], "task %s.%s of run %s try %s: %s%s", payload["dag_id"], payload["task_id"],
                    payload["run_id"], payload.get("try_number"), state.replace("_", " "),
                    f" ({loggable(reason, 500)})" if reason else "",
                    extra={"dag_id": payload["dag_id"], "run_id": payload["run_id"], "task_id": payload["task_id"],
                           "try_number": payload.get("try_number")})
        elif kind == "run" and payload.get("state") in _RUN_LEVEL:
            state = payload["state"]
            reason = payload.get("reason") or ""
            log.log(_RUN_LEVEL[state], "run %s of %s: %s%s", payload["run_id"], payload["dag_id"], state,
                    f" ({loggable(reason, 500)})" if reason else "",
                    extra={"dag_id": payload["dag_id"], "run_id": payload["run_id"]})
    except Exception:
        log.exception("could not log a %s event", kind)
