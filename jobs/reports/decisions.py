"""The decision log, read: a shop's or a contact's timeline of what the engine decided.

Every outcome (enrolled, planned, sent, skipped:<reason>, deferred:<reason>
until T, failed:<reason>, exited:<exit>, expired, cancelled) is a row in
``decisions``; ``triggerpost why <shop> <email>`` and the simulator print it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from adapters.events import normalise_email
from adapters.platform import WebhookError
from adapters.registry import PLATFORMS
from jobs.store.models import Contact, Decision, Shop


def find_shop(session: Session, ref: str) -> Shop | None:
    """A shop by id, by its key (in any platform's way of writing it) or storefront URL."""
    if ref.isdigit():
        return session.get(Shop, int(ref))
    keys = {ref}
    for platform in PLATFORMS.values():
        try:
            keys.add(platform.shop_key(ref))
        except WebhookError:
            continue
    return session.scalars(
        select(Shop)
        .where(or_(Shop.key.in_(keys), Shop.base_url == ref.rstrip("/")))
        .order_by(Shop.id)
    ).first()


def find_contact(session: Session, shop_id: int, email: str) -> Contact | None:
    return session.scalar(
        select(Contact).where(Contact.shop_id == shop_id, Contact.email == normalise_email(email))
    )


def timeline(session: Session, shop_id: int, contact_id: int | None = None) -> list[dict[str, Any]]:
    """The decision log as plain rows, oldest first (what ``simulate`` and ``why`` print)."""
    query = select(Decision).where(Decision.shop_id == shop_id)
    if contact_id is not None:
        query = query.where(Decision.contact_id == contact_id)
    rows = session.scalars(query.order_by(Decision.at, Decision.id)).all()
    # .all(): dict() of a Result would take it for a mapping (it has keys())
    emails = dict(
        session.execute(select(Contact.id, Contact.email).where(Contact.shop_id == shop_id)).all()
    )
    return [
        {
            "at": row.at.isoformat(),
            "contact": emails.get(row.contact_id) if row.contact_id else None,
            "flow": row.flow,
            "step": row.step,
            "outcome": row.outcome,
            "reason": row.reason,
            "until": row.until.isoformat() if row.until else None,
            "message": row.message_id,
        }
        for row in rows
    ]


def format_timeline(rows: Sequence[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        what = row["outcome"] + (f":{row['reason']}" if row["reason"] else "")
        if row["until"]:
            what += f" until {row['until']}"
        step = f"{row['flow']}/{row['step']}" if row["step"] else row["flow"]
        lines.append(f"{row['at']}  {row['contact'] or '-':<32} {step:<28} {what}")
    return "\n".join(lines)
