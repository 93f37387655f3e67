"""What remote tries cost: one small shell command per host per tick, read from the remote /proc.

flowd cannot call psutil on another host, so the figures of remote tries come from a script run
over the host's pooled connection. It finds each try's processes twice over, by the FLOW_TRY tag in
their environment (what a task moved into a session of its own still carries) and by the session
the wrapper started (what ran `env -i` still belongs to), then prints each one's /proc/PID/stat and
the byte counts of /proc/PID/io. Only builtins run per process, so the cost stays a handful of
forks per host whatever the number of tries; all tries of a host share one command.

The parser trusts nothing: a process that exits mid-script leaves a missing or cut line, /proc/PID/io
of another user's process is unreadable, and a login script may print first. Anything it cannot
read is left out of the figures rather than failing the tick.

The remote host must be Linux (/proc) with GNU grep (-z) and procps (pgrep), as for the kill.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import TreeSample

if TYPE_CHECKING:
    from .ssh_config import Connection
    from .ssh_pool import Pool

HEADER = "flow-sample 1"
MAX_WAIT = 10.0
"""Seconds one host's sample may take before the tick gives up on it (bounded by connect_timeout too)."""
_TAG = re.compile(r"^[0-9a-f]{1,64}$")
_HIT = re.compile(r"^/proc/(\d+)/environ:FLOW_TRY=([0-9a-f]+)$")


@dataclass
class _Proc:
    sid: int
    user: int
    system: int
    threads: int
    rss_pages: int
    read_bytes: int = 0
    write_bytes: int = 0


def sample_script(tries: dict[str, int]) -> str:
    """The command for one host: `tries` maps each try's tag to its session id (the wrapper's pgid, 0 if unknown).

    Output: a header with CLK_TCK and the page size, `T` lines (a pid carrying a tag), `S` lines (a
    process's stat), `I` lines (its read and write bytes), and `end`, so a cut-off output is noticed.
    """
    tags = [t for t in tries if _TAG.match(t)]
    if len(tags) != len(tries):
        raise ValueError("a try tag is not a hex digest")
    sids = sorted({s for s in tries.values() if s > 0})
    patterns = " ".join(f"-e FLOW_TRY={t}" for t in tags)
    session_pids = f"$(pgrep -s {','.join(map(str, sids))} 2>/dev/null)" if sids else ""
    return (
        f'echo "{HEADER} $(getconf CLK_TCK 2>/dev/null || echo 100) $(getconf PAGESIZE 2>/dev/null || echo 4096)"\n'
        f"hits=$(grep -asxzFH {patterns} /proc/[0-9]*/environ 2>/dev/null | tr '\\000' '\\n')\n"
        'for h in $hits; do echo "T $h"; done\n'
        "pids=; for h in $hits; do p=${h#/proc/}; pids=\"$pids ${p%%/*}\"; done\n"
        f"seen=' '; for p in $pids {session_pids}; do\n"
        '  case $seen in *" $p "*) continue;; esac; seen="$seen$p "\n'
        "  read -r s < /proc/$p/stat || continue\n"
        '  echo "S $s"\n'
        "  r=; w=; while read -r k v; do case $k in read_bytes:) r=$v;; write_bytes:) w=$v;; esac; done < /proc/$p/io\n"
        '  [ -n "$r" ] && echo "I $p $r $w"\n'
        "done 2>/dev/null\n"
        "echo end\n"
    )


def parse_sample(text: str, tries: dict[str, int]) -> dict[str, TreeSample] | None:
    """{tag: figures} for every try in `tries` (a try with no process left gets procs=0).

    None when the output is not the script's (no header, or cut off before `end`): the caller then
    skips the tick instead of recording zeros.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(HEADER + " ")), None)
    if start is None or "end" not in (line.strip() for line in lines[start:]):
        return None
    head = lines[start].split()
    try:
        clk = float(head[2]) or 100.0
        page = int(head[3]) or 4096
    except (IndexError, ValueError):
        clk, page = 100.0, 4096
    tagged: dict[int, str] = {}
    procs: dict[int, _Proc] = {}
    for line in lines[start + 1:]:
        kind, _, rest = line.partition(" ")
        if kind == "T":
            m = _HIT.match(rest.strip())
            if m:
                tagged[int(m.group(1))] = m.group(2)
        elif kind == "S":
            parsed = _parse_stat(rest)
            if parsed is not None:
                procs[parsed[0]] = parsed[1]
        elif kind == "I":
            parts = rest.split()
            try:
                pid, read, write = int(parts[0]), int(parts[1]), int(parts[2])
            except (IndexError, ValueError):
                continue
            if pid in procs:
                procs[pid].read_bytes, procs[pid].write_bytes = read, write
        elif kind == "end":
            break
    by_sid = {sid: tag for tag, sid in tries.items() if sid > 0}
    out = {tag: TreeSample() for tag in tries}
    for pid, p in procs.items():
        tag = tagged.get(pid) or by_sid.get(p.sid)
        if tag is None or tag not in out:
            continue
        tree = out[tag]
        tree.user += p.user / clk
        tree.system += p.system / clk
        tree.rss += p.rss_pages * page
        tree.read_bytes += p.read_bytes
        tree.write_bytes += p.write_bytes
        tree.threads += p.threads
        tree.procs += 1
    return out


def _parse_stat(line: str) -> tuple[int, _Proc] | None:
    """/proc/PID/stat: "pid (comm) state ppid pgrp session ..."; comm may hold spaces and parens.

    CPU counts the process's own time and that of its children it has waited for, like the local
    sampler, so a child that ran and was reaped between two ticks is not lost.
    """
    close = line.rfind(")")
    if close < 0:
        return None
    try:
        pid = int(line[:line.index("(")].strip())
        f = line[close + 2:].split()
        # after comm: state(0) ppid(1) pgrp(2) session(3) ... utime(11) stime(12) cutime(13) cstime(14)
        # ... num_threads(17) ... rss(21)
        return pid, _Proc(sid=int(f[3]), user=int(f[11]) + int(f[13]), system=int(f[12]) + int(f[14]),
                          threads=int(f[17]), rss_pages=int(f[21]))
    except (IndexError, ValueError):
        return None


RemoteItem = tuple[str, "Connection", str, int]
"""(ref, connection, tag, session id) of one running remote try."""


def sample_tries(pool: Pool, items: Iterable[RemoteItem]) -> tuple[dict[str, TreeSample], list[str]]:
    """Blocking (run it in a worker thread): one command per host, hosts in parallel.

    Returns the figures by ref, and the names of the hosts skipped this tick (no free session, the
    connection down, or an output that could not be read); their tries simply miss one sample.
    """
    hosts: dict[str, list[RemoteItem]] = {}
    for item in items:
        hosts.setdefault(item[1].name, []).append(item)
    if not hosts:
        return {}, []
    groups = list(hosts.values())
    if len(groups) == 1:
        results = [_sample_host(pool, groups[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(len(groups), 16), thread_name_prefix="ssh-sample") as ex:
            results = list(ex.map(lambda g: _sample_host(pool, g), groups))
    out: dict[str, TreeSample] = {}
    skipped = []
    for group, got in zip(groups, results, strict=True):
        if got is None:
            skipped.append(group[0][1].name)
        else:
            out.update(got)
    return out, skipped


def _sample_host(pool: Pool, group: list[RemoteItem]) -> dict[str, TreeSample] | None:
    conn = group[0][1]
    tries = {tag: sid for _ref, _conn, tag, sid in group}
    got = pool.run_if_free(conn, sample_script(tries), min(MAX_WAIT, conn.connect_timeout))
    if got is None:
        return None
    trees = parse_sample(got[1], tries)
    if trees is None:
        return None
    return {ref: trees[tag] for ref, _conn, tag, _sid in group}
