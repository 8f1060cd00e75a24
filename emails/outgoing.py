"""An email ready to leave: its fields, and the MIME message every backend sends.

Headers: From (the shop's name, our sending address), To, Reply-To, Subject
(RFC 2047 when not ASCII), Message-ID, Date, and on marketing mail only
``List-Unsubscribe`` (the https one-click URL, and a mailto when configured)
with ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058), which
Gmail and Yahoo require of bulk senders. Transactional mail never carries them:
an order confirmation is not something to unsubscribe from.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime


class OutgoingError(ValueError):
    """The email cannot be built as asked (e.g. marketing mail without an unsubscribe URL)."""


@dataclass(frozen=True)
class OutgoingEmail:
    message_id: str  # "<...@domain>", see make_message_id
    from_name: str
    from_address: str
    to: str
    subject: str
    html: str
    text: str
    kind: str  # "marketing" or "transactional"
    date: datetime
    reply_to: str | None = None
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    #: stable per ledger message: the same key can never become a second email
    idempotency_key: str = ""
    #: sent along as provider metadata / X- headers, so bounces map back to the message
    metadata: Mapping[str, str] = field(default_factory=dict)
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def marketing(self) -> bool:
        return self.kind == "marketing"


def make_message_id(domain: str) -> str:
    return f"<{secrets.token_hex(16)}@{domain}>"


def list_unsubscribe(email: OutgoingEmail) -> str | None:
    if not email.marketing:
        return None
    # https in production is enforced by the settings (BASE_URL must be https there)
    if not email.unsubscribe_url:
        raise OutgoingError("marketing mail needs an unsubscribe URL")
    parts = [f"<{email.unsubscribe_url}>"]
    if email.unsubscribe_mailto:
        parts.append(f"<{email.unsubscribe_mailto}>")
    return ", ".join(parts)


def build_mime(email: OutgoingEmail) -> EmailMessage:
    """A multipart/alternative message (text first, then HTML), UTF-8, SMTP line endings."""
    if email.date.tzinfo is None:
        raise OutgoingError("the Date header needs an aware datetime")
    message = EmailMessage(policy=SMTP)
    local, _, domain = email.from_address.partition("@")
    message["From"] = Address(display_name=email.from_name, username=local, domain=domain)
    message["To"] = email.to
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message["Subject"] = email.subject
    message["Message-ID"] = email.message_id
    message["Date"] = format_datetime(email.date)
    unsubscribe = list_unsubscribe(email)
    if unsubscribe is not None:
        message["List-Unsubscribe"] = unsubscribe
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in email.metadata.items():
        message[f"X-Triggerpost-{name.replace('_', '-').title()}"] = value
    for name, value in email.extra_headers.items():
        message[name] = value
    message.set_content(email.text, subtype="plain", charset="utf-8")
    message.add_alternative(email.html, subtype="html", charset="utf-8")
    return message
