"""Which tasks follow from which: trigger rules, branch and short-circuit skips, relatives for clear.

Airflow's semantics throughout; plan() itself is tested in test_planner.py.
"""

from __future__ import annotations

import gc
import itertools
import weakref

import pytest

from flow.dagindex import branch_skips, dag_index, relatives, short_circuit_skips
from flow.planner import evaluate_trigger_rule as planner_evaluate
from flow.plantypes import DagDef, TaskDef
from flow.states import TaskState
from flow.triggerrules import TRIGGER_RULES, evaluate_trigger_rule

S, F, UF, SK = TaskState.SUCCESS, TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.SKIPPED
N, SC, Q, R, UR, RM = (
    TaskState.NONE,
    TaskState.SCHEDULED,
    TaskState.QUEUED,
    TaskState.RUNNING,
    TaskState.UP_FOR_RETRY,
    TaskState.REMOVED,
)

CASES = [
    # all_success: any failure fails it at once, then any skip skips it, else it waits for all successes.
    ("all_success", [S, S], "run"),
    ("all_success", [S, R], "wait"),
    ("all_success", [S, UR], "wait"),
    ("all_success", [S, Q], "wait"),
    ("all_success", [S, F], "upstream_failed"),
    ("all_success", [S, UF], "upstream_failed"),
    ("all_success", [F, R], "upstream_failed"),
    ("all_success", [S, SK], "skip"),
    ("all_success", [SK, R], "skip"),
    ("all_success", [SK, F], "upstream_failed"),
    # all_failed
    ("all_failed", [F, F], "run"),
    ("all_failed", [F, UF], "run"),
    ("all_failed", [F, R], "wait"),
    ("all_failed", [F, S], "skip"),
    ("all_failed", [F, SK], "skip"),
    ("all_failed", [S, R], "skip"),
    # all_done
    ("all_done", [S, F, UF, SK], "run"),
    ("all_done", [S, R], "wait"),
    ("all_done", [F, UR], "wait"),
    ("all_done", [N], "wait"),
    # all_skipped
    ("all_skipped", [SK, SK], "run"),
    ("all_skipped", [SK, R], "wait"),
    ("all_skipped", [SK, S], "skip"),
    ("all_skipped", [SK, F], "skip"),
    ("all_skipped", [UF, R], "skip"),
    # one_success: runs on the first success without waiting for the rest.
    ("one_success", [S, R], "run"),
    ("one_success", [N, S], "run"),
    ("one_success", [F, R], "wait"),
    ("one_success", [F, SK], "upstream_failed"),
    ("one_success", [UF, F], "upstream_failed"),
    ("one_success", [SK, SK], "skip"),
    # one_failed
    ("one_failed", [F, R], "run"),
    ("one_failed", [UF, N], "run"),
    ("one_failed", [S, R], "wait"),
    ("one_failed", [S, SK], "skip"),
    # one_done
    ("one_done", [S, R], "run"),
    ("one_done", [F, N], "run"),
    ("one_done", [SK, R], "wait"),
    ("one_done", [SK, SK], "skip"),
    ("one_done", [UF, SK], "skip"),
    # none_failed
    ("none_failed", [S, SK], "run"),
    ("none_failed", [SK, SK], "run"),
    ("none_failed", [S, R], "wait"),
    ("none_failed", [SC, S], "wait"),
    ("none_failed", [S, F], "upstream_failed"),
    ("none_failed", [UF, R], "upstream_failed"),
    # none_failed_min_one_success
    ("none_failed_min_one_success", [S, SK], "run"),
    ("none_failed_min_one_success", [SK, SK], "skip"),
    ("none_failed_min_one_success", [SK, R], "wait"),
    ("none_failed_min_one_success", [F, S], "upstream_failed"),
    ("none_failed_min_one_success", [UF, SK], "upstream_failed"),
    # none_skipped
    ("none_skipped", [S, F, UF], "run"),
    ("none_skipped", [S, R], "wait"),
    ("none_skipped", [SK, R], "skip"),
    # always
    ("always", [R, N], "run"),
    ("always", [F, UF], "run"),
]


@pytest.mark.parametrize(("rule", "upstream", "expected"), CASES, ids=[f"{r}-{'-'.join(u)}" for r, u, _ in CASES])
def test_rule_verdict(rule: str, upstream: list[TaskState], expected: str) -> None:
    assert evaluate_trigger_rule(rule, upstream) == expected
    assert evaluate_trigger_rule(rule, list(reversed(upstream))) == expected


def test_every_rule_has_cases() -> None:
    assert {rule for rule, _, _ in CASES} == set(TRIGGER_RULES)


@pytest.mark.parametrize("rule", TRIGGER_RULES)
def test_task_without_upstream_runs_whatever_its_rule(rule: str) -> None:
    assert evaluate_trigger_rule(rule, []) == "run"


@pytest.mark.parametrize("rule", TRIGGER_RULES)
def test_removed_upstreams_are_ignored(rule: str) -> None:
    assert evaluate_trigger_rule(rule, [RM, RM]) == "run"
    assert evaluate_trigger_rule(rule, [RM, R]) == evaluate_trigger_rule(rule, [R])


@pytest.mark.parametrize("rule", TRIGGER_RULES)
def test_no_rule_waits_once_every_upstream_finished(rule: str) -> None:
    """The planner relies on this: a run with nothing in flight cannot be merely slow."""
    for size in (1, 2, 3):
        for combo in itertools.combinations_with_replacement([S, F, UF, SK], size):
            assert evaluate_trigger_rule(rule, list(combo)) != "wait", (rule, combo)


def test_states_may_be_given_as_strings() -> None:
    assert evaluate_trigger_rule("all_success", ["success", "success"]) == "run"
    assert evaluate_trigger_rule("none_failed", ["skipped", "failed"]) == "upstream_failed"


def test_unknown_rule_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match=r"unknown trigger rule 'all_sucess'.*all_success"):
        evaluate_trigger_rule("all_sucess", [S])


def test_unknown_state_is_rejected() -> None:
    with pytest.raises(ValueError, match="'finished'"):
        evaluate_trigger_rule("all_done", ["finished"])


def test_planner_exports_the_same_function() -> None:
    assert planner_evaluate is evaluate_trigger_rule


# -- branch and short-circuit skips, relatives ----------------------------------------------------


def task(tid: str, *upstream: str) -> TaskDef:
    return TaskDef(task_id=tid, upstream=upstream)


def dag(*tasks: TaskDef) -> DagDef:
    return DagDef(dag_id="d", tasks={t.task_id: t for t in tasks})


G = dag(task("br"), task("a", "br"), task("b", "br"), task("c", "br"), task("a2", "a"),
        task("join", "br", "a2"), task("end", "join", "c"))


@pytest.mark.parametrize(("chosen", "skips"), [
    (["a"], {"b", "c"}),  # join is kept: it is reachable from the chosen a
    ("b", {"a", "c", "join"}),  # a single id given as a string
    (["b", "end", "nope"], {"a", "c", "join"}),  # ids that are not direct downstream are ignored
    ([], {"a", "b", "c", "join"}),
])
def test_branch_skips(chosen, skips: set[str]) -> None:
    assert branch_skips(G, "br", chosen) == skips


def test_short_circuit_skips_everything_downstream() -> None:
    assert short_circuit_skips(G, "a") == {"a2", "join", "end"}
    assert short_circuit_skips(G, "end") == set()


@pytest.mark.parametrize(("down", "up", "expected"), [
    (False, False, {"a2"}),
    (True, False, {"a2", "join", "end"}),
    (False, True, {"a2", "a", "br"}),
    (True, True, {"a2", "join", "end", "a", "br"}),
])
def test_relatives_include_the_tasks_themselves(down: bool, up: bool, expected: set[str]) -> None:
    assert relatives(G, ["a2"], downstream=down, upstream=up) == expected


def test_helpers_name_unknown_tasks() -> None:
    with pytest.raises(ValueError, match="dag 'd' has no task 'zz'"):
        relatives(G, ["a", "zz"], downstream=True, upstream=False)
    with pytest.raises(ValueError, match="dag 'd' has no task 'zz'"):
        branch_skips(G, "zz", [])


def test_index_follows_downstream_lists_and_fixes_the_order() -> None:
    g = DagDef("d", {"late": TaskDef("late", upstream=("mid",)), "mid": TaskDef("mid"),
                     "first": TaskDef("first", downstream=("mid",))})
    index = dag_index(g)
    assert index.order == ("first", "mid", "late") and index.leaves == ("late",)
    assert index.parents["mid"] == ("first",)


def test_index_is_cached_per_dagdef_object() -> None:
    g = dag(task("a"), task("b", "a"))
    twin = dag(task("a"), task("b", "a"))
    assert dag_index(g) is dag_index(g)
    assert dag_index(twin) is not dag_index(g)
    gone = weakref.ref(twin)
    del twin
    gc.collect()
    assert gone() is None  # the cache does not keep DagDefs alive
