"""LatestOnlyOperator: let downstream tasks run only in the run of the most recent schedule slot.

Airflow's rule: a manual run always proceeds; a scheduled run proceeds only when "now" lies
between its data interval's end and the next fire time (it is the latest run), otherwise all
direct downstream tasks are skipped (and theirs by trigger rules).
"""

from __future__ import annotations

from typing import Any

import pendulum

from flow.operators.python import BaseBranchOperator


class LatestOnlyOperator(BaseBranchOperator):
    def choose_branch(self, context: dict[str, Any]) -> list[str]:
        downstream = list(self.downstream_task_ids)
        if context["dag_run"].run_type != "scheduled":
            print("Manually triggered DAG_Run: allowing execution to proceed.")
            return downstream
        from flow.schedule import parse_schedule

        dag = context["dag"]
        schedule = parse_schedule(getattr(dag, "schedule", None), getattr(dag, "timezone", "UTC"))
        now = pendulum.now("UTC")
        end = context["data_interval_end"]
        following = schedule.next_fire(end) if schedule is not None else None
        if following is None or end <= now < following:
            print(f"Latest, allowing execution to proceed (window {end} to {following}).")
            return downstream
        print(f"Not latest execution (now {now} is not between {end} and {following}), skipping downstream.")
        return []
