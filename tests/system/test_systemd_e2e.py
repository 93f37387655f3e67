"""flowd as a real service: the README's "Install on a server" commands, run as written in a fresh
Debian root booted with systemd as PID 1 (tests/system/harness.py), then what a sysadmin does to
it. The tests share that one machine and run in file order, each leaving flowd running.

- an operator (group flow) uses `flow status` and `flowtui`; a viewer (flow-view) reads, cannot trigger;
- `systemctl restart` and `kill -9` while 20 tasks run lose and repeat none (KillMode=process and
  adoption); `systemctl stop` leaves running tasks running, as the README says;
- an operator's own flowd runs under `systemctl --user` (the user units) and her `flow` prefers it;
- the watchdog restarts a flowd whose loop is stopped; with only flowd.socket enabled the first
  `flow status` starts flowd; journald has flowd's lines with their priorities; reload re-reads
  the configuration;
- `make uninstall` keeps the data; the .deb from `make deb` installs and starts the same way, and
  its purge removes the data.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from .harness import REPO, SystemdRoot

pytestmark = pytest.mark.timeout(900)

CHECKOUT = "/root/flow"
MARKS = "/var/tmp/flow-marks"
OPERATOR, VIEWER = "alice", "bob"

MANY = f"""
from flow import DAG
from flow.operators import BashOperator

with DAG("sys_many", schedule=None, max_active_tasks=20):
    for i in range(20):
        BashOperator(task_id=f"t{{i:02d}}", do_xcom_push=False,
                     bash_command=f"echo $$ >> {MARKS}/t{{i:02d}}.start; sleep 30; echo end >> {MARKS}/t{{i:02d}}.end")
"""

SLOW = f"""
from flow import DAG
from flow.operators import BashOperator

with DAG("sys_slow", schedule=None):
    BashOperator(task_id="slow", do_xcom_push=False,
                 bash_command="echo $$ >> {MARKS}/slow.start; sleep 6; echo end >> {MARKS}/slow.end")
"""


def readme_install_block() -> list[str]:
    """The command lines of the first ```sh block under "## Install on a server", as written."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Install on a server\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README's 'Install on a server' section has no ```sh block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def main_pid(root: SystemdRoot) -> int:
    return int(root.run("systemctl show -p MainPID --value flowd.service").stdout.strip())


def wait_active(root: SystemdRoot, *, other_than: int = 0, timeout: float = 60.0) -> int:
    """flowd.service active with a main pid (a new one if `other_than`), and answering."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = root.run("systemctl is-active flowd.service", check=False).stdout.strip()
        pid = main_pid(root)
        if state == "active" and pid and pid != other_than:
            root.wait_for("flow status", user=OPERATOR, timeout=30, what="flow status")
            return pid
        time.sleep(0.3)
    raise AssertionError(f"flowd.service is {state!r} (pid {pid}); journal:\n{journal_text(root)[-3000:]}")


def journal_text(root: SystemdRoot) -> str:
    return root.run("journalctl -u flowd.service --no-pager -o short", check=False).stdout


def trigger(root: SystemdRoot, dag_id: str) -> str:
    res = root.run(f"flow dags trigger {dag_id}", user=OPERATOR)
    return res.stdout.strip().splitlines()[-1]


def run_of(root: SystemdRoot, dag_id: str, run_id: str) -> dict:
    res = root.run(f"flow runs show {dag_id} '{run_id}' --json", user=OPERATOR)
    return json.loads(res.stdout)


def wait_run_done(root: SystemdRoot, dag_id: str, run_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = run_of(root, dag_id, run_id)
        if got["run"]["state"] in ("success", "failed"):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {got['run']['state']}: {json.dumps(got)[:3000]}")
        time.sleep(0.5)


def count_lines(root: SystemdRoot, pattern: str) -> dict[str, int]:
    out = root.run(f"cd {MARKS} && for f in {pattern}; do [ -e \"$f\" ] && echo \"$f $(wc -l < $f)\"; done; true").stdout
    return {name: int(n) for name, n in (line.split() for line in out.splitlines())}


@pytest.fixture(scope="module")
def server(systemd_root: SystemdRoot) -> SystemdRoot:
    """The root after the README's install commands (with its alice and bob), and two DAGs."""
    root = systemd_root
    root.run(f"useradd -m {OPERATOR} && useradd -m {VIEWER}")
    for line in readme_install_block():
        root.run(line, cwd=CHECKOUT, timeout=600)
    root.run(f"mkdir -p {MARKS} && chown flowd {MARKS}")
    root.write("/etc/flowd/dags/sys_many.py", MANY, owner="root:flow")
    root.write("/etc/flowd/dags/sys_slow.py", SLOW, owner="root:flow")
    wait_active(root)
    root.wait_for("flow status | grep -q 'DAGs       2'", user=OPERATOR,
                  timeout=30, what="flowd to load the two DAGs")
    return root


def test_the_readme_install_gives_an_enabled_running_service_at_the_documented_paths(server: SystemdRoot):
    assert server.run("systemctl is-enabled flowd.service").stdout.strip() == "enabled"
    assert server.run("systemctl is-enabled flowd.socket").stdout.strip() == "enabled"
    shown = server.run("systemctl show -p ExecStart -p User -p Documentation flowd.service").stdout
    assert "path=/opt/flow/bin/flowd" in shown and "User=flowd" in shown
    assert "file:///usr/share/doc/flow/README.md" in shown
    server.run("test -f /usr/share/doc/flow/README.md && test -d /etc/flowd/dags && test -f /etc/flowd/flowd.toml")
    for cmd in ("flow", "flowd", "flowtui"):
        assert server.run(f"readlink /usr/local/bin/{cmd}").stdout.strip() == f"/opt/flow/bin/{cmd}"
    assert "flow" in server.run(f"id -nG {OPERATOR}").stdout.split()


def test_an_operator_uses_flow_and_a_viewer_reads_but_cannot_trigger(server: SystemdRoot):
    status = server.run("flow status", user=OPERATOR).stdout
    assert "socket     /run/flowd/flowd.sock" in status and "DAG folder /etc/flowd/dags" in status
    assert server.run("flow status", user=VIEWER, check=False).returncode == 1  # not yet in any group
    server.run(f"usermod -aG flow-view {VIEWER}")
    assert "/run/flowd/flowd.sock" in server.run("flow status", user=VIEWER).stdout
    refused = server.run("flow dags trigger sys_slow", user=VIEWER, check=False)
    assert refused.returncode == 1 and "viewer" in refused.stderr, refused.stderr
    # The offline commands read the service's configuration: its DAG folder and its database,
    # which only the service's user may write (they record the DAGs they parse).
    offline = server.run("flow dags list", user=OPERATOR, check=False)
    assert offline.returncode == 1 and len(offline.stderr.strip().splitlines()) == 1, offline.stderr
    assert "/var/lib/flowd/flow.db" in offline.stderr and "sudo -u flowd flow" in offline.stderr
    assert "sys_many" in server.run("sudo -u flowd flow dags list").stdout


def test_an_operator_runs_flowtui_in_tmux_against_the_service(server: SystemdRoot):
    server.run("tmux new-session -d -s ops -x 120 -y 40 flowtui", user=OPERATOR)
    try:
        server.wait_for("tmux capture-pane -p -t ops | grep -q sys_many", user=OPERATOR, timeout=60,
                        what="flowtui to show the service's DAGs")
        server.run("tmux send-keys -t ops q", user=OPERATOR)
        server.wait_for("! tmux has-session -t ops 2>/dev/null", user=OPERATOR, timeout=20, what="flowtui to quit")
    finally:
        server.run("tmux kill-server 2>/dev/null; true", user=OPERATOR, check=False)


def test_restart_and_kill_9_while_twenty_tasks_run_lose_and_repeat_none(server: SystemdRoot):
    run_id = trigger(server, "sys_many")
    server.wait_for(f"[ $(ls {MARKS}/t*.start 2>/dev/null | wc -l) -eq 20 ]", timeout=60, what="20 tasks to start")
    before = main_pid(server)
    server.run("systemctl restart flowd")
    after_restart = wait_active(server, other_than=before)
    server.run(f"kill -9 {after_restart}")
    wait_active(server, other_than=after_restart)
    assert count_lines(server, "t*.end") != {f"t{i:02d}.end": 1 for i in range(20)}, "tasks ended too soon"
    got = wait_run_done(server, "sys_many", run_id)
    assert got["run"]["state"] == "success", got["run"]
    assert count_lines(server, "t*.start") == {f"t{i:02d}.start": 1 for i in range(20)}
    assert count_lines(server, "t*.end") == {f"t{i:02d}.end": 1 for i in range(20)}
    for ti in got["task_instances"]:
        assert (ti["state"], len(ti["tries"])) == ("success", 1), ti


def test_systemctl_stop_leaves_running_tasks_running_and_the_next_flowd_adopts_them(server: SystemdRoot):
    run_id = trigger(server, "sys_slow")
    server.wait_for(f"test -s {MARKS}/slow.start", timeout=30, what="the slow task to start")
    pid = int(server.run(f"tail -1 {MARKS}/slow.start").stdout)
    server.run("systemctl stop flowd.socket flowd.service")
    assert server.run("systemctl is-active flowd.service", check=False).stdout.strip() == "inactive"
    server.run(f"kill -0 {pid}")  # the task's shell is still there, flowd is not
    server.wait_for(f"test -s {MARKS}/slow.end", timeout=30, what="the task to finish while flowd is stopped")
    server.run("systemctl start flowd.socket flowd.service")
    wait_active(server)
    got = wait_run_done(server, "sys_slow", run_id, timeout=60)
    assert got["run"]["state"] == "success" and len(got["task_instances"][0]["tries"]) == 1, got


def test_the_watchdog_restarts_a_flowd_whose_loop_is_stopped(server: SystemdRoot):
    dropin = "/etc/systemd/system/flowd.service.d/zz-test-watchdog.conf"
    server.write(dropin, "[Service]\nWatchdogSec=3\nTimeoutAbortSec=2\n")
    try:
        server.run("systemctl daemon-reload && systemctl restart flowd")
        stopped = wait_active(server)
        server.run(f"kill -STOP {stopped}")
        wait_active(server, other_than=stopped, timeout=60)
        assert "Watchdog timeout" in journal_text(server)
    finally:
        server.run(f"rm -f {dropin} && systemctl daemon-reload && systemctl restart flowd")
    wait_active(server)


def test_with_only_the_socket_enabled_the_first_flow_status_starts_flowd(server: SystemdRoot):
    server.run("systemctl disable --now flowd.service flowd.socket && systemctl enable --now flowd.socket")
    assert server.run("systemctl is-enabled flowd.service", check=False).stdout.strip() == "disabled"
    assert server.run("systemctl is-active flowd.service", check=False).stdout.strip() == "inactive"
    status = server.run("flow status", user=OPERATOR, timeout=60).stdout
    assert "/run/flowd/flowd.sock" in status
    assert server.run("systemctl is-active flowd.service").stdout.strip() == "active"
    server.run("systemctl enable flowd.service")


def test_the_journal_has_flowds_lines_with_priorities_and_reload_rereads_the_configuration(server: SystemdRoot):
    server.run("sed -i 's/^# parallelism = 32$/parallelism = 7/; s/^# stop_mode = .*$/stop_mode = \"kill\"/' "
               "/etc/flowd/flowd.toml")
    server.run("systemctl reload flowd")
    server.wait_for("flow status | grep -q 'parallelism 7'", user=OPERATOR, timeout=30, what="parallelism 7")
    entries = [json.loads(line) for line in
               server.run("journalctl -u flowd.service -o json --no-pager _COMM=flowd").stdout.splitlines()]
    priorities = {e["MESSAGE"]: e["PRIORITY"] for e in entries if isinstance(e.get("MESSAGE"), str)}
    ready = [m for m in priorities if "ready on /run/flowd/flowd.sock" in m]
    assert ready and priorities[ready[-1]] == "6", priorities
    applied = [m for m in priorities if "reload: parallelism = 7" in m]
    assert applied and priorities[applied[-1]] == "6"
    needs_restart = [m for m in priorities if "reload: stop_mode changed" in m]
    assert needs_restart and priorities[needs_restart[-1]] == "4", priorities
    server.run("sed -i 's/^stop_mode = \"kill\"$/# stop_mode = \"adopt\"/' /etc/flowd/flowd.toml")
    server.run("systemctl reload flowd")


def test_a_users_own_flowd_runs_under_systemctl_user_and_their_flow_prefers_it(server: SystemdRoot):
    uid = server.run(f"id -u {OPERATOR}").stdout.strip()
    runtime = f"XDG_RUNTIME_DIR=/run/user/{uid}"
    server.run(f"loginctl enable-linger {OPERATOR}")
    try:
        server.wait_for(f"test -S /run/user/{uid}/systemd/private", timeout=60, what="alice's systemd")
        server.run(f"{runtime} systemctl --user enable --now flowd.socket", user=OPERATOR)
        assert server.run(f"{runtime} systemctl --user is-active flowd.service", user=OPERATOR,
                          check=False).stdout.strip() == "inactive"
        status = server.run(f"{runtime} flow status", user=OPERATOR, timeout=60).stdout
        assert f"socket     /run/user/{uid}/flowd/flowd.sock" in status  # her own, started by the socket
        assert f"DAG folder /home/{OPERATOR}/.config/flowd/dags" in status
        assert server.run(f"{runtime} systemctl --user is-active flowd.service", user=OPERATOR).stdout.strip() == "active"
        server.run(f"{runtime} systemctl --user disable --now flowd.socket flowd.service", user=OPERATOR)
        # Her own flowd gone, her flow finds the system's again.
        assert "socket     /run/flowd/flowd.sock" in server.run(f"{runtime} flow status", user=OPERATOR).stdout
    finally:
        server.run(f"loginctl disable-linger {OPERATOR}", check=False)


def test_uninstall_keeps_the_data_and_the_deb_installs_and_starts_the_same_way(server: SystemdRoot):
    server.run("make uninstall", cwd=CHECKOUT, timeout=120)
    server.run("test ! -e /opt/flow && test ! -e /usr/local/bin/flow && test ! -e /usr/local/lib/systemd/system/flowd.service")
    server.run("test -f /var/lib/flowd/flow.db && test -f /etc/flowd/flowd.toml && test -f /etc/flowd/dags/sys_many.py")
    server.run("make deb", cwd=CHECKOUT, timeout=600)
    # The admin's edited /etc/flowd/flowd.toml stays (force-confold: no question on a terminal).
    server.run("apt-get install -y -q -o Dpkg::Options::=--force-confold ./flow_*.deb && "
               "systemctl enable --now flowd", cwd=CHECKOUT, timeout=300)
    wait_active(server)
    shown = server.run("systemctl show -p FragmentPath flowd.service").stdout
    assert shown.strip() in ("FragmentPath=/usr/lib/systemd/system/flowd.service",  # /lib is /usr/lib
                             "FragmentPath=/lib/systemd/system/flowd.service"), shown
    assert server.run("readlink /usr/bin/flow").stdout.strip() == "/opt/flow/bin/flow"
    # The kept database: the runs from before the uninstall are there.
    assert "success" in server.run("flow runs list sys_many", user=OPERATOR).stdout
    assert "parallelism 7" in server.run("flow status", user=OPERATOR).stdout  # the kept configuration
    server.run("apt-get purge -y -q flow", timeout=120)
    server.run("test ! -e /var/lib/flowd && test ! -e /etc/flowd && test ! -e /opt/flow/bin/flowd")
