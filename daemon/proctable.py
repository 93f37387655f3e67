"""The OS side of resource sampling: every call to /proc and psutil goes through :class:`ProcFacade`.

The monitor's logic (trees, CPU %, limits, series) is tested against a fake with the same three
methods; real processes are used where the figures themselves matter (tests/integration).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psutil

from flow.executors.tryprocs import tagged_pids


@dataclass(frozen=True)
class ProcSample:
    """One process at one instant. CPU times include its waited-for children (they died into it)."""

    user: float
    system: float
    rss: int
    read_bytes: int
    write_bytes: int
    threads: int


@dataclass(frozen=True)
class HostSample:
    mem_total: int
    mem_available: int
    cpu_count: int
    load_1m: float


ProcTable = dict[int, tuple[int, int, int]]
"""pid -> (ppid, session id, start time in clock ticks); the start time tells a reused pid apart."""


class ProcFacade:
    """psutil, with the Process objects cached between ticks so each sample costs a few reads."""

    def __init__(self) -> None:
        self._procs: dict[tuple[int, int], psutil.Process] = {}
        self._proc_root = "/proc" if os.path.isdir("/proc/self") else None

    def table(self) -> ProcTable:
        """Every process on the host, from one pass over /proc: the only whole-host read of a tick.

        /proc/<pid>/stat gives parent, session and start time in one read, where psutil would
        open several files per process; elsewhere psutil's process_iter is the fallback.
        """
        if self._proc_root is None:
            return {p.pid: (p.info["ppid"] or 0, -1, 0) for p in psutil.process_iter(["ppid"])}
        out: ProcTable = {}
        for name in os.listdir(self._proc_root):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    data = f.read()
            except OSError:
                continue  # it exited between listdir and open
            # "pid (comm) state ppid pgrp session ... starttime(22)"; comm may hold spaces and parens.
            fields = data[data.rfind(b")") + 2:].split()
            try:
                out[int(name)] = (int(fields[1]), int(fields[3]), int(fields[19]))
            except (IndexError, ValueError):
                continue
        return out

    def sample(self, pid: int, start: int) -> ProcSample | None:
        """None when the process is gone (or not ours to read)."""
        key = (pid, start)
        proc = self._procs.get(key)
        try:
            if proc is None:
                proc = self._procs[key] = psutil.Process(pid)
            with proc.oneshot():
                cpu = proc.cpu_times()
                mem = proc.memory_info()
                threads = proc.num_threads()
                try:
                    io = proc.io_counters()
                    read, write = int(io.read_bytes), int(io.write_bytes)
                except (psutil.AccessDenied, AttributeError, NotImplementedError):
                    read = write = 0
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            self._procs.pop(key, None)
            return None
        return ProcSample(user=cpu.user + cpu.children_user, system=cpu.system + cpu.children_system,
                          rss=int(mem.rss), read_bytes=read, write_bytes=write, threads=int(threads))

    def tagged(self, tags: Iterable[str]) -> dict[str, list[int]]:
        """tag -> pids whose environment carries it: what a try started outside its session."""
        return tagged_pids(tags)

    def forget_except(self, alive: set[tuple[int, int]]) -> None:
        """Drop cached Process objects of processes that were not part of any tree this tick."""
        for key in [k for k in self._procs if k not in alive]:
            del self._procs[key]

    def host(self) -> HostSample:
        vm = psutil.virtual_memory()
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
        return HostSample(mem_total=int(vm.total), mem_available=int(vm.available),
                          cpu_count=os.cpu_count() or 1, load_1m=round(load, 2))

    def self_figures(self) -> dict[str, Any]:
        """flowd's own open file descriptors (sockets and pipes count too: they exhaust the same limit)."""
        try:
            return {"open_files": psutil.Process().num_fds()}
        except (psutil.Error, AttributeError):
            return {"open_files": len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0}


def tree_members(roots: dict[str, int], table: ProcTable,
                 tagged: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    """For each try (ref -> leader pid): the leader, its descendants and its session's members,
    and the processes carrying its tag (`tagged`: ref -> pids) with their descendants.

    The runner starts every try as the leader of its own session (setsid), so a grandchild whose
    parent died (re-parented to init or a subreaper) is still found by its session id; a
    descendant that started a session of its own is still found through the parent links, until
    its parent dies (`setsid -f`, a daemon's double fork): then only its FLOW_TRY tag finds it.
    Built from one table per tick, whatever the number of tries.
    """
    children: dict[int, list[int]] = {}
    sessions: dict[int, list[int]] = {}
    for pid, (ppid, sid, _start) in table.items():
        children.setdefault(ppid, []).append(pid)
        if sid > 0:
            sessions.setdefault(sid, []).append(pid)
    out: dict[str, list[int]] = {}
    for ref, root in roots.items():
        if root not in table:
            out[ref] = []
            continue
        seen = {root}
        stack = [root, *sessions.get(root, ()), *(p for p in (tagged or {}).get(ref, ()) if p in table)]
        seen.update(stack)
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        out[ref] = sorted(seen)
    return out
