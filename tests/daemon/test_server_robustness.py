"""flowd's socket server under bad input, strangers, viewers and slow clients: typed errors,
refusals, and no client able to stall or crash the daemon."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from typing import Any

import pytest

from flow.daemon.peer import Group, Peer, decide_role, forbidden_message, identify, peer_credentials
from flow.daemon.server import Server
from flow.protocol import ERROR_CODES, MAX_LINE
from tests.daemon import serverharness
from tests.daemon.serverharness import Client, LiveServer, trigger_and_wait

live = serverharness.live
client = serverharness.client
make_live = serverharness.make_live
close_clients = serverharness.close_clients

# -- roles (pure) -----------------------------------------------------------------------------

FLOW = Group("flow", 900, frozenset({"carol"}))
VIEW = Group("flow-view", 901, frozenset({"dave"}))


@pytest.mark.parametrize("uid, gid, user, primary, expected", [
    (0, 0, "root", 0, "operator"),                 # root
    (1000, 1000, "flowd", 1000, "operator"),       # the user flowd runs as
    (1001, 1001, "carol", 1001, "operator"),       # supplementary member of the operator group
    (1002, 900, "erin", 1002, "operator"),         # the peer process runs with the operator gid
    (1003, 1003, "frank", 900, "operator"),        # primary group in passwd is the operator group
    (1004, 1004, "dave", 1004, "viewer"),          # supplementary member of the viewer group
    (1005, 901, "gina", 1005, "viewer"),           # viewer gid
    (1006, 1006, "bob", 1006, None),               # nobody we know
])
def test_role_decision(uid, gid, user, primary, expected):
    assert decide_role(uid, gid, user, server_uid=1000, operator=FLOW, viewer=VIEW,
                       user_primary_gid=primary) == expected


def test_missing_groups_leave_only_root_and_flowds_own_user():
    assert decide_role(1001, 900, "carol", server_uid=1000, operator=None, viewer=None) is None
    assert decide_role(1000, 1000, "flowd", server_uid=1000, operator=None, viewer=None) == "operator"


def test_forbidden_message_names_both_groups():
    assert forbidden_message("bob", 1001, "flow", "flow-view") == (
        "user bob (uid 1001) may not use flowd: ask to be added to group 'flow' (operate) "
        "or 'flow-view' (read only)")



# -- errors and robustness --------------------------------------------------------------------


def error_of(client: Client, raw: bytes) -> dict[str, Any]:
    client.send_raw(raw)
    msg = client.recv()
    assert msg is not None and "error" in msg, msg
    return msg


@pytest.mark.parametrize("raw, code, rid", [
    (b"{not json\n", "parse_error", None),
    (b"[1, 2]\n", "invalid_request", None),
    (b'{"id": 1}\n', "invalid_request", 1),
    (b'{"id": "x", "method": "status", "params": [1]}\n', "invalid_request", "x"),
    (b'{"method": "status"}\n', "invalid_request", None),
    (b'{"id": 2, "method": "dags.delete"}\n', "unknown_method", 2),
    (b'{"id": 3, "method": "dags.get", "params": {"dag_id": 7}}\n', "invalid_params", 3),
    (b'{"id": 4, "method": "runs.list", "params": {"dag_id": "hello", "limit": "ten"}}\n', "invalid_params", 4),
    (b'{"id": 5, "method": "status", "params": {"verbose": true}}\n', "invalid_params", 5),
])
def test_bad_requests_get_typed_errors_and_the_connection_stays(live: LiveServer, raw, code, rid):
    c = Client(live.path)
    msg = error_of(c, raw)
    assert msg["id"] == rid and msg["error"]["code"] == code and msg["error"]["message"]
    assert c.result("status")["pid"] == os.getpid()
    c.close()


def test_not_found_and_conflict_say_what(live: LiveServer, client: Client):
    err = client.error("dags.get", dag_id="etx")
    assert err["code"] == "not_found" and err["message"].startswith("unknown DAG 'etx' (known: example_branch,")
    assert client.error("dags.trigger", dag_id="etx")["code"] == "not_found"
    assert client.error("runs.get", dag_id="hello", run_id="nope") == {
        "code": "not_found", "message": "DAG 'hello' has no run 'nope'"}
    run = trigger_and_wait(client, "hello", logical_date="2025-01-01T00:00:00Z")
    rid = run["run_id"]
    assert client.error("logs.read", dag_id="hello", run_id=rid, task_id="ghost") == {
        "code": "not_found", "message": f"run {rid!r} of DAG 'hello' has no task 'ghost'"}
    assert client.error("logs.read", dag_id="hello", run_id=rid, task_id="say", try_number=9) == {
        "code": "not_found", "message": f"task 'say' of run {rid!r} has no try 9 (tries: 1 to 1)"}
    assert client.error("tasks.mark", dag_id="hello", run_id=rid, task_ids=["ghost"], state="failed")["code"] == \
        "not_found"
    err = client.error("dags.trigger", dag_id="hello", logical_date="2025-01-01T00:00:00Z")
    assert err == {"code": "conflict", "message": f"DAG 'hello' already has a run {rid!r}"}
    assert client.error("runs.list", dag_id="nope")["code"] == "not_found"


def test_a_task_that_never_ran_has_no_log(live: LiveServer, client: Client):
    client.result("dags.pause", dag_id="pausable", paused=True)
    try:
        run = client.result("dags.trigger", dag_id="pausable")["run"]
        err = client.error("logs.follow", dag_id="pausable", run_id=run["run_id"], task_id="boom")
        assert err == {"code": "not_found",
                       "message": f"task 'boom' of run {run['run_id']!r} has not run yet, so it has no log"}
    finally:
        client.result("dags.pause", dag_id="pausable", paused=False)


def test_viewers_read_and_dry_run_but_may_not_change(live: LiveServer, client: Client):
    """The peer is always us (possibly root), so it is presented to the role decision as alice."""
    tables = {"flow": Group("flow", 900, frozenset()), "flow-view": Group("flow-view", 901, frozenset({"alice"}))}

    def as_alice(sock: socket.socket, operator_group: str, viewer_group: str) -> Peer:
        pid, uid, _gid = peer_credentials(sock)
        assert (pid, uid) == (os.getpid(), os.getuid())
        role = decide_role(1234, 1234, "alice", server_uid=os.geteuid(), operator=tables.get(operator_group),
                           viewer=tables.get(viewer_group))
        return Peer(pid, 1234, 1234, "alice", role)

    live.server.identify = as_alice
    try:
        viewer = Client(live.path)
        assert viewer.hello["hello"] | {"server": None} == {
            "protocol": 1, "server": None, "pid": os.getpid(), "uid": 1234, "user": "alice", "role": "viewer",
            "max_line": MAX_LINE}
        run = viewer.result("runs.list", dag_id="hello")["runs"][0]
        err = viewer.error("dags.trigger", dag_id="hello")
        assert err == {"code": "forbidden", "message": "dags.trigger needs the operator role; you are a viewer "
                                                       "(user alice; members of group 'flow' may operate)"}
        assert viewer.result("tasks.clear", dag_id="hello", run_id=run["run_id"], dry_run=True)["dry_run"] is True
        err = viewer.error("tasks.clear", dag_id="hello", run_id=run["run_id"])
        assert err["code"] == "forbidden" and "unless dry_run is true" in err["message"]
        assert viewer.error("dags.pause", dag_id="hello", paused=True)["code"] == "forbidden"
        assert viewer.result("status")["pid"] == os.getpid()
        viewer.close()

        tables["flow-view"] = Group("flow-view", 901, frozenset())
        stranger = Client(live.path, hello=False)
        assert stranger.handshake() == {"error": {"code": "forbidden", "message": (
            "user alice (uid 1234) may not use flowd: ask to be added to group 'flow' (operate) or "
            "'flow-view' (read only)")}}
        assert stranger.recv() is None
    finally:
        live.server.identify = identify
    assert Client(live.path).hello["hello"]["role"] == "operator"


def test_handshake_errors_close_the_connection(live: LiveServer):
    old = Client(live.path, hello=False)
    assert old.handshake(protocol=2) == {"error": {"code": "unsupported_version",
                                                   "message": "flowd speaks protocol 1; this client speaks 2"}}
    assert old.recv() is None
    rude = Client(live.path, hello=False)
    rude.send({"id": 1, "method": "status"})
    reply = rude.recv()
    assert reply["id"] == 1 and reply["error"]["code"] == "invalid_request"
    assert "first message must be a hello" in reply["error"]["message"]
    assert rude.recv() is None


def test_a_silent_client_is_dropped_after_the_hello_timeout(live: LiveServer):
    live.server.hello_timeout = 0.3
    try:
        silent = Client(live.path, hello=False)
        started = time.monotonic()
        assert silent.recv() == {"error": {"code": "invalid_request", "message": "no hello within 0.3 s"}}
        assert silent.recv() is None
        assert time.monotonic() - started < 5
    finally:
        live.server.hello_timeout = 10.0


def test_the_line_limit_is_exact_and_an_over_long_line_closes(live: LiveServer):
    c = Client(live.path)
    body = b'{"id":1,"method":"status"}'
    c.send_raw(body + b" " * (MAX_LINE - len(body)) + b"\n")
    assert c.reply(1)["result"]["pid"] == os.getpid()
    c.send_raw(body + b" " * (MAX_LINE + 1 - len(body)) + b"\n")
    msg = c.recv()
    assert msg == {"id": None, "error": {"code": "line_too_long",
                                         "message": f"line of {MAX_LINE + 1} bytes is over the limit of {MAX_LINE} bytes"}}
    assert c.recv() is None
    assert Client(live.path).result("status")["pid"] == os.getpid()


def test_a_long_line_without_newline_is_refused_before_it_ends(live: LiveServer):
    c = Client(live.path)
    with pytest.raises(BrokenPipeError):  # flowd has hung up long before the 3 MiB are sent
        c.send_raw(b"x" * (3 * MAX_LINE))
    assert c.recv()["error"]["code"] == "line_too_long"
    assert c.recv() is None


def test_a_bug_in_a_handler_is_an_internal_error(live: LiveServer, monkeypatch: pytest.MonkeyPatch):
    from flow.daemon import handlers

    def broken(call, params):
        raise KeyError("surprise")

    monkeypatch.setitem(handlers.HANDLERS, "dags.list", broken)
    c = Client(live.path)
    assert c.error("dags.list") == {"code": "internal", "message": "dags.list failed: KeyError: 'surprise'"}
    assert c.result("status")["pid"] == os.getpid()


def test_clients_that_vanish_mid_request_do_not_hurt(live: LiveServer):
    for _ in range(5):
        c = Client(live.path)
        c.send({"id": 1, "method": "dags.list"})
        c.send({"id": 2, "method": "runs.list", "params": {"dag_id": "hello"}})
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()  # reset, with the replies unread
        half = Client(live.path, hello=False)
        half.send_raw(b'{"hello": {"protoc')
        half.close()
    assert Client(live.path).result("status")["pid"] == os.getpid()


def test_publish_never_raises(live: LiveServer, client: Client):
    live.call(live.server.publish, "ti", {"bad": object()})
    live.call(live.server.publish, "dag", {"dag_id": "x", "is_paused": True})
    assert client.wait_event(lambda e: e["event"] == "dag" and e["data"]["dag_id"] == "x")


# -- slow clients -----------------------------------------------------------------------------

BIG = "x" * 1000


async def burst(server: Server, count: int) -> None:
    """Publish `count` 1 kB events, yielding now and then as the engine's loop does."""
    for i in range(count):
        server.publish("ti", {"n": i, "pad": BIG})
        if i % 10 == 9:
            await asyncio.sleep(0.001)


def test_a_subscriber_that_does_not_read_gets_a_resync_and_slows_nobody(make_live):
    server = make_live(queue_limit=100)
    stuck = Client(server.path)
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.result("subscribe")
    reader = Client(server.path)
    reader.result("subscribe")
    got: list[dict[str, Any]] = []

    def read_all() -> None:
        while len([m for m in got if "n" in m["data"]]) < 3000:
            msg = reader.recv()
            if msg is None:
                return
            got.append(msg)

    thread = threading.Thread(target=read_all)
    thread.start()
    started = time.monotonic()
    server.call(burst, server.server, 3000)
    assert Client(server.path).result("status")["pid"] == os.getpid()
    thread.join(30)
    assert time.monotonic() - started < 20
    assert [m["data"]["n"] for m in got if "n" in m["data"]] == list(range(3000)), "the reader lost events"
    assert [m["seq"] for m in got] == list(range(1, len(got) + 1))
    assert "resync" not in [m["event"] for m in got]

    stuck.sock.settimeout(5)
    seen = []
    while not seen or seen[-1]["data"].get("n") != 2999:  # the newest event always survives a resync
        msg = stuck.recv()
        assert msg is not None
        seen.append(msg)
    kinds = [m["event"] for m in seen]
    assert "resync" in kinds and len(seen) < 3000
    assert seen[kinds.index("resync")]["data"] == {"reason": "client fell behind"}
    assert [m["seq"] for m in seen] == list(range(1, len(seen) + 1)), "seq has no gaps: resync says what was lost"
    before = [m["data"]["n"] for m in seen[:kinds.index("resync")]]
    assert before == list(range(len(before)))


def test_a_client_that_stops_reading_is_disconnected(make_live):
    server = make_live(write_timeout=0.5)
    stuck = Client(server.path)
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.result("subscribe")
    server.call(burst, server.server, 2000)
    time.sleep(1.5)  # the write timeout itself is what is under test
    stuck.sock.settimeout(5)
    count = 0
    while stuck.recv() is not None:
        count += 1
    assert 0 < count < 2000
    assert Client(server.path).result("status")["pid"] == os.getpid()


def test_every_error_code_is_known_to_the_protocol():
    assert {"parse_error", "invalid_request", "unknown_method", "invalid_params", "not_found", "conflict",
            "forbidden", "line_too_long", "unsupported_version", "internal", "too_many_connections"} == ERROR_CODES
