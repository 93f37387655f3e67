"""The booted Debian root (tests/system/harness.py), one per session, shared by the files here.

It needs root (namespaces, mounts) and debootstrap. Without them the tests skip on a developer's
machine, but fail in CI (`CI` set): a CI that silently skipped them would never prove the service.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import SystemdRoot, debootstrap_path


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the systemd tests need root (namespaces, mounts, chroot)"
    if debootstrap_path() is None:
        return "the systemd tests need debootstrap (apt-get install debootstrap; .ci/run does)"
    for tool in ("unshare", "nsenter", "chroot"):
        if shutil.which(tool) is None:
            return f"the systemd tests need {tool} (util-linux, coreutils)"
    return None


@pytest.fixture(scope="session")
def systemd_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdRoot]:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI must run them", pytrace=False)
        pytest.skip(missing)
    root = SystemdRoot(Path(tmp_path_factory.mktemp("systemd-root")))
    try:
        root.boot()
        yield root
    finally:
        root.poweroff()
        # Two virtualenvs and a package: half a gigabyte per session that nobody reads again.
        for layer in ("upper", "work"):
            shutil.rmtree(root.workdir / layer, ignore_errors=True)
