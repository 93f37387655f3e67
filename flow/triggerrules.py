"""Airflow's trigger rules as one pure decision over the states of a task's direct upstreams.

The planner calls :func:`decide` with counts it has already gathered, so a join with hundreds of
upstreams costs one pass; :func:`evaluate_trigger_rule` is the same decision for a plain list.
Every rule resolves to something other than "wait" once all upstreams are finished, which is
what lets the planner treat a run with nothing in flight as a deadlock rather than a slow run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from flow.states import TaskState

Verdict = Literal["wait", "run", "skip", "upstream_failed"]

WAIT: Verdict = "wait"
RUN: Verdict = "run"
SKIP: Verdict = "skip"
UPSTREAM_FAILED: Verdict = "upstream_failed"

TRIGGER_RULES: tuple[str, ...] = (
    "all_success",
    "all_failed",
    "all_done",
    "all_skipped",
    "one_success",
    "one_failed",
    "one_done",
    "none_failed",
    "none_failed_min_one_success",
    "none_skipped",
    "always",
)

_S, _F, _UF, _SK, _RM = (
    TaskState.SUCCESS,
    TaskState.FAILED,
    TaskState.UPSTREAM_FAILED,
    TaskState.SKIPPED,
    TaskState.REMOVED,
)


def check_rule(rule: str) -> None:
    if rule not in TRIGGER_RULES:
        raise ValueError(f"unknown trigger rule {rule!r}; expected one of: {', '.join(TRIGGER_RULES)}")


def count_states(states: Iterable[TaskState]) -> dict[TaskState, int]:
    counts: dict[TaskState, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return counts


def evaluate_trigger_rule(rule: str, upstream_states: Iterable[TaskState | str]) -> Verdict:
    """Decide what a task in NONE does next, given its direct upstreams' states.

    REMOVED upstreams are ignored (the task no longer exists, so it can neither hold the task back
    nor fail it); with no upstream left the task runs, whatever its rule.
    """
    check_rule(rule)
    return decide(rule, count_states(TaskState(s) for s in upstream_states))


def decide(rule: str, counts: Mapping[TaskState, int]) -> Verdict:
    """:func:`evaluate_trigger_rule` over precounted states; ``rule`` must already be valid."""
    success, failed, upstream_failed, skipped = (counts.get(s, 0) for s in (_S, _F, _UF, _SK))
    total = sum(counts.values()) - counts.get(_RM, 0)
    if total == 0 or rule == "always":
        return RUN
    failures = failed + upstream_failed
    all_done = success + failures + skipped == total

    if rule == "all_success":
        if failures:
            return UPSTREAM_FAILED
        if skipped:
            return SKIP
        return RUN if success == total else WAIT
    if rule == "all_failed":
        if success or skipped:
            return SKIP
        return RUN if failures == total else WAIT
    if rule == "all_done":
        return RUN if all_done else WAIT
    if rule == "all_skipped":
        if success or failures:
            return SKIP
        return RUN if skipped == total else WAIT
    if rule == "one_success":
        if success:
            return RUN
        if all_done:
            return SKIP if skipped == total else UPSTREAM_FAILED
        return WAIT
    if rule == "one_failed":
        if failures:
            return RUN
        return SKIP if all_done else WAIT
    if rule == "one_done":
        # As in Airflow, upstream_failed is not "done" for this rule: only a real success or failure is.
        if success or failed:
            return RUN
        return SKIP if all_done else WAIT
    if rule == "none_failed":
        if failures:
            return UPSTREAM_FAILED
        return RUN if all_done else WAIT
    if rule == "none_failed_min_one_success":
        if failures:
            return UPSTREAM_FAILED
        if all_done:
            return SKIP if skipped == total else RUN
        return WAIT
    if rule == "none_skipped":
        if skipped:
            return SKIP
        return RUN if all_done else WAIT
    raise ValueError(f"unknown trigger rule {rule!r}; expected one of: {', '.join(TRIGGER_RULES)}")


def describe_counts(counts: Mapping[TaskState, int]) -> str:
    """'2 success, 1 skipped': short enough for a TIChange reason, whatever the fan-in."""
    return ", ".join(f"{n} {state.value}" for state, n in sorted(counts.items(), key=lambda kv: kv[0].value))
