"""The process behind LocalExecutor: one long-lived server that starts every local try.

Why a separate process: flowd's event loop must never block on starting processes or on pipe
I/O; a runner that has already imported Jinja2, pendulum and the runtime renders bash commands
warm and forks Python tries that start warm (no interpreter start-up); and tries must outlive
flowd: when its socket closes the runner keeps reading their output and writes their exit
records, then exits. How each kind of try is started is child.py's business.

Single-threaded (runloop.EventLoop): each child has a pidfd (exit), two pipes (output) and
maybe a timer (timeout, kill escalation).

Protocol: JSON lines over the socket whose fd is given as ``--fd``.
  in:  {"op": "spawn", "spec": TaskSpec}  {"op": "kill", "ref", "reason"}
       {"op": "kill_all", "reason"}  {"op": "shutdown", "kill": reason | null}
  out: {"op": "hello", "pid", "pidfd"}  {"op": "started", "ref", "pid", "rendered"}
       {"op": "finished", "result": TaskResult + "log_path"}
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from flow import filemodes
from flow.executors import child
from flow.executors.base import TaskResult, rendered_record
from flow.executors.child import StartRefused, warn
from flow.executors.logsink import (
    FULL_ERRNOS,
    LOG_FOLDER_FULL,
    LastLine,
    TaskLog,
    incomplete_note,
    outcome,
    read_result,
    result_path,
    write_status,
)
from flow.executors.runloop import EventLoop, Timer
from flow.executors.tryprocs import TAG_VAR, signal_pids, tagged_pids, try_tag
from flow.runtime import bash_xcom

READ_SIZE = 64 * 1024
DRAIN_LIMIT = 64
"""Reads per pipe after the main process exited: what it wrote is buffered, while a grandchild
still holding the pipe could write forever and must not keep the try open."""
TAG_SCAN_GAP = 0.25
"""Least seconds between two passes over /proc for tags (each reads every process's environment,
~20 us a process): a try that ends alone has its leftovers stopped at once, while a storm of tries
ending together costs at most four passes a second, each for every try that ended since the last.
A try is reported when it ends, never held for a pass."""
_HANDLED = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
"""The signals whose handlers a forked child must not run (see child.fork_task)."""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _killpg(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class _Try:
    __slots__ = ("ref", "spec", "tag", "pid", "pidfd", "log", "last", "pipes", "t0", "started_at", "status",
                 "rusage", "timed_out", "killed", "term_sent", "sweep", "timeout_timer")

    def __init__(self, spec: dict[str, Any], pid: int, log: TaskLog, t0: float, started_at: str) -> None:
        self.ref: str = spec["ref"]
        self.spec = spec
        self.tag = try_tag(spec["log_path"])
        self.pid = pid
        self.pidfd = -1
        self.log = log
        self.last = LastLine()
        self.pipes: dict[int, bool] = {}
        """Read end -> True for stdout."""
        self.t0 = t0
        self.started_at = started_at
        self.status: int | None = None
        self.rusage: dict[str, float] | None = None
        self.timed_out = False
        self.killed: str | None = None
        self.term_sent = False
        self.sweep: Timer | None = None
        self.timeout_timer: Timer | None = None


class Runner:
    def __init__(self, sock_fd: int, *, use_pidfd: bool = True) -> None:
        self.tries: dict[str, _Try] = {}
        self.closing = False
        """No more requests will come (shutdown, or the executor is gone): exit after the last try."""
        self.use_pidfd = use_pidfd
        self._tag_signals: dict[str, int] = {}
        """tag -> signal for every process carrying it, sent with the next batch of tag work."""
        self._ended: list[tuple[_Try, bool]] = []
        """Tries reported finished whose tag is yet to be looked for (and whether their group had
        members left)."""
        self._tag_timer: Timer | None = None
        self._last_scan = -TAG_SCAN_GAP
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        watched = (signal.SIGTERM, signal.SIGINT) + (() if use_pidfd else (signal.SIGCHLD,))
        self.loop = EventLoop(sock_fd, on_line=self._handle, on_signal=self._on_signal,
                              on_close=self._on_close, signals=watched)

    def serve(self) -> None:
        self.loop.send({"op": "hello", "pid": os.getpid(), "pidfd": self.use_pidfd})
        while True:
            if self.closing and not self.tries and not self.loop.sending:
                self.loop.close_peer()
                if not self.loop.keepalive:
                    return
            self.loop.run_once()

    def _on_close(self) -> None:
        """The executor went away (flowd stopped or died): keep going, records go to status files.

        Also how a shutdown ends: the executor sees EOF once the last result is sent, while the
        runner itself may stay a little longer to SIGKILL what is left of a killed try's group.
        """
        self.closing = True

    def _on_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            name = signal.Signals(signum).name
            warn(f"got {name}: stopping every try")
            self.closing = True
            for t in list(self.tries.values()):
                self._terminate(t, killed=f"the runner got {name}")
        elif signum == signal.SIGCHLD:
            for t in list(self.tries.values()):
                self._on_exit(t)

    def _handle(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("a request must be a JSON object")
        except ValueError as exc:
            self._reject(None, f"bad request {line[:80]!r}: {exc}")
            return
        try:
            self._dispatch(msg)
        except Exception as exc:
            warn(traceback.format_exc())
            spec = msg.get("spec")
            ref = spec.get("ref") if msg.get("op") == "spawn" and isinstance(spec, dict) else None
            if ref not in self.tries:
                self._reject(ref, f"runner failed on {msg.get('op')!r}: {exc}")

    def _dispatch(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "spawn":
            self._spawn(msg.get("spec"))
        elif op == "kill":
            t = self.tries.get(msg["ref"]) if isinstance(msg.get("ref"), str) else None
            if t is not None:
                self._terminate(t, killed=str(msg.get("reason") or "killed"))
        elif op in ("kill_all", "shutdown"):
            reason = msg.get("reason") if op == "kill_all" else msg.get("kill")
            if reason:
                for t in list(self.tries.values()):
                    self._terminate(t, killed=str(reason))
            self.closing = self.closing or op == "shutdown"
        else:
            self._reject(msg.get("ref"), f"bad request: unknown op {op!r}")

    # -- spawning ---------------------------------------------------------------------------

    def _reject(self, ref: str | None, error: str, spec: dict[str, Any] | None = None) -> None:
        """A try that could not start still gets a result, so nobody waits for it forever."""
        warn(error)
        ref = ref if isinstance(ref, str) else None
        now = _now_iso()
        result = TaskResult(ref=ref, pid=None, ok=False, error=error,  # type: ignore[arg-type]
                            started_at=now, ended_at=now).to_json()
        if spec is not None:
            result["log_path"] = spec["log_path"]
            if (problem := write_status(spec["status_path"], result)) is not None:
                warn(str(problem))
        self.loop.send({"op": "finished", "result": result})

    def _spawn(self, spec: Any) -> None:
        ref = spec.get("ref") if isinstance(spec, dict) else None
        try:
            child.check_spec(spec)
        except (TypeError, ValueError) as exc:
            self._reject(ref, f"bad spawn request for {ref!r}: {exc}")
            return
        if ref in self.tries:
            warn(f"ignored a second spawn of {ref!r}, which is still running")
            return
        log = self._prepare(spec)
        if log is None:
            return
        pipes: list[int] = []
        try:
            bash = child.render_bash_command(spec) if spec["kind"] == "bash" else None
            pipes = [*os.pipe2(os.O_CLOEXEC), *os.pipe2(os.O_CLOEXEC)]
            started_at, t0 = _now_iso(), time.monotonic()
            if bash is not None:
                pid = child.spawn_bash(*bash, pipes[1], pipes[3])
            else:
                pid = child.fork_task(spec, pipes[1], pipes[3], _HANDLED)
        except (StartRefused, OSError, ValueError, TypeError) as exc:
            for fd in pipes:
                os.close(fd)
            error = str(exc) if isinstance(exc, StartRefused) else f"could not start: {exc}"
            log.note(error)
            log.close()
            self._reject(ref, error, spec)
            return
        os.close(pipes[1])
        os.close(pipes[3])
        t = _Try(spec, pid, log, t0, started_at)
        self.tries[t.ref] = t
        log.note(f"{child.describe(spec)} started {started_at} pid {pid}")
        rendered = rendered_record(bash[0], bash[2]) if bash is not None else None
        self.loop.send({"op": "started", "ref": t.ref, "pid": pid, "rendered": rendered})
        for fd, is_stdout in ((pipes[0], True), (pipes[2], False)):
            os.set_blocking(fd, False)
            t.pipes[fd] = is_stdout
            self.loop.register(fd, lambda t=t, fd=fd: self._on_pipe(t, fd))
        timeout = spec.get("execution_timeout")
        if timeout is not None:
            t.timeout_timer = self.loop.call_later(float(timeout), lambda: self._on_timeout(t))
        self._watch_exit(t)

    def _prepare(self, spec: dict[str, Any]) -> TaskLog | None:
        """Open the log and make room for the records before starting; a refusal is the try's result."""
        ref = spec["ref"]
        try:
            log = TaskLog(spec["log_path"], int(spec.get("max_log_bytes") or 0))
        except OSError as exc:
            full = f"{LOG_FOLDER_FULL}: " if exc.errno in FULL_ERRNOS else ""
            self._reject(ref, f"{full}cannot open log file {spec['log_path']}: {exc.strerror}", spec)
            return None
        status_dir = os.path.dirname(spec["status_path"])
        if status_dir and status_dir != os.path.dirname(spec["log_path"]):
            try:
                filemodes.makedirs(status_dir)
            except OSError as exc:
                log.close()
                self._reject(ref, f"cannot create the status folder {status_dir}: {exc.strerror}")
                return None
        try:
            os.unlink(result_path(spec["status_path"]))
        except OSError:
            pass
        return log

    def _watch_exit(self, t: _Try) -> None:
        if self.use_pidfd:
            try:
                t.pidfd = os.pidfd_open(t.pid)
            except OSError as exc:
                warn(f"pidfd_open unavailable ({exc}); watching SIGCHLD instead")
                self.use_pidfd = False
                self.loop.watch_signal(signal.SIGCHLD)
            else:
                self.loop.register(t.pidfd, lambda: self._on_exit(t))
                return
        self._on_exit(t)

    # -- output -----------------------------------------------------------------------------

    def _on_pipe(self, t: _Try, fd: int) -> None:
        if fd not in t.pipes:
            return
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._take(t, fd, data)
        else:
            self._close_pipe(t, fd)
            self._maybe_finish(t)

    def _take(self, t: _Try, fd: int, data: bytes) -> None:
        t.log.write(data)
        if t.pipes[fd]:
            t.last.feed(data)

    def _close_pipe(self, t: _Try, fd: int) -> None:
        self.loop.unregister(fd)
        os.close(fd)
        del t.pipes[fd]

    # -- exits, timeouts, kills -------------------------------------------------------------

    def _on_exit(self, t: _Try) -> None:
        if t.status is not None:
            return
        try:
            pid, status, ru = os.wait4(t.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status, ru = t.pid, 255 << 8, None
        if pid == 0:
            return
        t.status = status
        if ru is not None:
            t.rusage = {"utime": ru.ru_utime, "stime": ru.ru_stime, "maxrss_kb": float(ru.ru_maxrss),
                        "wall": round(time.monotonic() - t.t0, 6)}
        if t.pidfd >= 0:
            self.loop.unregister(t.pidfd)
            os.close(t.pidfd)
            t.pidfd = -1
        for fd in list(t.pipes):
            for _ in range(DRAIN_LIMIT):
                try:
                    data = os.read(fd, READ_SIZE)
                except OSError:
                    break
                if not data:
                    break
                self._take(t, fd, data)
            self._close_pipe(t, fd)
        self._maybe_finish(t)

    def _on_timeout(self, t: _Try) -> None:
        if t.status is None and self.tries.get(t.ref) is t:
            t.timed_out = True
            self._terminate(t, note=f"timed out after {t.spec['execution_timeout']:g}s")

    def _terminate(self, t: _Try, *, killed: str | None = None, note: str | None = None) -> None:
        """TERM the try's process group now, KILL whatever is left of it after the grace period."""
        if killed is not None and t.killed is None and not t.timed_out:
            t.killed = killed
        if t.term_sent:
            return
        t.term_sent = True
        grace = float(t.spec.get("kill_grace", 5.0))
        self._signal(t, signal.SIGTERM)
        what = note or f"kill requested ({killed})"
        t.log.note(f"{what}: sent SIGTERM to the process group, SIGKILL after {grace:g}s")
        t.sweep = self.loop.call_later(grace, lambda: self._sweep(t), keepalive=True)

    def _sweep(self, t: _Try) -> None:
        if self._signal(t, signal.SIGKILL) and t.status is None:
            t.log.note("grace period over: sent SIGKILL to the process group")

    def _signal(self, t: _Try, sig: int) -> bool:
        """The group, and the leader by pid too: in its first instant it has not called setsid yet.

        Whatever carries the try's tag outside the group gets the same signal with the next batch
        of tag work (one pass over /proc for every try signalled or ended since the last pass).
        """
        if self._tag_signals.get(t.tag) != signal.SIGKILL:
            self._tag_signals[t.tag] = sig
        self._tag_work()
        hit = _killpg(t.pid, sig)
        if t.status is None:
            try:
                os.kill(t.pid, sig)
                hit = True
            except ProcessLookupError:
                pass
        return hit

    # -- the record -------------------------------------------------------------------------

    def _tag_work(self) -> None:
        if self._tag_timer is None:
            delay = max(0.0, self._last_scan + TAG_SCAN_GAP - time.monotonic())
            self._tag_timer = self.loop.call_later(delay, self._do_tag_work, keepalive=True)

    def _do_tag_work(self) -> None:
        """Send the tags' pending signals, and stop what the tries that ended left running: the
        processes carrying their tag (they left the session: `setsid -f`, a daemon) get SIGTERM,
        and SIGKILL after the try's kill_grace. Nothing a try started outlives it."""
        self._tag_timer = None
        self._last_scan = time.monotonic()
        signals, self._tag_signals = self._tag_signals, {}
        ended, self._ended = self._ended, []
        found = tagged_pids({*signals, *(t.tag for t, _group in ended)})
        for tag, sig in signals.items():
            signal_pids(found[tag], sig)
        for t, group in ended:
            try:
                self._stop_leftovers(t, found[t.tag], group)
            except Exception:
                warn(f"stopping what try {t.ref} left running failed:\n{traceback.format_exc()}")

    def _stop_leftovers(self, t: _Try, left: list[int], group: bool) -> None:
        if not (left or group):
            return
        grace = float(t.spec.get("kill_grace", 5.0))
        signal_pids(left, signal.SIGTERM)
        where = f"{len(left)} found by its {TAG_VAR} tag" + (", and its process group" if group else "")
        note = f"processes it started were still running when it ended ({where}): sent SIGTERM, SIGKILL after {grace:g}s"
        try:
            log = TaskLog(t.spec["log_path"])
        except OSError as exc:
            warn(f"try {t.ref}: {note}; cannot note it in its log: {exc.strerror}")
        else:
            log.note(note)
            log.close()
        self.loop.call_later(grace, lambda: self._kill_leftovers(t, group), keepalive=True)

    def _kill_leftovers(self, t: _Try, group: bool) -> None:
        """SIGKILL to the tag, and to the group only if it had members when the try ended: the
        leader is long reaped, and a group id with no member left may name a new process by now."""
        if group:
            _killpg(t.pid, signal.SIGKILL)
        self._tag_signals[t.tag] = signal.SIGKILL
        self._tag_work()

    def _maybe_finish(self, t: _Try) -> None:
        if t.status is None or t.pipes or self.tries.get(t.ref) is not t:
            return
        del self.tries[t.ref]
        self.loop.cancel(t.timeout_timer)
        if t.sweep is not None and not _killpg(t.pid, 0):
            self.loop.cancel(t.sweep)
        result = self._result(t)
        t.log.close()
        if t.log.error:
            warn(t.log.error)
            result["log_incomplete"] = t.log.incomplete
        if (problem := write_status(t.spec["status_path"], result)) is not None:
            # The result still reaches flowd below, which records it in the database: only a
            # runner without flowd (during a restart) loses it, and then the try is found lost.
            warn(str(problem))
            result["log_incomplete"] = result.get("log_incomplete") or incomplete_note(problem.errno, problem.text)
        self.loop.send({"op": "finished", "result": result})
        # Right after the reap, while the group id cannot have been reused; a terminated try's
        # group is left to its sweep. The tag's processes are looked for with the next pass.
        group = not t.term_sent and _killpg(t.pid, signal.SIGTERM)
        self._ended.append((t, group))
        self._tag_work()

    def _result(self, t: _Try) -> dict[str, Any]:
        spec = t.spec
        code = os.waitstatus_to_exitcode(t.status or 0)
        elapsed = time.monotonic() - t.t0
        reported = read_result(spec["status_path"])
        t.log.note(f"killed by {signal.Signals(-code).name} after {elapsed:.2f}s" if code < 0
                   else f"exited with status {code} after {elapsed:.2f}s")
        ok, error = outcome(spec, code, timed_out=t.timed_out, killed=t.killed, reported=reported)
        extra = reported or {}
        verdict = extra.get("outcome")
        as_bash = spec["kind"] == "bash" or bool(extra.get("exec_bash"))  # @task.bash ran bash in its worker
        if as_bash and not ok and code > 0 and not t.timed_out and t.killed is None \
                and code in (spec.get("extra") or {}).get("skip_on_exit_code", ()):
            ok, error, verdict = True, None, "skipped"  # Airflow's skip_on_exit_code
        xcom = extra.get("xcom")
        if as_bash and ok and spec.get("do_xcom_push", True):
            line, too_long = t.last.finish()
            if too_long:
                t.log.note("the last stdout line is over 1 MiB: not pushed as XCom")
            elif line is not None:
                xcom = {**(xcom or {}), **(bash_xcom(spec.get("extra") or {}, line, t.log.note) or {})}
            if spec.get("template_xcom"):  # {{ ti.xcom_push(...) }} in the command, pushed when it rendered
                xcom = {**spec["template_xcom"], **(xcom or {})}
        result = TaskResult(
            ref=t.ref, pid=t.pid, ok=ok, exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None, timed_out=t.timed_out, killed=t.killed, error=error,
            xcom=None if verdict == "skipped" else xcom, branch=extra.get("branch"),
            skip_downstream=bool(extra.get("skip_downstream")), outcome=verdict, started_at=t.started_at,
            ended_at=_now_iso(), rusage=t.rusage,
        ).to_json()
        result["log_path"] = spec["log_path"]
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flow.executors.runner")
    parser.add_argument("--fd", type=int, required=True, help="connected socket to the executor")
    args = parser.parse_args(argv)
    child.keep_inherited_fds_from_tasks(args.fd)
    child.preload()
    Runner(args.fd, use_pidfd=os.environ.get("FLOW_RUNNER_PIDFD", "1") != "0").serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
