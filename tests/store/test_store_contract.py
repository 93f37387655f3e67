"""The store contract: every Tx and read method, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from flow.daemon.store import DuplicateRunError, Store, StoreError
from flow.states import RunState, TaskState

from .helpers import T0, add_dag, add_run, serialized


def test_upsert_dag_creates_with_derived_columns(store: Store) -> None:
    with store.begin() as tx:
        assert tx.upsert_dag(serialized(), now=T0) is True
    row = store.dag("etl")
    assert row is not None
    assert row["fileloc"] == "/srv/dags/etl.py"
    assert row["schedule"] == "0 9 * * *"
    assert row["timezone"] == "Europe/Berlin"
    assert row["owner"] == "alice"
    assert row["tags"] == ["nightly", "ünïcode"]
    assert row["description"] == "loads things"
    assert row["is_active"] is True and row["is_paused"] is False
    assert row["first_seen"] == T0 and row["last_parsed"] == T0
    assert row["next_dagrun"] is None
    assert row["serialized"] == serialized()


def test_upsert_dag_update_keeps_pause_and_first_seen(store: Store) -> None:
    add_dag(store)
    later = T0 + timedelta(hours=1)
    with store.begin() as tx:
        assert tx.set_paused("etl", True) is True
        assert tx.upsert_dag(serialized(description="changed", tags=[]), now=later) is False
    row = store.dag("etl")
    assert row is not None
    assert (row["is_paused"], row["first_seen"], row["last_parsed"]) == (True, T0, later)
    assert (row["description"], row["tags"]) == ("changed", [])


@pytest.mark.parametrize(
    ("upon_creation", "paused_default", "expected"),
    [(None, False, False), (None, True, True), (True, False, True), (False, True, False)],
)
def test_upsert_dag_paused_on_creation(store: Store, upon_creation, paused_default, expected) -> None:
    with store.begin() as tx:
        ser = serialized(is_paused_upon_creation=upon_creation)
        tx.upsert_dag(ser, now=T0, paused_default=paused_default)
    assert store.dag("etl")["is_paused"] is expected


def test_schedule_column_for_timedelta_and_none(store: Store) -> None:
    with store.begin() as tx:
        tx.upsert_dag(serialized("hourly", schedule=None, schedule_interval_seconds=3600.0), now=T0)
        tx.upsert_dag(serialized("manual", schedule=None), now=T0)
    assert store.dag("hourly")["schedule"] == "every 3600s"
    assert store.dag("manual")["schedule"] is None
    assert [d["dag_id"] for d in store.dags()] == ["hourly", "manual"]


def test_upsert_dag_rejects_missing_or_long_dag_id(store: Store) -> None:
    with store.begin() as tx:
        with pytest.raises(ValueError, match="dag_id must be a non-empty string"):
            tx.upsert_dag({"fileloc": "/x.py"}, now=T0)
        with pytest.raises(ValueError, match="250 at most"):
            tx.upsert_dag(serialized("x" * 251), now=T0)


def test_deactivate_then_reparse_reactivates(store: Store) -> None:
    add_dag(store, "a")
    add_dag(store, "b")
    with store.begin() as tx:
        tx.deactivate_dags(["a"])
        tx.deactivate_dags([])
    assert {d["dag_id"]: d["is_active"] for d in store.dags()} == {"a": False, "b": True}
    add_dag(store, "a")
    assert store.dag("a")["is_active"] is True


def test_set_paused_and_next_dagrun(store: Store) -> None:
    add_dag(store)
    with store.begin() as tx:
        assert tx.set_paused("nope", True) is False
        tx.set_next_dagrun("etl", T0 + timedelta(days=1))
    assert store.dag("etl")["next_dagrun"] == T0 + timedelta(days=1)
    assert store.dag("nope") is None
    with store.begin() as tx:
        tx.set_next_dagrun("etl", None)
    assert store.dag("etl")["next_dagrun"] is None


def test_replace_import_errors(store: Store) -> None:
    with store.begin() as tx:
        tx.replace_import_errors(["/d/a.py", "/d/b.py"], {"/d/a.py": ("SyntaxError", "tb a")}, T0)
    errors = store.import_errors()
    assert [(e["filename"], e["message"], e["traceback"], e["timestamp"]) for e in errors] == [
        ("/d/a.py", "SyntaxError", "tb a", T0)
    ]
    later = T0 + timedelta(minutes=5)
    with store.begin() as tx:
        tx.replace_import_errors(["/d/a.py"], {"/d/c.py": ("NameError", "tb c")}, later)
    assert [(e["filename"], e["timestamp"]) for e in store.import_errors()] == [("/d/c.py", later)]
    with store.begin() as tx:
        with pytest.raises(ValueError, match="the error of '/d/x.py' must be \\(message, traceback\\)"):
            tx.replace_import_errors([], {"/d/x.py": "just a string"}, T0)  # type: ignore[dict-item]


def test_create_run_and_read_it_back(store: Store) -> None:
    add_dag(store)
    key = add_run(store, task_ids=("extract", "load"))
    run = store.run("etl", "scheduled__2024-03-01T09:00:00+00:00")
    assert run is not None and run == store.run_by_key(key)
    assert run["id"] == key
    assert (run["run_type"], run["state"], run["conf"]) == ("scheduled", "queued", {"day": 0})
    assert (run["logical_date"], run["data_interval_start"]) == (T0, T0 - timedelta(days=1))
    assert run["queued_at"] == T0 + timedelta(minutes=1)
    assert run["start_date"] is None and run["end_date"] is None
    tis = store.task_instances(key)
    columns = ("task_id", "state", "try_number", "max_tries", "priority_weight")
    assert [tuple(t[c] for c in columns) for t in tis] == [
        ("extract", "none", 0, 2, 1),
        ("load", "none", 0, 2, 2),
    ]
    assert all(t["dag_id"] == "etl" and t["operator"] == "BashOperator" for t in tis)
    assert store.task_instance(key, "load") == tis[1]
    assert store.task_instance(key, "missing") is None
    assert store.run("etl", "nope") is None and store.run_by_key(key + 1000) is None


def test_duplicate_run_leaves_transaction_usable(store: Store) -> None:
    add_dag(store)
    add_run(store, run_id="r1")
    with store.begin() as tx:
        with pytest.raises(DuplicateRunError, match="DAG 'etl' already has a run 'r1'"):
            tx.create_run(
                dag_id="etl", run_id="r1", run_type="manual", logical_date=T0, data_interval_start=T0,
                data_interval_end=T0, conf=None, state="queued", queued_at=T0, tasks=[],
            )
        key2 = tx.create_run(
            dag_id="etl", run_id="r2", run_type="manual", logical_date=T0, data_interval_start=T0,
            data_interval_end=T0, conf=None, state=RunState.RUNNING, queued_at=T0, tasks=[],
        )
        tx.add_audit(time=T0, uid=1000, user="alice", action="trigger", dag_id="etl", run_id="r2")
    assert store.run_by_key(key2)["state"] == "running"
    assert store.run_by_key(key2)["conf"] == {}
    assert [a["action"] for a in store.audit()] == ["trigger"]
    assert issubclass(DuplicateRunError, StoreError)


def test_create_run_for_unknown_dag_is_a_store_error(store: Store) -> None:
    with store.begin() as tx:
        with pytest.raises(StoreError, match="DAG 'ghost' is not in the store"):
            tx.create_run(
                dag_id="ghost", run_id="r", run_type="manual", logical_date=T0, data_interval_start=T0,
                data_interval_end=T0, conf={}, state="queued", queued_at=T0, tasks=[],
            )


def test_exception_rolls_the_transaction_back(store: Store) -> None:
    add_dag(store, "kept")
    with pytest.raises(RuntimeError, match="boom"):
        with store.begin() as tx:
            tx.upsert_dag(serialized("lost"), now=T0)
            tx.set_paused("kept", True)
            raise RuntimeError("boom")
    assert store.dag("lost") is None
    assert store.dag("kept")["is_paused"] is False


def test_update_run_and_ti(store: Store) -> None:
    add_dag(store)
    key = add_run(store)
    with store.begin() as tx:
        assert tx.update_run(key, state=RunState.RUNNING, start_date=T0) is True
        assert tx.update_run(key + 99, state="failed") is False
        assert tx.update_ti(key, "extract", state=TaskState.RUNNING, try_number=1, pid=4242,
                            hostname="h1", start_date=T0, queued_at=T0) is True
        assert tx.update_ti(key, "nope", state="running") is False
    assert store.run_by_key(key)["state"] == "running"
    assert store.run_by_key(key)["start_date"] == T0
    ti = store.task_instance(key, "extract")
    assert (ti["state"], ti["try_number"], ti["pid"], ti["hostname"]) == ("running", 1, 4242, "h1")
    with store.begin() as tx:
        tx.update_ti(key, "extract", state="up_for_retry", pid=None, error="exit status 2", exit_code=2,
                     duration=1.5, end_date=T0 + timedelta(seconds=2),
                     next_retry_at=T0 + timedelta(minutes=5))
    ti = store.task_instance(key, "extract")
    assert (ti["pid"], ti["error"], ti["exit_code"], ti["duration"]) == (None, "exit status 2", 2, 1.5)
    assert ti["next_retry_at"] == T0 + timedelta(minutes=5)


def test_update_rejects_unknown_or_missing_fields(store: Store) -> None:
    add_dag(store)
    key = add_run(store)
    with store.begin() as tx:
        with pytest.raises(ValueError, match="update_ti: unknown field\\(s\\) colour, dag_run_id"):
            tx.update_ti(key, "extract", colour="red", dag_run_id=3)
        with pytest.raises(ValueError, match="update_run: unknown field\\(s\\) dag_id"):
            tx.update_run(key, dag_id="other")
        with pytest.raises(ValueError, match="update_try: no fields"):
            tx.update_try(key, "extract", 1)


def test_naive_datetime_is_refused_naming_the_parameter(store: Store) -> None:
    add_dag(store)
    key = add_run(store)
    with store.begin() as tx:
        with pytest.raises(ValueError, match="naive datetime 2024-01-01T00:00:00 .*parameter start_date"):
            tx.update_run(key, start_date=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="naive datetime"):
        store.runs("etl", before=datetime(2024, 1, 1))


def test_aware_datetimes_are_stored_as_utc(store: Store) -> None:
    add_dag(store)
    key = add_run(store)
    berlin = datetime(2024, 7, 1, 11, 30, 15, 123456, tzinfo=ZoneInfo("Europe/Berlin"))
    minus5 = datetime(2024, 1, 1, 19, 0, tzinfo=timezone(timedelta(hours=-5)))
    with store.begin() as tx:
        tx.update_run(key, start_date=berlin, end_date=minus5)
    run = store.run_by_key(key)
    assert run["start_date"] == datetime(2024, 7, 1, 9, 30, 15, 123456, tzinfo=UTC)
    assert run["end_date"] == datetime(2024, 1, 2, 0, 0, tzinfo=UTC)
    assert run["start_date"].tzinfo is UTC and run["end_date"].utcoffset() == timedelta(0)


def test_update_tis_bulk_groups_mixed_field_sets(store: Store) -> None:
    add_dag(store)
    key = add_run(store, task_ids=("a", "b", "c"))
    with store.begin() as tx:
        tx.update_tis_bulk([
            {"run_key": key, "task_id": "a", "state": TaskState.SCHEDULED},
            {"run_key": key, "task_id": "b", "state": "success", "end_date": T0},
            {"run_key": key, "task_id": "c", "state": "scheduled"},
        ])
        tx.update_tis_bulk([])
        with pytest.raises(ValueError, match="lacks run_key or task_id"):
            tx.update_tis_bulk([{"task_id": "a", "state": "none"}])
    tis = {t["task_id"]: t for t in store.task_instances(key)}
    assert {t: ti["state"] for t, ti in tis.items()} == {"a": "scheduled", "b": "success", "c": "scheduled"}
    assert tis["b"]["end_date"] == T0 and tis["a"]["end_date"] is None


def test_add_ti_for_a_task_added_later(store: Store) -> None:
    add_dag(store)
    key = add_run(store, task_ids=("a",))
    with store.begin() as tx:
        tx.add_ti(key, "late", "PythonOperator", 7, 3, TaskState.NONE)
        with pytest.raises(StoreError, match="no run with key"):
            tx.add_ti(key + 50, "x", "EmptyOperator", 1, 1, "none")
    ti = store.task_instance(key, "late")
    assert (ti["operator"], ti["priority_weight"], ti["max_tries"], ti["state"], ti["try_number"]) == (
        "PythonOperator", 7, 3, "none", 0
    )
    assert [t["task_id"] for t in store.task_instances(key)] == ["a", "late"]


def test_tries(store: Store) -> None:
    add_dag(store)
    key = add_run(store)
    with store.begin() as tx:
        tx.insert_try(key, "extract", 2, state="queued", start_date=T0 + timedelta(minutes=5), hostname="h",
                      pid=None, log_path="/logs/2.log")
        tx.insert_try(key, "extract", 1, state=TaskState.QUEUED, start_date=T0, hostname="h", pid=None,
                      log_path="/logs/1.log")
        assert tx.update_try(key, "extract", 1, state="failed", pid=99, end_date=T0 + timedelta(seconds=3),
                             duration=3.0, exit_code=None, signal=9, error="killed by SIGKILL") is True
        assert tx.update_try(key, "extract", 3, state="failed") is False
    tries = store.tries(key, "extract")
    assert [t["try_number"] for t in tries] == [1, 2]
    first = tries[0]
    assert (first["state"], first["pid"], first["signal"]) == ("failed", 99, 9)
    assert (first["error"], first["log_path"]) == ("killed by SIGKILL", "/logs/1.log")
    assert (first["start_date"], first["end_date"]) == (T0, T0 + timedelta(seconds=3))
    assert store.tries(key, "load") == []


def test_tries_in_bulk_insert_and_update_in_mixed_field_sets(store: Store) -> None:
    add_dag(store)
    key = add_run(store)
    with store.begin() as tx:
        tx.insert_tries_bulk([
            {"run_key": key, "task_id": t, "try_number": 1, "state": TaskState.QUEUED, "start_date": T0,
             "hostname": "h", "pid": None, "log_path": f"/logs/{t}.log"} for t in ("extract", "load")])
        tx.update_tries_bulk([
            {"run_key": key, "task_id": "extract", "try_number": 1, "state": "success", "exit_code": 0},
            {"run_key": key, "task_id": "load", "try_number": 1, "state": "failed", "error": "boom"},
        ])
        tx.insert_tries_bulk([])
        tx.update_tries_bulk([])
        with pytest.raises(ValueError, match="update_tries_bulk"):
            tx.update_tries_bulk([{"run_key": key, "task_id": "load", "try_number": 1, "no_such": 1}])
    extract, load = store.tries(key, "extract")[0], store.tries(key, "load")[0]
    assert (extract["state"], extract["exit_code"], extract["error"]) == ("success", 0, None)
    assert (load["state"], load["exit_code"], load["error"]) == ("failed", None, "boom")
    assert load["log_path"] == "/logs/load.log"


def test_xcoms_round_trip_json(store: Store) -> None:
    add_dag(store)
    key = add_run(store)
    value = {"rows": [1, 2.5, None, True], "name": "Zürich ✓", "nested": {"a": [{"b": []}]}}
    with store.begin() as tx:
        tx.set_xcom(key, "extract", "return_value", value)
        tx.set_xcom(key, "extract", "count", 1)
        tx.set_xcom(key, "extract", "count", 2)
        tx.set_xcom(key, "load", "none", None)
        tx.set_xcom(key, "load", "text", "plain")
    assert store.xcoms(key) == {
        "extract": {"return_value": value, "count": 2},
        "load": {"none": None, "text": "plain"},
    }
    with store.begin() as tx:
        tx.delete_xcoms(key, ["extract"])
    assert store.xcoms(key) == {"load": {"none": None, "text": "plain"}}
    with store.begin() as tx:
        with pytest.raises(TypeError, match="not JSON serializable"):
            tx.set_xcom(key, "load", "bad", object())


def test_audit_newest_first_with_filter(store: Store) -> None:
    with store.begin() as tx:
        for i in range(5):
            tx.add_audit(time=T0 + timedelta(seconds=i), uid=i, user=f"u{i}", action="pause",
                         dag_id="a" if i % 2 else "b", params={"i": i, "why": ["x"]})
        same_time = tx.add_audit(time=T0 + timedelta(seconds=4), uid=None, user=None, action="unpause")
    rows = store.audit()
    assert [r["id"] for r in rows][:2] == [same_time, same_time - 1]
    assert [r["uid"] for r in rows] == [None, 4, 3, 2, 1, 0]
    assert rows[1]["params"] == {"i": 4, "why": ["x"]} and rows[0]["params"] is None
    assert [r["uid"] for r in store.audit(limit=2)] == [None, 4]
    assert [r["uid"] for r in store.audit(dag_id="a")] == [3, 1]
    assert rows[1]["time"] == T0 + timedelta(seconds=4)


def test_runs_paging_and_state_filter(store: Store) -> None:
    add_dag(store)
    add_dag(store, "other")
    keys = [add_run(store, day=d, state="success" if d % 2 else "failed") for d in range(6)]
    add_run(store, "other", day=9)
    runs = store.runs("etl")
    assert [r["id"] for r in runs] == keys[::-1]
    assert [r["id"] for r in store.runs("etl", limit=2)] == [keys[5], keys[4]]
    assert [r["id"] for r in store.runs("etl", limit=None, before=T0 + timedelta(days=1))] == [keys[0]]
    assert len(store.runs("etl", limit=None)) == 6
    assert [r["id"] for r in store.runs("etl", before=T0 + timedelta(days=4), limit=2)] == [keys[3], keys[2]]
    assert [r["id"] for r in store.runs("etl", states=[RunState.FAILED])] == [keys[4], keys[2], keys[0]]
    assert [r["id"] for r in store.runs("etl", states=["success", "failed"], limit=1)] == [keys[5]]
    assert store.runs("missing") == []


def test_unfinished_runs_carry_their_tis(store: Store) -> None:
    add_dag(store)
    done = add_run(store, day=0, state="success")
    queued = add_run(store, day=2, state=RunState.QUEUED, task_ids=("a",))
    running = add_run(store, day=1, state="running", task_ids=("a", "b"))
    rows = store.unfinished_runs()
    assert [r["id"] for r in rows] == [running, queued]
    assert [t["task_id"] for t in rows[0]["tis"]] == ["a", "b"]
    assert [t["task_id"] for t in rows[1]["tis"]] == ["a"]
    assert all(t["dag_run_id"] == r["id"] for r in rows for t in r["tis"])
    assert done not in {r["id"] for r in rows}


def test_previous_run_tis_and_last_logical_date(store: Store) -> None:
    add_dag(store)
    first = add_run(store, day=0, task_ids=("a", "b"))
    add_run(store, day=1, run_type="manual")
    with store.begin() as tx:
        tx.update_ti(first, "a", state="success")
    assert store.previous_run("etl", T0) is None
    assert store.previous_tis("etl", T0) is None
    assert store.previous_run("etl", T0 + timedelta(hours=1))["id"] == first
    assert store.previous_tis("etl", T0 + timedelta(hours=1)) == {"a": "success", "b": "none"}
    assert store.previous_run("etl", T0 + timedelta(days=5))["run_type"] == "manual"
    assert store.last_logical_date("etl") == T0
    assert store.last_logical_date("etl", "manual") == T0 + timedelta(days=1)
    assert store.last_logical_date("etl", None) == T0 + timedelta(days=1)
    assert store.last_logical_date("etl", "backfill") is None


def test_latest_runs_one_per_dag(store: Store) -> None:
    for dag_id in ("a", "b", "idle"):
        add_dag(store, dag_id)
    add_run(store, "a", day=0)
    newest_a = add_run(store, "a", day=3)
    add_run(store, "a", day=1)
    newest_b = add_run(store, "b", day=0)
    latest = store.latest_runs()
    assert {dag_id: r["id"] for dag_id, r in latest.items()} == {"a": newest_a, "b": newest_b}
    assert latest["a"]["logical_date"] == T0 + timedelta(days=3)


def test_ti_state_counts_of_many_runs_in_one_call(store: Store) -> None:
    add_dag(store)
    keys = [add_run(store, day=d, task_ids=("a", "b", "c")) for d in range(3)]
    with store.begin() as tx:
        tx.update_ti(keys[0], "a", state="success")
        tx.update_ti(keys[0], "b", state="failed")
        tx.update_ti(keys[1], "c", state="running")
    assert store.ti_state_counts([keys[0], keys[1], 999999]) == {
        keys[0]: {"success": 1, "failed": 1, "none": 1}, keys[1]: {"none": 2, "running": 1}}
    assert store.ti_state_counts([]) == {}
    many = store.ti_state_counts(keys * 400)  # past one statement's 500 keys: the chunks add up
    assert many[keys[2]] == {"none": 3} and set(many) == set(keys)


def test_json_columns_round_trip(store: Store) -> None:
    ser = serialized(params={"n": 1.25, "s": "ß", "l": [None, False], "d": {}}, extra_key=[[1], {"x": None}])
    with store.begin() as tx:
        tx.upsert_dag(ser, now=T0)
    assert store.dag("etl")["serialized"] == ser
    key = add_run(store)
    with store.begin() as tx:
        tx.update_run(key, conf={"deep": {"list": [1, "two", 3.5, None]}, "emoji": "🚀"})
    assert store.run_by_key(key)["conf"] == {"deep": {"list": [1, "two", 3.5, None]}, "emoji": "🚀"}


def test_thousand_update_ti_in_one_transaction(store: Store) -> None:
    """Prints the cost the engine pays per state change; a figure for humans, not a threshold."""
    add_dag(store)
    task_ids = tuple(f"t{i:03d}" for i in range(100))
    keys = [add_run(store, day=d, task_ids=task_ids) for d in range(10)]
    start = time.perf_counter()
    with store.begin() as tx:
        for key in keys:
            for task_id in task_ids:
                tx.update_ti(key, task_id, state="scheduled", queued_at=T0)
    single = time.perf_counter() - start
    start = time.perf_counter()
    with store.begin() as tx:
        tx.update_tis_bulk([{"run_key": k, "task_id": t, "state": "queued"} for k in keys for t in task_ids])
    bulk = time.perf_counter() - start
    print(f"\n[{store.dialect}] 1000 update_ti: {single * 1000:.0f} ms; "
          f"update_tis_bulk(1000): {bulk * 1000:.0f} ms")
    assert {t["state"] for k in keys for t in store.task_instances(k)} == {"queued"}
