"""Alerts through a real flowd: e-mail to a real SMTP server, webhooks to a real HTTP server.

A failing DAG runs under flowd; the messages that arrive are checked for what an on-call engineer
needs (DAG, task, run, try, error, log tail, the command for the whole log), secrets are checked
to appear nowhere, and a receiver that is down ends as a recorded failure, not silence.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Flowd, make_flowd
from .receivers import HTTPReceiver, SMTPReceiver, free_port

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-Pa55word"
TOKEN = "xoxb-TOPSECRET-token"


@pytest.fixture
def smtp() -> Iterator[SMTPReceiver]:
    receiver = SMTPReceiver(user="flow", password=PASSWORD).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def http() -> Iterator[HTTPReceiver]:
    receiver = HTTPReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[Flowd] = []

    def start(config: str, env: dict[str, str] | None = None) -> Flowd:
        f = make_flowd(tmp_path)
        cfg = tmp_path / "flowd.toml"
        cfg.write_text(config)
        f.extra_args = ["--config", str(cfg)]
        f.env.update(env or {})
        made.append(f)
        f.start()
        return f

    yield start
    for f in made:
        f.cleanup()
        shutil.rmtree(Path(f.socket_path).parent, ignore_errors=True)


def status(f: Flowd) -> dict[str, Any]:
    out = f.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_status(f: Flowd, pred: Any, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = status(f)
        if pred(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"status never matched; last: {json.dumps(st.get('notifications'))}\n"
                                 f"flowd stderr:\n{f.stderr()}")
        time.sleep(0.3)


def smtp_config(smtp: SMTPReceiver, tmp_path: Path) -> str:
    pw = tmp_path / "smtp-password"
    pw.write_text(PASSWORD + "\n")
    return f"""
[notifiers.mail]
type = "smtp"
host = "127.0.0.1"
port = {smtp.port}
security = "none"
user = "flow"
password_file = "{pw}"
from = "flowd@example.com"
retry_delay = 0.2
"""


def trigger(f: Flowd, dag_id: str) -> str:
    out = f.cli("dags", "trigger", dag_id)
    assert out.returncode == 0, out.stderr + f.stderr()
    return out.stdout.strip()


def test_failing_example_dag_sends_one_email_and_one_webhook(make, smtp, http, tmp_path):
    config = smtp_config(smtp, tmp_path) + f"""
[notifiers.ops-webhook]
type = "webhook"
url = "{http.url('/hook?token=' + TOKEN)}"
headers = {{ Authorization = "Bearer {TOKEN}" }}
retry_delay = 0.2
"""
    f = make(config, {"FLOW_DEFAULT_TIMEZONE": "Asia/Seoul", "FLOW_PAUSED_AT_CREATION": "false"})
    shutil.copy(ROOT / "dags" / "example_alerts.py", Path(f.dags_folder) / "example_alerts.py")
    wait_status(f, lambda st: st["dags"] == 1, timeout=60)
    run_id = trigger(f, "example_alerts")
    [mail] = smtp.inbox.wait(1)
    [hook] = http.inbox.wait(1)
    st = wait_status(f, lambda st: st["notifications"]["sent"] == 2)
    assert st["notifications"]["failed"] == 0 and st["notifications"]["last_failure"] is None

    # The e-mail: to the task's address, through the configured account, with the whole story.
    assert mail.rcpt == ["oncall@example.com"] and mail.login == "flow"
    assert mail.message["Subject"] == "[flow] example_alerts.load failed (try 2 of 2)"
    body = mail.body
    for text in ("DAG:    example_alerts", "Task:   load", f"Run:    {run_id}", "Try:    2 of 2",
                 "Error:  exit status 3", "ERROR: table orders is locked", "loading batch 30",
                 f"flow logs example_alerts load --run {run_id} --try 2", "KST (Asia/Seoul)"):
        assert text in body, f"{text!r} missing from:\n{body}"
    tail = body.split("Last 20 log lines:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(tail) == 20 and "loading batch 1\n" not in body

    # The webhook: JSON with the same facts, the configured header, and only one call.
    assert hook.headers["Authorization"] == f"Bearer {TOKEN}"
    data = hook.json()
    assert data["event"] == "task.failed" and data["dag_id"] == "example_alerts" and data["task_id"] == "load"
    assert data["run_id"] == run_id and data["try_number"] == 2 and data["error"] == "exit status 3"
    assert len(data["log_tail"]) == 20 and "ERROR: table orders is locked" in data["log_tail"]
    assert data["log_command"] == f"flow logs example_alerts load --run {run_id} --try 2"
    assert data["timezone"] == "Asia/Seoul" and data["ended"].endswith("+09:00")
    time.sleep(1.0)  # the first (retried) try must not have sent anything: email_on_retry is off
    assert len(smtp.inbox.items) == 1 and len(http.inbox.items) == 1

    # Secrets never show: not in status, not in flowd's log, not in --print-config.
    printed = f.cli("status", "--json").stdout
    shown = Path(f.stderr_path).read_text()
    import subprocess

    from .conftest import FLOWD, clean_env
    cfg = subprocess.run([FLOWD, "--config", str(tmp_path / "flowd.toml"), "--print-config"],
                         capture_output=True, text=True, env=clean_env(f.home))
    assert cfg.returncode == 0, cfg.stderr
    assert "[notifiers.ops-webhook]" in cfg.stdout and "***" in cfg.stdout
    for text in (printed, shown, cfg.stdout, f.cli("status").stdout):
        assert TOKEN not in text and PASSWORD not in text


SLACK_DAG = """
from flow import DAG
from flow.operators import BashOperator

with DAG("slacky", schedule=None, default_args={"notify_on_failure": ["chat"]}):
    BashOperator(task_id="boom", bash_command="echo starting; echo 'disk full' >&2; exit 1")
"""


def test_slack_format_webhook(make, http):
    f = make(f"""
[notifiers.chat]
type = "webhook"
url = "{http.url('/services/T000/B000/' + TOKEN)}"
format = "slack"
""", {"FLOW_PAUSED_AT_CREATION": "false"})
    f.add_dag("slacky.py", SLACK_DAG)
    wait_status(f, lambda st: st["dags"] == 1, timeout=60)
    run_id = trigger(f, "slacky")
    [hook] = http.inbox.wait(1)
    data = hook.json()
    assert data["text"].startswith(":x: slacky.boom failed (try 1 of 1)")
    blocks = data["blocks"]
    assert [b["type"] for b in blocks] == ["section", "section", "context"]
    assert f"`{run_id}`" in blocks[0]["text"]["text"] and "*Error:* exit status 1" in blocks[0]["text"]["text"]
    assert "disk full" in blocks[1]["text"]["text"] and blocks[1]["text"]["text"].count("```") == 2
    assert f"flow logs slacky boom --run {run_id} --try 1" in blocks[2]["elements"][0]["text"]


DOWN_DAG = """
from flow import DAG
from flow.operators import BashOperator

with DAG("downstream_alerts", schedule=None,
         default_args={"notify_on_failure": ["hook", "nope"]}):
    BashOperator(task_id="fail", bash_command="exit 2")
"""


def test_receiver_down_is_retried_then_recorded_in_status_and_audit(make, tmp_path):
    port = free_port()  # nothing listens here
    f = make(f"""
[notifiers.hook]
type = "webhook"
url = "http://127.0.0.1:{port}/x/{TOKEN}"
retries = 2
retry_delay = 0.2
""", {"FLOW_PAUSED_AT_CREATION": "false"})
    f.add_dag("down.py", DOWN_DAG)
    # A notifier name flowd does not know is a warning in its log and its status, as soon as it parses.
    st = wait_status(f, lambda st: st["notifications"]["unknown"], timeout=60)
    assert st["notifications"]["unknown"][0]["name"] == "nope"
    assert "notifier 'nope'" in f.stderr()
    trigger(f, "downstream_alerts")
    st = wait_status(f, lambda st: st["notifications"]["failed"] == 2)
    assert st["notifications"]["sent"] == 0 and st["notifications"]["pending"] == 0
    failures = [e for e in json.loads(f.cli("audit", "--json").stdout)["entries"] if e["action"] == "notify.failed"]
    assert {e["params"]["notifier"] for e in failures} == {"hook", "nope"}
    hook = next(e for e in failures if e["params"]["notifier"] == "hook")
    assert hook["params"]["attempts"] == 3 and hook["task_id"] == "fail" and hook["dag_id"] == "downstream_alerts"
    assert "refused" in hook["params"]["reason"].lower() and f"127.0.0.1:{port}/***" in hook["params"]["reason"]
    nope = next(e for e in failures if e["params"]["notifier"] == "nope")
    assert "not configured" in nope["params"]["reason"]
    assert st["notifications"]["last_failure"]["reason"]
    assert f.stderr().count("attempt 1 of 3") == 1 and f.stderr().count("attempt 2 of 3") == 1
    human = f.cli("status").stdout
    assert "2 failed" in human and "last failure" in human
    for text in (f.stderr(), json.dumps(st), f.cli("audit").stdout):
        assert TOKEN not in text


CALLBACK_DAG = """
import time
from flow import DAG
from flow.operators import BashOperator

def explode(context):
    raise RuntimeError("callback exploded")

def hang(context):
    print("callback hanging", flush=True)
    time.sleep(600)

with DAG("callbacks_misbehave", schedule=None, on_failure_callback=explode,
         default_args={{"notify_on_failure": ["hook"]}}):
    ok = BashOperator(task_id="ok", bash_command="echo fine", on_success_callback=hang)
    after = BashOperator(task_id="after", bash_command="echo after")
    bad = BashOperator(task_id="bad", bash_command="exit 5", on_failure_callback=explode)
    ok >> after
"""


def test_callbacks_that_raise_or_hang_change_nothing_else(make, http):
    f = make(f"""
[notifiers.hook]
type = "webhook"
url = "{http.url()}"
""", {"FLOW_PAUSED_AT_CREATION": "false", "FLOW_CALLBACK_TIMEOUT": "2"})
    f.add_dag("cb.py", CALLBACK_DAG.format())
    wait_status(f, lambda st: st["dags"] == 1, timeout=60)
    run_id = trigger(f, "callbacks_misbehave")
    [hook] = http.inbox.wait(1)
    assert hook.json()["task_id"] == "bad"
    deadline = time.monotonic() + 90
    while True:
        run = json.loads(f.cli("runs", "show", "callbacks_misbehave", run_id, "--json").stdout)
        states = {ti["task_id"]: ti["state"] for ti in run["task_instances"]}
        if run["run"]["state"] in ("success", "failed") and "timed out" in f.stderr():
            break
        assert time.monotonic() < deadline, f"{run}\n{f.stderr()}"
        time.sleep(0.3)
    # The callbacks' failures are logged; the states are what the tasks did, nothing more.
    assert states == {"ok": "success", "after": "success", "bad": "failed"}
    assert run["run"]["state"] == "failed"
    err = f.stderr()
    assert "on_success_callback" in err and "timed out after 2s" in err
    assert "callback exploded" in err
    ok_log = f.cli("logs", "callbacks_misbehave", "ok", "--run", run_id).stdout
    assert "callback hanging" in ok_log and "timed out after 2s" in ok_log
    bad_log = f.cli("logs", "callbacks_misbehave", "bad", "--run", run_id).stdout
    assert "RuntimeError: callback exploded" in bad_log
    st = wait_status(f, lambda st: st["notifications"]["sent"] == 1)
    assert st["running"] == 0 and st["notifications"]["failed"] == 0


EMAIL_DAG = """
from flow import DAG
from flow.operators import EmailOperator

with DAG("report", schedule=None):
    EmailOperator(task_id="send", to=["boss@example.com", "team@example.com"],
                  subject="Report for {{ ds }}", html_content="<p>Run {{ run_id }} is done.</p>",
                  body="Run {{ run_id }} is done.")
    EmailOperator(task_id="nowhere", to="x@example.com", subject="s", body="b", notifier="missing")
"""


def test_email_operator_sends_through_the_configured_smtp_notifier(make, smtp, tmp_path):
    f = make(smtp_config(smtp, tmp_path), {"FLOW_PAUSED_AT_CREATION": "false"})
    f.add_dag("report.py", EMAIL_DAG)
    wait_status(f, lambda st: st["dags"] == 1, timeout=60)
    run_id = trigger(f, "report")
    [mail] = smtp.inbox.wait(1)
    assert sorted(mail.rcpt) == ["boss@example.com", "team@example.com"] and mail.login == "flow"
    assert mail.message["Subject"].startswith("Report for 20")
    assert f"Run {run_id} is done." in mail.body
    html = mail.message.get_body(("html",)).get_content()
    assert f"<p>Run {run_id} is done.</p>" in html
    deadline = time.monotonic() + 60
    while True:
        run = json.loads(f.cli("runs", "show", "report", run_id, "--json").stdout)
        if run["run"]["state"] in ("success", "failed"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.3)
    tis = {ti["task_id"]: ti for ti in run["task_instances"]}
    assert tis["send"]["state"] == "success"
    # A notifier the configuration lacks fails the task with a message that names it.
    assert tis["nowhere"]["state"] == "failed" and "'missing'" in tis["nowhere"]["error"]
    assert any(u["name"] == "missing" for u in status(f)["notifications"]["unknown"])
    assert PASSWORD not in f.cli("logs", "report", "send", "--run", run_id).stdout
