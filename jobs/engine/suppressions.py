"""Suppressions: addresses a shop must not email, and the pending mail they stop.

An unsubscribe (link, one-click POST, preferences page), a hard bounce or a
complaint becomes a row here; it is never deleted by the engine. Scopes:
``marketing`` (every marketing email), ``all`` (transactional too: bounces and
complaints), or one kind of email by its flow category (e.g. ``reviews``).
Adding one cancels the pending messages it covers at once; the send-time
guard checks again, so a message already claimed cannot slip through either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.events import ConsentState, normalise_email
from jobs.engine import ledger
from jobs.flows import registry
from jobs.store import queries
from jobs.store.db import plain
from jobs.store.models import (
    SCOPE_ALL,
    SCOPE_MARKETING,
    Contact,
    Message,
    MessageState,
    Suppression,
    SuppressionReason,
)

#: a suppressed address whose owner was erased is kept only as this hash, so a
#: bounce, complaint or unsubscribe still holds if the address comes back
ERASED_PREFIX = "sha256:"


def erased_form(email: str) -> str:
    digest = hashlib.sha256(
        b"triggerpost/suppression\x00" + normalise_email(email).encode()
    ).hexdigest()
    return ERASED_PREFIX + digest


def suppress(
    session: Session,
    shop_id: int,
    email: str,
    *,
    scope: str,
    reason: str,
    source: str,
    at: datetime,
    message_id: int | None = None,
) -> bool:
    """Record the suppression (idempotent) and cancel what it covers; True if new."""
    email = normalise_email(email)
    exists = session.scalar(
        select(Suppression.id).where(
            Suppression.shop_id == shop_id, Suppression.email == email, Suppression.scope == scope
        )
    )
    created = False
    if exists is None:
        try:
            with session.begin_nested():
                session.add(
                    Suppression(
                        shop_id=shop_id,
                        email=email,
                        scope=scope,
                        reason=reason,
                        source=source,
                        message_id=message_id,
                        created_at=at,
                    )
                )
        except IntegrityError:
            pass  # recorded a moment ago by another request: the same fact
        else:
            created = True
    cancel_covered(session, shop_id, email, scope, reason=f"suppressed:{reason}", at=at)
    return created


def scopes_for(session: Session, shop_id: int, email: str) -> set[str]:
    params = {"shop_id": shop_id, "email": normalise_email(email), "erased": erased_form(email)}
    return set(plain(session).scalars(queries.SUPPRESSION_SCOPES_OF_ADDRESS, params))


def blocking_scope(scopes: Iterable[str], kind: str, category: str | None) -> str | None:
    """The scope that forbids a message of this kind and category, if any."""
    scopes = set(scopes)
    if SCOPE_ALL in scopes:
        return SCOPE_ALL
    if kind == "marketing":
        if SCOPE_MARKETING in scopes:
            return SCOPE_MARKETING
        if category and category in scopes:
            return category
    return None


def cancel_covered(
    session: Session, shop_id: int, email: str, scope: str, *, reason: str, at: datetime
) -> int:
    """Cancel planned messages to this address that ``scope`` forbids; returns how many."""
    contact_ids = select(Contact.id).where(Contact.shop_id == shop_id, Contact.email == email)
    pending = session.scalars(
        select(Message).where(
            Message.shop_id == shop_id,
            Message.contact_id.in_(contact_ids),
            Message.state == MessageState.PLANNED,
        )
    ).all()
    cancelled = 0
    for message in pending:
        flow = registry.get(message.flow)
        category = flow.category if flow else None
        if blocking_scope({scope}, message.kind, category) is None:
            continue
        if ledger.finish(session, message, MessageState.CANCELLED, reason, at):
            cancelled += 1
    return cancelled


def unsubscribe(
    session: Session,
    shop_id: int,
    email: str,
    *,
    scope: str,
    source: str,
    at: datetime,
    message_id: int | None = None,
) -> bool:
    """A person's own unsubscribe: a suppression, and (for all marketing) their consent.

    The consent record is what the shop's other tools and our consent guard see;
    the suppression is what no later "subscribed" from the platform can undo by
    accident. Both are written in the caller's transaction, before it answers.
    """
    created = suppress(
        session,
        shop_id,
        email,
        scope=scope,
        reason=SuppressionReason.UNSUBSCRIBED,
        source=source,
        at=at,
        message_id=message_id,
    )
    if scope == SCOPE_MARKETING:
        for contact in session.scalars(
            select(Contact).where(
                Contact.shop_id == shop_id, Contact.email == normalise_email(email)
            )
        ):
            contact.consent_state = ConsentState.UNSUBSCRIBED
            contact.consent_source = f"triggerpost:{source}"
            contact.consent_at = at
    return created


def resubscribe(session: Session, shop_id: int, email: str, scope: str) -> bool:
    """Undo the person's own unsubscribe from one kind of email (never a bounce or complaint)."""
    row = session.scalar(
        select(Suppression).where(
            Suppression.shop_id == shop_id,
            Suppression.email == normalise_email(email),
            Suppression.scope == scope,
            Suppression.reason == SuppressionReason.UNSUBSCRIBED,
        )
    )
    if row is None:
        return False
    session.delete(row)
    return True
