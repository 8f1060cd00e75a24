"""Delivery backends, chosen by ``TRIGGERPOST_EMAIL_URL``.

==============================================  =========================================
``file:///path/to/outbox``                      the local outbox: one ``.eml`` per message
``null://``                                     accept and discard (benchmarks)
``smtp://user:pass@host:587?starttls=1``        SMTP with STARTTLS (auth only over TLS)
``smtps://user:pass@host:465``                  SMTP over TLS
``postmark://<server token>@api.postmarkapp.com``  Postmark's HTTP API
``sendgrid://<api key>@api.sendgrid.com``       SendGrid's v3 Mail Send API
==============================================  =========================================

Any URL takes ``?rate=N/s`` (or ``/m``): a token bucket in Redis shared by every
worker keeps the deployment within the provider's quota.

A backend classifies failures and returns quickly; it does not sleep and retry
for long. :class:`TransientDeliveryError` (SMTP 4xx, HTTP 429 or 5xx, timeouts,
refused connections) means "later may work": the engine puts the message back
in the ledger with a backoff (``retry_after`` when the provider said), which
survives restarts, unlike a retry loop in a worker. :class:`PermanentDeliveryError`
(SMTP 5xx, HTTP 4xx) is recorded as the message's failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from redis import Redis

from emails.outgoing import OutgoingEmail


class DeliveryError(RuntimeError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientDeliveryError(DeliveryError):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    pass


class BackendConfigError(ValueError):
    """The email URL cannot be used; the message says why."""


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None


class Backend(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def supports_idempotency(self) -> bool:
        """True when sending again with the same idempotency key cannot make a second email."""
        ...

    def send(self, email: OutgoingEmail) -> SendResult: ...

    def close(self) -> None: ...


def backend_from_url(url: str, *, redis: Redis | None = None) -> Backend:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    backend: Backend
    if parts.scheme == "file":
        from emails.delivery.outbox import FileOutbox

        backend = FileOutbox(parts.path)
    elif parts.scheme == "null":
        from emails.delivery.outbox import NullBackend

        backend = NullBackend()
    elif parts.scheme in ("smtp", "smtps"):
        from emails.delivery.smtp import SmtpBackend

        backend = SmtpBackend.from_url(parts, query)
    elif parts.scheme == "postmark":
        from emails.delivery.postmark import PostmarkBackend

        backend = PostmarkBackend.from_url(parts)
    elif parts.scheme == "sendgrid":
        from emails.delivery.sendgrid import SendGridBackend

        backend = SendGridBackend.from_url(parts)
    else:
        raise BackendConfigError(
            f"unknown email backend {parts.scheme!r}: "
            "use file, null, smtp, smtps, postmark or sendgrid"
        )
    rate = query.get("rate", [None])[0]
    if rate:
        if redis is None:
            raise BackendConfigError("?rate= needs Redis to share the bucket between workers")
        from emails.delivery.ratelimit import RateLimited, parse_rate

        backend = RateLimited(
            backend, redis, parse_rate(rate), key=f"{parts.scheme}:{parts.hostname}"
        )
    return backend
