"""Settling tries that an earlier flowd left in flight.

The runner outlives flowd and writes each try's exit record next to its log, so after a
restart the record tells how a try ended. A try still running is followed by watching for
that record; a try with neither a record nor a live process is failed with a reason that
says so, rather than left RUNNING forever.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from flow.executors.base import TaskResult
from flow.states import TaskState

from .specs import log_path, status_path

if TYPE_CHECKING:
    from .engine import Engine, RunMem


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(path: str) -> TaskResult | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return TaskResult.from_json(json.load(fh))
    except (OSError, ValueError, TypeError):
        return None


def settle_orphans(engine: Engine, run: RunMem) -> None:
    """Queue a result for every in-flight try of `run`, or keep watching it if it still runs."""
    for task_id, view in run.tis.items():
        if view.state not in (TaskState.QUEUED, TaskState.RUNNING):
            continue
        ref = f"{run.key}:{task_id}:{view.try_number}"
        path = status_path(log_path(engine.settings.log_folder, run.dag_id, run.run_id, task_id, view.try_number))
        run.extra[task_id].ref = ref
        engine.refs[ref] = (run.key, task_id)
        result = read_status(path)
        if result is not None:
            result.ref = ref
            engine._events.append(("finished", result))
        elif _alive(run.extra[task_id].pid):
            engine.watch_orphan(ref, path, run.extra[task_id].pid)
        else:
            engine._events.append(("finished", TaskResult(
                ref=ref, pid=run.extra[task_id].pid, ok=False,
                error="lost: flowd stopped while this try was in flight and no exit record was written",
            )))
