#!/bin/sh
# What `make test` (and so CI's .ci/run) needs from Debian beyond Python: installed with apt when
# missing and root, else named, so a developer knows why a test fails. One list for both callers.
#
#   sshd        the SSH tests start a private sshd on 127.0.0.1       (openssh-server)
#   tmux        the console's end-to-end tests run flowtui in tmux     (tmux)
#   systemd     systemd-analyze verify, sysusers and tmpfiles          (systemd)
#   debootstrap tests/system boots systemd over a Debian root          (debootstrap)
set -eu
need=""
[ -x /usr/sbin/sshd ] || need="$need openssh-server"
command -v tmux >/dev/null 2>&1 || need="$need tmux"
command -v systemd-analyze >/dev/null 2>&1 || need="$need systemd"
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need="$need debootstrap"
[ -n "$need" ] || exit 0
if [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
else
  echo "make test: missing Debian packages:$need (as root: apt-get install$need)" >&2
fi
