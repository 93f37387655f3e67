"""Running tries on this host, through one fork-server process (see runner.py).

The executor is the asyncio side: it writes spawn and kill requests to the runner as JSON
lines and turns the runner's replies into the two callbacks, on the loop that started it.
It never forks a task itself, so the event loop never waits on fork, exec or pipe reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from typing import Any

from .base import FinishedCallback, LineBuffer, StartedCallback, TaskResult, TaskSpec
from .logsink import write_status
from .tryprocs import signal_pids, tagged_pids, try_tag

log = logging.getLogger(__name__)

READ_SIZE = 1 << 18
RUNNER_EXIT_WAIT = 1.0
"""How long stop(kill_running=True) waits for the runner to exit after its last result: enough for
interpreter shutdown, not for the kill grace it may still spend on what is left of a killed group."""


class RunnerError(RuntimeError):
    """The runner process could not be started or did not answer."""


class LocalExecutor:
    """Executor protocol over a runner process in its own session.

    Its own session, so a Ctrl-C on a foreground `flowd` does not cut tasks off without a record:
    the runner outlives a closed socket until its last child ends, writing each exit record.
    """

    name = "local"

    def __init__(self, parallelism_hint: int | None = None, *, start_timeout: float = 30.0) -> None:
        self.parallelism_hint = parallelism_hint
        """Accepted for a uniform constructor; the engine enforces parallelism before submitting."""
        self.start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_started: StartedCallback | None = None
        self._on_finished: FinishedCallback | None = None
        self._pid: int | None = None
        """The runner's pid. Spawned without Popen: nothing here owes it a wait, it may outlive us."""
        self._sock: socket.socket | None = None
        self._inbuf = LineBuffer()
        self._outbuf = bytearray()
        self._running: dict[str, int | None] = {}
        """ref -> pid (None until started) of every try submitted and not yet finished."""
        self._specs: dict[str, tuple[TaskSpec, float]] = {}
        """ref -> (spec, wall time submitted) of the same tries: what a runner's death needs."""
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._exited: asyncio.Future[None] | None = None
        self._stopping = False

    @property
    def runner_pid(self) -> int | None:
        return self._pid

    async def start(self, on_started: StartedCallback, on_finished: FinishedCallback) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_started, self._on_finished = on_started, on_finished
        self._stopping = False
        self._spawn_runner()
        assert self._hello is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._hello), self.start_timeout)
        except TimeoutError:
            raise RunnerError(f"the task runner (pid {self.runner_pid}) did not answer within "
                              f"{self.start_timeout:g}s") from None

    def _spawn_runner(self) -> None:
        assert self._loop is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.set_inheritable(True)
        try:
            self._pid = os.posix_spawn(
                sys.executable, [sys.executable, "-m", "flow.executors.runner", "--fd", str(theirs.fileno())],
                os.environ, setsid=True,
                file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                              (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)],
            )
        except OSError as exc:
            ours.close()
            raise RunnerError(f"cannot start the task runner with {sys.executable}: {exc}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._watch_runner_exit(self._pid)
        self._inbuf.clear()
        self._outbuf.clear()
        self._hello = self._loop.create_future()
        self._closed = self._loop.create_future()
        self._loop.add_reader(ours.fileno(), self._on_readable)

    # -- requests ---------------------------------------------------------------------------

    def submit(self, spec: TaskSpec) -> None:
        if self._loop is None or self._stopping:
            raise RuntimeError("LocalExecutor.submit() before start() or after stop()")
        if spec.ref in self._running:
            raise ValueError(f"try {spec.ref!r} was already submitted and has not finished")
        try:
            payload = {"op": "spawn", "spec": spec.to_json()}
            line = json.dumps(payload, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"task spec {spec.ref!r} cannot be sent to the runner: {exc}") from None
        if self._sock is None:
            log.warning("task runner is gone; starting a new one")
            self._spawn_runner()
        self._running[spec.ref] = None
        self._specs[spec.ref] = (spec, time.time())
        self._write(line)

    def kill(self, ref: str, reason: str) -> None:
        if ref in self._running and self._sock is not None:
            self._send({"op": "kill", "ref": ref, "reason": reason})

    def running(self) -> int:
        return len(self._running)

    def tags(self) -> dict[str, str]:
        """ref -> FLOW_TRY tag of every try in flight: how the resource monitor finds what a try
        started outside its session."""
        return {ref: try_tag(spec.log_path) for ref, (spec, _submitted) in self._specs.items()}

    async def stop(self, *, kill_running: bool = False) -> None:
        """Without kill_running, detach: the runner finishes its tries on its own and records them."""
        if self._sock is None or self._loop is None:
            self._stopping = True
            self._reap()
            return
        self._stopping = True
        assert self._closed is not None
        if kill_running:
            self._send({"op": "shutdown", "kill": "the executor is stopping"})
            limit = max((s.kill_grace for s, _ in self._specs.values()), default=0.0) + 10.0
            try:
                await asyncio.wait_for(asyncio.shield(self._closed), limit)
            except TimeoutError:
                log.error("task runner did not stop within %.0fs; killing it", limit)
                self._kill_runner()
                self._lost("the task runner did not stop in time and was killed")
            if self._exited is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._exited), RUNNER_EXIT_WAIT)
                except TimeoutError:
                    pass
            return
        if self._outbuf:
            self._drained = self._loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), 5.0)
            except TimeoutError:
                log.error("task runner did not take %d pending bytes of requests", len(self._outbuf))
        self._close_sock()
        self._running.clear()
        self._specs.clear()

    # -- socket -----------------------------------------------------------------------------

    def _send(self, msg: dict[str, Any]) -> None:
        self._write(json.dumps(msg, separators=(",", ":")))

    def _write(self, line: str) -> None:
        assert self._sock is not None and self._loop is not None
        was_empty = not self._outbuf
        self._outbuf += line.encode() + b"\n"
        if was_empty:
            self._flush()

    def _flush(self) -> None:
        sock = self._sock
        assert sock is not None and self._loop is not None
        while self._outbuf:
            try:
                del self._outbuf[:sock.send(self._outbuf)]
            except BlockingIOError:
                break
            except OSError as exc:
                log.error("lost the task runner's socket: %s", exc)
                self._outbuf.clear()
                break
        if self._outbuf:
            self._loop.add_writer(sock.fileno(), self._flush)
            return
        self._loop.remove_writer(sock.fileno())
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _on_readable(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            data = sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._runner_gone()
            return
        for line in self._inbuf.feed(data):
            self._dispatch(line)

    def _dispatch(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
            self._handle(msg["op"], msg)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("unreadable message from the task runner (%s): %r", exc, line[:200])

    def _handle(self, op: str, msg: dict[str, Any]) -> None:
        if op == "finished":
            result = TaskResult.from_json(msg["result"])
            if result.ref not in self._running:
                log.error("task runner: %s", result.error or f"result for unknown try {result.ref!r}")
                return
            del self._running[result.ref]
            self._specs.pop(result.ref, None)
            self._call(self._on_finished, result)
        elif op == "started":
            if msg.get("ref") in self._running:
                self._running[msg["ref"]] = msg["pid"]
                self._call(self._on_started, msg["ref"], msg["pid"], msg.get("rendered"))
        elif op == "hello":
            if self._hello is not None and not self._hello.done():
                self._hello.set_result(msg)
        else:
            log.warning("unknown message from the task runner: %r", msg)

    @staticmethod
    def _call(callback: Any, *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("executor callback %r failed", callback)

    def _close_sock(self) -> None:
        if self._sock is None or self._loop is None:
            return
        fd = self._sock.fileno()
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)
        self._sock.close()
        self._sock = None
        self._outbuf.clear()
        for fut in (self._closed, self._drained):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _runner_gone(self) -> None:
        """EOF from the runner: expected after a shutdown request, a failure otherwise."""
        pid = self._pid
        self._close_sock()
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(RunnerError("the task runner exited during start-up (see its stderr)"))
            self._hello.exception()
        self._reap()
        if self._running:
            self._lost(f"the task runner (pid {pid}) died while the try ran; the try was killed")

    def _lost(self, error: str) -> None:
        """The runner is gone with tries in flight: settle each one, since nobody else will.

        A try whose process had ended keeps its real result: the runner writes the exit record
        before it reports it, so a record it wrote and never got to send is read back here. Every
        other try is killed, its process group and every process carrying its tag (nothing reads
        its output any more), and gets `error` as its result, written as its exit record too, so
        a flowd restarted later reads the same thing. Its log says what happened, and the ring file
        the dead runner held for max_log_bytes_per_try (`<log>.tail.<runner pid>`) is removed.
        """
        running, self._running = self._running, {}
        specs, self._specs = self._specs, {}
        runner = self._pid
        lost: dict[str, tuple[TaskSpec, int | None]] = {}
        for ref, pid in running.items():
            spec, submitted = specs[ref]
            record = _read_record(spec, submitted)
            if record is not None:
                log.warning("try %s ended before the task runner died; its exit record is its result", ref)
                self._call(self._on_finished, record)
            else:
                lost[ref] = (spec, pid)
        tags = {ref: try_tag(spec.log_path) for ref, (spec, _pid) in lost.items()}
        found = tagged_pids(tags.values())
        for ref, (spec, pid) in lost.items():
            killed = signal_pids(found[tags[ref]], signal.SIGKILL)
            if pid and _leads_session(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                    killed += 1
                except (ProcessLookupError, PermissionError):
                    pass
            _settle_log(spec, runner, f"{error} ({killed} of its processes were left and got SIGKILL)")
            result = TaskResult(ref=ref, pid=pid, ok=False, error=error, ended_at=datetime.now(UTC).isoformat())
            record = dict(result.to_json(), log_path=spec.log_path)
            if (problem := write_status(spec.status_path, record)) is not None:
                log.error("try %s: %s", ref, problem)
            self._call(self._on_finished, result)

    def _kill_runner(self) -> None:
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._close_sock()

    def _reap(self, pid: int | None = None) -> None:
        pid = pid or self._pid
        if pid is not None:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def _watch_runner_exit(self, pid: int) -> None:
        """Reap the runner whenever it exits (it may outlive the socket by a kill grace period)."""
        assert self._loop is not None
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return
        loop = self._loop
        exited = self._exited = loop.create_future()

        def reap() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._reap(pid)
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, reap)


def _read_record(spec: TaskSpec, submitted: float) -> TaskResult | None:
    """The exit record of this very try, if its runner wrote one (not a stale one of an earlier
    submission that reused the path: the runner removes nothing it did not write)."""
    try:
        if os.stat(spec.status_path).st_mtime < submitted - 1.0:
            return None
        with open(spec.status_path, encoding="utf-8") as fh:
            data = json.load(fh)
        result = TaskResult.from_json(data)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return result if result.ref == spec.ref else None


def _leads_session(pid: int) -> bool:
    """Whether `pid` still leads its own session, as a try's leader does (a recycled pid rarely does)."""
    try:
        return os.getsid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False


def _settle_log(spec: TaskSpec, runner: int | None, note: str) -> None:
    """End the log of a try whose runner died: the ring file goes, a last line says why."""
    cut = False
    if runner is not None:
        try:
            os.unlink(f"{spec.log_path}.tail.{runner}")
            cut = True
        except OSError:
            pass
    lines = [note]
    if cut:
        lines.append("the output held back for max_log_bytes_per_try (the log's tail) was lost with the runner")
    text = "".join(f"[flow] {line}\n" for line in lines).encode()
    try:
        with open(spec.log_path, "ab+") as fh:
            if fh.tell() and (fh.seek(-1, os.SEEK_END), fh.read(1))[1] != b"\n":
                text = b"\n" + text
            fh.write(text)
    except OSError as exc:
        log.error("cannot write to the log of try %s: %s", spec.ref, exc)
