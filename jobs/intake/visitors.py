"""Storefront visitors: who they are, and what they did before they said so.

A storefront event names a visitor by the first-party id its browser keeps. Until
the visitor says who they are (logged in, an email typed at the checkout or in a
form: ``VisitorIdentified``, or any event carrying a customer's email), their
product views and carts are nobody's: they are kept here (``visitor_events``),
for :data:`KEEP_DAYS` days and the newest :data:`KEEP_PER_VISITOR` per visitor.

Once they say it, the visitor is linked to that contact (``visitors``) and what
they did before is applied again as that contact's (``jobs.intake.apply``): the
kept events are deleted as they are taken, in the same transaction, so a replay,
a second identify or a second drain racing this one finds nothing to apply twice.
Later events of a linked visitor are the contact's as they come.

A visitor linked to a second person (a shared computer, a changed account): the
newer word wins for events from then on (by the time it was said, so a late
older word links nothing); what was applied to the first person stays theirs.

Nothing here sets consent: a browser can name anyone.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters import events as ev
from jobs.store.db import delete_in_batches
from jobs.store.models import Visitor, VisitorEvent

log = logging.getLogger(__name__)

#: days an anonymous visitor's events are kept for the day they say who they are
KEEP_DAYS = 30
#: the most events kept per anonymous visitor (the newest)
KEEP_PER_VISITOR = 200
#: rows a prune deletes per statement
PRUNE_BATCH = 5000


def link_of(session: Session, shop_id: int, visitor_id: str) -> Visitor | None:
    return session.scalar(
        select(Visitor).where(Visitor.shop_id == shop_id, Visitor.visitor_id == visitor_id)
    )


def link(session: Session, shop_id: int, visitor_id: str, contact_id: int, at: datetime) -> bool:
    """Link the visitor to the contact as of ``at``; False when it was linked to them
    already, or to someone else by a newer word."""
    row = link_of(session, shop_id, visitor_id)
    if row is None:
        row = Visitor(shop_id=shop_id, visitor_id=visitor_id, contact_id=contact_id, linked_at=at)
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
            return True
        except IntegrityError:
            # another drain linked the same visitor a moment ago: theirs, then ours by time
            row = link_of(session, shop_id, visitor_id)
            if row is None:
                raise
    if row.contact_id == contact_id:
        return False
    if row.contact_id is not None and at < row.linked_at:
        log.info("shop %s: an older word of visitor %s links nothing", shop_id, visitor_id)
        return False
    row.contact_id = contact_id
    row.linked_at = at
    session.flush()
    return True


def keep(session: Session, shop_id: int, visitor_id: str, event: ev.Event) -> None:
    """Keep an anonymous visitor's event; the visitor's oldest beyond the bounds go."""
    session.add(
        VisitorEvent(
            shop_id=shop_id,
            visitor_id=visitor_id,
            occurred_at=event.occurred_at,
            event=ev.to_dict(event),
        )
    )
    session.flush()
    newest = (
        select(VisitorEvent.id)
        .where(VisitorEvent.shop_id == shop_id, VisitorEvent.visitor_id == visitor_id)
        .order_by(VisitorEvent.occurred_at.desc(), VisitorEvent.id.desc())
        .limit(KEEP_PER_VISITOR)
    )
    session.execute(
        delete(VisitorEvent)
        .where(
            VisitorEvent.shop_id == shop_id,
            VisitorEvent.visitor_id == visitor_id,
            (VisitorEvent.occurred_at < event.occurred_at - timedelta(days=KEEP_DAYS))
            | VisitorEvent.id.not_in(newest.scalar_subquery()),
        )
        .execution_options(synchronize_session=False)
    )


def take(session: Session, shop_id: int, visitor_id: str, at: datetime) -> list[ev.Event]:
    """The visitor's kept events of the :data:`KEEP_DAYS` days before ``at``, oldest
    first, deleted as they are taken (older ones are deleted unread)."""
    taken = session.execute(
        delete(VisitorEvent)
        .where(VisitorEvent.shop_id == shop_id, VisitorEvent.visitor_id == visitor_id)
        .returning(VisitorEvent.id, VisitorEvent.occurred_at, VisitorEvent.event)
        .execution_options(synchronize_session=False)
    ).all()
    since = at - timedelta(days=KEEP_DAYS)
    kept: list[tuple[datetime, int, dict[str, Any]]] = sorted(
        (row.occurred_at, row.id, row.event) for row in taken if row.occurred_at >= since
    )
    found: list[ev.Event] = []
    for _, row_id, serialised in kept:
        try:
            found.append(ev.from_dict(serialised))
        except ev.EventError as exc:  # a form no longer readable: nothing to apply
            log.warning("shop %s: kept visitor event %s unreadable: %s", shop_id, row_id, exc)
    return found


def prune_all(session_factory: Any, at: datetime) -> int:
    """Every kept event older than :data:`KEEP_DAYS` days before ``at`` (of visitors who
    never came back), the oldest first, a batch per transaction; how many."""
    return delete_in_batches(
        session_factory,
        VisitorEvent,
        VisitorEvent.occurred_at < at - timedelta(days=KEEP_DAYS),
        order_by=VisitorEvent.occurred_at,
        batch=PRUNE_BATCH,
    )


def forget(session: Session, shop_id: int, contact_ids: list[int]) -> int:
    """An erased person's links (their visitor ids say where they browsed); how many."""
    if not contact_ids:
        return 0
    result = session.execute(
        delete(Visitor)
        .where(Visitor.shop_id == shop_id, Visitor.contact_id.in_(contact_ids))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def move(session: Session, from_contact: int, to_contact: int) -> None:
    """Links follow a contact merged into another."""
    session.execute(
        update(Visitor)
        .where(Visitor.contact_id == from_contact)
        .values(contact_id=to_contact)
        .execution_options(synchronize_session=False)
    )
