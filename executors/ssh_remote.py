"""The shell text flow sends to a remote host: the wrapper a try runs under, and the kill.

Closing an SSH channel does not stop the command behind it (paramiko #785): without a pty sshd
sends no SIGHUP, so a "stopped" task runs on. flow therefore kills by process group, over a
second channel. OpenSSH starts every no-pty session command with setsid(), so the login shell's
pid is its session and group id; the wrapper prints it before anything else runs, then execs bash
in place, so everything the task starts inherits that session. The kill signals the group and every
process of the session (what a `set -m` script put in groups of its own).

Each try's processes carry FLOW_TRY=<tag> in their environment. A kill sent later (after a lost
connection, or by the next flowd after a crash) first checks that a process of the session still
carries the tag, so a recycled pid is never signalled (Linux /proc and procps on the remote side).
"""

from __future__ import annotations

import re
import shlex
import signal

import paramiko
from paramiko.common import MSG_CHANNEL_REQUEST

from .tryprocs import try_tag as try_tag  # the tag is shared with local tries

PGID_LINE = re.compile(rb"^flow-pgid (\d+)\r?$")
NOTHING_LEFT = 3
"""The kill script's exit status when no process of the try is left."""
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def wrap(command: str, env: dict[str, str] | None, cwd: str | None, tag: str) -> str:
    """The command line for sshd: prints `flow-pgid N`, changes directory, exports, execs bash.

    Run by the account's login shell itself (which must be a POSIX shell: sh, bash, dash, zsh,
    ksh), so a try costs one exec more than the bare command. --norc because bash started under
    sshd reads ~/.bashrc even for -c: the login shell has done that already, and its exports are
    inherited; a second read is what a local BashOperator does not do and costs real time.
    """
    parts = [f"FLOW_TRY={tag}", "export FLOW_TRY", 'printf "flow-pgid %s\\n" "$$"']
    if cwd:
        parts.append(f"cd -- {shlex.quote(cwd)} || exit 1")
    for key, value in (env or {}).items():
        if not _ENV_NAME.match(key):
            raise ValueError(f"env name {key!r} cannot be exported by a shell on the remote host")
        parts.append(f"export {key}={shlex.quote(value)}")
    parts.append(f"exec bash --norc -c {shlex.quote(command)}")
    return "; ".join(parts)


def kill_script(tag: str, sig: int) -> str:
    """Signal every session that holds a process carrying the try's tag, and those processes.

    Found by tag rather than by the pgid alone, so a process the task moved into a session of its
    own (setsid, a daemonising script) is found as well, and a recycled pid never is.
    """
    name = signal.Signals(sig).name.removeprefix("SIG")
    return (
        f"pids=$(grep -lsxzF FLOW_TRY={tag} /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3)\n"
        f"[ -n \"$pids\" ] || exit {NOTHING_LEFT}\n"
        "sids=$(for p in $pids; do ps -o sid= -p \"$p\"; done 2>/dev/null | sort -u)\n"
        f"for s in $sids; do kill -s {name} -- \"-$s\"; pkill -{name} -s \"$s\"; done 2>/dev/null\n"
        f"kill -s {name} $pids 2>/dev/null; exit 0\n"
    )


def survivors_script(tag: str) -> str:
    """The pids of the try that still run, one a line (none when the kill worked)."""
    return f"grep -lsxzF FLOW_TRY={tag} /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3; true\n"


# -- exit-signal ---------------------------------------------------------------------------


def record_exit_signals(transport: paramiko.Transport) -> None:
    """Make this transport's channels keep RFC 4254's "exit-signal", which paramiko drops.

    sshd reports a command killed by a signal with exit-signal instead of exit-status; paramiko
    ignores that request, and the try would read "connection lost" instead of "killed by SIGKILL".
    The handler only notes the signal name, then hands the message on untouched. It is set on
    flow's own transports (an instance copy of the dispatch table), not on paramiko's class.
    """
    table = dict(transport._channel_handler_table)
    original = table[MSG_CHANNEL_REQUEST]

    def handle_request(chan: paramiko.Channel, m: paramiko.Message) -> None:
        pos = m.packet.tell()
        try:
            if m.get_text() == "exit-signal":
                m.get_boolean()
                chan.flow_exit_signal = m.get_text()  # type: ignore[attr-defined]
        except Exception:  # a malformed request is paramiko's to judge
            pass
        m.packet.seek(pos)
        original(chan, m)

    table[MSG_CHANNEL_REQUEST] = handle_request
    transport._channel_handler_table = table  # type: ignore[misc]


def signal_number(name: str | None) -> int | None:
    if not name:
        return None
    try:
        return int(signal.Signals[f"SIG{name.removeprefix('SIG')}"])
    except KeyError:
        return None
