"""Opening, migrating and refusing databases; the schema's indexes and the plans that use them."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from flow.daemon import models
from flow.daemon.store import Store, StoreError

from ..conftest import PG_URL, drop_pg_schema, fresh_pg_url
from .helpers import T0, add_dag, add_run

TABLES = {"dag", "dag_run", "task_instance", "task_try", "xcom", "import_error", "audit_log", "try_resources",
          "lease", "variable"}
BIG_TABLES = {"dag_run", "task_instance", "task_try", "xcom", "audit_log"}


def test_open_migrates_an_empty_database(db_url: str) -> None:
    with Store.open(db_url) as store:
        assert store.revision() == models.HEAD_REVISION
        assert TABLES | {models.VERSION_TABLE} == set(sa.inspect(store._engine).get_table_names())


def test_head_revision_constant_matches_the_shipped_migrations() -> None:
    folder = Path(models.__file__).with_name("migrations")
    script = ScriptDirectory(str(folder))
    assert script.get_heads() == [models.HEAD_REVISION]


def test_migrated_schema_matches_the_models(store: Store) -> None:
    with store._engine.connect() as conn:
        opts = {"compare_type": True, "version_table": models.VERSION_TABLE}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), models.metadata)
    assert diff == []


def test_reopen_keeps_data_and_is_idempotent(db_url: str) -> None:
    with Store.open(db_url) as first:
        add_dag(first)
    with Store.open(db_url) as second:
        assert second.dag("etl") is not None
        second.upgrade()
        assert second.revision() == models.HEAD_REVISION
        assert [d["dag_id"] for d in second.dags()] == ["etl"]


def test_open_without_migrate_leaves_the_schema_to_upgrade(db_url: str) -> None:
    with Store.open(db_url, migrate=False) as store:
        assert store.revision() == ""
        store.upgrade()
        assert store.revision() == models.HEAD_REVISION
        add_dag(store)


def test_concurrent_openers_migrate_once(db_url: str) -> None:
    barrier = threading.Barrier(3)
    outcomes: list[Any] = []

    def opener() -> None:
        barrier.wait(timeout=10)
        try:
            with Store.open(db_url) as s:
                outcomes.append(s.revision())
        except Exception as exc:  # collected and asserted below
            outcomes.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert outcomes == [models.HEAD_REVISION] * 3


def test_newer_schema_revision_is_refused(store: Store, db_url: str) -> None:
    with store._engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {models.VERSION_TABLE} SET version_num = '0099_future'")
    expected = (
        f"the database at {store.url} is at schema revision 0099_future, newer than this flow "
        f"(knows up to {models.HEAD_REVISION}): upgrade flow"
    )
    for migrate in (True, False):
        with pytest.raises(StoreError) as info:
            Store.open(db_url, migrate=migrate)
        assert str(info.value) == expected
    with pytest.raises(StoreError, match="newer than this flow"):
        store.upgrade()


def test_unreachable_postgresql_names_the_url_without_password() -> None:
    with pytest.raises(StoreError) as info:
        Store.open("postgresql://flow:s3cret@127.0.0.1:1/flow")
    message = str(info.value)
    assert message.startswith("cannot open the database at postgresql+psycopg://flow:***@127.0.0.1:1/flow: ")
    assert "refused" in message.lower()
    assert "s3cret" not in message and "\n" not in message


def test_unopenable_sqlite_paths(tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("")
    prefix = "^cannot open the database at sqlite:///"
    with pytest.raises(StoreError, match=rf"{prefix}{blocker}/sub/flow.db: .*directory"):
        Store.open(f"sqlite:///{blocker}/sub/flow.db")
    with pytest.raises(StoreError, match=rf"{prefix}{tmp_path}: unable to open"):
        Store.open(f"sqlite:///{tmp_path}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "invalid database URL 'not a url'"),
        ("mysql://u:pw@host/db", "unsupported database URL mysql://u:***@host/db"),
        ("sqlite://", "names no file"),
        ("sqlite:///:memory:", "names no file"),
        ("postgresql+psycopg2://h/db", "unsupported PostgreSQL driver"),
    ],
)
def test_bad_urls_get_one_clear_message(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message.replace("*", r"\*").replace("+", r"\+")):
        Store.open(url)


def test_password_is_masked_and_postgresql_url_gets_psycopg(pg_admin: sa.Engine) -> None:
    url, schema = fresh_pg_url(pg_admin)
    plain = sa.make_url(url).set(drivername="postgresql", password="hunter2")
    try:
        with Store.open(plain.render_as_string(hide_password=False)) as store:
            assert store.dialect == "postgresql"
            assert store.url.drivername == "postgresql+psycopg"
            assert "hunter2" not in str(store.url) and "hunter2" not in repr(store)
            assert "***" in str(store.url)
            assert store.url.password == "hunter2"
    finally:
        drop_pg_schema(pg_admin, schema)
    assert sa.make_url(PG_URL).get_backend_name() == "postgresql"


def test_deleting_a_run_cascades(store: Store) -> None:
    add_dag(store)
    key = add_run(store, task_ids=("a",))
    with store.begin() as tx:
        tx.insert_try(key, "a", 1, state="queued", start_date=T0, hostname="h", pid=None, log_path="/l")
        tx.set_xcom(key, "a", "k", 1)
    with store._engine.begin() as conn:
        conn.execute(sa.delete(models.dag_run).where(models.dag_run.c.id == key))
    assert store.task_instances(key) == [] and store.tries(key, "a") == [] and store.xcoms(key) == {}


def test_indexes_present(store: Store) -> None:
    inspector = sa.inspect(store._engine)

    def indexed(table: str) -> set[tuple[str, ...]]:
        return {tuple(ix["column_names"]) for ix in inspector.get_indexes(table)}

    def unique(table: str) -> set[tuple[str, ...]]:
        return {tuple(uc["column_names"]) for uc in inspector.get_unique_constraints(table)}

    assert {("dag_id", "logical_date", "id"), ("dag_id", "run_type", "logical_date"), ("state",)} <= indexed(
        "dag_run"
    )
    assert {("dag_id", "task_id"), ("state",)} <= indexed("task_instance")
    assert {("time", "id"), ("dag_id", "time", "id")} <= indexed("audit_log")
    assert ("dag_id", "run_id") in unique("dag_run")
    assert ("dag_run_id", "task_id") in unique("task_instance")
    assert ("dag_run_id", "task_id", "try_number") in unique("task_try")
    assert ("filename",) in unique("import_error")
    assert inspector.get_pk_constraint("xcom")["constrained_columns"] == ["dag_run_id", "task_id", "key"]


def _captured_selects(store: Store, call: Any) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def hook(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    sa.event.listen(store._engine, "before_cursor_execute", hook)
    try:
        call()
    finally:
        sa.event.remove(store._engine, "before_cursor_execute", hook)
    assert seen, "the read issued no SELECT"
    return seen


def _sqlite_full_scans(conn: sa.Connection, statement: str, parameters: Any) -> list[str]:
    plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
    # An ordered walk of the audit index is bounded by LIMIT; every other read must SEARCH.
    return [
        line for line in plan
        if line.startswith("SCAN ") and line.split()[1] in BIG_TABLES
        and not line.startswith("SCAN audit_log USING INDEX ix_audit_log_time")
    ]


def _pg_full_scans(conn: sa.Connection, statement: str, parameters: Any) -> list[str]:
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    raw = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
    plan = raw if isinstance(raw, list) else json.loads(raw)
    bad: list[str] = []

    def walk(node: dict[str, Any], parent: str) -> None:
        rel, kind = node.get("Relation Name"), node["Node Type"]
        if rel in BIG_TABLES:
            unbounded_index_walk = kind in ("Index Scan", "Index Only Scan") and "Index Cond" not in node
            if kind == "Seq Scan" or (unbounded_index_walk and parent != "Limit"):
                bad.append(f"{kind} on {rel} under {parent}")
        for child in node.get("Plans", []):
            walk(child, kind)

    walk(plan[0]["Plan"], "")
    return bad


def test_console_queries_are_index_lookups(store: Store) -> None:
    for dag_id in ("a", "b"):
        add_dag(store, dag_id)
        for day in range(3):
            add_run(store, dag_id, day=day, state="running", task_ids=("t1", "t2"))
    key = store.runs("a", limit=1)[0]["id"]
    reads = {
        "runs": lambda: store.runs("a", limit=5),
        "runs paged": lambda: store.runs("a", before=T0, states=["failed"]),
        "run": lambda: store.run("a", "x"),
        "run_by_key": lambda: store.run_by_key(key),
        "unfinished_runs": store.unfinished_runs,
        "task_instances": lambda: store.task_instances(key),
        "task_instance": lambda: store.task_instance(key, "t1"),
        "tries": lambda: store.tries(key, "t1"),
        "xcoms": lambda: store.xcoms(key),
        "previous_tis": lambda: store.previous_tis("a", T0.replace(year=2030)),
        "last_logical_date": lambda: store.last_logical_date("a"),
        "latest_runs": store.latest_runs,
        "audit": store.audit,
        "audit of a dag": lambda: store.audit(dag_id="a"),
    }
    check = _sqlite_full_scans if store.dialect == "sqlite" else _pg_full_scans
    problems = {}
    for name, call in reads.items():
        for statement, parameters in _captured_selects(store, call):
            with store._engine.begin() as conn:
                if found := check(conn, statement, parameters):
                    problems[name] = found
    assert problems == {}
