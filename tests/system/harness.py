"""A real systemd as PID 1 over a Debian root, for tests that must see flowd as a service.

PID 1 of the machines flow is tested on is not systemd, and systemd-nspawn refuses to boot there,
but systemd runs as PID 1 of a new PID namespace: `unshare --pid --fork --mount --uts --ipc` a
script that mounts the root (an overlay over a cached debootstrap tree, so every session starts
from a clean system and leaves the cache untouched), proc, /sys and /dev, tmpfs on /run and /tmp,
and `exec chroot ROOT env container=other /lib/systemd/systemd`. Commands go in with nsenter.
SIGTERM to that PID 1 is ignored; `systemctl poweroff` from inside stops it (SIGKILL if it hangs).

The debootstrap tree is made once per package list under /var/cache/flow-test-root (about a
minute, from Debian's mirror). pip inside the root reads a wheelhouse built outside from this
machine's pip configuration (also cached, by flow's dependency list), so installing flow in the
root needs no network and takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
MIRROR = os.environ.get("FLOW_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = sorted("systemd systemd-sysv libpam-systemd dbus python3 python3-venv make sudo tmux procps".split())
CACHE = Path(os.environ.get("FLOW_TEST_ROOT_CACHE", "/var/cache/flow-test-root"))
ROOT_PIP_CONF = "[global]\nno-index = true\nfind-links = /var/cache/flow-wheels\ndisable-pip-version-check = true\n"
MASKED = ("console-getty.service", "getty@tty1.service", "serial-getty@console.service",
          "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
          "fstrim.timer", "systemd-networkd.service", "systemd-resolved.service", "systemd-timesyncd.service")
"""Units that would take the host's console, network or clock (the namespace shares them)."""


class HarnessError(RuntimeError):
    """The harness itself could not do its part (debootstrap, boot, a command that must work)."""


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def debootstrap_path() -> str | None:
    return shutil.which("debootstrap") or ("/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None)


def base_root() -> Path:
    """The cached debootstrap tree for PACKAGES (made on first use; never modified afterwards)."""
    root = CACHE / _key(f"{SUITE} {','.join(PACKAGES)}")
    if (root / "usr/lib/systemd/systemd").exists():
        return root
    tool = debootstrap_path()
    if tool is None:
        raise HarnessError("debootstrap is not installed (apt-get install debootstrap)")
    tmp = root.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    res = subprocess.run([tool, "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(tmp), MIRROR],
                         capture_output=True, text=True, timeout=1200)
    if res.returncode != 0:
        raise HarnessError(f"debootstrap failed ({res.returncode}): {res.stdout[-2000:]}{res.stderr[-2000:]}")
    tmp.rename(root)
    return root


def _requirements() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [*project["project"]["dependencies"], *project["project"]["optional-dependencies"]["postgres"],
            *project["build-system"]["requires"]]


def wheelhouse() -> Path:
    """Wheels of flow's dependencies and build requirements, for pip inside the root (no index)."""
    reqs = _requirements()
    house = CACHE / f"wheels-{_key(' '.join(reqs))}"
    if (house / ".complete").exists():
        return house
    tmp = house.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # The root is Debian 12 like the machines flow is tested on: the wheels pip picks here fit there.
    res = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(tmp), *reqs],
                         capture_output=True, text=True, timeout=1200)
    if res.returncode != 0:
        raise HarnessError(f"pip download of flow's dependencies failed: {res.stderr[-3000:]}")
    (tmp / ".complete").write_text("\n".join(reqs) + "\n")
    tmp.rename(house)
    return house


def copy_checkout(dest: Path) -> None:
    """The working tree as a user would have cloned it (no virtualenv, build output or caches)."""
    skip = {".venv", "build", ".git", "demo-home", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}
    shutil.copytree(REPO, dest, symlinks=True,
                    ignore=lambda d, names: [n for n in names if n in skip or n.endswith((".egg-info", ".deb"))])


BOOT = r"""
set -eu
root=$1 lower=$2 upper=$3 work=$4 wheels=$5
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
mkdir -p "$root/var/cache/flow-wheels"
mount --bind "$wheels" "$root/var/cache/flow-wheels"
exec chroot "$root" /usr/bin/env container=other /lib/systemd/systemd
"""


class SystemdRoot:
    """One booted Debian root with systemd as PID 1 of its own PID namespace."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.root = workdir / "root"
        self.upper = workdir / "upper"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid1 = 0
        self.console = workdir / "console.log"

    # -- life -------------------------------------------------------------------------------
    def boot(self, timeout: float = 120.0) -> None:
        lower = base_root()
        wheels = wheelhouse()
        for d in (self.root, self.upper, self.workdir / "work"):
            d.mkdir(parents=True, exist_ok=True)
        etc = self.upper / "etc"
        (etc / "systemd/system").mkdir(parents=True, exist_ok=True)
        for unit in MASKED:
            (etc / "systemd/system" / unit).symlink_to("/dev/null")
        (etc / "pip.conf").write_text(ROOT_PIP_CONF)
        (etc / "hostname").write_text("flowtest\n")
        (etc / "hosts").write_text("127.0.0.1 localhost flowtest\n")
        # A fresh machine-id per boot: the journal needs one.
        (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
        copy_checkout(self.upper / "root" / "flow")
        with open(self.console, "wb") as out:
            self.proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "sh", "-c", BOOT, "boot",
                 str(self.root), str(lower), str(self.upper), str(self.workdir / "work"), str(wheels)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.pid1:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            try:
                found = children.read_text().split()
            except OSError:
                found = []
            if found:
                self.pid1 = int(found[0])
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"systemd did not start: {self.console.read_text()[-3000:]}")
            else:
                time.sleep(0.05)
        state = ""
        while time.monotonic() < deadline:
            res = self.run("systemctl is-system-running", check=False, timeout=30)
            state = res.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.3)
        failed = self.run("systemctl --failed --no-legend", check=False).stdout
        raise HarnessError(f"systemd did not finish booting ({state!r}); failed units: {failed}")

    def poweroff(self, timeout: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.run("systemctl poweroff --no-block", check=False, timeout=15)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid1, 9)
            self.proc.wait(timeout=30)

    # -- commands ---------------------------------------------------------------------------
    def run(self, command: str, *, user: str | None = None, check: bool = True, timeout: float = 120.0,
            cwd: str = "/", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`command` (a shell line) inside the root, as root or as `user` with a login-like env."""
        if not self.pid1:
            raise HarnessError("the root is not booted")
        base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                "TERM": "xterm-256color", "HOME": "/root", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
        base.update(env or {})
        line = f"cd {shlex.quote(cwd)} && {command}"
        if user is not None:
            line = f"exec runuser -l {shlex.quote(user)} -c {shlex.quote(line)}"
        argv = ["nsenter", "-t", str(self.pid1), "-m", "-u", "-i", "-p", "-r", "-w",
                "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in base.items()], "/bin/sh", "-c", line]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise HarnessError(f"in the root{' as ' + user if user else ''}: {command!r} exited "
                               f"{res.returncode}\nstdout: {res.stdout[-3000:]}\nstderr: {res.stderr[-3000:]}")
        return res

    def write(self, inside: str, text: str, mode: str = "0644", owner: str = "root:root") -> None:
        """Write a file inside the booted root (through the root's own shell, so it lands in the overlay)."""
        quoted = shlex.quote(text)
        self.run(f"mkdir -p $(dirname {shlex.quote(inside)}) && printf %s {quoted} > {shlex.quote(inside)} && "
                 f"chmod {mode} {shlex.quote(inside)} && chown {owner} {shlex.quote(inside)}")

    def wait_for(self, command: str, *, user: str | None = None, timeout: float = 60.0,
                 what: str = "") -> subprocess.CompletedProcess[str]:
        """Run `command` until it exits 0; the last result, or HarnessError with its output."""
        deadline = time.monotonic() + timeout
        while True:
            res = self.run(command, user=user, check=False, timeout=max(5.0, timeout))
            if res.returncode == 0:
                return res
            if time.monotonic() > deadline:
                raise HarnessError(f"gave up waiting for {what or command!r} after {timeout:g}s: "
                                   f"{res.stdout[-2000:]}{res.stderr[-2000:]}")
            time.sleep(0.3)
