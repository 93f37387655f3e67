"""Notifier configuration, the alert arguments DAG authors write, and what an alert message says."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flow import DAG
from flow.daemon.alerts import alert_targets, read_tail, render_json, render_slack, render_text
from flow.daemon.config import ConfigError, load_settings, render_settings
from flow.daemon.notifyconf import default_smtp, mask_webhook_url
from flow.dag import DagDefinitionError
from flow.operators import BashOperator, EmailOperator
from flow.serialize import serialize_dag


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("FLOW_CONFIG", "FLOW_LOG_RETENTION_DAYS", "FLOW_MAX_LOG_BYTES_PER_TRY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def load(tmp_path, text):
    cfg = tmp_path / "flowd.toml"
    cfg.write_text(text)
    return load_settings(config_file=cfg), cfg


GOOD = """
log_retention_days = 0
max_log_bytes_per_try = 1048576

[notifiers.mail]
type = "smtp"
host = "smtp.example.com"
user = "flow"
password_file = "/etc/flowd/smtp-password"
from = "flow@example.com"
to = "ops@example.com"

[notifiers.ops-webhook]
type = "webhook"
url = "https://hooks.slack.com/services/T0/B0/SECRETTOKEN"
headers = { Authorization = "Bearer SECRETHEADER" }
format = "slack"
"""


def test_notifiers_load_with_defaults_and_print_without_secrets(tmp_path):
    s, cfg = load(tmp_path, GOOD)
    assert s.log_retention_days == 0 and s.max_log_bytes_per_try == 1 << 20
    mail, hook = s.notifiers["mail"], s.notifiers["ops-webhook"]
    assert (mail.port, mail.security, mail.to, mail.retries) == (587, "starttls", ("ops@example.com",), 3)
    assert default_smtp(s.notifiers) is mail
    assert hook.format == "slack" and hook.describe() == "webhook https://hooks.slack.com/*** (slack)"
    shown = render_settings(s, mode="user", config_file=cfg)
    assert "[notifiers.ops-webhook]" in shown and 'password_file = "/etc/flowd/smtp-password"' in shown
    assert "SECRETTOKEN" not in shown and "SECRETHEADER" not in shown
    assert "log_retention_days = 0" in shown


@pytest.mark.parametrize(("table", "message"), [
    ('[notifiers.x]\ntype = "pager"', "notifier 'x' in {cfg}: type must be one of smtp, webhook"),
    ('[notifiers.x]\ntype = "smtp"\nhost = "h"\nfrom = "a@b"\nport = "25"', "port must be a whole number"),
    ('[notifiers.x]\ntype = "smtp"\nhost = "h"\nfrom = "a@b"\nuser = "u"', "user and password_file go together"),
    ('[notifiers.x]\ntype = "smtp"\nhost = "h"\nfrom = "a@b"\nsecurity = "tls"', "security must be one of"),
    ('[notifiers.x]\ntype = "smtp"\nfrom = "a@b"', "host must be a non-empty string"),
    ('[notifiers.x]\ntype = "webhook"\nurl = "ftp://h/SECRET"', "url must be an http:// or https:// URL, not ftp://h/***"),
    ('[notifiers.x]\ntype = "webhook"\nurl = "http://h"\nformat = "xml"', "format must be one of json, slack"),
    ('[notifiers.x]\ntype = "webhook"\nurl = "http://h"\ncolour = 1', "unknown key(s) colour for type 'webhook'"),
    ('[notifiers.x]\ntype = "webhook"\nurl = "http://h"\nheaders = { A = 1 }', "headers must be a table of strings"),
    ('[notifiers.x]\ntype = "webhook"\nurl = "http://h"\nretries = -1', "retries must be a whole number from 0"),
    ('max_log_bytes_per_try = -5', "setting max_log_bytes_per_try = -5"),
])
def test_bad_notifier_settings_name_the_notifier_key_and_file(tmp_path, table, message):
    cfg = tmp_path / "flowd.toml"
    with pytest.raises(ConfigError) as err:
        load(tmp_path, table)
    assert message.format(cfg=cfg) in str(err.value)
    assert "SECRET" not in str(err.value)


def test_two_default_smtp_notifiers_are_refused(tmp_path):
    two = "".join(f'[notifiers.{n}]\ntype = "smtp"\nhost = "h"\nfrom = "a@b"\ndefault = true\n' for n in "ab")
    with pytest.raises(ConfigError, match="a, b .* all say default = true"):
        load(tmp_path, two)


def test_mask_webhook_url_keeps_only_scheme_and_host():
    assert mask_webhook_url("https://user:pw@example.com:8443/a/b?token=x") == "https://example.com:8443/***"


def test_email_args_default_args_and_targets():
    with DAG("d", schedule=None, default_args={"email": "a@x.com, b@x.com", "notify_on_failure": "hook"}) as dag:
        BashOperator(task_id="plain", bash_command="true")
        BashOperator(task_id="quiet", bash_command="true", email_on_failure=False, email_on_retry=True,
                             notify_on_retry=["hook", "chat"])
    ser = {t["task_id"]: t for t in serialize_dag(dag)["tasks"]}
    assert ser["plain"]["email"] == ["a@x.com", "b@x.com"] and ser["plain"]["email_on_failure"] is True
    assert alert_targets(ser["plain"], "failed") == [(None, ["a@x.com", "b@x.com"]), ("hook", None)]
    assert alert_targets(ser["plain"], "up_for_retry") == []
    assert alert_targets(ser["quiet"], "failed") == [("hook", None)]
    assert alert_targets(ser["quiet"], "up_for_retry") == [(None, ["a@x.com", "b@x.com"]), ("hook", None),
                                                          ("chat", None)]
    assert alert_targets(ser["plain"], "success") == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"email": "not-an-address"}, "email 'not-an-address' is not an e-mail address"),
    ({"email": 5}, "email must be a str or a list of str"),
    ({"notify_on_failure": [1]}, "notify_on_failure must be a str or a list of str"),
])
def test_bad_alert_arguments_name_dag_and_task(kwargs, message):
    with DAG("d", schedule=None), pytest.raises((TypeError, DagDefinitionError)) as err:
        BashOperator(task_id="t", bash_command="true", **kwargs)
    assert message in str(err.value) and "DAG 'd'" in str(err.value)


def test_email_operator_checks_its_arguments_and_refuses_to_send_outside_flowd():
    with DAG("d", schedule=None):
        with pytest.raises(DagDefinitionError, match="give html_content or body"):
            EmailOperator(task_id="e", to="a@b.c", subject="s")
        with pytest.raises(DagDefinitionError, match="to needs at least one"):
            EmailOperator(task_id="e2", to=[], subject="s", body="b")
        op = EmailOperator(task_id="e3", to="a@b.c", subject="s", body="b", notifier="mail")
    assert op.serialize_extra() == {"email_notifier": "mail"}
    with pytest.raises(RuntimeError, match="only when flowd runs it"):
        op.execute({})


def alert(**over):
    base = {"dag_id": "etl", "run_id": "manual__2026-03-02T00:00:00+00:00", "task_id": "load", "state": "failed",
            "try_number": 2, "max_tries": 2, "error": "exit status 3", "log_path": "/nonexistent",
            "ended": datetime(2026, 3, 2, 0, 0, 5, tzinfo=UTC), "hostname": "box", "targets": []}
    return base | over


def test_message_text_has_the_facts_local_time_and_the_log_command():
    text = render_text(alert(), ["a", "b"], "Asia/Seoul")
    assert text.splitlines()[0] == "etl.load failed (try 2 of 2)"
    assert "Ended:  2026-03-02 09:00:05 KST (Asia/Seoul), 00:00:05 UTC" in text
    assert "Error:  exit status 3" in text and "  a\n  b\n" in text
    assert "flow logs etl load --run manual__2026-03-02T00:00:00+00:00 --try 2" in text
    assert "--run 'a b;c'" in render_text(alert(run_id="a b;c"), [], "UTC")
    data = render_json(alert(), ["a"], "Europe/Berlin")
    assert data["ended"] == "2026-03-02T01:00:05+01:00" and data["ended_utc"] == "2026-03-02T00:00:05+00:00"
    slack = render_slack(alert(state="up_for_retry"), [], "UTC")
    assert slack["text"] == ":warning: etl.load failed and will be retried (try 2 of 2)"


def test_read_tail_reads_only_the_end_of_a_big_log(tmp_path):
    log = tmp_path / "big.log"
    log.write_text("".join(f"line {i}\n" for i in range(200_000)))
    tail = read_tail(str(log))
    assert tail == [f"line {i}" for i in range(199_980, 200_000)]
    assert read_tail(str(tmp_path / "missing.log"))[0].startswith("(cannot read the log")


