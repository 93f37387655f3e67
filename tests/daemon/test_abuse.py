"""A local user cannot deny service (issue 12 §3): the attacks, as user nobody, against a real flowd.

flowd runs with systemd's usual soft limit of 1024 file descriptors (and a hard limit of 1024,
so it cannot raise it). The attacker is a plain python3 under `setpriv` as uid 65534 in a child
process; it reports what it saw as JSON lines and holds its sockets until told to let go.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flow.daemon.rpc.admission import Admission, Limits, Refused, Throttled
from flow.daemon.rpc.logsafe import loggable

from . import serverharness
from .conftest import Flowd, make_flowd
from .serverharness import Client
from .test_flowd_process import hello_status, wait_until
from .test_server_robustness import burst

make_live = serverharness.make_live
close_clients = serverharness.close_clients

NOBODY = 65534
FD_LIMIT = 1024
RSS_LIMIT = 150 * 1024 * 1024

ATTACKER = (Path(__file__).parent / "abuse_client.py").read_text()
"""Run with `python3 -c` (its file may not be readable by nobody wherever the checkout is)."""


class Attacker:
    """The child process; `report` is its JSON line once it holds its connections."""

    def __init__(self, *args: str) -> None:
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
               "/usr/bin/python3", "-I", "-c", ATTACKER, *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd="/")
        line = self.proc.stdout.readline()
        if not line:
            pytest.fail(f"the attacker failed: {self.proc.stderr.read()}")
        self.report = json.loads(line)

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
            assert self.proc.stdout.readline().strip() == "done"
        self.proc.wait(30)


def start_limited(f: Flowd) -> Flowd:
    """Start flowd under `prlimit` so it has 1024 descriptors and cannot raise the limit."""
    plain = f.command

    def command() -> list[str]:
        return ["prlimit", f"--nofile={FD_LIMIT}:{FD_LIMIT}", *plain()]

    f.command = command  # type: ignore[method-assign]
    f.start()
    os.chmod(os.path.dirname(f.socket_path), 0o755)  # nobody must reach the socket
    assert psutil.Process(f.proc.pid).rlimit(psutil.RLIMIT_NOFILE) == (FD_LIMIT, FD_LIMIT)
    return f


@pytest.fixture
def flowd(tmp_path: Path) -> Iterator[Flowd]:
    f = make_flowd(tmp_path)
    f.env.update(FLOW_VIEWER_GROUP="nogroup", FLOW_HELLO_TIMEOUT="60")
    yield f
    f.discard()


def rss(f: Flowd) -> int:
    return psutil.Process(f.proc.pid).memory_info().rss


def refusal_lines(f: Flowd) -> list[str]:
    return [line for line in f.stderr().splitlines() if "too many" in line or "disconnecting" in line]


def test_1100_pre_hello_connections_leave_root_its_status(flowd: Flowd):
    start_limited(flowd)
    attacker = Attacker("pending", "1100", flowd.socket_path)
    try:
        report = attacker.report
        assert report["connected"] + report["errors"] == 1100
        # (connects the full backlog turned away are errors.) All but the per-user allowance of 16 were
        # refused at once with a typed error, not left hanging:
        assert report["connected"] > 200 and report["refused"] == report["connected"] - 16, report
        for _ in range(12):
            assert hello_status(flowd.socket_path, timeout=5)["pid"] == flowd.proc.pid
        assert psutil.Process(flowd.proc.pid).num_fds() < FD_LIMIT - 100
    finally:
        attacker.release()
    lines = refusal_lines(flowd)
    assert 1 <= len(lines) <= 6, lines
    assert hello_status(flowd.socket_path)["pid"] == flowd.proc.pid


def test_1500_connections_sending_a_mebibyte_without_newline_leave_memory_alone(flowd: Flowd):
    start_limited(flowd)
    baseline = rss(flowd)
    attacker = Attacker("flood", "1500", flowd.socket_path)
    try:
        assert attacker.report["connected"] > 1000, attacker.report
        for _ in range(10):
            assert rss(flowd) < RSS_LIMIT, f"flowd grew from {baseline >> 20} to {rss(flowd) >> 20} MiB"
            assert hello_status(flowd.socket_path, timeout=5)["pid"] == flowd.proc.pid
            time.sleep(0.1)
    finally:
        attacker.release()
    assert rss(flowd) < RSS_LIMIT
    assert len(refusal_lines(flowd)) <= 6


BIG_LOG_DAG = """
import pendulum
from flow import DAG
from flow.operators import BashOperator
with DAG("biglog", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    BashOperator(task_id="big", bash_command="yes 'a log line of flowd under abuse, padded to eighty chars..' | head -c 12000000")
"""


def call(path: str, method: str, **params: object) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        fh = s.makefile("rwb")
        fh.write(b'{"hello": {"protocol": 1, "client": "test"}}\n'
                 + json.dumps({"id": 1, "method": method, "params": params}).encode() + b"\n")
        fh.flush()
        fh.readline()
        return json.loads(fh.readline())["result"]


def big_log_run(f: Flowd) -> str:
    f.add_dag("biglog.py", BIG_LOG_DAG)
    wait_until(lambda: "biglog" in {d["dag_id"] for d in call(f.socket_path, "dags.list")["dags"]}, 30,
               "the DAG to load")
    run_id = call(f.socket_path, "dags.trigger", dag_id="biglog")["run"]["run_id"]
    wait_until(lambda: call(f.socket_path, "runs.get", dag_id="biglog", run_id=run_id)["run"]["state"]
               == "success", 60, "the run with the big log to succeed")
    return run_id


def test_200_viewers_pipelining_log_reads_stay_bounded_and_others_are_answered(flowd: Flowd):
    start_limited(flowd)
    run_id = big_log_run(flowd)
    baseline = rss(flowd)
    attacker = Attacker("viewers", "200", flowd.socket_path, "biglog", run_id)
    try:
        assert attacker.report["connected"] == 200
        assert 0 < attacker.report["refused"] < 200, attacker.report  # over the per-user limit: refused
        peak = 0
        for _ in range(15):
            peak = max(peak, rss(flowd))
            assert hello_status(flowd.socket_path, timeout=5)["pid"] == flowd.proc.pid
            time.sleep(0.1)
        print(f"flowd's RSS: {baseline >> 20} MiB before, {peak >> 20} MiB at most under attack")
        assert peak < RSS_LIMIT, f"flowd grew from {baseline >> 20} to {peak >> 20} MiB"
    finally:
        attacker.release()
    wait_until(lambda: rss(flowd) < baseline + 30 * 1024 * 1024, 20,
               f"flowd's memory to come back near its baseline of {baseline >> 20} MiB "
               f"(now {rss(flowd) >> 20} MiB)")
    assert hello_status(flowd.socket_path)["pid"] == flowd.proc.pid


def test_a_refused_hellos_client_name_reaches_the_log_escaped_and_cut(tmp_path: Path):
    f = make_flowd(tmp_path)  # no viewer group for nobody: refused at the hello
    try:
        start_limited(f)
        attacker = Attacker("name", "15", f.socket_path)  # a 15 kB name (the hello limit is 16 KiB)
        attacker.release()
        assert attacker.report["refused"] == 1
        wait_until(lambda: "refused nobody" in f.stderr(), 10, "the refusal in the log")
        lines = [line for line in f.stderr().splitlines() if "refused nobody" in line]
        assert len(lines) == 1 and len(lines[0]) < 500, lines
        assert "\x1b" not in f.stderr() and "forged line" not in f.stderr().replace(lines[0], "")
        assert "evil\\x0a12:00:00 ERROR flow.flowd: forged line\\x1b]2;pwned\\x07AAA" in lines[0]
        assert "(15000 more characters)" not in lines[0] and "more characters)" in lines[0]
    finally:
        f.discard()


# -- the pieces, without processes ------------------------------------------------------------------


def test_loggable_escapes_controls_keeps_text_and_cuts():
    assert loggable("flowtui/0.1 é ✓") == "flowtui/0.1 é ✓"
    assert loggable("a\nb\rc\x1b[31md\x7f\u2028\u202e\\") == "a\\x0ab\\x0dc\\x1b[31md\\x7f\\u2028\\u202e\\\\"
    assert loggable("x" * 250) == "x" * 200 + "... (50 more characters)"


def test_admission_counts_per_uid_and_in_total_with_a_reserve_for_root():
    adm = Admission(Limits(pending_total=3, pending_per_uid=2, active_total=2, active_per_uid=1, reserve=1),
                    privileged=lambda uid: uid == 0)
    a1, a2 = adm.enter(1000), adm.enter(1000)
    with pytest.raises(Refused, match="from uid 1000 \\(limit 2 per user\\)"):
        adm.enter(1000)
    b1 = adm.enter(1001)
    with pytest.raises(Refused, match="too many pending connections \\(limit 3\\)"):
        adm.enter(1002)
    root = adm.enter(0)  # the reserve
    with pytest.raises(Refused):
        adm.enter(0)
    a1.promote()
    with pytest.raises(Refused, match="too many open connections from uid 1000"):
        a2.promote()
    assert adm.pending_count == 3 and adm.active_count == 1  # a2 is still pending, b1 and root too
    a2.release()
    b1.promote()
    root.promote()  # root into the reserve above active_total
    assert adm.active_count == 3 and adm.pending_count == 0
    for t in (a1, b1, root, a1):  # release is idempotent
        t.release()
    assert adm.active_count == 0 and not adm.active and not adm.pending


def test_throttled_says_a_warning_once_per_interval_with_the_count(caplog: pytest.LogCaptureFixture):
    now = [100.0]
    throttled = Throttled(logging.getLogger("flow.test"), interval=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "flow.test"):
        assert throttled.warning("emfile", "cannot accept")
        for _ in range(500):
            assert not throttled.warning("emfile", "cannot accept")
        assert throttled.warning("other", "something else")
        now[0] += 11
        assert throttled.warning("emfile", "cannot accept")
    assert [r.getMessage() for r in caplog.records] == [
        "cannot accept", "something else", "cannot accept (500 more like this in the last 11 s)"]


def test_a_subscriber_over_its_byte_budget_is_disconnected_once_and_others_carry_on(make_live, caplog):
    """Events waiting for a client count against max_client_buffer with the replies: a subscriber
    that never reads is cut off at the budget instead of holding up to queue_limit events."""
    server = make_live(queue_limit=100_000)
    server.server.output_budget = 256 * 1024
    stuck = Client(server.path)
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.result("subscribe")
    other = Client(server.path)
    with caplog.at_level(logging.WARNING, "flow.server"):
        server.call(burst, server.server, 3000)  # 3 MB of events
        assert other.result("status")["pid"] == os.getpid()
    stuck.sock.settimeout(5)
    received = 0
    while stuck.recv() is not None:
        received += 1
    assert 0 < received < 1000, received
    cut = [r.getMessage() for r in caplog.records if "unread (budget 262144)" in r.getMessage()]
    assert len(cut) == 1, cut
    assert server.call(lambda: len(server.server.connections)) == 1  # only `other` is left


def test_limits_that_do_not_fit_the_descriptor_limit_shrink_with_one_warning(monkeypatch, caplog):
    from flow.daemon import server

    monkeypatch.setattr(server.resource, "getrlimit", lambda which: (512, 512))
    monkeypatch.setattr(server.resource, "setrlimit", lambda which, pair: pytest.fail("the hard limit is reached"))
    with caplog.at_level(logging.WARNING, "flow.server"):
        fitted = server.fit_to_descriptors(Limits())
    assert fitted.descriptors <= 512 - server.FD_HEADROOM and fitted.reserve == Limits().reserve
    assert fitted.pending_per_uid <= fitted.pending_total and fitted.active_per_uid <= fitted.active_total
    assert [r.getMessage() for r in caplog.records if "too small" in r.getMessage()] == [
        f"the file-descriptor limit (512) is too small for the connection limits; using max_pending_connections = "
        f"{fitted.pending_total} and max_connections = {fitted.active_total} (raise LimitNOFILE= to restore them)"]
    raised: list[tuple[int, int]] = []
    monkeypatch.setattr(server.resource, "getrlimit", lambda which: (256, 4096))
    monkeypatch.setattr(server.resource, "setrlimit", lambda which, pair: raised.append(pair))
    assert server.fit_to_descriptors(Limits()) == Limits()  # the soft limit is raised instead
    assert raised == [(Limits().descriptors + server.FD_HEADROOM, 4096)]


def test_out_of_descriptors_accept_backs_off_logs_once_and_recovers(flowd: Flowd):
    """EMFILE while connections wait: no busy loop, one log line per interval, back as soon as
    descriptors are free again."""
    start_limited(flowd)
    proc = psutil.Process(flowd.proc.pid)
    proc.rlimit(psutil.RLIMIT_NOFILE, (proc.num_fds() + 3, FD_LIMIT))
    attacker = Attacker("pending", "100", flowd.socket_path)
    try:
        wait_until(lambda: "cannot accept connections" in flowd.stderr(), 10, "the accept failure in the log")
        cpu = proc.cpu_times()
        time.sleep(3)  # accept keeps failing meanwhile
        used = sum(proc.cpu_times()[:2]) - sum(cpu[:2])
        assert used < 1.5, f"flowd spun on accept: {used:.2f} s of CPU in 3 s"
        proc.rlimit(psutil.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
    finally:
        attacker.release()
    assert hello_status(flowd.socket_path, timeout=10)["pid"] == flowd.proc.pid
    lines = [line for line in flowd.stderr().splitlines() if "cannot accept connections" in line]
    assert len(lines) == 1, lines
    assert "Too many open files" in lines[0]
