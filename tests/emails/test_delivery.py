"""Delivery: a real SMTP server on loopback, Postmark against its documented API, the outbox,
and the shared rate limit on a real Redis."""

from __future__ import annotations

import email
import ipaddress
import json
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
import responses
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis import Redis

from emails.delivery import (
    BackendConfigError,
    PermanentDeliveryError,
    TransientDeliveryError,
    backend_from_url,
)
from emails.delivery.outbox import FileOutbox
from emails.delivery.postmark import API, PostmarkBackend
from emails.delivery.ratelimit import RateLimited
from emails.delivery.smtp import SmtpBackend
from emails.outgoing import OutgoingEmail, OutgoingError, build_mime


def outgoing(kind: str = "marketing", to: str = "anna@example.se", n: int = 1) -> OutgoingEmail:
    return OutgoingEmail(
        message_id=f"<m{n}-{kind}@mail.triggerpost.example>",
        from_name="Nordljus Ullfabrik",
        from_address="shops@mail.triggerpost.example",
        to=to,
        subject="Du har glömt något i varukorgen",
        html="<p>Hej Åsa!</p>",
        text="Hej Åsa!\n",
        kind=kind,
        date=datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
        reply_to="hej@nordljus.example",
        unsubscribe_url="https://tp.example/u/1/token" if kind == "marketing" else None,
        idempotency_key=f"<m{n}-{kind}@mail.triggerpost.example>",
        metadata={"shop": "1", "message": str(n)},
    )


class Inbox:
    """An aiosmtpd handler: keeps what it accepts, refuses some addresses like real servers."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.sessions: set[int] = set()

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.startswith("busy@"):
            return "451 4.3.0 mailbox busy, try later"
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.sessions.add(id(session))
        self.messages.append(email.message_from_bytes(envelope.content, policy=default))  # type: ignore[arg-type]
        return "250 Message accepted"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"shop", b"s3cret")
    return AuthResult(success=ok)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_smtp_delivers_both_parts_and_the_right_headers(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    backend = backend_from_url(f"smtp://127.0.0.1:{port}")
    backend.send(outgoing("marketing", n=1))
    backend.send(outgoing("transactional", n=2))
    backend.close()

    marketing, transactional = inbox.messages
    assert marketing["From"] == "Nordljus Ullfabrik <shops@mail.triggerpost.example>"
    assert marketing["To"] == "anna@example.se"
    assert marketing["Reply-To"] == "hej@nordljus.example"
    assert marketing["Subject"] == "Du har glömt något i varukorgen"
    assert marketing["Message-ID"] == "<m1-marketing@mail.triggerpost.example>"
    assert marketing["Date"] == "Mon, 02 Mar 2026 10:00:00 +0000"
    assert marketing["List-Unsubscribe"] == "<https://tp.example/u/1/token>"
    assert marketing["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert marketing["X-Triggerpost-Message"] == "1"
    plain = marketing.get_body(("plain",))
    html = marketing.get_body(("html",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == "Hej Åsa!\n"
    assert html is not None
    assert "<p>Hej Åsa!</p>" in html.get_content()
    # no unsubscribe header on transactional mail
    assert transactional["List-Unsubscribe"] is None
    assert transactional["List-Unsubscribe-Post"] is None


def test_smtp_reuses_one_connection(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    backend = SmtpBackend(
        "127.0.0.1", port, implicit_tls=False, starttls=False, username=None, password=None
    )
    for n in range(5):
        backend.send(outgoing(n=n))
    backend.close()
    assert len(inbox.messages) == 5
    assert backend.connects == 1
    assert len(inbox.sessions) == 1


def test_smtp_4xx_is_transient_and_5xx_permanent(smtp_server: tuple[Inbox, int]) -> None:
    _, port = smtp_server
    backend = backend_from_url(f"smtp://127.0.0.1:{port}")
    with pytest.raises(TransientDeliveryError, match="smtp_451"):
        backend.send(outgoing(to="busy@example.se"))
    with pytest.raises(PermanentDeliveryError, match="smtp_550"):
        backend.send(outgoing(to="nobody@example.se"))
    backend.send(outgoing(to="anna@example.se"))  # the connection is still good
    backend.close()


def test_smtp_unreachable_is_transient() -> None:
    backend = backend_from_url("smtp://127.0.0.1:1?timeout=2")
    with pytest.raises(TransientDeliveryError, match="smtp_unreachable"):
        backend.send(outgoing())


def test_starttls_and_auth(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=_authenticate,
        auth_require_tls=True,
    )
    controller.start()
    try:
        backend = backend_from_url(f"smtp://shop:s3cret@127.0.0.1:{port}?starttls=1&cafile={cert}")
        backend.send(outgoing())
        backend.close()
        assert len(inbox.messages) == 1
        # without the private CA the server's certificate is not trusted: nothing is sent
        untrusted = backend_from_url(f"smtp://shop:s3cret@127.0.0.1:{port}?starttls=1&timeout=5")
        with pytest.raises(TransientDeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.send(outgoing())
        assert len(inbox.messages) == 1
    finally:
        controller.stop()


def test_credentials_are_never_sent_in_clear_to_a_remote_host() -> None:
    with pytest.raises(BackendConfigError, match="in clear"):
        backend_from_url("smtp://user:pass@mail.example.com:25")


def test_marketing_mail_without_an_unsubscribe_link_is_refused() -> None:
    email_ = OutgoingEmail(**{**outgoing().__dict__, "unsubscribe_url": None})
    with pytest.raises(OutgoingError):
        build_mime(email_)


def test_outbox_writes_each_message_once(tmp_path: Path) -> None:
    backend = backend_from_url(f"file://{tmp_path}/outbox")
    assert isinstance(backend, FileOutbox)
    for _ in range(3):
        backend.send(outgoing(n=7))
    backend.send(outgoing(n=8))
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 2
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=default)
    assert parsed["Subject"] == "Du har glömt något i varukorgen"


POSTMARK_OK = {
    "To": "anna@example.se",
    "SubmittedAt": "2026-03-02T10:00:01.0000000Z",
    "MessageID": "0a129aee-e1cd-480d-b08d-4f48548ff48d",
    "ErrorCode": 0,
    "Message": "OK",
}


@responses.activate
def test_postmark_sends_the_documented_body() -> None:
    responses.post(API, json=POSTMARK_OK)
    result = backend_from_url("postmark://server-token@api.postmarkapp.com").send(outgoing())
    assert result.provider_message_id == POSTMARK_OK["MessageID"]
    request = responses.calls[0].request
    assert request.headers["X-Postmark-Server-Token"] == "server-token"
    body = json.loads(request.body or b"{}")
    assert body["From"] == '"Nordljus Ullfabrik" <shops@mail.triggerpost.example>'
    assert body["MessageStream"] == "broadcast"
    assert body["TextBody"] == "Hej Åsa!\n"
    assert {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"} in body[
        "Headers"
    ]
    assert body["Metadata"] == {"shop": "1", "message": "1"}


@responses.activate
def test_postmark_429_then_success() -> None:
    responses.post(
        API,
        status=429,
        headers={"Retry-After": "7"},
        json={"ErrorCode": 429, "Message": "Rate limit exceeded"},
    )
    responses.post(API, json=POSTMARK_OK)
    backend = PostmarkBackend("server-token")
    with pytest.raises(TransientDeliveryError) as info:
        backend.send(outgoing())
    assert info.value.retry_after == 7.0
    assert backend.send(outgoing()).provider_message_id == POSTMARK_OK["MessageID"]


@responses.activate
def test_postmark_inactive_recipient_is_permanent_and_5xx_transient() -> None:
    responses.post(
        API,
        status=422,
        json={
            "ErrorCode": 406,
            "Message": "You tried to send to recipient(s) that have been marked as inactive.",
        },
    )
    responses.post(API, status=503, body="Service Unavailable")
    backend = PostmarkBackend("server-token")
    with pytest.raises(PermanentDeliveryError, match="postmark_406"):
        backend.send(outgoing())
    with pytest.raises(TransientDeliveryError, match="postmark_503"):
        backend.send(outgoing())


def test_rate_limit_is_shared_through_redis(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    redis.delete("triggerpost:ratelimit:null:test")
    clock = [1000.0]
    first = RateLimited(
        backend_from_url("null://"), redis, 2.0, key="null:test", clock=lambda: clock[0]
    )
    second = RateLimited(
        backend_from_url("null://"), redis, 2.0, key="null:test", clock=lambda: clock[0]
    )
    first.send(outgoing())
    second.send(outgoing())
    with pytest.raises(TransientDeliveryError) as info:
        first.send(outgoing())
    assert info.value.retry_after == pytest.approx(0.5)
    clock[0] += 0.5
    second.send(outgoing())
    redis.delete("triggerpost:ratelimit:null:test")


@responses.activate
def test_sendgrid_success_429_then_success_and_permanent_failure() -> None:
    from emails.delivery.sendgrid import API as SENDGRID

    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "14c5d75ce93.dfd.64b469"})
    responses.post(SENDGRID, status=429, headers={"Retry-After": "3"}, json={"errors": []})
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "second"})
    responses.post(
        SENDGRID,
        status=400,
        json={
            "errors": [
                {
                    "message": "Does not contain a valid address.",
                    "field": "personalizations.0.to.0.email",
                }
            ]
        },
    )
    backend = backend_from_url("sendgrid://SG.key@api.sendgrid.com")
    assert backend.send(outgoing()).provider_message_id == "14c5d75ce93.dfd.64b469"
    body = json.loads(responses.calls[0].request.body or b"{}")
    assert responses.calls[0].request.headers["Authorization"] == "Bearer SG.key"
    assert body["personalizations"] == [{"to": [{"email": "anna@example.se"}]}]
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert body["custom_args"] == {"shop": "1", "message": "1"}
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    with pytest.raises(TransientDeliveryError) as info:
        backend.send(outgoing())
    assert info.value.retry_after == 3.0
    assert backend.send(outgoing()).provider_message_id == "second"
    with pytest.raises(PermanentDeliveryError, match="sendgrid_400"):
        backend.send(outgoing(to="broken"))


@responses.activate
def test_a_provider_redirect_is_never_followed_with_the_api_key() -> None:
    elsewhere = "https://collector.example/steal"
    responses.post(API, status=307, headers={"Location": elsewhere})
    responses.post(elsewhere, json=POSTMARK_OK)
    with pytest.raises(TransientDeliveryError):
        PostmarkBackend("server-token").send(outgoing())
    assert [c.request.url for c in responses.calls] == [API]
