"""Both ends of the DAG-parse child protocol: ``python -m flow.daemon.parser`` and its driver.

User DAG code never runs inside flowd, so the loader starts this module as a child process,
which imports DAG files one at a time and answers with their serialized DAGs. In the child,
the protocol runs over private copies of the original stdin/stdout; fds 0 and 1 are re-pointed
(to /dev/null and to stderr) before any user code runs, so a DAG file that prints or reads
stdin cannot corrupt it.

Protocol, one JSON object per line:

- child -> parent, once at start: ``{"ready": true}``, or ``{"fatal": msg, "traceback": tb}``
  when flow itself cannot be imported (then the child exits with status 2);
- parent -> child: ``{"path": "/abs/dag.py"}``;
- child -> parent, one per request, in order:
  ``{"path": ..., "dags": [serialized DAG, ...], "error": [message, traceback] | null}``.

The child exits when its protocol stdin closes. faulthandler writes a Python traceback to
stderr on a fatal signal and on SIGTERM (then dies of it), which is how the parent learns
where a file crashed or hung. The parent side, ``ParseChild``, is what ``flow.daemon.loader``
drives; it lives here so that the protocol is defined in one file.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import logging
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

READY = {"ready": True}


def _isolate_protocol() -> tuple[BinaryIO, BinaryIO]:
    """Keep the protocol on private fds; user code's stdin is /dev/null and its stdout is stderr."""
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return proto_in, proto_out


def _send(out: BinaryIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message).encode() + b"\n")
    out.flush()


def _flush_user_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def parse_one(
    path: str,
    load_file: Callable[[str], tuple[list[Any], Any]],
    serialize_dag: Callable[[Any], dict],
) -> dict[str, Any]:
    """Import one file and serialize its DAGs; every failure becomes that file's import error.

    BaseException is caught because whatever escapes ``load_file`` (a KeyboardInterrupt raised
    by user code, say) is the file's fault and must not take the rest of the batch down with it.
    """
    dags: list[dict] = []
    error: list[str] | None = None
    try:
        loaded, import_error = load_file(path)
    except BaseException as exc:  # noqa: B036 - see docstring
        return {"path": path, "dags": [], "error": [
            f"{path}: {type(exc).__name__}: {exc}", traceback.format_exc()]}
    if import_error is not None:
        error = [str(import_error.message), str(import_error.traceback or "")]
    for dag in loaded:
        dag_id = getattr(dag, "dag_id", "?")
        try:
            serialized = serialize_dag(dag)
            json.dumps(serialized)
        except Exception as exc:
            problem = f"{path}: could not serialize DAG '{dag_id}': {type(exc).__name__}: {exc}"
            error = [problem if error is None else f"{error[0]}\n{problem}",
                     traceback.format_exc() if error is None else error[1]]
            continue
        dags.append(serialized)
    return {"path": path, "dags": dags, "error": error}


def serve(proto_in: BinaryIO, proto_out: BinaryIO) -> None:
    try:
        from flow.dagbag import load_file
        from flow.serialize import serialize_dag
    except BaseException as exc:  # noqa: B036 - report anything, then exit
        _send(proto_out, {"fatal": f"cannot import the DAG loader: {type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()})
        _flush_user_streams()
        os._exit(2)
    _send(proto_out, READY)
    for line in proto_in:
        request = json.loads(line)
        reply = parse_one(request["path"], load_file, serialize_dag)
        _flush_user_streams()
        _send(proto_out, reply)


def main() -> None:
    proto_in, proto_out = _isolate_protocol()
    faulthandler.enable(file=sys.stderr, all_threads=True)
    faulthandler.register(signal.SIGTERM, file=sys.stderr, all_threads=True, chain=True)
    serve(proto_in, proto_out)
    _flush_user_streams()
    # os._exit: non-daemon threads started by user code at import must not keep the child alive.
    os._exit(0)


# ---------------------------------------------------------------------------------------------
# Parent side


@dataclass(frozen=True)
class FileResult:
    """One file's parse outcome: its serialized DAGs, and (message, traceback) if it failed."""

    dags: list[dict] = field(default_factory=list)
    error: tuple[str, str] | None = None


class ParserStartError(RuntimeError):
    """The parse child could not start at all: an installation problem, not a DAG file's fault."""


STARTUP_TIMEOUT = 60.0
"""Seconds a fresh child may take to import flow; not counted against any file's timeout."""
TERM_GRACE = 2.0
"""Seconds between SIGTERM (which makes the child print where it hung) and SIGKILL."""
STDERR_KEEP = 64 * 1024


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "closed its output"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            return f"died with signal {-returncode}"
        return f"died with signal {-returncode} ({name})"
    return f"exited with status {returncode}"


class _ChildProtocol(asyncio.SubprocessProtocol):
    """Collects the child's reply lines and stderr, and notes its exit on its own.

    ``Process.wait()`` from asyncio's stream API only returns once every pipe is closed, and a
    process that a DAG file started at import may hold stderr open; flowd must not wait on it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.exited = loop.create_future()
        self.stderr_closed = loop.create_future()
        self._stdout = bytearray()
        self._stderr = bytearray()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            start = len(self._stdout)
            self._stdout += data
            while (end := self._stdout.find(b"\n", start)) >= 0:
                self.lines.put_nowait(bytes(self._stdout[:end]))
                del self._stdout[: end + 1]
                start = 0
        else:
            self._stderr += data
            if len(self._stderr) > STDERR_KEEP:
                del self._stderr[: len(self._stderr) - STDERR_KEEP]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self.lines.put_nowait(None)
        elif fd == 2 and not self.stderr_closed.done():
            self.stderr_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def take_stderr(self) -> str:
        text = self._stderr.decode("utf-8", "replace")
        self._stderr.clear()
        return text


async def _within(awaitable: asyncio.Future[None], seconds: float) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(awaitable), seconds)
    except TimeoutError:
        return False
    return True


class ParseChild:
    """One parse child; it stays usable until a file times out or it dies."""

    def __init__(self, transport: asyncio.SubprocessTransport, protocol: _ChildProtocol) -> None:
        self.transport = transport
        self.protocol = protocol
        self.pid: int = transport.get_pid()

    @classmethod
    async def start(cls) -> ParseChild:
        loop = asyncio.get_running_loop()
        # -P: flowd's working directory must not shadow modules in the child (DAG files' own
        # folders are put on sys.path by flow.dagbag).
        transport, protocol = await loop.subprocess_exec(
            lambda: _ChildProtocol(loop), sys.executable, "-P", "-m", "flow.daemon.parser",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        child = cls(transport, protocol)
        try:
            line = await asyncio.wait_for(protocol.lines.get(), STARTUP_TIMEOUT)
            hello = json.loads(line) if line else None
        except (TimeoutError, ValueError):
            hello = None
        except BaseException:
            child.kill_now()
            transport.close()
            raise
        if not isinstance(hello, dict) or hello.get("ready") is not True:
            await child.kill()
            if isinstance(hello, dict) and "fatal" in hello:
                detail = f"{hello['fatal']}\n{hello.get('traceback', '')}"
            else:
                detail = f"it {_describe_exit(transport.get_returncode())}; stderr:\n{protocol.take_stderr()}"
            raise ParserStartError(f"the DAG parser process ({sys.executable} -m flow.daemon.parser) "
                                   f"failed to start: {detail}")
        return child

    @property
    def alive(self) -> bool:
        return not self.protocol.exited.done()

    async def parse(self, path: str, timeout: float) -> FileResult:
        self.protocol.take_stderr()
        stdin = self.transport.get_pipe_transport(0)
        line: bytes | None = None
        if stdin is not None and not stdin.is_closing():
            stdin.write(json.dumps({"path": path}).encode() + b"\n")
            try:
                line = await asyncio.wait_for(self.protocol.lines.get(), timeout)
            except TimeoutError:
                await self.kill(term_first=True)
                return FileResult(error=(
                    f"{path}: timed out after {_fmt_seconds(timeout)} while importing "
                    "(the file must not block at import)", self.protocol.take_stderr()))
        reply = None
        if line:
            try:
                reply = json.loads(line)
            except ValueError:
                reply = None
        if not isinstance(reply, dict) or reply.get("path") != path:
            await _within(self.protocol.exited, TERM_GRACE)
            status = self.transport.get_returncode()
            await self.kill()
            what = "sent an unreadable reply" if line else _describe_exit(status)
            message = f"the parser {what} while importing {path}"
            return FileResult(error=(message, self.protocol.take_stderr()))
        output = self.protocol.take_stderr()
        if output:
            log.debug("output of %s while importing:\n%s", path, output.rstrip())
        error = reply.get("error")
        return FileResult(dags=list(reply.get("dags") or []), error=tuple(error) if error else None)

    def kill_now(self) -> None:
        self._killpg(signal.SIGKILL)

    def _killpg(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    async def kill(self, *, term_first: bool = False) -> None:
        """Stop the child and everything it started; SIGTERM first makes faulthandler show where it hung."""
        if term_first and self.alive:
            self._killpg(signal.SIGTERM)
            await _within(self.protocol.exited, TERM_GRACE)
        self._killpg(signal.SIGKILL)
        if not await _within(self.protocol.exited, TERM_GRACE):
            log.warning("DAG parser process %d did not die after SIGKILL", self.pid)
        # A grandchild that left the process group may hold stderr open; don't wait for it forever.
        await _within(self.protocol.stderr_closed, TERM_GRACE)
        self.transport.close()

    async def close(self) -> None:
        stdin = self.transport.get_pipe_transport(0)
        if self.alive and stdin is not None:
            stdin.close()
            await _within(self.protocol.exited, TERM_GRACE)
        await self.kill()


if __name__ == "__main__":
    main()
