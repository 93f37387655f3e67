"""flowd's socket server in-process: binding, the handshake, and every method's happy path,
with a real engine running real tasks (see serverharness.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from flow.daemon.handlers_logs import complete_utf8, read_range
from flow.daemon.server import Server, ServerError, bind_socket
from flow.daemon.specs import log_path
from flow.protocol import MAX_LINE
from tests.daemon import serverharness
from tests.daemon.serverharness import ME, Client, LiveServer, run_finished, trigger_and_wait

live = serverharness.live
client = serverharness.client
make_live = serverharness.make_live
close_clients = serverharness.close_clients

# -- log ranges (pure file reads) -------------------------------------------------------------


def test_complete_utf8_holds_back_a_cut_character():
    text = "ab✓".encode()  # ✓ is 3 bytes
    assert complete_utf8(text) == len(text)
    assert complete_utf8(text[:-1]) == 2 and complete_utf8(text[:-2]) == 2
    assert complete_utf8(b"") == 0 and complete_utf8(b"\xff\xff") == 2


def test_read_range_clamps_and_reads_from_the_end(tmp_path: Path):
    path = tmp_path / "a.log"
    path.write_bytes("one ✓\ntwo\n".encode())
    size = path.stat().st_size
    assert read_range(str(path), 0, 100) == ("one ✓\ntwo\n".encode(), 0, size)
    assert read_range(str(path), -4, 100) == (b"two\n", size - 4, size)
    assert read_range(str(path), -1000, 3) == (b"one", 0, size)
    assert read_range(str(path), 500, 10) == (b"", size, size)
    assert read_range(str(path), 0, 6) == (b"one ", 0, size)        # the ✓ is not cut in two
    assert read_range(str(path), -8, 100)[:2] == ("✓\ntwo\n".encode(), size - 8)
    assert read_range(str(path), -7, 100)[:2] == (b"\ntwo\n", size - 5)  # not inside the ✓
    assert read_range(str(tmp_path / "missing.log"), 0, 10) == (b"", 0, 0)


# -- the socket -------------------------------------------------------------------------------


def test_handshake_names_the_caller_and_its_role(live: LiveServer):
    c = Client(live.path)
    assert c.hello == {"hello": {"protocol": 1, "server": "flowd/" + live.server.version, "pid": os.getpid(),
                                 "uid": os.getuid(), "user": ME, "role": "operator", "max_line": MAX_LINE}}
    c.close()


def test_socket_is_0666_in_a_0755_folder_so_viewers_reach_the_handshake(live: LiveServer):
    assert stat.S_ISSOCK(os.stat(live.path).st_mode)
    assert stat.S_IMODE(os.stat(live.path).st_mode) == 0o666
    assert stat.S_IMODE(os.stat(os.path.dirname(live.path)).st_mode) == 0o755


def test_a_second_server_on_the_same_path_is_refused(live: LiveServer):
    second = Server(live.engine, live.settings)
    with pytest.raises(ServerError) as info:
        asyncio.run(second.start())
    assert str(info.value) == f"flowd is already running on {live.path} (pid {os.getpid()})"
    assert Client(live.path).result("status")["pid"] == os.getpid()  # the first one still serves


def test_a_stale_socket_is_replaced_and_a_plain_file_is_not(tmp_path: Path):
    path = tempfile.mkdtemp(prefix="fl", dir="/tmp") + "/flowd.sock"
    try:
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()  # the file stays behind, nobody listens: a crashed flowd
        old_ino = os.stat(path).st_ino
        sock, ino = bind_socket(path, "no-such-group-here")
        sock.close()
        assert ino != old_ino and os.stat(path).st_ino == ino
        os.unlink(path)
        Path(path).write_text("not a socket")
        with pytest.raises(ServerError, match="exists and is not a socket"):
            bind_socket(path, "flow")
        assert Path(path).read_text() == "not a socket"
    finally:
        shutil.rmtree(os.path.dirname(path))


def test_stop_removes_the_socket_file(make_live: Callable[..., LiveServer]):
    server = make_live()
    path = server.path
    assert os.path.exists(path)
    server.call(server.server.stop)
    assert not os.path.exists(path)
    with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
        Client(path)


def test_status_reports_the_daemon(live: LiveServer, client: Client):
    st = client.result("status")
    assert set(st) == {"version", "pid", "started_at", "uptime", "rss", "cpu_percent", "loop_lag_ms", "running",
                       "parallelism", "free_slots", "dags", "paused", "import_errors", "db", "socket",
                       "dags_folder", "notifications", "storage", "default_timezone", "host", "admission",
                       "db_size", "log_size", "open_files", "sample_interval", "sampling_cpu_seconds",
                       "remote_sampling", "connections", "database", "problems"}
    assert st["connections"]["open"] >= 1 and st["connections"]["pending"] >= 0  # this client is open
    assert st["database"]["problem"] is None and st["database"]["lock"] == "held"
    assert st["notifications"] is None and st["storage"] is None, "this harness runs no alerting or sweep"
    assert st["pid"] == os.getpid() and st["socket"] == live.path
    assert st["dags_folder"] == live.settings.dags_folder and st["db"] == live.settings.db_url
    assert st["dags"] == 5 and st["import_errors"] == 1
    assert st["free_slots"] == st["parallelism"] - st["running"]
    assert st["rss"] > 10_000_000 and st["uptime"] > 0 and st["loop_lag_ms"] >= 0


def test_trigger_streams_events_until_the_run_succeeds(live: LiveServer, client: Client):
    run = client.result("dags.trigger", dag_id="example_branch", conf={"k": 1})["run"]
    assert run["dag_id"] == "example_branch" and run["state"] == "queued" and run["conf"] == {"k": 1}
    done = client.wait_event(run_finished("example_branch", run["run_id"]))
    assert done["data"]["state"] == "success"
    events = client.events + [done]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "events must be numbered without gaps"
    ours = [e for e in events if e["data"].get("run_id") == run["run_id"]]
    states = [(e["data"].get("task_id"), e["data"]["state"]) for e in ours if e["event"] == "ti"]
    assert ("condition", "running") in states and ("condition", "success") in states
    assert ours[0]["event"] == "run" and ours[-1]["event"] == "run"

    got = client.result("runs.get", dag_id="example_branch", run_id=run["run_id"])
    assert got["run"]["state"] == "success"
    tis = {t["task_id"]: t for t in got["task_instances"]}
    assert [t["state"] for t in tis["condition"]["tries"]] == ["success"]
    assert tis["condition"]["tries"][0]["exit_code"] == 0
    assert {tis["dummy_task_1"]["state"], tis["dummy_task_2"]["state"]} == {"success", "skipped"}
    assert tis["dummy_task_1"]["tries"] == [] or tis["dummy_task_2"]["tries"] == []

    listed = client.result("runs.list", dag_id="example_branch")["runs"]
    assert listed[0]["run_id"] == run["run_id"]
    dag = client.result("dags.get", dag_id="example_branch")["dag"]
    assert dag["last_run"]["run_id"] == run["run_id"] and dag["last_run"]["state"] == "success"
    assert dag["recent"] == {"success": 2, "skipped": 1}
    assert [t["task_id"] for t in dag["serialized"]["tasks"]][0] == "condition"
    summary = {d["dag_id"]: d for d in client.result("dags.list")["dags"]}["example_branch"]
    assert summary["schedule"] == "* * * * *" and summary["schedule_text"]
    assert summary["tags"] == ["example"] and summary["is_active"] and not summary["is_paused"]

    entry = client.result("audit.list", dag_id="example_branch")["entries"][0]
    assert (entry["action"], entry["user"], entry["uid"], entry["run_id"]) == ("trigger", ME, os.getuid(),
                                                                                run["run_id"])


def test_logs_read_from_the_start_the_end_and_in_pieces(live: LiveServer, client: Client):
    run = trigger_and_wait(client, "hello")
    path = log_path(live.settings.log_folder, "hello", run["run_id"], "say", 1)
    raw = Path(path).read_bytes()
    assert "héllo\nline 1 ✓\n".encode() in raw

    whole = client.result("logs.read", dag_id="hello", run_id=run["run_id"], task_id="say")
    assert whole == {"data": raw.decode(), "offset": 0, "next_offset": len(raw), "size": len(raw),
                     "running": False}
    tail = client.result("logs.read", dag_id="hello", run_id=run["run_id"], task_id="say", offset=-10)
    assert tail["data"].encode() == raw[-10:] and tail["offset"] == len(raw) - 10

    pieces, offset = [], 0
    while True:  # 5-byte reads never split a character, and together give the whole file
        got = client.result("logs.read", dag_id="hello", run_id=run["run_id"], task_id="say", try_number=1,
                            offset=offset, length=5)
        if not got["data"]:
            break
        assert got["offset"] == offset and "\ufffd" not in got["data"]
        pieces.append(got["data"])
        offset = got["next_offset"]
    assert "".join(pieces).encode() == raw and offset == len(raw)

    past = client.result("logs.read", dag_id="hello", run_id=run["run_id"], task_id="say", offset=10**9)
    assert (past["data"], past["offset"], past["next_offset"]) == ("", len(raw), len(raw))


def test_logs_follow_delivers_lines_then_log_end(live: LiveServer, client: Client):
    run = client.result("dags.trigger", dag_id="slow")["run"]
    client.wait_event(lambda e: e["event"] == "ti" and e["data"]["dag_id"] == "slow"
                      and e["data"]["state"] == "running")
    start = client.result("logs.follow", dag_id="slow", run_id=run["run_id"], task_id="tick")
    assert start == {"offset": 0}
    logs = []
    while True:
        ev = client.wait_event(lambda e: e["event"] in ("log", "log_end"))
        if ev["event"] == "log_end":
            break
        logs.append(ev["data"])
    raw = Path(log_path(live.settings.log_folder, "slow", run["run_id"], "tick", 1)).read_bytes()
    assert "".join(d["data"] for d in logs).encode() == raw
    assert all(b"tick %d\n" % i in raw for i in range(1, 7))
    assert len(logs) >= 2, "the log must arrive as it grows, not all at the end"
    assert [d["offset"] for d in logs] == [0] + [d["next_offset"] for d in logs[:-1]]
    assert ev["data"] == {"dag_id": "slow", "run_id": run["run_id"], "task_id": "tick", "try_number": 1,
                          "offset": len(raw), "size": len(raw)}
    assert {d["try_number"] for d in logs} == {1}
    assert client.seqs == list(range(1, len(client.seqs) + 1)), "log and engine events share one numbering"
    # The end of the try is seen when the engine reports it, not at the next poll: before tock starts.
    client.wait_event(run_finished("slow", run["run_id"]))
    order = [(e["event"], e["data"].get("task_id"), e["data"].get("state")) for e in client.arrivals]
    assert order.index(("log_end", "tick", None)) < order.index(("ti", "tock", "running"))

    again = client.result("logs.follow", dag_id="slow", run_id=run["run_id"], task_id="tick", offset=-7)
    assert again == {"offset": len(raw) - 7}
    tail = client.wait_event(lambda e: e["event"] in ("log", "log_end"))
    assert tail["data"]["data"].encode() == raw[-7:] and tail["data"]["offset"] == len(raw) - 7
    assert client.wait_event(lambda e: e["event"] in ("log", "log_end"))["event"] == "log_end"


def test_clear_dry_run_changes_nothing_and_a_real_clear_reruns(live: LiveServer, client: Client):
    run = trigger_and_wait(client, "hello", logical_date="2025-06-01T00:00:00Z")
    rid = run["run_id"]
    preview = client.result("tasks.clear", dag_id="hello", run_id=rid, task_ids=["say"], downstream=True,
                            dry_run=True)
    assert preview == {"task_instances": [{"task_id": "say", "state": "success", "try_number": 1},
                                          {"task_id": "after", "state": "success", "try_number": 1}],
                       "dry_run": True}
    assert client.result("runs.get", dag_id="hello", run_id=rid)["run"]["state"] == "success"

    cleared = client.result("tasks.clear", dag_id="hello", run_id=rid, task_ids=["say"], downstream=True)
    assert cleared["dry_run"] is False and len(cleared["task_instances"]) == 2
    client.wait_event(run_finished("hello", rid))
    tis = {t["task_id"]: t for t in client.result("runs.get", dag_id="hello", run_id=rid)["task_instances"]}
    assert [t["try_number"] for t in tis["say"]["tries"]] == [1, 2]
    actions = [e["action"] for e in client.result("audit.list", dag_id="hello", limit=5)["entries"]]
    assert actions[0] == "clear" and "trigger" in actions


def test_a_failed_run_is_retried_or_marked(live: LiveServer, client: Client):
    run = trigger_and_wait(client, "failing")
    rid = run["run_id"]
    assert client.result("runs.get", dag_id="failing", run_id=rid)["run"]["state"] == "failed"
    assert client.result("tasks.retry", dag_id="failing", run_id=rid, dry_run=True) == {
        "task_instances": [{"task_id": "boom", "state": "failed", "try_number": 1}], "dry_run": True}
    marked = client.result("tasks.mark", dag_id="failing", run_id=rid, task_ids=["boom"], state="success")
    assert marked["task_instances"] == [{"task_id": "boom", "state": "failed", "try_number": 1}]
    client.wait_event(lambda e: e["event"] == "run" and e["data"]["run_id"] == rid
                      and e["data"]["state"] == "success")
    assert client.result("tasks.retry", dag_id="failing", run_id=rid)["task_instances"] == []


def test_pause_and_unpause(live: LiveServer, client: Client):
    assert client.result("dags.pause", dag_id="pausable", paused=True) == {"changed": True}
    ev = client.wait_event(lambda e: e["event"] == "dag")
    assert ev["data"] == {"dag_id": "pausable", "is_paused": True}
    assert client.result("dags.pause", dag_id="pausable", paused=True) == {"changed": False}
    assert client.result("dags.get", dag_id="pausable")["dag"]["is_paused"] is True
    assert client.result("status")["paused"] == 1
    assert client.result("dags.pause", dag_id="pausable", paused=False) == {"changed": True}
    assert [e["action"] for e in client.result("audit.list", dag_id="pausable")["entries"]] == ["unpause", "pause"]


def test_import_errors_are_listed(live: LiveServer, client: Client):
    errors = client.result("import_errors.list")["import_errors"]
    assert [Path(e["filename"]).name for e in errors] == ["broken.py"]
    assert "nothing_here_at_all" in errors[0]["message"] and errors[0]["traceback"] and errors[0]["timestamp"]
    assert client.result("dags.list")["import_errors"] == 1


def test_subscribe_with_topics_only_delivers_those(live: LiveServer):
    c = Client(live.path)
    assert c.result("subscribe", topics=["dag"]) == {"seq": 0}
    c.result("dags.trigger", dag_id="hello")
    c.result("dags.pause", dag_id="pausable", paused=True)
    c.result("dags.pause", dag_id="pausable", paused=False)
    first = c.wait_event(lambda e: True)
    second = c.wait_event(lambda e: True)
    assert [first["event"], second["event"], first["seq"], second["seq"]] == ["dag", "dag", 1, 2]
    assert all(e["event"] == "dag" for e in c.events)
    c.close()
