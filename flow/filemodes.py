"""Who may read the files flow writes: flowd's user, and its operator group where there is one.

Task logs hold whatever tasks print (passwords included), exit records and the database hold
rendered commands: a user the socket refuses must not read them from disk either. So nothing
flow creates is readable by others, whatever the umask; whether the *group* may read is decided
once, by the folder that holds the file:

- flowd makes its roots (the log folder, the database's file) at start: 0700/0600 in user mode,
  0750/0640 with the operator group in system mode (the unit's and tmpfiles' modes), and strips
  wider bits from what is already there (`secure_tree`, one warning for the lot);
- everything made below a root (a run's folder, a try's log, its exit record) takes its parent
  folder's group and group-read bit and never an "other" bit (`makedirs`, `open_file`).

That rule needs no setting carried to the task runner or the SSH threads: the folder says it.
It lives in flow/ because the daemon (database, lock) and the executors (logs, records) both
use it and neither may import the other's side.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field

PRIVATE_FILE, PRIVATE_DIR = 0o600, 0o700
GROUP_FILE, GROUP_DIR = 0o640, 0o750


def _group_of(parent: str) -> int | None:
    """The parent folder's gid when its group may list and read it, else None (owner only)."""
    try:
        st = os.stat(parent or ".")
    except OSError:
        return None
    return st.st_gid if st.st_mode & 0o050 == 0o050 else None


def _settle(fd_or_path: int | str, want: int, gid: int | None, st: os.stat_result) -> None:
    """Give a file flow just made exactly `want` (the umask may have taken bits) and the group.

    If the group cannot be set (not root, not a member), the group bits go too: the file's
    group would otherwise be flowd's own primary group, which nobody chose to let read."""
    if gid is not None and st.st_gid != gid:
        try:
            os.chown(fd_or_path, -1, gid)
        except OSError:
            want &= 0o700
    if stat.S_IMODE(st.st_mode) != want:
        os.chmod(fd_or_path, want)


def makedirs(path: str, *, inherit: bool = True, gid: int | None = None) -> None:
    """`os.makedirs`, each new folder 0700, or 0750 in its parent's group if the parent is
    group-readable. `inherit=False` gives every new folder the mode's own policy instead (0700,
    or 0750 in `gid`): for the folders above a root, whose parents are not flowd's business."""
    path = os.path.abspath(path)
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for folder in reversed(missing):
        group = _group_of(os.path.dirname(folder)) if inherit else gid
        want = GROUP_DIR if group is not None else PRIVATE_DIR
        try:
            os.mkdir(folder, want)
        except FileExistsError:
            continue  # another process made it first: it made it by this same rule
        _settle(folder, want, group, os.stat(folder))


def open_file(path: str, flags: int) -> int:
    """`os.open` with O_CREAT: a file made now gets 0600, or 0640 in its folder's group (see the
    module's docstring); one that exists keeps its mode (start-up checks those)."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:
        return os.open(path, flags | os.O_CLOEXEC)
    try:
        gid = _group_of(os.path.dirname(path))
        _settle(fd, GROUP_FILE if gid is not None else PRIVATE_FILE, gid, os.fstat(fd))
    except OSError:
        os.close(fd)
        raise
    return fd


def write_file(path: str, data: bytes) -> None:
    """Create or replace `path` with `data`, by open_file's rule (for one-shot records)."""
    fd = open_file(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@dataclass
class Fixed:
    """What `secure_tree` changed, for the one warning line at start."""

    count: int = 0
    example: str = ""
    failed: list[str] = field(default_factory=list)

    def add(self, path: str, old: int, new: int) -> None:
        self.count += 1
        if not self.example:
            self.example = f"{path} {old:04o} -> {new:04o}"


def secure_root(path: str, *, directory: bool, gid: int | None, fixed: Fixed) -> None:
    """Create or fix one root (the log folder, the database file) with the mode's own modes:
    0700/0600, or 0750/0640 in group `gid`; a setgid or sticky bit already there is kept."""
    if directory:
        want = GROUP_DIR if gid is not None else PRIVATE_DIR
        makedirs(os.path.dirname(os.path.abspath(path)), inherit=False, gid=gid)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, want)
    else:
        want = GROUP_FILE if gid is not None else PRIVATE_FILE
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE))
    _fix_one(path, want, gid, fixed, exact=True)


def secure_file(path: str, *, gid: int | None, fixed: Fixed) -> None:
    """Strip what is wider than the mode allows from one existing file (nothing if it is missing)."""
    _fix_one(path, GROUP_DIR if gid is not None else PRIVATE_DIR, gid, fixed)


def _fix_one(path: str, allowed: int, gid: int | None, fixed: Fixed, *, exact: bool = False) -> None:
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode) or not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return
    old = stat.S_IMODE(st.st_mode)
    new = allowed | (old & 0o7000) if exact else old & (allowed | 0o7700)
    try:
        if gid is not None and st.st_gid != gid:
            try:
                os.chown(path, -1, gid, follow_symlinks=False)
            except OSError:
                new &= 0o7700
        if new != old:
            os.chmod(path, new)
            if old & ~new:  # narrowed; giving the operator group its read bit is no news
                fixed.add(path, old, new)
    except OSError as exc:
        fixed.failed.append(f"{path}: {exc.strerror}")


def secure_tree(root: str, *, gid: int | None, fixed: Fixed) -> None:
    """Strip what is wider than the mode allows from every file and folder under `root` (not
    following symbolic links): group bits unless `gid`, group write, and every "other" bit."""
    allowed = GROUP_DIR if gid is not None else PRIVATE_DIR
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            _fix_one(os.path.join(folder, name), allowed, gid, fixed)
