"""flowd as systemd runs it: real processes, a real sd_notify socket, real signals.

Each test starts the installed `flowd` script. The fixture stands in for systemd: it owns
$NOTIFY_SOCKET, so a test waits for READY=1 / RELOADING=1 / STOPPING=1 instead of sleeping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from .conftest import FLOWD, Flowd, NotifyListener, clean_env, make_flowd

ONCE_DAG = """
import pendulum
from flow import DAG
from flow.operators import BashOperator
with DAG("{dag_id}", schedule="@once", start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    BashOperator(task_id="t", bash_command={command!r})
"""


def hello_status(path: str, timeout: float = 10.0) -> dict:
    """Handshake and one `status` request over a raw socket, as any script would do it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        f = s.makefile("rwb")
        f.write(b'{"hello": {"protocol": 1, "client": "test"}}\n{"id": 1, "method": "status"}\n')
        f.flush()
        hello = json.loads(f.readline())
        reply = json.loads(f.readline())
    assert "hello" in hello, hello
    assert reply.get("id") == 1 and "result" in reply, reply
    return reply["result"]


def wait_until(predicate, timeout: float, what: str):
    """Poll an outside effect (a file a task writes, a process ending) up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


@pytest.fixture
def idle(tmp_path: Path):
    """A configured flowd the test starts itself (to change its environment or flags first)."""
    f = make_flowd(tmp_path)
    yield f
    f.discard()


# -- start-up -------------------------------------------------------------------------------------


def test_ready_comes_after_the_socket_answers_and_carries_a_status(flowd: Flowd):
    status = hello_status(flowd.socket_path)  # straight after READY=1: no retry, no wait
    assert status["dags"] in (0, [], {})
    notes = flowd.notifications()
    ready = notes.index("READY=1")
    assert f"MAINPID={flowd.proc.pid}" in notes
    assert "STATUS=0 DAGs, 0 running, 0 import errors" in notes[ready - 2: ready + 3]


def test_status_follows_the_dag_folder_and_a_broken_file_harms_nobody(flowd: Flowd):
    mark = len(flowd.notifications())
    flowd.add_dag("broken.py", "this is not python\n")
    flowd.wait_notification("STATUS=0 DAGs, 0 running, 1 import errors", after=mark)
    flowd.add_dag("one.py", ONCE_DAG.format(dag_id="one", command="true"))
    flowd.wait_notification("STATUS=1 DAGs, 0 running, 1 import errors", after=mark)
    assert flowd.proc.poll() is None
    assert hello_status(flowd.socket_path)


def test_tasks_neither_inherit_the_notify_socket_nor_the_watchdog(idle: Flowd, tmp_path: Path):
    idle.env["WATCHDOG_USEC"] = "400000"
    idle.start()
    out = tmp_path / "env.txt"
    idle.add_dag("envdump.py", ONCE_DAG.format(dag_id="envdump", command=f"env > {out}.tmp && mv {out}.tmp {out}"))
    text = wait_until(lambda: out.exists() and out.read_text(), 30, "the task to dump its environment")
    names = {line.split("=", 1)[0] for line in text.splitlines()}
    assert not names & {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"}
    assert "HOME" in names


def test_watchdog_pings_at_half_the_interval(idle: Flowd):
    idle.env["WATCHDOG_USEC"] = "400000"
    idle.env["WATCHDOG_PID"] = "0"  # not flowd's pid: the watchdog is meant for someone else
    idle.start()
    time.sleep(0.5)  # the negative case: nothing may arrive within more than two intervals
    assert "WATCHDOG=1" not in idle.notifications()
    assert idle.stop() == 0
    del idle.env["WATCHDOG_PID"]
    idle.start()
    first = idle.wait_notification("WATCHDOG=1", timeout=5)
    t0 = time.monotonic()
    second = idle.wait_notification("WATCHDOG=1", after=first + 1, timeout=5)
    idle.wait_notification("WATCHDOG=1", after=second + 1, timeout=5)
    assert time.monotonic() - t0 < 2.0


def test_no_configuration_at_all_starts_and_creates_the_dag_folder(idle: Flowd, tmp_path: Path):
    base = Path(tempfile.mkdtemp(prefix="fd-"))
    try:
        env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path / "data"),
               "XDG_RUNTIME_DIR": str(base), "FLOW_DEFAULT_TIMEZONE": ""}
        idle.env.update(env)
        idle.argv = ["--user"]
        idle.start()
        assert (tmp_path / "cfg/flowd/dags").is_dir()
        assert (tmp_path / "data/flowd/flow.db").is_file()
        sock = base / "flowd" / "flowd.sock"
        assert hello_status(str(sock))
        assert idle.stop() == 0
        assert not sock.exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("content,needle", [
    ("parallelism = 'many'\n", "setting parallelism = 'many'"),
    ("colour = 'blue'\n", "unknown setting 'colour'"),
    ("= broken\n", "cannot read configuration file"),
])
def test_a_bad_configuration_file_is_one_line_and_exit_1(tmp_path: Path, content: str, needle: str):
    cfg = tmp_path / "flowd.toml"
    cfg.write_text(content)
    res = subprocess.run([FLOWD, "--user", "--config", str(cfg)], capture_output=True, text=True, timeout=30,
                         env=clean_env(tmp_path))
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and needle in res.stderr and str(cfg) in res.stderr


@pytest.mark.parametrize("args,needle", [
    (["--config", "/nonexistent/flowd.toml"], "/nonexistent/flowd.toml (from --config) does not exist"),
    (["--db", "/dev/null/sub/flow.db"], "cannot open the database"),
])
def test_an_unusable_config_path_or_database_is_one_line_and_exit_1(tmp_path: Path, args, needle):
    res = subprocess.run([FLOWD, "--user", "--dags-folder", str(tmp_path / "d"), *args], capture_output=True,
                         text=True, timeout=30, env=clean_env(tmp_path))
    assert res.returncode == 1, res.stderr
    assert res.stderr.count("\n") == 1 and needle in res.stderr, res.stderr


def test_print_config_names_where_each_value_came_from(tmp_path: Path):
    cfg = tmp_path / "flowd.toml"
    cfg.write_text('parallelism = 5\ndb_url = "postgresql+psycopg://flow:hunter2@db.example/flow"\n')
    env = clean_env(tmp_path) | {"FLOW_PARSE_TIMEOUT": "12"}
    res = subprocess.run([FLOWD, "--user", "--config", str(cfg), "--socket", "/tmp/x.sock", "--print-config"],
                         capture_output=True, text=True, timeout=30, env=env)
    assert res.returncode == 0, res.stderr
    lines = {line.split(" = ")[0]: line for line in res.stdout.splitlines() if " = " in line}
    assert lines["parallelism"].split() == ["parallelism", "=", "5", "#", str(cfg)]
    assert lines["parse_timeout"].split() == ["parse_timeout", "=", "12.0", "#", "$FLOW_PARSE_TIMEOUT"]
    assert lines["socket_path"].split()[-2:] == ["command", "line"] and '"/tmp/x.sock"' in lines["socket_path"]
    assert lines["kill_grace"].endswith("# default")
    assert "hunter2" not in res.stdout and "flow:***@db.example" in lines["db_url"]
    assert "(user mode)" in res.stdout and f"{cfg} (read)" in res.stdout


# -- signals --------------------------------------------------------------------------------------


def test_sighup_reloads_settings_and_parses_every_dag_file_again(flowd: Flowd):
    valid = ONCE_DAG.format(dag_id="late", command="true")
    broken = "raise RuntimeError('not yet')\n"
    broken += "#" * (len(valid) - len(broken) - 1) + "\n"
    mark = len(flowd.notifications())
    path = flowd.add_dag("late.py", broken)
    flowd.wait_notification("STATUS=0 DAGs, 0 running, 1 import errors", after=mark)
    # Same size, same mtime: invisible to the 1 s scan, so only the reload's full rescan sees it.
    st = os.stat(path)
    path.write_text(valid)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    cfg = flowd.home / ".config/flowd/flowd.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('parallelism = 7\noperator_group = "ops"\n')
    mark = len(flowd.notifications())
    before_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    flowd.proc.send_signal(signal.SIGHUP)
    reloading = flowd.wait_notification("RELOADING=1", after=mark)
    ready = flowd.wait_notification("READY=1", after=reloading)
    notes = flowd.notifications()
    usec = next(n for n in notes[reloading:ready] if n.startswith("MONOTONIC_USEC="))
    assert before_ns // 1000 <= int(usec.split("=")[1]) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    # The DAG's @once run may already be running: the engine ticks while the folder is re-parsed.
    assert re.fullmatch(r"STATUS=1 DAGs, [01] running, 0 import errors", notes[ready + 1]), notes[ready + 1]
    err = flowd.stderr()
    assert "parallelism = 7" in err
    assert "operator_group changed to 'ops'" in err and "needs a restart" in err
    assert hello_status(flowd.socket_path)["parallelism"] == 7
    assert flowd.proc.poll() is None


def test_sighup_with_a_broken_configuration_keeps_running_with_the_old_one(flowd: Flowd):
    cfg = flowd.home / ".config/flowd/flowd.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text("parallelism = 0\n")
    mark = len(flowd.notifications())
    flowd.proc.send_signal(signal.SIGHUP)
    flowd.wait_notification("READY=1", after=flowd.wait_notification("RELOADING=1", after=mark))
    assert "keeping the running configuration" in flowd.stderr()
    assert hello_status(flowd.socket_path)["parallelism"] == 32


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_says_stopping_exits_0_and_removes_the_socket(flowd: Flowd, sig: int):
    mark = len(flowd.notifications())
    assert flowd.stop(sig) == 0
    assert "STOPPING=1" in flowd.notifications()[mark:]
    assert not os.path.exists(flowd.socket_path)


def _start_sleeper(f: Flowd, tmp_path: Path) -> psutil.Process:
    pidfile = tmp_path / "sleeper.pid"
    f.add_dag("sleeper.py", ONCE_DAG.format(dag_id="sleeper", command=f"echo $$ > {pidfile}.tmp && "
                                                                   f"mv {pidfile}.tmp {pidfile} && exec sleep 300"))
    pid = wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "the task to start")
    return psutil.Process(int(pid))


def test_stop_mode_adopt_leaves_the_running_task_alone(flowd: Flowd, tmp_path: Path):
    task = _start_sleeper(flowd, tmp_path)
    assert flowd.stop() == 0
    assert task.is_running() and task.status() != psutil.STATUS_ZOMBIE
    assert "1 task(s) left to the runner for the next flowd" in flowd.stderr()


def test_stop_mode_kill_ends_the_running_task_first(idle: Flowd, tmp_path: Path):
    idle.env["FLOW_STOP_MODE"] = "kill"
    idle.env["FLOW_KILL_GRACE"] = "2"
    idle.start()
    task = _start_sleeper(idle, tmp_path)
    assert idle.stop() == 0
    try:
        assert task.status() == psutil.STATUS_ZOMBIE, "the task outlived a stop in kill mode"
    except psutil.NoSuchProcess:
        pass  # already reaped by the runner


# -- socket activation ----------------------------------------------------------------------------


def test_socket_activation_serves_on_the_socket_it_was_handed(idle: Flowd):
    short = os.path.dirname(idle.socket_path)
    path = os.path.join(short, "activated.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    fd = listener.fileno()
    # What systemd does (bash: dash cannot name fds above 9): the socket at fd 3, LISTEN_PID naming the process that exec()s flowd.
    cmd = ["bash", "-c", f'exec 3<&{fd} {fd}<&-; LISTEN_PID=$$ exec "$0" "$@"', *idle.command()]
    env = idle.full_env() | {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "flowd.socket"}
    mark = len(idle.notifications())
    with open(idle.stderr_path, "ab") as err:
        idle.proc = subprocess.Popen(cmd, env=env, pass_fds=[fd], stdout=err, stderr=err)
    listener.close()
    assert isinstance(idle.listener, NotifyListener)
    got = idle.listener.wait_for("READY=1", start=mark, timeout=20, alive=lambda: idle.proc.poll() is None)
    assert got is not None, idle.stderr()
    status = hello_status(path)
    assert status.get("socket", path) == path
    assert not os.path.exists(idle.socket_path)  # --socket is not bound when a socket is handed over
    assert idle.stop() == 0
    assert os.path.exists(path)  # the socket file belongs to systemd's socket unit


def test_a_second_flowd_on_the_same_socket_refuses_in_one_line(flowd: Flowd):
    res = subprocess.run(flowd.command(), capture_output=True, text=True, timeout=30, env=clean_env(flowd.home))
    assert res.returncode == 1
    assert res.stderr == f"flowd: flowd is already running on {flowd.socket_path} (pid {flowd.proc.pid})\n"
    assert hello_status(flowd.socket_path)["pid"] == flowd.proc.pid


def test_system_mode_under_systemd_uses_the_folders_the_unit_made(idle: Flowd, tmp_path: Path):
    run = Path(os.path.dirname(idle.socket_path)) / "run"
    dirs = {"STATE_DIRECTORY": tmp_path / "state", "LOGS_DIRECTORY": tmp_path / "logs-dir",
            "RUNTIME_DIRECTORY": run, "CONFIGURATION_DIRECTORY": tmp_path / "etc"}
    for d in dirs.values():
        d.mkdir()
    (tmp_path / "etc/flowd.toml").write_text("parallelism = 3\n")
    idle.env.update({k: str(v) for k, v in dirs.items()})
    idle.argv = ["--system"]
    idle.start()
    status = hello_status(str(run / "flowd.sock"))
    assert status["parallelism"] == 3
    assert status["dags_folder"] == str(tmp_path / "etc/dags") and (tmp_path / "etc/dags").is_dir()
    assert (tmp_path / "state/flow.db").is_file()
    assert idle.stop() == 0
