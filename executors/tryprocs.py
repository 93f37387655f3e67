"""Every process of a try, wherever it went: its process group, and whatever carries its tag.

A try starts as the leader of its own session and group, and a kill of the group reaches what it
started, until something leaves: `setsid -f`, a daemonising script, `nohup ... &` under a shell
with job control. Such a process outlives a group kill, is re-parented to init, and is no longer
found from the leader. So, as remote tries already are (ssh_remote.py), every local try's
environment carries `FLOW_TRY=<tag>`; the tag is inherited by everything the try starts, through
fork, exec and setsid alike, and is what finds those processes when the try ends or is measured.
Only a process that rebuilds its environment from nothing (`env -i`) loses it; a cgroup per try
would be exact (see docs/design.md 4).

The tag is a hash of the try's log path: unique per try and per flow installation, so two flowds
on one host never touch each other's processes, and a recycled pid never carries it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

TAG_VAR = "FLOW_TRY"


def try_tag(log_path: str) -> str:
    """Unique per try and per flow installation (the log path names both), and shell-safe."""
    return hashlib.sha256(log_path.encode()).hexdigest()[:24]


def tagged_pids(tags: Iterable[str], proc: str = "/proc") -> dict[str, list[int]]:
    """tag -> pids of the processes whose environment carries it, from one pass over /proc.

    /proc/PID/environ is the environment the process was exec'd with; a process that is not ours
    to read (another user's, when flowd is not root) cannot carry our tag and is skipped, as is
    one that exited during the pass. The caller's own process is never listed.
    """
    wanted = {f"{TAG_VAR}={tag}".encode(): tag for tag in tags}
    out: dict[str, list[int]] = {tag: [] for tag in wanted.values()}
    if not wanted:
        return out
    me = os.getpid()
    try:
        names = os.listdir(proc)
    except OSError:
        return out
    marker = f"{TAG_VAR}=".encode()
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        env = _read_all(f"{proc}/{name}/environ")
        if env is None or marker not in env:
            continue
        for entry in env.split(b"\0"):
            tag = wanted.get(entry)
            if tag is not None:
                out[tag].append(int(name))
    return out


def _read_all(path: str) -> bytes | None:
    """The file's bytes, with bare os calls: a pass reads one such file per process on the host."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks)


def signal_pids(pids: Iterable[int], sig: int) -> int:
    """Signal each pid (and its process group, if it leads one); how many were still there."""
    hit = 0
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            continue
        hit += 1
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    return hit
