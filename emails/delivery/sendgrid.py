"""SendGrid's v3 Mail Send API (``sendgrid://<api key>@api.sendgrid.com``).

The second HTTP provider: a widely used API with per-message custom
arguments that come back in its event webhook (so bounces and spam reports
map to our message without a lookup table), and a 202 with ``X-Message-Id``
when accepted. Like Postmark it takes no idempotency key.
"""

from __future__ import annotations

import time
from urllib.parse import SplitResult, unquote

import requests

from emails.delivery.base import (
    BackendConfigError,
    PermanentDeliveryError,
    SendResult,
    TransientDeliveryError,
)
from emails.delivery.postmark import retry_after
from emails.outgoing import OutgoingEmail, list_unsubscribe

API = "https://api.sendgrid.com/v3/mail/send"
TIMEOUT = (3.05, 15)


class SendGridBackend:
    name = "sendgrid"
    supports_idempotency = False

    def __init__(self, api_key: str, *, session: requests.Session | None = None) -> None:
        if not api_key:
            raise BackendConfigError(
                "sendgrid:// needs the API key: sendgrid://KEY@api.sendgrid.com"
            )
        self.api_key = api_key
        self.http = session or requests.Session()

    @classmethod
    def from_url(cls, parts: SplitResult) -> SendGridBackend:
        return cls(unquote(parts.username or ""))

    def body(self, email: OutgoingEmail) -> dict[str, object]:
        headers = {"Message-ID": email.message_id, **email.extra_headers}
        unsubscribe = list_unsubscribe(email)
        if unsubscribe is not None:
            headers["List-Unsubscribe"] = unsubscribe
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        body: dict[str, object] = {
            "personalizations": [{"to": [{"email": email.to}]}],
            "from": {"email": email.from_address, "name": email.from_name},
            "subject": email.subject,
            "content": [
                {"type": "text/plain", "value": email.text},
                {"type": "text/html", "value": email.html},
            ],
            "headers": headers,
            "custom_args": dict(email.metadata),
            # our own tracking, signed, and only where the shop wants it
            "tracking_settings": {
                "click_tracking": {"enable": False},
                "open_tracking": {"enable": False},
            },
        }
        if email.reply_to:
            body["reply_to"] = {"email": email.reply_to}
        return body

    def send(self, email: OutgoingEmail) -> SendResult:
        try:
            response = self.http.post(
                API,
                json=self.body(email),
                headers={"Authorization": f"Bearer {self.api_key}"},
                timeout=TIMEOUT,
                # a redirect would carry the API key to wherever it points
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise TransientDeliveryError(f"sendgrid_unreachable: {exc}") from exc
        if response.status_code in (200, 202):
            return SendResult(response.headers.get("X-Message-Id"))
        if response.status_code == 429:
            wait = retry_after(response)
            reset = response.headers.get("X-RateLimit-Reset")
            if wait is None and reset and reset.isdigit():
                wait = max(0.0, int(reset) - time.time())
            raise TransientDeliveryError("sendgrid_429", wait)
        if response.status_code >= 500:
            raise TransientDeliveryError(f"sendgrid_{response.status_code}", retry_after(response))
        raise PermanentDeliveryError(f"sendgrid_{response.status_code}: {response.text[:200]}")

    def close(self) -> None:
        self.http.close()
