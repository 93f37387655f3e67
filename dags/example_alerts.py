"""A DAG that fails on purpose, to see alerts arrive: e-mail to `email`, a webhook by name.

Trigger it by hand (`flow dags trigger example_alerts`); it has no schedule, so it never fails on
its own. The addresses and the notifier name are examples: configure `[notifiers.NAME]` in
flowd.toml (see the README's "Alerts" section) and put your own here. Until then flowd warns, in
its log and in `flow status`, that the DAG names notifiers it does not have.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

from flow import DAG
from flow.operators import BashOperator

with DAG(
    "example_alerts",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    tags=["example"],
    default_args={
        "email": "oncall@example.com",
        "notify_on_failure": ["ops-webhook"],
        "retries": 1,
        "retry_delay": timedelta(seconds=1),
    },
):
    extract = BashOperator(task_id="extract", bash_command="echo 'rows: 120'")
    load = BashOperator(
        task_id="load",
        bash_command="for i in $(seq 1 30); do echo \"loading batch $i\"; done; "
                     "echo 'ERROR: table orders is locked' >&2; exit 3",
    )
    extract >> load
