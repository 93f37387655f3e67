"""A flowd server in-process for tests: a real engine running real tasks, spoken to over a real socket.

The server and `engine.run` share one asyncio loop in a background thread (as in flowd); tests
talk to it with plain blocking sockets, the way a script in any language would. Test modules
import the fixtures from here.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import socket
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flow.daemon.config import Settings, load_settings
from flow.daemon.server import Server
from flow.protocol import encode
from tests.integration.conftest import ROOT, make_engine

ME = pwd.getpwuid(os.getuid()).pw_name

HELLO_DAG = '''
import pendulum
from flow import DAG
from flow.operators import BashOperator

with DAG(dag_id="hello", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
    say = BashOperator(task_id="say", bash_command='echo "héllo"; for i in 1 2 3; do echo "line $i ✓"; done')
    after = BashOperator(task_id="after", bash_command="echo done")
    say >> after
'''
SLOW_DAG = '''
import pendulum
from flow import DAG
from flow.operators import BashOperator

with DAG(dag_id="slow", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
    tick = BashOperator(task_id="tick", bash_command="for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.25; done")
    tick >> BashOperator(task_id="tock", bash_command="echo tock")
'''
FAILING_DAG = '''
import pendulum
from flow import DAG
from flow.operators import BashOperator

with DAG(dag_id="failing", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
    BashOperator(task_id="boom", bash_command="echo going down; exit 3")
'''
PAUSABLE_DAG = FAILING_DAG.replace('"failing"', '"pausable"')


def server_settings(base: Path) -> Settings:
    """Settings for one test server; the socket sits in a short folder (Unix socket paths are short)."""
    (base / "dags").mkdir(parents=True)
    sock_dir = tempfile.mkdtemp(prefix="fl", dir="/tmp")
    return load_settings(
        {"dags_folder": str(base / "dags"), "db_url": f"sqlite:///{base / 'flow.db'}",
         "log_folder": str(base / "logs"), "default_timezone": "UTC",
         "socket_path": os.path.join(sock_dir, "run", "flowd.sock")},
        config_file=base / "absent.toml",
    )


def write_dags(settings: Settings, sources: dict[str, str]) -> None:
    for name, source in sources.items():
        Path(settings.dags_folder, name).write_text(textwrap.dedent(source))


class LiveServer:
    """Server + engine.run in one asyncio loop on a background thread, as flowd runs them."""

    def __init__(self, settings: Settings, **server_kw: Any) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self.server_kw = server_kw
        self.server: Server = None  # type: ignore[assignment]
        self.loop: asyncio.AbstractEventLoop | None = None
        self.engine_error: BaseException | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flowd-under-test", daemon=True)

    @property
    def path(self) -> str:
        return self.settings.socket_path

    def start(self) -> LiveServer:
        self._thread.start()
        assert self._ready.wait(30), "the server did not start within 30 s"
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        from flow.daemon.watch import FolderWatcher

        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.server = Server(self.engine, self.settings, **self.server_kw)
        self.engine.listener = self.server.publish
        await self.server.start()
        engine_task = asyncio.create_task(
            self.engine.run(periodic=FolderWatcher(self.engine).refresh, kill_on_exit=True))
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()
            if engine_task.done() and not engine_task.cancelled():
                self.engine_error = engine_task.exception()
            engine_task.cancel()
            await asyncio.gather(engine_task, return_exceptions=True)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn (a function or coroutine function) on the server's loop and return its result."""
        async def run() -> Any:
            result = fn(*args)
            return await result if asyncio.iscoroutine(result) else result

        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def _where(self) -> str:
        """Where the server thread and its tasks are stuck, for the failure message."""
        import sys
        import traceback

        frame = sys._current_frames().get(self._thread.ident or 0)
        text = "".join(traceback.format_stack(frame)) if frame else ""
        if self.loop is not None:
            for task in asyncio.all_tasks(self.loop):
                text += f"\n{task!r}"
        return text

    def stop(self) -> None:
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), f"the server did not stop within 30 s:\n{self._where()}"
        self.engine.store.close()
        shutil.rmtree(os.path.dirname(os.path.dirname(self.path)), ignore_errors=True)
        assert self.engine_error is None, f"the engine loop failed: {self.engine_error!r}"


OPEN_CLIENTS: list[Client] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().close()


class Client:
    """A blocking protocol client: what a shell script with socat would do, in Python."""

    def __init__(self, path: str, *, hello: bool = True, timeout: float = 20.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        OPEN_CLIENTS.append(self)
        self.buf = b""
        self.events: list[dict[str, Any]] = []
        self.seqs: list[int] = []
        """seq of every event received, in arrival order."""
        self.arrivals: list[dict[str, Any]] = []
        """Every event received, in arrival order."""
        self.ids = 0
        self.hello: dict[str, Any] | None = self.handshake() if hello else None

    def handshake(self, protocol: int = 1) -> dict[str, Any]:
        self.send({"hello": {"protocol": protocol, "client": "test/1"}})
        reply = self.recv()
        assert reply is not None, "flowd closed the connection instead of answering the hello"
        return reply

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, msg: Any) -> None:
        self.send_raw(encode(msg) if isinstance(msg, dict) else (json.dumps(msg) + "\n").encode())

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None once flowd has closed the connection."""
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        msg = json.loads(line)
        if "event" in msg:
            self.seqs.append(msg["seq"])
            self.arrivals.append(msg)
        return msg

    def reply(self, rid: Any) -> dict[str, Any]:
        while True:
            msg = self.recv()
            assert msg is not None, f"connection closed while waiting for the reply to {rid!r}"
            if "event" in msg:
                self.events.append(msg)
                continue
            assert msg.get("id") == rid, f"reply out of order: wanted id {rid!r}, got {msg}"
            return msg

    def request(self, method: str, **params: Any) -> dict[str, Any]:
        self.ids += 1
        self.send({"id": self.ids, "method": method, "params": params})
        return self.reply(self.ids)

    def result(self, method: str, **params: Any) -> dict[str, Any]:
        reply = self.request(method, **params)
        assert "result" in reply, f"{method} failed: {reply}"
        return reply["result"]

    def error(self, method: str, **params: Any) -> dict[str, Any]:
        reply = self.request(method, **params)
        assert "error" in reply, f"{method} unexpectedly succeeded: {reply}"
        return reply["error"]

    def wait_event(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        """The first event (already received or arriving) matching pred; earlier ones stay in .events."""
        for i, ev in enumerate(self.events):
            if pred(ev):
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.recv()
            assert msg is not None, "connection closed while waiting for an event"
            if "event" in msg and pred(msg):
                return msg
            self.events.append(msg)
        raise AssertionError(f"no matching event within {timeout} s; got {self.events[-5:]}")

    def close(self) -> None:
        self.sock.close()


def run_finished(dag_id: str, run_id: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda ev: (ev["event"] == "run" and ev["data"]["dag_id"] == dag_id
                       and (run_id is None or ev["data"]["run_id"] == run_id)
                       and ev["data"]["state"] in ("success", "failed"))


def trigger_and_wait(client: Client, dag_id: str, **params: Any) -> dict[str, Any]:
    run = client.result("dags.trigger", dag_id=dag_id, **params)["run"]
    client.wait_event(run_finished(dag_id, run["run_id"]))
    return run


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = server_settings(tmp_path_factory.mktemp("live"))
    write_dags(settings, {"hello.py": HELLO_DAG, "slow.py": SLOW_DAG, "failing.py": FAILING_DAG,
                          "pausable.py": PAUSABLE_DAG, "broken.py": "import nothing_here_at_all\n"})
    shutil.copy(ROOT / "dags" / "example_branch.py", settings.dags_folder)
    server = LiveServer(settings).start()
    yield server
    server.stop()


@pytest.fixture
def client(live: LiveServer) -> Iterator[Client]:
    c = Client(live.path)
    c.result("subscribe")
    yield c
    c.close()


@pytest.fixture
def make_live(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """A server of the test's own, for constructor options (queue limit, timeouts)."""
    made: list[LiveServer] = []

    def make(**server_kw: Any) -> LiveServer:
        settings = server_settings(tmp_path / f"s{len(made)}")
        write_dags(settings, {"hello.py": HELLO_DAG})
        made.append(LiveServer(settings, **server_kw).start())
        return made[-1]

    yield make
    for server in made:
        server.stop()
