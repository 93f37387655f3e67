"""The DAG's graph as the planner and clear need it: topological order, edges, and walks over them.

Pure, like the planner. A :class:`DagDef` builds its index once, on first use (``DagDef.index``),
so the planner's per-call work never includes a topological sort.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flow.triggerrules import check_rule

if TYPE_CHECKING:
    from flow.plantypes import DagDef


@dataclass(frozen=True)
class DagIndex:
    """Edges and topological positions of one DagDef, derived from upstream and downstream lists."""

    order: tuple[str, ...]
    position: dict[str, int]
    parents: dict[str, tuple[str, ...]]
    children: dict[str, tuple[str, ...]]
    leaves: tuple[str, ...]


def dag_index(dag: DagDef) -> DagIndex:
    """The index of ``dag`` (built once per DagDef)."""
    return dag.index


def build_index(dag: DagDef) -> DagIndex:
    where = f"dag {dag.dag_id!r}"
    parents: dict[str, dict[str, None]] = {tid: {} for tid in dag.tasks}
    children: dict[str, dict[str, None]] = {tid: {} for tid in dag.tasks}
    for tid, task in dag.tasks.items():
        if task.task_id != tid:
            raise ValueError(f"{where}: task stored under {tid!r} says its task_id is {task.task_id!r}")
        try:
            check_rule(task.trigger_rule)
        except ValueError as e:
            raise ValueError(f"{where} task {tid!r}: {e}") from None
        for other, up, down in [(u, u, tid) for u in task.upstream] + [(d, tid, d) for d in task.downstream]:
            if other not in dag.tasks:
                raise ValueError(f"{where} task {tid!r}: refers to {other!r}, which is not a task of the DAG")
            parents[down][up] = None
            children[up][down] = None
    # Kahn's algorithm; ties keep definition order, so an already topological DagDef is unchanged.
    definition = {tid: i for i, tid in enumerate(dag.tasks)}
    indegree = {tid: len(p) for tid, p in parents.items()}
    ready = [definition[tid] for tid, n in indegree.items() if n == 0]
    heapq.heapify(ready)
    names = list(dag.tasks)
    order: list[str] = []
    while ready:
        tid = names[heapq.heappop(ready)]
        order.append(tid)
        for child in children[tid]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, definition[child])
    if len(order) != len(names):
        stuck = sorted(tid for tid, n in indegree.items() if n > 0)
        raise ValueError(f"{where}: dependency cycle among tasks {', '.join(stuck)}")
    return DagIndex(
        order=tuple(order),
        position={tid: i for i, tid in enumerate(order)},
        parents={tid: tuple(p) for tid, p in parents.items()},
        children={tid: tuple(c) for tid, c in children.items()},
        leaves=tuple(tid for tid in order if not children[tid]),
    )


def branch_skips(dag: DagDef, task_id: str, chosen: Iterable[str]) -> set[str]:
    """Direct downstream of a branch task that the branch did not choose.

    As in Airflow, a direct downstream that is also reachable from a chosen task is kept (the
    "join" in ``branch >> [a, join]; a >> join``), otherwise choosing ``a`` would skip its own join.
    """
    index = dag_index(dag)
    _known(dag, [task_id])
    picked = {chosen} if isinstance(chosen, str) else set(chosen)
    direct = index.children[task_id]
    keep = {c for c in direct if c in picked}
    keep |= _walk(index.children, keep)
    return {c for c in direct if c not in keep}


def short_circuit_skips(dag: DagDef, task_id: str) -> set[str]:
    """Every task downstream of a short-circuit task whose condition was falsy."""
    _known(dag, [task_id])
    return _walk(dag_index(dag).children, [task_id])


def relatives(dag: DagDef, task_ids: Iterable[str] | str, *, downstream: bool, upstream: bool) -> set[str]:
    """``task_ids`` together with their downstream and/or upstream tasks, transitively (for clear)."""
    ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
    _known(dag, ids)
    index = dag_index(dag)
    result = set(ids)
    if downstream:
        result |= _walk(index.children, ids)
    if upstream:
        result |= _walk(index.parents, ids)
    return result


def _walk(edges: dict[str, tuple[str, ...]], start: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    stack = [n for s in start for n in edges[s]]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(edges[node])
    return seen


def _known(dag: DagDef, task_ids: Iterable[str]) -> None:
    missing = sorted(t for t in task_ids if t not in dag.tasks)
    if missing:
        raise ValueError(f"dag {dag.dag_id!r} has no task {', '.join(map(repr, missing))}")


