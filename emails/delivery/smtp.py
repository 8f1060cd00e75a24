"""SMTP delivery: STARTTLS or implicit TLS, auth, one reused connection per thread.

``smtp://user:pass@host:587?starttls=1`` or ``smtps://user:pass@host:465``;
``?cafile=/path/ca.pem`` trusts a private CA, ``?timeout=10`` sets the socket
timeout (seconds). Credentials are never sent over a plain connection unless
the server is on loopback (a local relay).
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote

from emails.delivery.base import (
    BackendConfigError,
    PermanentDeliveryError,
    SendResult,
    TransientDeliveryError,
)
from emails.outgoing import OutgoingEmail, build_mime

LOOPBACK = ("127.0.0.1", "::1", "localhost")
#: a pooled connection idle longer than this is checked with NOOP before use
IDLE_CHECK = 30.0


@dataclass
class _Pooled:
    client: smtplib.SMTP
    used_at: float


class SmtpBackend:
    supports_idempotency = False  # SMTP has no idempotency key

    def __init__(
        self,
        host: str,
        port: int,
        *,
        implicit_tls: bool,
        starttls: bool,
        username: str | None,
        password: str | None,
        cafile: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if username and not (implicit_tls or starttls) and host not in LOOPBACK:
            raise BackendConfigError(
                "refusing to send SMTP credentials in clear: use smtps:// or ?starttls=1"
            )
        self.name = "smtps" if implicit_tls else "smtp"
        self.host, self.port = host, port
        self.implicit_tls, self.starttls = implicit_tls, starttls
        self.username, self.password = username, password
        self.timeout = timeout
        self.tls = ssl.create_default_context(cafile=cafile)
        self._local = threading.local()
        #: connections opened so far (tests read it to see reuse)
        self.connects = 0

    @classmethod
    def from_url(cls, parts: SplitResult, query: Mapping[str, list[str]]) -> SmtpBackend:
        implicit = parts.scheme == "smtps"
        if not parts.hostname:
            raise BackendConfigError("the SMTP URL needs a host")
        flag = query.get("starttls", ["0"])[0].lower()
        return cls(
            parts.hostname,
            parts.port or (465 if implicit else 587),
            implicit_tls=implicit,
            starttls=flag in ("1", "true", "yes"),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            cafile=query.get("cafile", [None])[0],
            timeout=float(query.get("timeout", ["10"])[0]),
        )

    def _connect(self) -> smtplib.SMTP:
        client: smtplib.SMTP
        if self.implicit_tls:
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.tls)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.starttls:
                client.starttls(context=self.tls)
        if self.username:
            client.login(self.username, self.password or "")
        self.connects += 1
        return client

    def _client(self) -> smtplib.SMTP:
        pooled: _Pooled | None = getattr(self._local, "pooled", None)
        if pooled is not None and time.monotonic() - pooled.used_at > IDLE_CHECK:
            try:
                pooled.client.noop()
            except (smtplib.SMTPException, OSError):
                self._drop()
                pooled = None
        if pooled is None:
            pooled = _Pooled(self._connect(), time.monotonic())
            self._local.pooled = pooled
        return pooled.client

    def _drop(self) -> None:
        pooled: _Pooled | None = getattr(self._local, "pooled", None)
        self._local.pooled = None
        if pooled is not None:
            try:
                pooled.client.quit()
            except (smtplib.SMTPException, OSError):
                pooled.client.close()

    def send(self, email: OutgoingEmail) -> SendResult:
        message = build_mime(email)
        for attempt in (1, 2):
            try:
                client = self._client()
                refused = client.send_message(
                    message, from_addr=email.from_address, to_addrs=[email.to]
                )
            except smtplib.SMTPServerDisconnected as exc:
                # a pooled connection the server closed: one fresh try, then give up for now
                self._drop()
                if attempt == 2:
                    raise TransientDeliveryError(f"smtp_disconnected: {exc}") from exc
                continue
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = next(iter(exc.recipients.values()))
                raise _classify(code, reply) from exc
            except smtplib.SMTPResponseException as exc:
                self._drop()
                raise _classify(exc.smtp_code, exc.smtp_error) from exc
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                raise TransientDeliveryError(f"smtp_unreachable: {exc}") from exc
            if refused:
                code, reply = next(iter(refused.values()))
                raise _classify(code, reply)
            self._local.pooled.used_at = time.monotonic()
            return SendResult(email.message_id)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._drop()


def _classify(code: int, reply: bytes | str) -> TransientDeliveryError | PermanentDeliveryError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    reason = f"smtp_{code}: {text.strip()[:200]}"
    if 400 <= code < 500:
        return TransientDeliveryError(reason)
    return PermanentDeliveryError(reason)
