"""What a user refused at the hello cannot read through the socket, they cannot read from disk.

A real flowd (as root, started by hand: user mode, then system mode) runs a task that prints a
secret; then the unprivileged user `nobody` (setpriv --reuid 65534, no capabilities) tries to
read its log, its exit record and the database. The folders above are 0755, and a 0644 file
beside them *is* readable by nobody, so a refusal is the file modes' doing and nothing else.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Flowd, make_flowd
from .test_flowd_process import ONCE_DAG, wait_until

NOBODY = 65534
USERS_GID = 100
"""An existing group (Debian's `users`) standing in for the operator group `flow`."""
SECRET = "DB_PASSWORD=hunter2"


def as_nobody(path: Path, *, groups: list[int] | None = None) -> subprocess.CompletedProcess:
    group_args = ["--groups", ",".join(map(str, groups))] if groups else ["--clear-groups"]
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", *group_args, "--",
                           "cat", str(path)], capture_output=True, timeout=30)


def assert_unreadable(path: Path, **kw) -> None:  # noqa: ANN003
    assert path.exists(), path
    res = as_nobody(path, **kw)
    assert res.returncode != 0 and b"Permission denied" in res.stderr, \
        f"nobody read {path} ({stat.filemode(path.stat().st_mode)}): {res.stdout[:200]!r}"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder every user can traverse (pytest's tmp_path is under a 0700 folder of root's)."""
    path = Path(tempfile.mkdtemp(prefix="flow-modes-"))
    path.chmod(0o755)
    control = path / "readable.txt"
    control.write_text("anyone may read this\n")
    control.chmod(0o644)
    assert as_nobody(control).stdout == b"anyone may read this\n", "setpriv as nobody does not work here"
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fd(base: Path) -> Iterator[Flowd]:
    f = make_flowd(base)
    f.env["FLOW_OPERATOR_GROUP"] = "users"
    try:
        yield f
    finally:
        f.discard()


def run_secret_task(f: Flowd, dags: Path, logs: Path) -> tuple[Path, Path]:
    (dags / "secret.py").write_text(ONCE_DAG.format(dag_id="secret", command=f"echo {SECRET}"))
    status = wait_until(lambda: next(logs.rglob("attempt=1.log.status.json"), None), 60,
                        f"the task's exit record; stderr:\n{f.stderr()}")
    log = Path(str(status).removesuffix(".status.json"))
    assert SECRET in log.read_text()
    return log, status


def tree(root: Path) -> list[Path]:
    return [root, *root.rglob("*")]


def test_user_mode_files_are_private_and_what_an_older_flowd_left_is_fixed_with_one_warning(
        fd: Flowd, base: Path) -> None:
    fd.start()
    log, status = run_secret_task(fd, Path(fd.dags_folder), Path(fd.log_folder))
    db = base / "flow.db"
    for path in (log, status, db):
        assert_unreadable(path)
    for path in tree(Path(fd.log_folder)):
        assert mode(path) == (0o700 if path.is_dir() else 0o600), f"{path} is {mode(path):04o}"
    for path in (db, Path(f"{db}-wal"), Path(f"{db}.flowd-lock")):
        assert mode(path) == 0o600, f"{path} is {mode(path):04o}"
    assert fd.stop() == 0
    assert "files and folders readable by" not in fd.stderr()  # nothing to fix on a fresh start

    for path in tree(Path(fd.log_folder)):
        path.chmod(0o755 if path.is_dir() else 0o644)  # what flowd made before (umask 022)
    db.chmod(0o644)
    before = len(tree(Path(fd.log_folder))) + 1
    assert SECRET.encode() in as_nobody(log).stdout  # the test can fail: readable now
    fd.start()
    wait_until(lambda: "files and folders readable by" in fd.stderr(), 30, "the warning (the tree is checked "
               "in a thread after READY)")
    warnings = [line for line in fd.stderr().splitlines() if "files and folders readable by" in line]
    assert len(warnings) == 1, warnings
    assert f"made {before} files and folders" in warnings[0] and "only" in warnings[0]
    for path in (log, status, db):
        assert_unreadable(path)
    assert all(mode(p) in (0o600, 0o700) for p in tree(Path(fd.log_folder)))


def test_system_mode_by_hand_lets_the_operator_group_read_and_nobody_else(fd: Flowd, base: Path) -> None:
    run = base / "run"
    dirs = {"STATE_DIRECTORY": base / "state", "LOGS_DIRECTORY": base / "logs-dir",
            "RUNTIME_DIRECTORY": run, "CONFIGURATION_DIRECTORY": base / "etc"}
    for d in dirs.values():
        d.mkdir(mode=0o755)
    fd.env.update({k: str(v) for k, v in dirs.items()})
    fd.argv = ["--system"]
    fd.socket_path = str(run / "flowd.sock")
    fd.start()
    logs = base / "logs-dir"
    log, status = run_secret_task(fd, base / "etc" / "dags", logs)
    db = base / "state" / "flow.db"
    for path in (log, status, db):
        assert_unreadable(path)
        assert as_nobody(path, groups=[USERS_GID]).returncode == 0, f"the operator group cannot read {path}"
    for path in tree(logs):
        assert path.stat().st_gid == USERS_GID, path
        assert mode(path) == (0o750 if path.is_dir() else 0o640), f"{path} is {mode(path):04o}"
    assert mode(db) == 0o640 and db.stat().st_gid == USERS_GID
    assert os.stat(f"{db}-wal").st_mode & 0o007 == 0
