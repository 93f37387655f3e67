"""A small pool of parse children that works through DAG files beside the scheduler, never in its way.

flowd's loop only hands paths to the pool (``submit``) and gets each file's result back through
a callback as soon as that file is done, so a folder full of slow or broken files never holds up
a tick. What keeps one file from delaying the others:

- ``processes`` children parse at once (the ``parse_processes`` setting).
- A file still importing after ``slow_after`` seconds gives its slot up to the next file and
  goes on in the background until it finishes or its timeout kills its child; at most
  ``max_slow`` (by default 4 x ``processes``) such files run beside the pool, so a folder of
  hanging files costs a bounded number of processes, and only those files wait.
- A child that times out, dies, replies with garbage or leaves processes behind is retired
  (its process group killed, see ``flow.daemon.parser``) and the next file gets a fresh one.
- Children are closed as soon as the queue is empty, so each burst of changes is parsed by
  fresh interpreters and an edited helper module next to a DAG file is always re-read.

A file submitted again while it is being parsed is parsed once more after the current parse
(its content may have changed under it); ``forget`` drops a file's queued parse and discards
the result of one in flight (the file was deleted).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import replace

from ..parser import FileResult, ParseChild, ParserStartError

log = logging.getLogger("flow.parsepool")

SLOW_AFTER = 1.0
"""Seconds after which a parse stops counting against the pool (most files take well under 1 s;
one that takes longer only costs an extra process for a while)."""
START_BACKOFF = (1.0, 60.0)
"""First and longest wait before starting a child again after one could not start at all."""

Sink = Callable[[str, FileResult], None]


class ParsePool:
    """Parses submitted files in child processes and calls ``sink(path, result)`` for each.

    ``timeout`` and ``memory_limit`` are read for every file, so a reload that changes the
    settings applies to the next file. With ``fail_fast`` (the one-shot ``parse_files``), a
    child that cannot start ends the work and ``wait_idle`` raises ParserStartError; otherwise
    (flowd) the pool logs it, keeps the files queued and tries again with a growing delay.
    """

    def __init__(self, sink: Sink, *, processes: int = 2, timeout: Callable[[], float],
                 memory_limit: Callable[[], int | None] = lambda: None, slow_after: float = SLOW_AFTER,
                 max_slow: int | None = None, fail_fast: bool = False) -> None:
        if processes < 1:
            raise ValueError(f"a parse pool needs at least 1 process, got {processes!r}")
        self._sink = sink
        self._processes = processes
        self._timeout = timeout
        self._memory_limit = memory_limit
        self._slow_after = slow_after
        self._max_slow = 4 * processes if max_slow is None else max_slow
        self._fail_fast = fail_fast
        self._pending: dict[str, None] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._dropped: set[str] = set()
        self._children: list[ParseChild] = []
        """Idle children, ready for the next file."""
        self._started: set[ParseChild] = set()
        """Every child not yet closed, idle or busy: what ``close`` must end."""
        self._spares: set[asyncio.Task[None]] = set()
        """Children booting ahead of need, after a slow or broken file took one away."""
        self._slots: asyncio.Semaphore | None = None
        self._slow = 0
        self._wakeup: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._backoff = 0.0
        self._closing = False
        self.start_error: ParserStartError | None = None

    # -- what the watcher calls ------------------------------------------------------------

    def submit(self, paths: Iterable[str]) -> None:
        """Queue files for parsing (in order, each once); returns at once."""
        added = False
        for path in paths:
            if path in self._running:
                self._again.add(path)
            elif path not in self._pending:
                self._pending[path] = None
            added = True
        if added:
            self._ensure_started()
            assert self._idle is not None and self._wakeup is not None
            self._idle.clear()
            self._wakeup.set()

    def forget(self, paths: Iterable[str]) -> None:
        """The files are gone: drop their queued parses, and the result of any parse in flight."""
        for path in paths:
            self._pending.pop(path, None)
            self._again.discard(path)
            if path in self._running:
                self._dropped.add(path)

    @property
    def busy(self) -> bool:
        return bool(self._pending or self._running)

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """True once every submitted file has its result (False if ``timeout`` passed first)."""
        if not self.busy:
            if self._fail_fast and self.start_error is not None:
                raise self.start_error
            return True
        assert self._idle is not None
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        if self._fail_fast and self.start_error is not None:
            raise self.start_error
        return True

    async def close(self) -> None:
        """Stop at once: parses in flight are abandoned and every child's process group killed."""
        self._closing = True
        try:
            if self._dispatcher is not None:
                self._dispatcher.cancel()
            jobs = [*self._running.values(), *self._spares]
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, *([self._dispatcher] if self._dispatcher else []),
                                 return_exceptions=True)
            self._dispatcher = None
            self._pending.clear()
            self._again.clear()
            children = list(self._started)
            self._started.clear()
            self._children.clear()
            await asyncio.gather(*(child.kill() for child in children), return_exceptions=True)
        finally:
            self._closing = False

    # -- inside -----------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._slots = asyncio.Semaphore(self._processes)
            self._wakeup = asyncio.Event()
            self._idle = asyncio.Event()
            self._dispatcher = asyncio.create_task(self._dispatch(), name="parse-pool")

    async def _dispatch(self) -> None:
        try:
            await self._dispatch_forever()
        except Exception:  # a bug here must not stop the folder from being parsed for good
            log.exception("the DAG parse pool failed; it restarts with the next change")
            self._pending.clear()
            if self._idle is not None:
                self._idle.set()
        except asyncio.CancelledError:
            if not self._closing:  # the event loop is ending without close(): leave no child behind
                for spare in self._spares:
                    spare.cancel()
                for child in self._started:
                    child.abandon()
                self._started.clear()
                self._children.clear()
            raise

    async def _dispatch_forever(self) -> None:
        assert self._slots is not None and self._wakeup is not None and self._idle is not None
        while True:
            while not self._pending:
                if not self._running:
                    if self._spares:  # let them finish starting, so they can be closed cleanly
                        await asyncio.gather(*self._spares, return_exceptions=True)
                    await self._close_children()
                    if not self._pending and not self._running:
                        self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._slots.acquire()
            if not self._pending:
                self._slots.release()
                continue
            path = next(iter(self._pending))
            del self._pending[path]
            self._running[path] = asyncio.create_task(self._job(path), name=f"parse {path}")

    async def _job(self, path: str) -> None:
        assert self._slots is not None and self._wakeup is not None
        holds_slot, slow = True, False
        result: FileResult | None = None
        try:
            child = await self._child()
            if child is None:
                if not self._fail_fast and path not in self._dropped:
                    self._pending = {path: None, **self._pending}
                return
            began = time.monotonic()
            parse = asyncio.ensure_future(child.parse(path, self._timeout()))
            try:
                done, _ = await asyncio.wait({parse}, timeout=self._slow_after)
                if not done and self._slow < self._max_slow:
                    slow, holds_slot = True, False
                    self._slow += 1
                    self._slots.release()
                    self._top_up()  # this child is taken for a while: have the next one ready
                result = await parse
            except Exception as exc:  # a bug on our side: the file still gets an answer
                log.exception("parsing %s failed in flowd", path)
                child.abandon()
                result = FileResult(error=(f"{path}: flowd could not parse it: {type(exc).__name__}: {exc}",
                                           traceback.format_exc()))
            except BaseException:
                parse.cancel()
                child.kill_now()
                raise
            if child.alive and not child.transport.is_closing():
                self._children.append(child)
            else:  # timed out, died, retired or abandoned
                self._started.discard(child)
                self._top_up()
        finally:
            if slow:
                self._slow -= 1
            if holds_slot:
                self._slots.release()
            del self._running[path]
            dropped = path in self._dropped
            self._dropped.discard(path)
            if path in self._again:
                self._again.discard(path)
                self._pending[path] = None
            self._wakeup.set()
        if result is not None and not dropped:
            result = replace(result, seconds=time.monotonic() - began)
            try:
                self._sink(path, result)
            except Exception:  # the store or the engine failed: the pool must go on for the others
                log.exception("could not record the parse of %s", path)

    async def _child(self) -> ParseChild | None:
        """An idle child, or a fresh one; None when none can start (the file is queued again)."""
        while self._children:
            child = self._children.pop()
            if child.alive:
                return child
            self._started.discard(child)
        try:
            child = await ParseChild.start(memory_limit=self._memory_limit())
        except ParserStartError as exc:
            self.start_error = exc
            if self._fail_fast:
                self._pending.clear()
                self._again.clear()
                return None
            self._backoff = min(START_BACKOFF[1], self._backoff * 2) if self._backoff else START_BACKOFF[0]
            log.error("%s; retrying in %gs", exc, self._backoff)
            await asyncio.sleep(self._backoff)
            return None
        self.start_error = None
        self._backoff = 0.0
        self._started.add(child)
        return child

    def _top_up(self) -> None:
        """A child was lost to a slow or broken file: while files wait and none is idle, boot a
        spare now (within processes + max_slow), so the next file does not wait for a boot."""
        if (self._pending and not self._children and not self._spares and not self._closing
                and len(self._started) < self._processes + self._max_slow):
            spare = asyncio.create_task(self._start_spare(), name="parse-spare")
            self._spares.add(spare)
            spare.add_done_callback(self._spares.discard)

    async def _start_spare(self) -> None:
        try:
            child = await ParseChild.start(memory_limit=self._memory_limit())
        except ParserStartError:
            return  # the next file that needs a child starts one itself and reports why it cannot
        self._started.add(child)
        self._children.append(child)

    async def _close_children(self) -> None:
        children, self._children = self._children, []
        self._started.difference_update(children)
        await asyncio.gather(*(child.close() for child in children), return_exceptions=True)
