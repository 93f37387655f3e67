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
  ``{"path": ..., "dags": [serialized DAG, ...], "error": [message, traceback] | null,
  "lingering": N}``, where N counts the processes the file left running in the child's session
  (the child has already SIGKILLed them; the parent retires the child so nothing of the file's
  survives into the next one).

The child exits when its protocol stdin closes. A copy of the child made by ``os.fork()`` in a
DAG file never speaks the protocol: its protocol fds are pointed at /dev/null in the fork, and it
exits as soon as the import returns in it. The child lowers its own OOM score to be the kernel's
first choice, and takes an address-space limit (``--memory-limit BYTES``) so a file that
allocates too much gets a MemoryError instead of pushing the host into swap. faulthandler writes a Python traceback to
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
import resource
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
    protocol_fds = (proto_in.fileno(), proto_out.fileno())
    os.register_at_fork(after_in_child=lambda: _silence_fork(protocol_fds))
    return proto_in, proto_out


def _silence_fork(protocol_fds: tuple[int, ...]) -> None:
    """In a fork made by user code: the protocol fds become /dev/null, so the copy can neither
    steal the next request nor send a second reply. The fd numbers stay valid (not closed) so
    nothing else can be opened under them and be written to by mistake."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in protocol_fds:
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass
    os.close(devnull)


def _limit_self(memory_limit: int | None) -> None:
    """The kernel's OOM killer picks this child before flowd; an address-space cap turns a huge
    allocation into a MemoryError (the file's import error) long before that."""
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write("1000")
    except OSError:
        pass
    if memory_limit:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    """Orphans of what a DAG file starts come back to this child instead of init, so walking
    its descendants finds them all, even ones that double-forked or called setsid."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _descendants() -> list[int] | None:
    """Live descendants of this child (None when /proc has no ``children`` files to walk)."""
    me = os.getpid()
    if not os.path.exists(f"/proc/{me}/task/{me}/children"):
        return None
    found: list[int] = []
    todo = [me]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return [pid for pid in found if _alive(pid)]


def _session_members() -> list[int]:
    """Live processes in this child's session other than itself (where ``children`` is missing)."""
    me, session = os.getpid(), os.getsid(0)
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 3 and fields[0] != b"Z" and int(fields[3]) == session:
            found.append(int(entry))
    return found


def _end_leftovers() -> int:
    """SIGKILL what the last file left running in this session; returns how many there were."""
    while True:  # reap finished children first: a zombie runs nothing
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    leftovers = _descendants()
    if leftovers is None:
        leftovers = _session_members()
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(leftovers)


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
    me = os.getpid()
    for line in proto_in:
        request = json.loads(line)
        reply = parse_one(request["path"], load_file, serialize_dag)
        if os.getpid() != me:
            os._exit(0)  # a fork made at import came back here: only the real child replies
        _flush_user_streams()
        reply["lingering"] = _end_leftovers()
        _send(proto_out, reply)


def main() -> None:
    memory_limit = None
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-limit":
        memory_limit = int(sys.argv[2])
    _limit_self(memory_limit)
    _become_subreaper()
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
    seconds: float | None = field(default=None, compare=False)
    """How long the parse took, from handing the file to a child to its answer (set by the pool)."""


class ParserStartError(RuntimeError):
    """The parse child could not start at all: an installation problem, not a DAG file's fault."""


STARTUP_TIMEOUT = 60.0
"""Seconds a fresh child may take to import flow; not counted against any file's timeout."""
TERM_GRACE = 2.0
"""Seconds between SIGTERM (which makes the child print where it hung) and SIGKILL."""
STDERR_KEEP = 64 * 1024
"""The tail of a file's output kept for its import error; a file that prints 100 MB costs flowd
reading it through the pipe, never holding it."""
REPLY_LIMIT = 64 * 1024 * 1024
"""A reply line longer than this is not a parse result but something writing to the protocol."""


TIMED_OUT = "timed out after"
"""In the import error of a file whose parse overran its timeout (see ``ParseChild.parse``)."""


def timed_out(message: str) -> bool:
    """Whether a stored import error says its file's parse overran its timeout."""
    return f": {TIMED_OUT} " in message and "while importing" in message


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
        self.overflowed = False

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            if self.overflowed:
                return
            start = len(self._stdout)
            self._stdout += data
            while (end := self._stdout.find(b"\n", start)) >= 0:
                self.lines.put_nowait(bytes(self._stdout[:end]))
                del self._stdout[: end + 1]
                start = 0
            if len(self._stdout) > REPLY_LIMIT:
                self.overflowed = True
                self._stdout.clear()
                self.lines.put_nowait(b"")  # an unreadable reply: the child is killed for it
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
    async def start(cls, *, memory_limit: int | None = None) -> ParseChild:
        """A ready child; ``memory_limit`` caps its address space (bytes; None: no cap)."""
        loop = asyncio.get_running_loop()
        limit = ["--memory-limit", str(int(memory_limit))] if memory_limit else []
        # -P: flowd's working directory must not shadow modules in the child (DAG files' own
        # folders are put on sys.path by flow.dagbag).
        transport, protocol = await loop.subprocess_exec(
            lambda: _ChildProtocol(loop), sys.executable, "-P", "-m", "flow.daemon.parser", *limit,
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
                    f"{path}: {TIMED_OUT} {_fmt_seconds(timeout)} while importing "
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
            if self.protocol.overflowed:
                what = f"sent a reply longer than {REPLY_LIMIT >> 20} MiB"
            else:
                what = "sent an unreadable reply" if line else _describe_exit(status)
            message = f"the parser {what} while importing {path}"
            return FileResult(error=(message, self.protocol.take_stderr()))
        output = self.protocol.take_stderr()
        if output:
            log.debug("output of %s while importing:\n%s", path, output.rstrip())
        lingering = reply.get("lingering") or 0
        if lingering:
            # Killed by the child already; retiring the child also ends threads and state the
            # file left behind, so the next file starts clean.
            log.warning("%s left %d process(es) running after its import; they were killed", path, lingering)
            await self.kill()
        error = reply.get("error")
        return FileResult(dags=list(reply.get("dags") or []), error=tuple(error) if error else None)

    def kill_now(self) -> None:
        self._killpg(signal.SIGKILL)

    def abandon(self) -> None:
        """kill_now, and let go of the pipes without waiting (the loop may be going away)."""
        self.kill_now()
        self.transport.close()

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
