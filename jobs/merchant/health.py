"""Connection health: is the shop's connection to triggerpost working, in words a merchant reads.

What the merchant's health page and ``GET /api/v1/health`` show, read from the
store only (no call to the platform, so the page answers when the platform does
not): webhooks received in the last day per topic, deliveries that failed or
still wait with their last error in words, how far the periodic reconciliation
or catch-up has read (``sync_cursors``), the webhook subscriptions we made, and
the open notices. Every time is aware UTC; the page shows it in the shop's zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobs.merchant.notices import open_notices
from jobs.store.models import Delivery, DeliveryStatus, Subscription, SyncCursor

#: how far back "webhooks received" counts
RECENT = timedelta(hours=24)
#: how many failed deliveries are listed with their error (the count covers all)
FAILED_LISTED = 20
#: a delivery waiting longer than this is worth a line: the intake should take seconds
STUCK_AFTER = timedelta(minutes=15)

#: an intake error's kind (the exception's name, as ``jobs.intake.deliveries`` stores it), in words
_ERROR_WORDS = {
    "PayloadError": "the webhook's body could not be read",
    "EventError": "the webhook lacked something triggerpost needs",
    "WebhookError": "the webhook was not one triggerpost understands",
    "OperationalError": "the database was busy or unreachable",
    "IntegrityError": "it clashed with data already stored",
    "AdminApiError": "the shop's API refused a call",
}


def error_words(error: str | None) -> str | None:
    """``EventError: order.total is missing`` -> ``the webhook lacked something
    triggerpost needs (order.total is missing)``; another error's kind as it is."""
    if not error:
        return None
    kind, sep, text = error.partition(": ")
    if not sep:
        return error
    words = _ERROR_WORDS.get(kind)
    if words is None:
        return f"processing failed ({kind}: {text})"
    return f"{words} ({text})" if text else words


@dataclass(frozen=True)
class Report:
    """A shop's connection health at ``at`` (plain data; ``as_dict`` is the API's answer)."""

    at: datetime
    webhooks: list[dict[str, Any]]
    failed: int
    failed_recent: list[dict[str, Any]]
    pending: int
    pending_oldest: datetime | None
    cursors: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    notices: list[dict[str, Any]]

    @property
    def stuck(self) -> bool:
        """Deliveries wait longer than the intake ever should (the worker may be down)."""
        return self.pending_oldest is not None and self.at - self.pending_oldest > STUCK_AFTER

    @property
    def healthy(self) -> bool:
        return not (self.failed or self.stuck or self.notices) and all(
            s["status"] == "active" for s in self.subscriptions
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "healthy": self.healthy,
            "webhooks": [{**row, "last_at": row["last_at"].isoformat()} for row in self.webhooks],
            "deliveries": {
                "failed": self.failed,
                "pending": self.pending,
                "pending_oldest": _iso(self.pending_oldest),
                "stuck": self.stuck,
                "failures": [
                    {**row, "received_at": row["received_at"].isoformat()}
                    for row in self.failed_recent
                ],
            },
            "cursors": [
                {
                    **row,
                    "synced_until": row["synced_until"].isoformat(),
                    "ran_at": row["ran_at"].isoformat(),
                }
                for row in self.cursors
            ],
            "subscriptions": [
                {**row, "checked_at": _iso(row["checked_at"])} for row in self.subscriptions
            ],
            "notices": [
                {
                    **row,
                    "first_seen_at": row["first_seen_at"].isoformat(),
                    "last_seen_at": row["last_seen_at"].isoformat(),
                }
                for row in self.notices
            ],
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def report(session: Session, shop_id: int, at: datetime) -> Report:
    """The shop's connection health as of ``at`` (only its own rows, whatever is asked)."""
    received = session.execute(
        select(Delivery.topic, func.count(), func.max(Delivery.received_at))
        .where(Delivery.shop_id == shop_id, Delivery.received_at >= at - RECENT)
        .group_by(Delivery.topic)
        .order_by(Delivery.topic)
    ).all()
    failed = session.scalar(
        select(func.count()).where(
            Delivery.shop_id == shop_id, Delivery.status == DeliveryStatus.FAILED
        )
    )
    failures = session.execute(
        select(Delivery.id, Delivery.topic, Delivery.received_at, Delivery.attempts, Delivery.error)
        .where(Delivery.shop_id == shop_id, Delivery.status == DeliveryStatus.FAILED)
        .order_by(Delivery.id.desc())
        .limit(FAILED_LISTED)
    ).all()
    pending, oldest = session.execute(
        select(func.count(), func.min(Delivery.received_at)).where(
            Delivery.shop_id == shop_id, Delivery.status == DeliveryStatus.RECEIVED
        )
    ).one()
    cursors = session.scalars(
        select(SyncCursor).where(SyncCursor.shop_id == shop_id).order_by(SyncCursor.resource)
    ).all()
    subscriptions = session.scalars(
        select(Subscription).where(Subscription.shop_id == shop_id).order_by(Subscription.topic)
    ).all()
    return Report(
        at=at,
        webhooks=[
            {"topic": topic, "count": count, "last_at": last} for topic, count, last in received
        ],
        failed=int(failed or 0),
        failed_recent=[
            {
                "id": row.id,
                "topic": row.topic,
                "received_at": row.received_at,
                "attempts": row.attempts,
                "error": row.error,
                "says": error_words(row.error),
            }
            for row in failures
        ],
        pending=int(pending or 0),
        pending_oldest=oldest,
        cursors=[
            {"resource": c.resource, "synced_until": c.synced_until, "ran_at": c.ran_at}
            for c in cursors
        ],
        subscriptions=[
            {"topic": s.topic, "status": s.status, "checked_at": s.checked_at}
            for s in subscriptions
        ],
        notices=[
            {
                "code": n.code,
                "message": n.message,
                "first_seen_at": n.first_seen_at,
                "last_seen_at": n.last_seen_at,
                "count": n.count,
            }
            for n in open_notices(session, shop_id)
        ],
    )
