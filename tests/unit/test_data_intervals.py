"""create_cron_data_intervals: Airflow 2's logical dates (the interval's start) for cron schedules."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

from flow.schedule import next_runs, plan_dag_runs


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def dag(**over):
    base = {"dag_id": "d", "schedule": "@daily", "schedule_interval_seconds": None, "timezone": "UTC",
            "start_date": "2026-01-01T00:00:00+00:00", "end_date": None, "catchup": True, "max_active_runs": 16}
    return {**base, **over}


def test_trigger_reading_is_the_default():
    plan = plan_dag_runs(dag(), next_dagrun=None, last_logical_date=None, active_runs=0,
                         now=utc(2026, 1, 2, 12), first_seen=utc(2026, 1, 1))
    assert [r.logical_date for r in plan.create] == [utc(2026, 1, 1), utc(2026, 1, 2)]


def test_data_intervals_give_the_interval_start_as_logical_date():
    plan = plan_dag_runs(dag(create_cron_data_intervals=True), next_dagrun=None, last_logical_date=None,
                         active_runs=0, now=utc(2026, 1, 3, 12), first_seen=utc(2026, 1, 1))
    # fired at Jan 2 and Jan 3 00:00 (the ends of the intervals); ds is the day the data is about
    assert [(r.logical_date, r.data_interval_start, r.data_interval_end) for r in plan.create] == [
        (utc(2026, 1, 1), utc(2026, 1, 1), utc(2026, 1, 2)),
        (utc(2026, 1, 2), utc(2026, 1, 2), utc(2026, 1, 3)),
    ]
    # replaying with the last logical date stored creates nothing again
    again = plan_dag_runs(dag(create_cron_data_intervals=True), next_dagrun=plan.next_dagrun,
                          last_logical_date=utc(2026, 1, 2), active_runs=0, now=utc(2026, 1, 3, 12),
                          first_seen=utc(2026, 1, 1))
    assert again.create == []
    assert [r.logical_date for r in next_runs(dag(create_cron_data_intervals=True), utc(2026, 1, 5, 1), 1)] == \
        [utc(2026, 1, 5)]


def test_folder_setting_and_timetables_choose_the_reading(tmp_path):
    path = tmp_path / "d.py"
    path.write_text(
        "import pendulum\nfrom airflow import DAG\n"
        "from airflow.timetables.interval import CronDataIntervalTimetable\n"
        "from airflow.timetables.trigger import CronTriggerTimetable\n"
        "DAG('plain', schedule='@daily')\n"
        "DAG('old', schedule=CronDataIntervalTimetable('0 3 * * *', timezone='Europe/Berlin'))\n"
        "DAG('new', schedule=CronTriggerTimetable('0 3 * * *', timezone='UTC'))\n"
    )
    script = ("import sys, flow.dagbag, flow.serialize\n"
              "dags, err = flow.dagbag.load_file(sys.argv[1])\n"
              "assert err is None, err\n"
              "print('\\n'.join(f\"{d.dag_id}={d.create_cron_data_intervals}:{d.timezone}:{d.schedule}\" for d in dags))")
    for setting, plain in (("0", False), ("1", True)):
        env = dict(os.environ, FLOW_CREATE_CRON_DATA_INTERVALS=setting)
        out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        got = dict(line.split("=", 1) for line in out.stdout.splitlines())
        assert got["plain"].startswith(f"{plain}:")
        assert got["old"] == "True:Europe/Berlin:0 3 * * *" and got["new"] == "False:UTC:0 3 * * *"


def test_continuous_is_refused_clearly():
    import pytest

    from flow.schedule import ScheduleError, parse_schedule

    with pytest.raises(ScheduleError, match="flow does not support the '@continuous' schedule"):
        parse_schedule("@continuous")
