"""The sync client against a tiny scripted server on a real Unix socket (one thread, one connection).

Each test scripts what the server says and checks what the client makes of it: the handshake,
events that arrive before and after a reply, error replies, a server that hangs up early.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flow.daemon.client import START_HINT, Client, ConnectionLost, NotRunning, RemoteError
from flow.daemon.follow import RunFollower, follow_log

HELLO = {"hello": {"protocol": 1, "server": "flowd/test", "pid": 1, "uid": 0, "user": "tester",
                   "role": "operator", "max_line": 1048576}}


class Peer:
    """The server's end of one connection: read the client's lines, send ours."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        self.rfile = conn.makefile("rb")
        self.received: list[dict[str, Any]] = []

    def recv(self) -> dict[str, Any]:
        line = self.rfile.readline()
        assert line, "the client hung up"
        msg = json.loads(line)
        self.received.append(msg)
        return msg

    def send(self, *messages: dict[str, Any]) -> None:
        self.conn.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in messages))

    def send_raw(self, data: bytes) -> None:
        self.conn.sendall(data)

    def greet(self) -> None:
        assert "hello" in self.recv()
        self.send(HELLO)

    def reply(self, result: dict[str, Any], *, before: list[dict] = (), after: list[dict] = ()) -> dict:
        req = self.recv()
        self.send(*before, {"id": req["id"], "result": result}, *after)
        return req


class ScriptedServer:
    """Accepts one connection and runs `script(peer)` on it in a thread; errors surface in `join`."""

    def __init__(self, path: str, script: Callable[[Peer], None]):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.error: BaseException | None = None
        self.peer: Peer | None = None
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script: Callable[[Peer], None]) -> None:
        conn, _ = self.sock.accept()
        self.peer = Peer(conn)
        try:
            script(self.peer)
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            self.peer.rfile.close()
            conn.close()

    def join(self) -> None:
        self.thread.join(5)
        assert not self.thread.is_alive(), "the scripted server did not finish"
        self.sock.close()
        if self.error is not None:
            raise self.error


@pytest.fixture
def sock_path() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="fc-")
    yield os.path.join(folder, "flowd.sock")
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)


def serve(path: str, script: Callable[[Peer], None]) -> ScriptedServer:
    return ScriptedServer(path, script)


def test_connect_sends_a_hello_and_keeps_the_servers(sock_path):
    def script(peer: Peer) -> None:
        hello = peer.recv()
        assert hello["hello"]["protocol"] == 1 and hello["hello"]["client"].startswith("probe/")
        peer.send(HELLO)
        req = peer.reply({"version": "0.1.0"})
        assert req["method"] == "status" and req["params"] == {}

    server = serve(sock_path, script)
    with Client.connect(sock_path, client_name="probe") as client:
        assert client.hello["role"] == "operator" and client.hello["user"] == "tester"
        assert client.call("status") == {"version": "0.1.0"}
    server.join()


def test_events_interleaved_with_a_reply_are_kept_in_order(sock_path):
    ev = [{"event": "ti", "seq": n, "data": {"n": n}} for n in (1, 2, 3, 4)]

    def script(peer: Peer) -> None:
        peer.greet()
        req = peer.reply({"seq": 0}, before=ev[:2], after=ev[2:3])
        assert req["params"] == {"topics": ["ti"]}
        peer.reply({"runs": []}, before=ev[3:])

    server = serve(sock_path, script)
    with Client.connect(sock_path) as client:
        assert client.call("subscribe", topics=["ti"]) == {"seq": 0}
        got = []
        for event in client.events(timeout=2):
            got.append(event["seq"])
            if event["seq"] == 2:
                assert client.call("runs.list", dag_id="x") == {"runs": []}
            if len(got) == 4:
                break
        assert got == [1, 2, 3, 4]
        assert client.last_seq == 4
    server.join()


def test_events_end_after_a_quiet_timeout(sock_path):
    done = threading.Event()

    def script(peer: Peer) -> None:
        peer.greet()
        peer.reply({"seq": 7}, after=[{"event": "run", "seq": 8, "data": {}}])
        done.wait(5)

    server = serve(sock_path, script)
    with Client.connect(sock_path) as client:
        client.call("subscribe")
        assert [e["seq"] for e in client.events(timeout=0.2)] == [8]
    done.set()
    server.join()


def test_a_line_split_across_writes_is_read_whole(sock_path):
    def script(peer: Peer) -> None:
        peer.greet()
        req = peer.recv()
        line = json.dumps({"id": req["id"], "result": {"data": "é" * 5000}}).encode() + b"\n"
        for i in range(0, len(line), 777):
            peer.send_raw(line[i:i + 777])

    server = serve(sock_path, script)
    with Client.connect(sock_path) as client:
        assert client.call("logs.read", dag_id="d")["data"] == "é" * 5000
    server.join()


def test_error_reply_raises_remote_error_and_the_connection_stays_usable(sock_path):
    def script(peer: Peer) -> None:
        peer.greet()
        req = peer.recv()
        peer.send({"id": req["id"], "error": {"code": "not_found", "message": "unknown DAG 'etx' (known: etl)"}})
        peer.reply({"ok": True})

    server = serve(sock_path, script)
    with Client.connect(sock_path) as client:
        with pytest.raises(RemoteError) as err:
            client.call("dags.get", dag_id="etx")
        assert err.value.code == "not_found" and str(err.value) == "unknown DAG 'etx' (known: etl)"
        assert client.call("status") == {"ok": True}
    server.join()


def test_handshake_refusal_is_a_remote_error(sock_path):
    def script(peer: Peer) -> None:
        peer.recv()
        peer.send({"error": {"code": "forbidden", "message": "user bob (uid 1001) may not use flowd"}})

    server = serve(sock_path, script)
    with pytest.raises(RemoteError) as err:
        Client.connect(sock_path)
    assert err.value.code == "forbidden" and "may not use flowd" in str(err.value)
    server.join()


def test_server_that_closes_during_the_handshake(sock_path):
    server = serve(sock_path, lambda peer: peer.recv())
    with pytest.raises(ConnectionLost) as err:
        Client.connect(sock_path)
    assert sock_path in str(err.value) and "handshake" in str(err.value)
    server.join()


def test_server_that_closes_before_replying(sock_path):
    def script(peer: Peer) -> None:
        peer.greet()
        peer.recv()

    server = serve(sock_path, script)
    with Client.connect(sock_path) as client:
        with pytest.raises(ConnectionLost) as err:
            client.call("status")
        assert "closed the connection" in str(err.value) and "'status'" in str(err.value)
        with pytest.raises(ConnectionLost):
            client.call("status")
    server.join()


def test_a_reply_that_never_comes_times_out(sock_path):
    release = threading.Event()

    def script(peer: Peer) -> None:
        peer.greet()
        peer.recv()
        release.wait(5)

    server = serve(sock_path, script)
    client = Client.connect(sock_path, timeout=0.3)
    with pytest.raises(ConnectionLost) as err:
        client.call("status")
    assert "did not send the reply to 'status' within 0.3s" in str(err.value)
    release.set()
    server.join()


def test_garbage_from_the_server_is_reported(sock_path):
    def script(peer: Peer) -> None:
        peer.greet()
        peer.recv()
        peer.send_raw(b"<html>\n")

    server = serve(sock_path, script)
    with Client.connect(sock_path) as client, pytest.raises(ConnectionLost) as err:
        client.call("status")
    assert "not JSON" in str(err.value)
    server.join()


def test_not_running_when_the_socket_file_is_missing(sock_path):
    with pytest.raises(NotRunning) as err:
        Client.connect(sock_path)
    assert str(err.value) == (f"cannot reach flowd at {sock_path} (no such file): start it with "
                              "`systemctl --user start flowd`, `systemctl start flowd`, or `flowd &`")
    assert START_HINT in str(err.value) and "\n" not in str(err.value)


def test_not_running_when_nothing_listens_on_a_stale_socket(sock_path):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)
    stale.close()
    with pytest.raises(NotRunning) as err:
        Client.connect(sock_path)
    assert err.value.path == sock_path and "connection refused" in str(err.value)


def test_not_running_when_the_path_is_not_a_socket(sock_path):
    with open(sock_path, "w") as fh:
        fh.write("not a socket")
    with pytest.raises(NotRunning) as err:
        Client.connect(sock_path)
    assert f"cannot reach flowd at {sock_path} (not a socket)" in str(err.value)


def _ti(task: str, state: str, try_number: int = 1, **extra: Any) -> dict[str, Any]:
    return {"dag_id": "d", "run_id": "r1", "task_id": task, "state": state, "try_number": try_number, **extra}


def test_run_follower_prints_log_lines_before_the_tasks_end_and_returns_the_run_state(sock_path):
    def script(peer: Peer) -> None:
        peer.greet()
        peer.send({"event": "ti", "seq": 1, "data": _ti("a", "running")},
                  {"event": "ti", "seq": 2, "data": {**_ti("a", "running"), "run_id": "other"}})
        req = peer.recv()
        assert req["method"] == "logs.follow"
        assert req["params"] == {"dag_id": "d", "run_id": "r1", "task_id": "a", "try_number": 1, "offset": 0}
        peer.send({"id": req["id"], "result": {"offset": 0}},
                  {"event": "log", "seq": 3, "data": {**_ti("a", "running"), "offset": 0, "data": "hello\nwor"}},
                  {"event": "ti", "seq": 4, "data": _ti("a", "success")},
                  {"event": "run", "seq": 5, "data": {"dag_id": "d", "run_id": "r1", "state": "success"}},
                  {"event": "log", "seq": 6, "data": {**_ti("a", "success"), "offset": 9, "data": "ld"}},
                  {"event": "log_end", "seq": 7, "data": _ti("a", "success")})

    server = serve(sock_path, script)
    lines: list[str] = []
    with Client.connect(sock_path) as client:
        state = RunFollower(client, "d", "r1", echo=lines.append).follow()
    server.join()
    assert state == "success"
    text = [line.split("] ", 1)[-1] for line in lines]
    assert text == ["▶ a running", "  a | hello", "  a | world", "✔ a success", "✔ run r1 success"]


def test_run_follower_resyncs_after_a_gap_and_sees_the_failed_end(sock_path):
    def script(peer: Peer) -> None:
        peer.greet()
        peer.send({"event": "ti", "seq": 10, "data": _ti("a", "queued")},
                  {"event": "resync", "seq": 50, "data": {"reason": "client fell behind"}})
        req = peer.recv()
        assert req["method"] == "runs.get"
        peer.send({"id": req["id"], "result": {
            "run": {"run_id": "r1", "state": "failed"},
            "task_instances": [{"task_id": "a", "state": "failed", "tries": [{"try_number": 1, "state": "failed"}]}],
        }})
        req = peer.recv()
        assert req["method"] == "logs.follow" and req["params"]["task_id"] == "a"
        peer.send({"id": req["id"], "error": {"code": "not_found", "message": "no log"}})

    server = serve(sock_path, script)
    lines: list[str] = []
    with Client.connect(sock_path) as client:
        assert RunFollower(client, "d", "r1", echo=lines.append).follow() == "failed"
    server.join()
    assert lines[-1].endswith("✘ run r1 failed")


def test_follow_log_writes_chunks_of_its_try_until_log_end(sock_path):
    def script(peer: Peer) -> None:
        peer.greet()
        req = peer.recv()
        assert req["params"]["offset"] == -10
        peer.send({"id": req["id"], "result": {"offset": 90}},
                  {"event": "log", "seq": 1, "data": {**_ti("other", "running"), "data": "not mine"}},
                  {"event": "log", "seq": 2, "data": {**_ti("a", "running"), "data": "tail\n"}},
                  {"event": "log", "seq": 3, "data": {**_ti("a", "running"), "data": "more\n"}},
                  {"event": "log_end", "seq": 4, "data": _ti("a", "success")})

    server = serve(sock_path, script)
    out: list[str] = []
    with Client.connect(sock_path) as client:
        follow_log(client, {"dag_id": "d", "run_id": "r1", "task_id": "a", "offset": -10, "try_number": 1}, write=out.append)
    server.join()
    assert out == ["tail\n", "more\n"]
