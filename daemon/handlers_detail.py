"""One task instance's detail in replies: its XCom values (`xcom.get`), and the rendered commands
that `runs.get` carries per try.

Both can be large (an XCom up to 1 MiB, a rendered .sh script up to 64 KiB per try), and a reply
is one line that a client holds whole (clients accept up to 8 MiB). So each reply keeps within a
budget and says exactly what it cut, rather than letting one big value flood the socket.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flow.executors.base import cap_text
from flow.protocol import ProtocolError

if TYPE_CHECKING:
    from .handlers import Call

XCOM_VALUE_BYTES = 16 * 1024
"""Most bytes of one value's JSON in an xcom.get reply; a longer value comes as its head only."""
XCOM_REPLY_BYTES = 1024 * 1024
"""Most bytes of values in one xcom.get reply, however many keys the task pushed."""
RENDERED_REPLY_BYTES = 2 * 1024 * 1024
"""Most bytes of rendered commands in one runs.get reply (a run of 500 tasks that each render a
20 KiB script would otherwise make a 10 MB line)."""
RENDERED_CUT_BYTES = 1024
"""What is left of each rendered command once a runs.get reply has spent its budget."""


def xcom_get(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    """{key: value} as stored; values whose JSON is over the limits are under `truncated` instead,
    each as {"bytes": its full size, "head": the start of its JSON text}."""
    from .handlers import require_run

    engine = call.engine
    run = require_run(engine, p["dag_id"], p["run_id"])
    task_id = p["task_id"]
    if engine.store.task_instance(run["id"], task_id) is None:
        known = ", ".join(ti["task_id"] for ti in engine.store.task_instances(run["id"])[:20]) or "none"
        raise ProtocolError("not_found", f"run {p['run_id']!r} of DAG {p['dag_id']!r} has no task {task_id!r} "
                            f"(tasks: {known})")
    values: dict[str, Any] = {}
    truncated: dict[str, dict[str, Any]] = {}
    budget = XCOM_REPLY_BYTES
    for key, value in engine.store.task_xcoms(run["id"], task_id, p["key"]).items():
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        size = len(text.encode("utf-8"))
        if size <= min(XCOM_VALUE_BYTES, budget):
            values[key] = value
            budget -= size
            continue
        keep = min(XCOM_VALUE_BYTES, budget)
        head = text.encode("utf-8")[:keep].decode("utf-8", "ignore")
        truncated[key] = {"bytes": size, "head": head}
        budget -= len(head.encode("utf-8"))
    return {"dag_id": p["dag_id"], "run_id": p["run_id"], "task_id": task_id, "xcom": values,
            "truncated": truncated}


def fit_rendered(task_instances: list[dict[str, Any]]) -> None:
    """Cut the tries' rendered commands in a runs.get reply, in place, once RENDERED_REPLY_BYTES of
    them are in it; a cut one ends with a line saying so."""
    budget = RENDERED_REPLY_BYTES
    for ti in task_instances:
        for attempt in ti.get("tries") or ():
            text = attempt.get("rendered")
            if not text:
                continue
            size = len(text.encode("utf-8"))
            if size > budget:
                text = attempt["rendered"] = cap_text(text, max(budget, RENDERED_CUT_BYTES),
                                                      "the rendered command (in this runs.get reply)")
                size = len(text.encode("utf-8"))
            budget = max(0, budget - size)
