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

from urllib.parse import parse_qs, urlsplit

from redis import Redis

from emails.delivery.base import (
    Backend,
    BackendConfigError,
    DeliveryError,
    PermanentDeliveryError,
    SendResult,
    TransientDeliveryError,
)
from emails.delivery.outbox import FileOutbox, NullBackend
from emails.delivery.postmark import PostmarkBackend
from emails.delivery.ratelimit import RateLimited, RateLimitError, parse_rate
from emails.delivery.sendgrid import SendGridBackend
from emails.delivery.smtp import SmtpBackend

__all__ = [
    "Backend",
    "BackendConfigError",
    "DeliveryError",
    "PermanentDeliveryError",
    "RateLimitError",
    "SendResult",
    "TransientDeliveryError",
    "backend_from_url",
]


def backend_from_url(url: str, *, redis: Redis | None = None) -> Backend:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    backend: Backend
    if parts.scheme == "file":
        backend = FileOutbox(parts.path)
    elif parts.scheme == "null":
        backend = NullBackend()
    elif parts.scheme in ("smtp", "smtps"):
        backend = SmtpBackend.from_url(parts, query)
    elif parts.scheme == "postmark":
        backend = PostmarkBackend.from_url(parts)
    elif parts.scheme == "sendgrid":
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
        backend = RateLimited(
            backend, redis, parse_rate(rate), key=f"{parts.scheme}:{parts.hostname}"
        )
    return backend
