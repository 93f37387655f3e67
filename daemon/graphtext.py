"""A DAG drawn as text for `flow dags show`: tasks in layers, each with its downstream edges."""

from __future__ import annotations

from typing import Any


def layers(ser: dict[str, Any]) -> list[list[str]]:
    """Longest-path layering: a task sits one layer below its deepest upstream."""
    depth: dict[str, int] = {}
    for t in ser["tasks"]:  # topological order
        depth[t["task_id"]] = 1 + max((depth[u] for u in t["upstream"]), default=-1)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for t in ser["tasks"]:
        out[depth[t["task_id"]]].append(t["task_id"])
    return out


def render_graph(ser: dict[str, Any]) -> str:
    tasks = {t["task_id"]: t for t in ser["tasks"]}
    lines = [f"{ser['dag_id']}  ({len(tasks)} tasks, schedule {ser.get('schedule')!r})"]
    for n, layer in enumerate(layers(ser)):
        lines.append(f"layer {n}")
        for tid in layer:
            t = tasks[tid]
            rule = "" if t["trigger_rule"] == "all_success" else f" [{t['trigger_rule']}]"
            lines.append(f"  {tid} ({t['operator']}){rule}")
            for d in t["downstream"]:
                lines.append(f"    └─> {d}")
    return "\n".join(lines)
