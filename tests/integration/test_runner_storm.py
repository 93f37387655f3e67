"""The runner under a storm of its own tries ending together, and after its own death (issue 12.1).

A try's exit (its pidfd) and its pipes' EOF can come in one select() batch in any order; a runner
that let one callback invalidate another's fd died of it and took every running try with it. These
run the storms that showed it, through LocalExecutor and the real runner, and check after every
repetition that the same runner is still there and a bystander try still succeeds.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from flow.executors.local import LocalExecutor
from flow.executors.runloop import EventLoop

from .test_local_executor import Recorder, gone, make_spec, run

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
            for ref in refs:
                ex.submit(make_spec(root, ref, command, execution_timeout=timeout, kill_grace=0.2))
            await rec.until(lambda refs=refs: all(r in rec.finished for r in refs), timeout=20)
            for ref in refs:
                res = rec.finished[ref]
                expected_ok = timeout is None
                if res.ok != expected_ok or (timeout is not None and not res.timed_out):
                    problems.append(f"rep {rep} {ref}: ok={res.ok} timed_out={res.timed_out} error={res.error}")
            bystander = f"r{rep}-bystander"
            ex.submit(make_spec(root, bystander, "echo fine"))
            res = await rec.result(bystander)
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
