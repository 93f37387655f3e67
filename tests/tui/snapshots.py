"""A real flowd whose history is made deterministic, for the console's snapshot tests.

Snapshots compare pixels of text, so everything on screen must be the same on every machine and
every run: the socket path (shown in the header), the zone (TZ=UTC), the console's clock
(`flow.tui.timefmt.now`), and the times, hosts and pids flowd recorded. The runs themselves are
real: flowd runs the DAGs; only their recorded times, hosts and pids are rewritten afterwards,
straight in its database, before the console attaches.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from flow.daemon.client import Client
from tests.daemon.conftest import Flowd, NotifyListener

ROOT = Path(__file__).resolve().parents[2]
BASE = Path("/tmp/flowtui-snapshots")
NOW = datetime(2026, 1, 3, 9, 30, tzinfo=UTC)
"""The console's frozen clock."""
DAY = datetime(2026, 1, 1, tzinfo=UTC)
"""Logical dates of the snapshot runs start here, one day apart."""

DIAMOND = """
    import pendulum
    from flow import DAG
    from flow.operators import BashOperator

    with DAG("diamond", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             tags=["demo", "snapshot"], default_args={"owner": "ops"}):
        extract = BashOperator(task_id="extract", bash_command="echo extracting; echo rows=42")
        clean = BashOperator(task_id="clean", bash_command="echo cleaning")
        enrich = BashOperator(task_id="enrich", bash_command="echo enriching")
        load = BashOperator(task_id="load", bash_command="echo loading; exit {{ 1 if dag_run.conf.get('fail') else 0 }}")
        extract >> [clean, enrich] >> load
"""


def _wait_runs_done(client: Client, dag_id: str, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        runs = client.call("runs.list", dag_id=dag_id)["runs"]
        if len(runs) == count and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"{dag_id}: runs did not finish within {timeout:g}s: {runs}")
        time.sleep(0.1)


def freeze_history(db_url: str) -> None:
    """Give every run, task instance and try fixed times, host, pid and figures, from its logical date."""
    engine = sa.create_engine(db_url)
    meta = sa.MetaData()
    meta.reflect(engine)
    runs, tis, tries = meta.tables["dag_run"], meta.tables["task_instance"], meta.tables["task_try"]
    figures = meta.tables["try_resources"]
    with engine.begin() as conn:
        for run in conn.execute(sa.select(runs)).mappings():
            start = run["logical_date"].replace(tzinfo=UTC) + timedelta(hours=1)
            conn.execute(runs.update().where(runs.c.id == run["id"]).values(
                queued_at=start, start_date=start, end_date=start + timedelta(seconds=42)))
            for i, ti in enumerate(conn.execute(sa.select(tis).where(tis.c.dag_run_id == run["id"]).order_by(
                    tis.c.task_id)).mappings()):
                t0 = start + timedelta(seconds=i * 3)
                values = {"queued_at": t0, "start_date": t0 if ti["start_date"] else None,
                          "end_date": t0 + timedelta(seconds=2) if ti["end_date"] else None,
                          "duration": 2.0 if ti["end_date"] else None,
                          "hostname": "flowhost" if ti["hostname"] else None, "pid": 4242 if ti["pid"] else None}
                conn.execute(tis.update().where(tis.c.id == ti["id"]).values(**values))
                conn.execute(tries.update().where(tries.c.dag_run_id == run["id"],
                                                  tries.c.task_id == ti["task_id"]).values(
                    start_date=t0, end_date=t0 + timedelta(seconds=2), duration=2.0, hostname="flowhost",
                    pid=4242))
                conn.execute(figures.update().where(figures.c.dag_run_id == run["id"],
                                                    figures.c.task_id == ti["task_id"]).values(
                    peak_rss=(4 + i) * 1048576, wall=2.0, cpu_user=0.01, cpu_system=0.01, series=None))
    engine.dispose()


def freeze_logs(folder: Path) -> None:
    """The runner's own lines carry the start time, pid and run time: give them the frozen ones."""
    for path in folder.rglob("*.log"):
        text = path.read_text()
        text = re.sub(r"started \S+ pid \d+", "started 2026-01-01T01:00:00+00:00 pid 4242", text)
        text = re.sub(r"after \d+\.\d+s", "after 2.00s", text)
        path.write_text(text)


@pytest.fixture(scope="module")
def snapshot_flowd() -> Iterator[Flowd]:
    """flowd at a fixed socket path with example_xcom and `diamond`: three runs each, one failed.

    The path is fixed (the header shows it), so two test runs on one machine take turns by a lock.
    """
    lock = open("/tmp/flowtui-snapshots.lock", "w")  # noqa: SIM115 - held for the fixture's lifetime
    fcntl.flock(lock, fcntl.LOCK_EX)
    shutil.rmtree(BASE, ignore_errors=True)
    (BASE / "dags").mkdir(parents=True)
    (BASE / "home").mkdir()
    f = Flowd(socket_path=str(BASE / "flowd.sock"), dags_folder=str(BASE / "dags"),
              db_url=f"sqlite:///{BASE / 'flow.db'}", log_folder=str(BASE / "logs"), home=BASE / "home",
              stderr_path=BASE / "flowd.stderr")
    f.listener = NotifyListener(str(BASE / "notify.sock"))
    shutil.copy(ROOT / "dags" / "example_xcom.py", BASE / "dags")
    f.add_dag("diamond.py", DIAMOND)
    f.add_dag("broken.py", "import no_such_module_here\n")  # the DAG list's import-error banner
    try:
        f.start()
        with Client.connect(f.socket_path) as client:
            deadline = time.monotonic() + 30
            while len(client.call("dags.list")["dags"]) < 2:
                assert time.monotonic() < deadline, "flowd did not load the snapshot DAGs"
                time.sleep(0.1)
            for dag_id in ("example_xcom", "diamond"):
                for day in range(3):
                    conf = {"fail": True} if dag_id == "diamond" and day == 2 else {}
                    client.call("dags.trigger", dag_id=dag_id, conf=conf,
                                logical_date=(DAY + timedelta(days=day)).isoformat())
            for dag_id in ("example_xcom", "diamond"):
                _wait_runs_done(client, dag_id, 3)
        freeze_history(f.db_url)
        freeze_logs(Path(f.log_folder))
        yield f
    finally:
        f.cleanup()
        shutil.rmtree(BASE, ignore_errors=True)
        lock.close()


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """UTC as the local zone and the console's clock stopped at NOW."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr("flow.tui.timefmt.now", lambda: NOW)
    yield
    monkeypatch.undo()
    time.tzset()

