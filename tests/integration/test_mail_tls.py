"""SMTP over TLS against a real aiosmtpd: STARTTLS and implicit TLS, with a private CA (`ca_file`)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flow.daemon.config import ConfigError
from flow.daemon.notifyconf import parse_notifiers
from flow.executors.mail import MailError, send_mail
from tests.daemon.receivers import free_port


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, signed by itself: the 'private CA' a mail relay inside a company has."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flow test relay")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "relay.pem", folder / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Relay:
    """aiosmtpd that only accepts mail over TLS; records whether each message came encrypted."""

    def __init__(self, cert: Path, key: Path, implicit: bool) -> None:
        self.received: list[tuple[bool, bytes]] = []
        relay = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                encrypted = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
                relay.received.append((encrypted, envelope.original_content))
                return "250 OK"

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self.port = free_port()
        tls = {"ssl_context": ctx} if implicit else {"tls_context": ctx, "require_starttls": True}
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **tls)


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


def relay(certs: tuple[Path, Path], implicit: bool):
    r = Relay(*certs, implicit=implicit)
    r.controller.start()
    return r


def conf(port: int, security: str, ca_file: Path | None) -> dict[str, Any]:
    table = {"type": "smtp", "host": "127.0.0.1", "port": port, "security": security, "from": "flow@example.org"}
    if ca_file is not None:
        table["ca_file"] = str(ca_file)
    return parse_notifiers({"relay": table}, "flowd.toml")["relay"].smtp_json()


MAIL = {"to": ["ops@example.org"], "subject": "flow: etl.load failed", "body": "it failed\n"}


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "ssl"])
def test_mail_goes_over_tls_to_a_relay_whose_ca_is_named(certs, implicit):
    r = relay(certs, implicit)
    try:
        send_mail(conf(r.port, "ssl" if implicit else "starttls", certs[0]), MAIL)
        assert len(r.received) == 1
        encrypted, data = r.received[0]
        assert encrypted and b"Subject: flow: etl.load failed" in data
    finally:
        r.controller.stop()


def test_a_relay_certificate_nobody_vouches_for_is_refused_with_the_reason(certs):
    r = relay(certs, implicit=False)
    try:
        with pytest.raises(MailError) as info:
            send_mail(conf(r.port, "starttls", None), MAIL)
        assert f"SMTP 127.0.0.1:{r.port} (notifier 'relay')" in str(info.value)
        assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "certificate verify failed" in str(info.value)
        assert r.received == []
    finally:
        r.controller.stop()


def test_a_missing_ca_file_is_named(tmp_path: Path):
    with pytest.raises(MailError) as info:
        send_mail(conf(free_port(), "starttls", tmp_path / "nope.pem"), MAIL)
    assert f"cannot use ca_file {tmp_path / 'nope.pem'}" in str(info.value)


def test_ca_file_without_tls_is_a_configuration_error():
    with pytest.raises(ConfigError) as info:
        parse_notifiers({"relay": {"type": "smtp", "host": "h", "from": "f@x.org", "security": "none",
                                   "ca_file": "ca.pem"}}, "flowd.toml")
    assert "ca_file" in str(info.value) and "relay" in str(info.value)
