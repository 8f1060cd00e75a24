"""Postmark's HTTP API (``postmark://<server token>@api.postmarkapp.com``).

Chosen for the clearest API of the big providers: one JSON POST per email,
numeric error codes that say whether the address itself is the problem, a
``Retry-After`` on 429, and bounce and spam-complaint webhooks with the
message id we get back here. Marketing mail goes to the server's broadcast
stream (``?broadcast_stream=broadcast``, Postmark keeps bulk and transactional
reputations apart), transactional mail to ``outbound``.

Postmark takes no idempotency key, so this backend cannot promise that a resend
after a crash is harmless (``supports_idempotency = False``); the engine then
never resends a message whose outcome it does not know.
"""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qs, unquote

import requests

from emails.delivery.base import (
    BackendConfigError,
    PermanentDeliveryError,
    SendResult,
    TransientDeliveryError,
)
from emails.outgoing import OutgoingEmail, list_unsubscribe

API = "https://api.postmarkapp.com/email"
TIMEOUT = (3.05, 15)
#: Postmark error codes that mean the request will never work as it is
#: (300 invalid email, 406 inactive recipient, 10 bad token, ...); others are ours to retry
PERMANENT_CODES = {10, 300, 400, 401, 402, 403, 405, 406, 407, 409, 410, 411, 412, 413}


def retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class PostmarkBackend:
    name = "postmark"
    supports_idempotency = False

    def __init__(
        self,
        token: str,
        *,
        broadcast_stream: str = "broadcast",
        transactional_stream: str = "outbound",
        session: requests.Session | None = None,
    ) -> None:
        if not token:
            raise BackendConfigError(
                "postmark:// needs the server token: postmark://TOKEN@api.postmarkapp.com"
            )
        self.token = token
        self.broadcast_stream = broadcast_stream
        self.transactional_stream = transactional_stream
        self.http = session or requests.Session()

    @classmethod
    def from_url(cls, parts: SplitResult) -> PostmarkBackend:
        query = parse_qs(parts.query)
        return cls(
            unquote(parts.username or ""),
            broadcast_stream=query.get("broadcast_stream", ["broadcast"])[0],
            transactional_stream=query.get("transactional_stream", ["outbound"])[0],
        )

    def body(self, email: OutgoingEmail) -> dict[str, object]:
        headers = [{"Name": "Message-ID", "Value": email.message_id}]
        unsubscribe = list_unsubscribe(email)
        if unsubscribe is not None:
            headers += [
                {"Name": "List-Unsubscribe", "Value": unsubscribe},
                {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
            ]
        headers += [{"Name": k, "Value": v} for k, v in email.extra_headers.items()]
        body: dict[str, object] = {
            "From": f'"{email.from_name}" <{email.from_address}>',
            "To": email.to,
            "Subject": email.subject,
            "HtmlBody": email.html,
            "TextBody": email.text,
            "Headers": headers,
            "Metadata": dict(email.metadata),
            "MessageStream": self.broadcast_stream
            if email.marketing
            else self.transactional_stream,
            "TrackOpens": False,  # our own tracking, signed, and only where the shop wants it
            "TrackLinks": "None",
        }
        if email.reply_to:
            body["ReplyTo"] = email.reply_to
        return body

    def send(self, email: OutgoingEmail) -> SendResult:
        try:
            response = self.http.post(
                API,
                json=self.body(email),
                headers={
                    "Accept": "application/json",
                    "X-Postmark-Server-Token": self.token,
                },
                timeout=TIMEOUT,
                # a redirect would carry the API key to wherever it points
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise TransientDeliveryError(f"postmark_unreachable: {exc}") from exc
        if response.status_code == 429:
            raise TransientDeliveryError("postmark_429", retry_after(response))
        if response.status_code >= 500:
            raise TransientDeliveryError(f"postmark_{response.status_code}", retry_after(response))
        try:
            data = response.json()
        except ValueError as exc:
            raise TransientDeliveryError(f"postmark_{response.status_code}: not JSON") from exc
        code = int(data.get("ErrorCode", -1))
        if response.status_code == 200 and code == 0:
            return SendResult(str(data.get("MessageID")))
        reason = f"postmark_{code}: {str(data.get('Message', ''))[:200]}"
        if code in PERMANENT_CODES or response.status_code in (401, 422):
            raise PermanentDeliveryError(reason)
        raise TransientDeliveryError(reason)

    def close(self) -> None:
        self.http.close()
