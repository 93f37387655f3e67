"""flow/filemodes.py on real files: the folder decides the group, the umask decides nothing."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow import filemodes

USERS_GID = 100


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(params=[0o000, 0o022, 0o077], ids=["umask000", "umask022", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_below_a_private_folder_everything_is_owner_only(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    root.chmod(0o700)
    filemodes.makedirs(str(root / "a" / "b"))
    os.close(filemodes.open_file(str(root / "a" / "b" / "x.log"), os.O_WRONLY | os.O_APPEND))
    filemodes.write_file(str(root / "a" / "rec.json"), b"{}")
    assert (mode(root / "a"), mode(root / "a" / "b")) == (0o700, 0o700)
    assert (mode(root / "a" / "b" / "x.log"), mode(root / "a" / "rec.json")) == (0o600, 0o600)


def test_below_a_group_readable_folder_files_take_its_group_and_read_bit_only(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    os.chown(root, -1, USERS_GID)
    root.chmod(0o775)  # even group-writable and world-readable, the children get 0750/0640
    filemodes.makedirs(str(root / "run"))
    os.close(filemodes.open_file(str(root / "run" / "x.log"), os.O_WRONLY))
    for path, want in ((root / "run", 0o750), (root / "run" / "x.log", 0o640)):
        assert (mode(path), path.stat().st_gid) == (want, USERS_GID), path


def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "old.log"
    path.write_text("x")
    path.chmod(0o644)
    os.close(filemodes.open_file(str(path), os.O_WRONLY | os.O_APPEND))
    assert mode(path) == 0o644


def test_folders_above_a_root_follow_the_policy_not_their_parent(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    fixed = filemodes.Fixed()
    filemodes.secure_root(str(tmp_path / "data" / "logs"), directory=True, gid=None, fixed=fixed)
    assert (mode(tmp_path / "data"), mode(tmp_path / "data" / "logs")) == (0o700, 0o700)
    assert fixed.count == 0


def test_secure_tree_narrows_and_counts_but_never_widens(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir(mode=0o777)
    (tmp_path / "d").chmod(0o777)
    wide = tmp_path / "d" / "wide.log"
    wide.write_text("x")
    wide.chmod(0o666)
    narrow = tmp_path / "d" / "narrow.log"
    narrow.write_text("x")
    narrow.chmod(0o400)
    (tmp_path / "d" / "link").symlink_to("/etc/passwd")
    before = mode(Path("/etc/passwd"))
    fixed = filemodes.Fixed()
    filemodes.secure_tree(str(tmp_path), gid=None, fixed=fixed)
    assert (mode(tmp_path / "d"), mode(wide), mode(narrow)) == (0o700, 0o600, 0o400)
    assert mode(Path("/etc/passwd")) == before  # links are not followed
    assert fixed.count == 2 and fixed.example.endswith("0777 -> 0700")


def test_secure_tree_with_a_group_keeps_group_read_and_sets_the_group(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("x")
    log.chmod(0o664)
    fixed = filemodes.Fixed()
    filemodes.secure_tree(str(tmp_path), gid=USERS_GID, fixed=fixed)
    assert (mode(log), log.stat().st_gid) == (0o640, USERS_GID)
