"""The runner under a storm of its own tries ending together, and after its own death (issue 12.1).

A try's exit (its pidfd) and its pipes' EOF can come in one select() batch in any order; a runner
that let one callback invalidate another's fd died of it and took every running try with it. These
run the storms that showed it, through LocalExecutor and the real runner, and check after every
repetition that the same runner is still there and a bystander try still succeeds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from flow.executors.local import LocalExecutor
from flow.executors.runloop import EventLoop

from .test_local_executor import Recorder, gone, make_spec, run, wait_until

REPETITIONS = 50
TRIES = 20
CHILDREN = 20

STORM = f"for i in $(seq {CHILDREN}); do sleep 1000 & done; echo up; wait"
"""A try with CHILDREN children that all hold its pipes: a timeout kills all of them at once."""


async def _storm(root: Path, command: str, *, tries: int, timeout: float | None) -> list[str]:
    """REPETITIONS rounds of `tries` tries ending together; returns what went wrong."""
    rec = Recorder()
    ex = LocalExecutor()
    await ex.start(rec.on_started, rec.on_finished)
    runner = ex.runner_pid
    problems: list[str] = []
    try:
        for rep in range(REPETITIONS):
            refs = [f"r{rep}-t{i}" for i in range(tries)]
            bystander = f"r{rep}-bystander"
            for ref in refs:
                ex.submit(make_spec(root, ref, command, execution_timeout=timeout, kill_grace=0.2))
            ex.submit(make_spec(root, bystander, "echo fine"))
            await rec.until(lambda every=(*refs, bystander): all(r in rec.finished for r in every), timeout=20)
            for ref in refs:
                res = rec.finished[ref]
                expected_ok = timeout is None
                if res.ok != expected_ok or (timeout is not None and not res.timed_out):
                    problems.append(f"rep {rep} {ref}: ok={res.ok} timed_out={res.timed_out} error={res.error}")
            res = rec.finished[bystander]
            if not res.ok or res.xcom != {"return_value": "fine"}:
                problems.append(f"rep {rep} bystander: {res.error}")
            if ex.runner_pid != runner or gone(runner):  # type: ignore[arg-type]
                problems.append(f"rep {rep}: the runner {runner} died")
                break
    finally:
        await ex.stop(kill_running=True)
    return problems


def test_twenty_tries_of_twenty_children_timing_out_together(tmp_path: Path) -> None:
    assert run(_storm(tmp_path, STORM, tries=TRIES, timeout=0.05), timeout=120) == []


def test_thirty_plain_tries_ending_together(tmp_path: Path) -> None:
    assert run(_storm(tmp_path, "echo out; echo err >&2", tries=30, timeout=None), timeout=120) == []



def test_an_event_made_stale_by_an_earlier_callback_of_its_batch_is_dropped() -> None:
    """Two ready pipes in one select() batch: whichever callback runs first closes the other pipe
    and, as a spawn in the same batch would, opens a new one that takes the freed fd number. The
    other's event is stale: neither its old callback nor the newcomer's may run for it."""
    ours, theirs = socket.socketpair()
    loop = EventLoop(ours.detach(), on_line=lambda _line: None, on_signal=lambda _sig: None,
                     on_close=lambda: None, signals=())
    pipes = {"a": os.pipe(), "b": os.pipe()}
    calls: list[str] = []
    closed: list[int] = []
    fresh: list[int] = []

    def handler(name: str) -> Callable[[], None]:
        def on_ready() -> None:
            calls.append(name)
            os.read(pipes[name][0], 10)
            if len(calls) > 1:
                return
            r, w = pipes.pop("b" if name == "a" else "a")
            assert loop.unregister(r)
            os.close(r)
            os.close(w)
            closed.append(r)
            new_r, new_w = os.pipe()
            fresh.extend((new_r, new_w))
            os.write(new_w, b"new")
            loop.register(new_r, lambda: calls.append(f"newcomer:{os.read(new_r, 10).decode()}"))
        return on_ready

    try:
        for name, (r, w) in pipes.items():
            os.write(w, name.encode())
            loop.register(r, handler(name))
        loop.run_once()
        assert len(calls) == 1, calls
        assert fresh[0] == closed[0], "precondition: the new pipe reuses the closed pipe's fd number"
        assert not loop.unregister(closed[0] + 1000)
        loop.run_once()
        assert calls[1:] == ["newcomer:new"], calls
    finally:
        loop.close()
        theirs.close()
        for fd in (*fresh, *(fd for pair in pipes.values() for fd in pair)):
            os.close(fd)


def test_kill_9_of_the_runner_with_twenty_tries_running(tmp_path: Path) -> None:
    """Five tries end while flowd's side is busy: the runner writes their exit records, but their
    results (each with a 300 KB XCom, more than the socket holds) are still in its memory when it
    is killed. Fifteen more are running, each past its log's head (a ring file is open) and with a
    process that left its session. Every try must end once: the five with their real result,
    read back from their records; the fifteen with the runner's death, all their processes gone,
    no ring file left; and the next try runs under a new runner."""
    go, pids = tmp_path / "go", tmp_path / "pids"
    pids.mkdir()
    quick = [make_spec(tmp_path, f"quick{i}", f"while [ ! -e {go} ]; do sleep 0.02; done; "
                       "head -c 300000 /dev/zero | tr '\\0' q; echo") for i in range(5)]
    slow = [make_spec(tmp_path, f"slow{i}", f"echo $$ > {pids}/slow{i}; head -c 3000 /dev/zero | tr '\\0' L; "
                      f"echo; setsid -f sh -c 'echo $$ > {pids}/slow{i}.escaped; exec sleep 1000'; sleep 1000",
                      max_log_bytes=1000) for i in range(15)]

    async def scenario() -> tuple[Recorder, int, int | None]:
        rec = Recorder()
        ex = LocalExecutor()
        await ex.start(rec.on_started, rec.on_finished)
        runner = ex.runner_pid
        assert runner is not None
        try:
            for spec in quick + slow:
                ex.submit(spec)
            await rec.until(lambda: len(rec.started) == 20)
            # From here on this loop is blocked: nothing the runner sends is read.
            wait_until(lambda: all((pids / f"slow{i}.escaped").exists() for i in range(15)), what="escapees")
            wait_until(lambda: all(Path(f"{s.log_path}.tail.{runner}").exists() for s in slow), what="ring files")
            go.touch()
            wait_until(lambda: all(Path(s.status_path).exists() for s in quick), what="the quick records")
            os.kill(runner, signal.SIGKILL)
            await rec.until(lambda: len(rec.finished) == 20)
            ex.submit(make_spec(tmp_path, "after", "echo next"))
            await rec.result("after")
            return rec, runner, ex.runner_pid
        finally:
            await ex.stop(kill_running=True)

    rec, old_runner, new_runner = run(scenario())
    for spec in quick:
        res = rec.finished[spec.ref]
        assert res.ok and res.exit_code == 0 and res.xcom == {"return_value": "q" * 300000}, res.error
    for spec in slow:
        res = rec.finished[spec.ref]
        assert not res.ok and res.error == (f"the task runner (pid {old_runner}) died while the try ran; "
                                            "the try was killed"), res.error
        record = json.loads(Path(spec.status_path).read_text())
        assert record["error"] == res.error and record["ref"] == spec.ref
        text = Path(spec.log_path).read_text()
        assert f"[flow] {res.error} (" in text and "was lost with the runner" in text
    leftovers = [p.name for p in (tmp_path / "logs").iterdir() if ".tail." in p.name]
    assert leftovers == []
    started = [int(p.read_text()) for p in pids.iterdir()]
    assert len(started) == 30
    wait_until(lambda: all(gone(pid) for pid in started), what="every process of the killed tries to be gone")
    assert new_runner != old_runner and rec.finished["after"].xcom == {"return_value": "next"}


def test_a_try_lost_with_its_runner_while_flowd_was_down_leaves_no_ring_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next flowd settles such a try as lost (no live process, no exit record) and removes the
    ring file the dead runner held; another try's ring file stays."""
    from flow.daemon import recovery

    log = tmp_path / "attempt=1.log"
    log.write_text("[flow] d.t try 1 started 2026-01-01T00:00:00+00:00 pid 999999999\n")
    ring = tmp_path / "attempt=1.log.tail.4242"
    ring.write_bytes(b"held back")
    other = tmp_path / "attempt=2.log.tail.4242"
    other.write_bytes(b"someone else's")
    monkeypatch.setattr(recovery, "LOST_GRACE", 0.0)
    orphan = recovery.Orphan(f"{log}.status.json", None)
    result = orphan.poll("ref") or orphan.poll("ref")
    assert result is not None and result.error is not None and result.error.startswith("lost:")
    assert not ring.exists() and other.exists()


def test_a_handler_or_timer_that_raises_is_skipped_and_the_loop_goes_on() -> None:
    ours, theirs = socket.socketpair()
    loop = EventLoop(ours.detach(), on_line=lambda _line: None, on_signal=lambda _sig: None,
                     on_close=lambda: None, signals=())
    r, w = os.pipe()
    calls: list[str] = []

    def bad_handler() -> None:
        os.read(r, 10)
        calls.append("handler")
        raise RuntimeError("a bug in one try's handling")

    def bad_timer() -> None:
        calls.append("timer")
        raise KeyError("another bug")

    try:
        loop.register(r, bad_handler)
        os.write(w, b"x")
        loop.call_later(0.0, bad_timer)
        loop.call_later(0.0, lambda: calls.append("next timer"))
        while len(calls) < 3:
            loop.run_once()
        assert calls == ["handler", "timer", "next timer"]
    finally:
        loop.close()
        theirs.close()
        os.close(r)
        os.close(w)
