"""runs.grid against a real engine: the same cells runs.get gives, for a whole page, and bad params."""

from __future__ import annotations

from tests.daemon import serverharness
from tests.daemon.serverharness import Client, LiveServer, trigger_and_wait

live = serverharness.live
client = serverharness.client
close_clients = serverharness.close_clients

DAYS = [f"2025-03-{day:02d}T00:00:00+00:00" for day in (1, 2, 3)]


def test_grid_pages_match_runs_get_cell_for_cell(live: LiveServer, client: Client):
    made = [trigger_and_wait(client, "hello", logical_date=day)["run_id"] for day in DAYS]
    made.append(trigger_and_wait(client, "failing", logical_date=DAYS[0])["run_id"])

    got = client.result("runs.grid", dag_id="hello", limit=2)
    assert [r["run_id"] for r in got["runs"]] == made[2:0:-1], "newest first, as runs.list"
    assert got["runs"] == client.result("runs.list", dag_id="hello", limit=2)["runs"]
    assert set(got["cells"]) == set(made[1:3]), "only the page's runs, and not the other DAG's"
    for run_id in made[1:3]:
        detail = client.result("runs.get", dag_id="hello", run_id=run_id)["task_instances"]
        expected = {ti["task_id"]: {"state": ti["state"], "try_number": ti["try_number"],
                                    "max_tries": ti["max_tries"], "duration": ti["duration"],
                                    "peak_rss": (ti["tries"][-1]["resources"] or {}).get("peak_rss")}
                    for ti in detail}
        assert got["cells"][run_id] == expected
        assert all(cell["state"] == "success" and cell["duration"] is not None
                   for cell in got["cells"][run_id].values())
        assert all(isinstance(cell["peak_rss"], int) and cell["peak_rss"] > 0
                   for cell in got["cells"][run_id].values()), "a bash try has a recorded peak RSS"

    older = client.result("runs.grid", dag_id="hello", before=got["runs"][-1]["logical_date"])
    assert [r["run_id"] for r in older["runs"]] == [made[0]]
    assert list(older["cells"]) == [made[0]] and set(older["cells"][made[0]]) == {"say", "after"}

    failed = client.result("runs.grid", dag_id="failing")["cells"][made[3]]["boom"]
    assert failed["state"] == "failed" and failed["try_number"] == 1


def test_grid_of_a_dag_without_runs_is_empty(live: LiveServer, client: Client):
    assert client.result("runs.grid", dag_id="pausable") == {"runs": [], "cells": {}}


def test_grid_refuses_an_unknown_dag_and_a_limit_out_of_range(live: LiveServer, client: Client):
    err = client.error("runs.grid", dag_id="nope")
    assert err["code"] == "not_found" and "unknown DAG 'nope'" in err["message"]
    for limit in (0, 201, "25"):
        err = client.error("runs.grid", dag_id="hello", limit=limit)
        assert err["code"] == "invalid_params" and err["message"].startswith("limit:"), err
    assert "from 1 to 200" in client.error("runs.grid", dag_id="hello", limit=201)["message"]
    err = client.error("runs.grid", dag_id="hello", before="yesterday")
    assert err["code"] == "invalid_params" and err["message"].startswith("before:")
    err = client.error("runs.grid", dag_id="hello", run_id="x")
    assert err["code"] == "invalid_params" and "not a parameter of runs.grid" in err["message"]
    assert len(client.result("runs.grid", dag_id="hello", limit=200)["runs"]) <= 200
