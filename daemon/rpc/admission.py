"""Admission control for the socket: how many connections, per uid and in total, before and after
the hello.

The socket is world-connectable (the role is decided at the hello), so without limits any local
user could hold every file descriptor flowd has, or every byte of memory, with idle connections.
Each connection holds a `Ticket` from accept to close; the counts are exact because only the
ticket moves them. Root and flowd's own user are admitted into a reserve above the totals and are
not counted per uid, so an administrator's `flow status` answers while a stranger floods.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Phase = Literal["pending", "active", "closed"]


@dataclass(frozen=True)
class Limits:
    pending_total: int = 64
    """Connections that have not said hello yet, from everyone."""
    pending_per_uid: int = 16
    active_total: int = 256
    """Connections past the hello, from everyone."""
    active_per_uid: int = 64
    reserve: int = 16
    """Extra room above each total for root and flowd's own user."""

    @property
    def descriptors(self) -> int:
        """File descriptors the socket may hold at most (the limits, reserve included)."""
        return self.pending_total + self.active_total + 2 * self.reserve


class Refused(Exception):
    """The newcomer is over a limit; the message says which, for the client and the log."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind
        """A stable name of the limit ("pending per uid", ...), what the log summarises by."""


class Admission:
    """The counts; `enter` at accept, `Ticket.promote` at a good hello, `Ticket.release` at close."""

    def __init__(self, limits: Limits, privileged: Callable[[int], bool]) -> None:
        self.limits = limits
        self.privileged = privileged
        self.pending: Counter[int] = Counter()
        self.active: Counter[int] = Counter()

    @property
    def pending_count(self) -> int:
        return sum(self.pending.values())

    @property
    def active_count(self) -> int:
        return sum(self.active.values())

    def _check(self, uid: int, counts: Counter[int], total: int, per_uid: int, what: str) -> None:
        if self.privileged(uid):
            if sum(counts.values()) >= total + self.limits.reserve:
                raise Refused(f"too many {what} connections (limit {total}, with {self.limits.reserve} "
                              "kept for root and flowd's user); try again shortly", f"{what} total")
            return
        if counts[uid] >= per_uid:
            raise Refused(f"too many {what} connections from uid {uid} (limit {per_uid} per user); "
                          "close some and try again", f"{what} per uid")
        if sum(counts.values()) >= total:
            raise Refused(f"too many {what} connections (limit {total}); try again shortly", f"{what} total")

    def enter(self, uid: int) -> Ticket:
        """A ticket for a new, pre-hello connection from `uid`; raises Refused when over a limit."""
        self._check(uid, self.pending, self.limits.pending_total, self.limits.pending_per_uid, "pending")
        self.pending[uid] += 1
        return Ticket(self, uid)


class Ticket:
    """One connection's place in the counts."""

    def __init__(self, admission: Admission, uid: int) -> None:
        self.admission = admission
        self.uid = uid
        self.phase: Phase = "pending"

    def promote(self) -> None:
        """The hello was good: leave the pending count for the active one; raises Refused when full."""
        assert self.phase == "pending"
        adm = self.admission
        adm._check(self.uid, adm.active, adm.limits.active_total, adm.limits.active_per_uid, "open")
        self._drop()
        adm.active[self.uid] += 1
        self.phase = "active"

    def release(self) -> None:
        """Idempotent: a connection may be closed from more than one path."""
        self._drop()
        self.phase = "closed"

    def _drop(self) -> None:
        counts = {"pending": self.admission.pending, "active": self.admission.active}.get(self.phase)
        if counts is not None:
            counts[self.uid] -= 1
            if counts[self.uid] <= 0:
                del counts[self.uid]


class Throttled:
    """A warning said once per `interval` seconds per key, with how often it happened meanwhile.

    An attacker who makes flowd refuse 40,000 connections must not write 40,000 log lines.
    """

    def __init__(self, logger: logging.Logger, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._missed: Counter[str] = Counter()

    def warning(self, key: str, message: str) -> bool:
        """Log `message` unless `key` was logged less than `interval` ago; True if it was logged."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._missed[key] += 1
            return False
        missed = self._missed.pop(key, 0)
        suffix = f" ({missed} more like this in the last {now - last:.0f} s)" if missed and last is not None else ""
        self._last[key] = now
        self.logger.warning("%s%s", message, suffix)
        return True
