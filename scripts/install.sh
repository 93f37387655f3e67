#!/bin/sh
# flow as a system service: the one layout that `sudo make install` puts on this machine and
# `make deb` stages into a package (DESTDIR), so the two never drift apart.
#
#   scripts/install.sh install      flow in its own virtualenv at /opt/flow, flow/flowd/flowtui linked
#                                   into /usr/local/bin, units, sysusers and tmpfiles snippets,
#                                   /etc/flowd/flowd.toml and /etc/flowd/dags if missing (never
#                                   overwritten), the README where the units' Documentation= points
#   scripts/install.sh uninstall    removes all that; keeps /etc/flowd, /var/lib/flowd, /var/log/flowd
#                                   (and the flowd user and groups) unless PURGE=1
#
# Environment (defaults are `make install`'s; `make deb` sets the /usr ones):
#   DESTDIR      stage into this folder instead of / (then nothing is run, only files written)
#   FLOW_HOME    the virtualenv (/opt/flow)          BINDIR       links (/usr/local/bin)
#   UNITDIR      system units (/usr/local/lib/systemd/system)
#   USERUNITDIR  user units (/usr/local/lib/systemd/user)
#   SYSUSERSDIR  (/usr/local/lib/sysusers.d)         TMPFILESDIR  (/usr/local/lib/tmpfiles.d)
#   PYTHON       the interpreter the virtualenv is made from (/usr/bin/python3: the system's, which
#                the flowd user can run; a pyenv or conda python under /root or /home cannot)
#   PURGE=1      uninstall: remove configuration, the database and the logs too
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
FLOW_HOME=${FLOW_HOME:-/opt/flow}
BINDIR=${BINDIR:-/usr/local/bin}
UNITDIR=${UNITDIR:-/usr/local/lib/systemd/system}
USERUNITDIR=${USERUNITDIR:-/usr/local/lib/systemd/user}
SYSUSERSDIR=${SYSUSERSDIR:-/usr/local/lib/sysusers.d}
TMPFILESDIR=${TMPFILESDIR:-/usr/local/lib/tmpfiles.d}
DOCDIR=/usr/share/doc/flow
CONFDIR=/etc/flowd
if [ -z "${PYTHON:-}" ]; then
  if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi

say() { echo "flow: $*"; }
die() { echo "flow: $*" >&2; exit 1; }

# systemd as PID 1 (sd_booted): then units can be reloaded and services stopped.
systemd_runs() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; }

check_root() {
  [ -n "$DESTDIR" ] || [ "$(id -u)" = 0 ] || die "run this as root: sudo make $1"
}

check_python() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
    die "$PYTHON is not Python >= 3.11 (set PYTHON=/path/to/python3.11 or newer)"
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
    die "$PYTHON cannot make a virtualenv: apt install python3-venv (then run this again)"
}

# A copy of the checkout without its .venv, build/ and egg-info: a root build in the tree itself
# would leave root-owned files there that break the developer's next `pip install -e .`.
clean_source() {
  tmp=$(mktemp -d)
  tar -C "$SRC" --exclude=./.venv --exclude=./build --exclude='./*.egg-info' --exclude=./.git \
    --exclude=./demo-home --exclude='*.deb' --exclude=__pycache__ -cf - . | tar -C "$tmp" -xf -
  echo "$tmp"
}

install_venv() {
  venv=$DESTDIR$FLOW_HOME
  if [ ! -x "$venv/bin/python" ]; then
    say "creating the virtualenv $FLOW_HOME (from $PYTHON)"
    "$PYTHON" -m venv "$venv"
  fi
  src=$(clean_source)
  say "installing flow into $FLOW_HOME"
  compile=""
  [ -z "$DESTDIR" ] || compile="--no-compile"
  # pip's own upgrade notice and the script-location warning say nothing useful here.
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q --no-warn-script-location $compile \
    --upgrade "$src[postgres]"
  rm -rf "$src"
  if [ -n "$DESTDIR" ]; then
    # The scripts were written for the staging path; at install time the venv is at FLOW_HOME.
    grep -rlI -- "$venv" "$venv/bin" "$venv/pyvenv.cfg" | while read -r f; do
      sed -i "s#$venv#$FLOW_HOME#g" "$f"
    done
    find "$venv" -name __pycache__ -type d -prune -exec rm -rf {} +
  fi
}

put() {  # put MODE SOURCE TARGET, with ExecStart pointed at this install's flowd
  install -d -m 755 "$(dirname "$DESTDIR$3")"
  sed "s#/opt/flow/bin/flowd#$FLOW_HOME/bin/flowd#g" "$2" > "$DESTDIR$3.tmp"
  chmod "$1" "$DESTDIR$3.tmp"
  mv "$DESTDIR$3.tmp" "$DESTDIR$3"
}

install_files() {
  install -d -m 755 "$DESTDIR$BINDIR"
  for cmd in flow flowd flowtui; do
    ln -sfn "$FLOW_HOME/bin/$cmd" "$DESTDIR$BINDIR/$cmd"
  done
  put 644 "$SRC/systemd/flowd.service" "$UNITDIR/flowd.service"
  put 644 "$SRC/systemd/flowd.socket" "$UNITDIR/flowd.socket"
  put 644 "$SRC/systemd/user/flowd.service" "$USERUNITDIR/flowd.service"
  put 644 "$SRC/systemd/user/flowd.socket" "$USERUNITDIR/flowd.socket"
  put 644 "$SRC/systemd/flowd-sysusers.conf" "$SYSUSERSDIR/flowd.conf"
  put 644 "$SRC/systemd/flowd-tmpfiles.conf" "$TMPFILESDIR/flowd.conf"
  put 644 "$SRC/README.md" "$DOCDIR/README.md"
  install -d -m 755 "$DESTDIR$CONFDIR"
  if [ -e "$DESTDIR$CONFDIR/flowd.toml" ]; then
    say "keeping $CONFDIR/flowd.toml as it is"
  else
    put 644 "$SRC/packaging/flowd.toml" "$CONFDIR/flowd.toml"
  fi
}

apply_system() {
  # The user and groups first: tmpfiles gives the folders to them.
  if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers "$SYSUSERSDIR/flowd.conf"
    systemd-tmpfiles --create "$TMPFILESDIR/flowd.conf"
  else
    say "systemd-sysusers is missing: create the user flowd and the groups flow, flow-view yourself"
  fi
  if systemd_runs; then
    systemctl daemon-reload
    # An upgrade: the running flowd restarts on the new code; its tasks carry on (stop_mode adopt).
    systemctl try-restart flowd.service
  fi
}

do_install() {
  check_root install
  check_python
  install_venv
  install_files
  [ -n "$DESTDIR" ] || apply_system
  [ -n "$DESTDIR" ] || say "installed; start it with: systemctl enable --now flowd"
}

do_uninstall() {
  check_root uninstall
  if systemd_runs; then
    systemctl disable --now flowd.socket flowd.service 2>/dev/null || true
  fi
  for cmd in flow flowd flowtui; do
    rm -f "$DESTDIR$BINDIR/$cmd"
  done
  rm -f "$DESTDIR$UNITDIR/flowd.service" "$DESTDIR$UNITDIR/flowd.socket" \
    "$DESTDIR$USERUNITDIR/flowd.service" "$DESTDIR$USERUNITDIR/flowd.socket" \
    "$DESTDIR$SYSUSERSDIR/flowd.conf" "$DESTDIR$TMPFILESDIR/flowd.conf"
  rm -rf "$DESTDIR$DOCDIR" "$DESTDIR$FLOW_HOME"
  if [ "${PURGE:-0}" = 1 ]; then
    rm -rf "$DESTDIR$CONFDIR" "$DESTDIR/var/lib/flowd" "$DESTDIR/var/log/flowd"
    say "removed flow with its configuration, database and logs (the flowd user and groups stay)"
  else
    say "removed flow; kept $CONFDIR, /var/lib/flowd and /var/log/flowd (PURGE=1 removes them)"
  fi
  ! systemd_runs || systemctl daemon-reload
}

case "${1:-}" in
  install) do_install ;;
  uninstall) do_uninstall ;;
  *) die "usage: $0 install|uninstall" ;;
esac
