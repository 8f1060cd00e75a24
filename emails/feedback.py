"""Bounces and complaints reported by email providers, read from their webhooks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class FeedbackError(ValueError):
    """A webhook body we cannot read."""


class FeedbackKind(StrEnum):
    HARD_BOUNCE = "hard_bounce"  # the address does not exist: never send to it again
    SOFT_BOUNCE = "soft_bounce"  # full mailbox, greylisting: nothing to remember
    COMPLAINT = "complaint"  # marked as spam: never send to it again


@dataclass(frozen=True)
class Feedback:
    kind: FeedbackKind
    email: str
    occurred_at: datetime
    provider_message_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    description: str = ""


#: Postmark bounce types that mean the address is gone (others are temporary)
POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Blocked", "DMARCPolicy"}


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        return datetime.now(UTC)
    try:
        # Postmark writes seven fractional digits; Python reads up to six
        head, _, rest = value.partition(".")
        digits = "".join(c for c in rest if c.isdigit())[:6]
        zone = rest[len("".join(c for c in rest if c.isdigit())) :] or "Z"
        text = f"{head}.{digits or '0'}{zone}".replace("Z", "+00:00")
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return datetime.now(UTC)
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def from_postmark(payload: Mapping[str, Any]) -> Feedback | None:
    """A Postmark Bounce or SpamComplaint webhook; None for record types we do not act on."""
    record = payload.get("RecordType")
    address = payload.get("Email")
    if record not in ("Bounce", "SpamComplaint"):
        return None
    if not isinstance(address, str) or "@" not in address:
        raise FeedbackError("a Postmark bounce without an Email")
    if record == "SpamComplaint" or payload.get("Type") == "SpamComplaint":
        kind = FeedbackKind.COMPLAINT
    elif payload.get("Type") in POSTMARK_HARD:
        kind = FeedbackKind.HARD_BOUNCE
    else:
        kind = FeedbackKind.SOFT_BOUNCE
    metadata = payload.get("Metadata") if isinstance(payload.get("Metadata"), dict) else {}
    return Feedback(
        kind=kind,
        email=address,
        occurred_at=_time(payload.get("BouncedAt")),
        provider_message_id=str(payload["MessageID"]) if payload.get("MessageID") else None,
        metadata={str(k): str(v) for k, v in (metadata or {}).items()},
        description=str(payload.get("Description") or payload.get("Type") or ""),
    )


def from_sendgrid(payload: object) -> list[Feedback]:
    """SendGrid's event webhook: a JSON array of events; bounces and spam reports count."""
    if not isinstance(payload, list):
        raise FeedbackError("a SendGrid event webhook body is a JSON array")
    found = []
    for event in payload:
        if not isinstance(event, dict):
            raise FeedbackError("a SendGrid event is a JSON object")
        kind = event.get("event")
        address = event.get("email")
        if kind not in ("bounce", "spamreport", "dropped"):
            continue
        if not isinstance(address, str) or "@" not in address:
            raise FeedbackError("a SendGrid event without an email")
        if kind == "spamreport":
            what = FeedbackKind.COMPLAINT
        elif kind == "bounce" and event.get("type", "bounce") == "bounce":
            what = FeedbackKind.HARD_BOUNCE
        else:  # "blocked" bounces and drops are about the sender or content, not the address
            what = FeedbackKind.SOFT_BOUNCE
        stamp = event.get("timestamp")
        message_id = str(event.get("sg_message_id") or "").split(".")[0] or None
        found.append(
            Feedback(
                kind=what,
                email=address,
                occurred_at=datetime.fromtimestamp(int(stamp), UTC)
                if isinstance(stamp, int)
                else datetime.now(UTC),
                provider_message_id=message_id,
                metadata={k: str(v) for k, v in event.items() if k in ("shop", "message")},
                description=str(event.get("reason") or kind),
            )
        )
    return found
