"""Sending one e-mail over SMTP: used by flowd's notifier thread and by EmailOperator in a worker.

It lives here rather than in flow.daemon because worker processes (executors) must not import
the daemon, and both sides need the same SMTP dialogue. `conf` is NotifierConf.smtp_json(): the
password is read from its file at send time, so it never travels in a spec or a message.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any


class MailError(Exception):
    """Sending failed; the message says where and why, never the password."""


def read_password(conf: dict[str, Any]) -> str | None:
    path = conf.get("password_file")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip("\r\n")
    except OSError as exc:
        raise MailError(f"cannot read password_file {path} of notifier {conf.get('name')!r}: "
                        f"{exc.strerror}") from None


def build_message(conf: dict[str, Any], mail: dict[str, Any]) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = conf["from"]
    msg["To"] = ", ".join(mail["to"])
    if mail.get("cc"):
        msg["Cc"] = ", ".join(mail["cc"])
    msg["Subject"] = " ".join(str(mail["subject"]).split())
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="flow")
    text = mail.get("body")
    html = mail.get("html")
    msg.set_content(text if text is not None else "This message is HTML; use a client that shows it.\n")
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def send_mail(conf: dict[str, Any], mail: dict[str, Any]) -> None:
    """One delivery attempt; raises MailError with a one-line reason."""
    where = f"SMTP {conf['host']}:{conf['port']} (notifier {conf.get('name')!r})"
    password = read_password(conf)
    msg = build_message(conf, mail)
    rcpt = list(dict.fromkeys([*mail["to"], *(mail.get("cc") or []), *(mail.get("bcc") or [])]))
    timeout = float(conf.get("timeout") or 10.0)
    try:
        context = ssl.create_default_context(cafile=conf.get("ca_file") or None)
    except (OSError, ssl.SSLError) as exc:
        raise MailError(f"{where}: cannot use ca_file {conf.get('ca_file')}: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None
    try:
        if conf["security"] == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(conf["host"], conf["port"], timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(conf["host"], conf["port"], timeout=timeout)
        with smtp:
            if conf["security"] == "starttls":
                smtp.starttls(context=context)
            if conf.get("user"):
                smtp.login(conf["user"], password or "")
            refused = smtp.send_message(msg, from_addr=conf["from"], to_addrs=rcpt)
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(f"{where}: login as {conf.get('user')!r} refused ({exc.smtp_code})") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailError(f"{where}: every recipient refused: {', '.join(exc.recipients)}") from None
    except (smtplib.SMTPException, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise MailError(f"{where}: {' '.join(str(reason).split())}") from None
    if refused:
        raise MailError(f"{where}: recipient(s) refused: {', '.join(refused)}")
