"""Migration 0003 (each try's rendered command and cwd) on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from flow.daemon import models
from flow.daemon.store import Store
from flow.executors.base import MAX_RENDERED_BYTES, cap_text

from .helpers import T0, add_dag, add_run


def _at(store: Store, revision: str, how: str = "upgrade") -> None:
    config = store._alembic_config()
    with store._engine.begin() as conn:
        config.attributes["connection"] = conn
        getattr(command, how)(config, revision)
    assert store.revision() == revision


def _try(store: Store, key: int, n: int) -> None:
    with store.begin() as tx:
        tx.insert_try(key, "extract", n, state="success", start_date=T0, hostname="h", pid=1, log_path="/tmp/x.log")


def test_upgrade_from_0002_keeps_the_tries_and_adds_the_rendered_columns(db_url: str) -> None:
    with Store.open(db_url, migrate=False) as old:
        _at(old, "0002")
        add_dag(old)
        key = add_run(old, task_ids=("extract",))
        _try(old, key, 1)
    with Store.open(db_url) as store:  # opening migrates to head
        assert store.revision() == models.HEAD_REVISION == "0005_variables"
        [before] = store.tries(key, "extract")
        assert before["try_number"] == 1 and before["rendered"] is None and before["rendered_cwd"] is None
        _try(store, key, 2)
        command = "echo 'ünïcode' \x00 done\n" + "y" * (2 * MAX_RENDERED_BYTES)
        with store.begin() as tx:
            tx.update_try(key, "extract", 2, rendered=cap_text(command, MAX_RENDERED_BYTES, "the rendered command"),
                          rendered_cwd="/srv/2024")
        after = store.tries(key, "extract")[1]
        assert after["rendered"].startswith("echo 'ünïcode' \ufffd done\nyyy")  # PostgreSQL refuses NUL in text
        assert len(after["rendered"].encode()) == MAX_RENDERED_BYTES
        assert after["rendered"].endswith(f"\n[flow: the rendered command was cut here; it is {len(command.encode()) + 2} bytes]")
        assert after["rendered_cwd"] == "/srv/2024"
        assert "rendered" not in store.task_stats("etl", "extract")[0]  # tasks.stats does not carry 64 KiB per try
        _at(store, "0002", "downgrade")
        with store._engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("task_try")}
            kept = conn.exec_driver_sql("SELECT try_number FROM task_try ORDER BY try_number").scalars().all()
        assert "rendered" not in columns and "rendered_cwd" not in columns and "error" in columns
        assert kept == [1, 2]
        store.upgrade()
        assert store.revision() == models.HEAD_REVISION
        assert [t["rendered"] for t in store.tries(key, "extract")] == [None, None]
