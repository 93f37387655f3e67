"""Migration 0002 and the try_resources contract, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command

from flow.daemon import models
from flow.daemon.store import Store

from .helpers import T0, add_dag, add_run

FIG = {"cpu_user": 1.25, "cpu_system": 0.5, "peak_rss": 5 * 2**30, "avg_cpu_percent": 87.5,
       "peak_cpu_percent": 199.0, "read_bytes": 2**40, "write_bytes": 3, "wall": 2.0, "max_procs": 4,
       "max_threads": 9, "series": {"t": [0.5, 2.0], "cpu": [50.0, 125.0], "rss": [1024, 5 * 2**30]}}


def _try(store: Store, run_key: int, task_id: str, try_number: int) -> None:
    with store.begin() as tx:
        tx.insert_try(run_key, task_id, try_number, state="success", start_date=T0, hostname="h", pid=1,
                      log_path="/tmp/x.log")


def test_upgrade_from_0001_keeps_the_data_and_adds_try_resources(db_url: str) -> None:
    with Store.open(db_url, migrate=False) as old:
        config = old._alembic_config()
        with old._engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
        assert old.revision() == "0001"
        add_dag(old)
        key = add_run(old, task_ids=("extract",))
        _try(old, key, "extract", 1)
    with Store.open(db_url) as store:  # opening migrates to head
        assert store.revision() == models.HEAD_REVISION
        assert [t["try_number"] for t in store.tries(key, "extract")] == [1]
        assert store.try_resources(key) == {}
        with store.begin() as tx:
            tx.put_try_resources(key, "extract", 1, FIG)
        assert store.try_resources(key) == {("extract", 1): FIG}


def test_figures_are_replaced_not_duplicated_and_read_back_per_task(store: Store) -> None:
    add_dag(store)
    keys = [add_run(store, day=d, task_ids=("extract", "load")) for d in range(3)]
    for n, key in enumerate(keys):
        _try(store, key, "extract", 1)
        with store.begin() as tx:
            tx.put_try_resources(key, "extract", 1, FIG | {"peak_rss": 100 + n})
            tx.put_try_resources(key, "extract", 1, FIG | {"peak_rss": 200 + n})
    _try(store, keys[2], "extract", 2)  # a try without figures (still running) is listed too
    rows = store.task_stats("etl", "extract", limit=10)
    assert [(r["dag_run_id"], r["try_number"], r["peak_rss"]) for r in rows] == [
        (keys[2], 2, None), (keys[2], 1, 202), (keys[1], 1, 201), (keys[0], 1, 200)]
    assert len(store.task_stats("etl", "extract", limit=2)) == 2
    assert store.task_stats("etl", "load") == []
    assert store.peak_rss_of_runs(keys) == {keys[0]: 200, keys[1]: 201, keys[2]: 202}
    assert store.peak_rss_of_runs([]) == {}


def test_figures_in_bulk_replace_what_a_try_had(store: Store) -> None:
    add_dag(store)
    key = add_run(store, task_ids=("extract", "load"))
    _try(store, key, "extract", 1)
    _try(store, key, "load", 1)
    with store.begin() as tx:
        tx.put_try_resources(key, "extract", 1, FIG | {"peak_rss": 1})
        tx.put_try_resources_bulk({(key, "extract", 1): FIG | {"peak_rss": 2}, (key, "load", 1): FIG})
        tx.put_try_resources_bulk({})
    figures = store.try_resources(key)
    assert figures[("extract", 1)]["peak_rss"] == 2 and figures[("load", 1)] == FIG
