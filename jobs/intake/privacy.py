"""Privacy requests: a customer's data export, a customer's erasure, a shop's erasure.

Erasure reaches everything we hold about the person, not only the contact
row: checkouts and orders (addresses and line items in ``data``), the event
log, the raw webhook deliveries that mentioned them (the body is replaced,
the delivery kept as a record of receipt), planned and sent messages (the
address, the subject line, what the email said), decisions, engagement URLs
and flow context, and earlier data exports. A suppression is kept only as a
hash of the address, so an unsubscribe or a complaint still holds if the
same address comes back. Pending messages are cancelled first.

What is kept: ids, times, states, amounts and flow names, which say nothing
about who the person was and keep the shop's analytics whole; so are the
legal basis each sent email went on (a basis, where consent was heard, when)
and why a flow did not start for the contact (a reason code), the shop's
record of having mailed lawfully.

An erasure also leaves no bytes behind in files. While it runs it notes (in
the session) the tables it wrote to and the addresses it erased; once its
transaction is committed, the worker calls :func:`scrub_erased`, which has
the database drop what the files still hold of the old rows (SQLite's
write-ahead log, PostgreSQL's dead rows: :func:`jobs.store.db.scrub`) and
deletes the person's emails from a development file outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from adapters import events as ev
from emails.delivery.outbox import FileOutbox
from jobs.engine import enrolment, suppressions
from jobs.intake import visitors
from jobs.runtime import Runtime
from jobs.store import db
from jobs.store.models import (
    Base,
    Checkout,
    Contact,
    Decision,
    Delivery,
    Engagement,
    Enrollment,
    Message,
    NonEnrolment,
    Order,
    PrivacyRequest,
    PrivacyRequestKind,
    ProductView,
    Shop,
    ShopStatus,
    StoredEvent,
    Suppression,
    Visitor,
)

log = logging.getLogger(__name__)

#: what a raw delivery's body becomes once the person in it is erased
ERASED_BODY = b'{"erased":true}'

#: the tables a customer's erasure writes to (cancelling their emails included)
CUSTOMER_TABLES = tuple(
    model.__tablename__
    for model in (
        Checkout,
        Contact,
        Decision,
        Delivery,
        Engagement,
        Enrollment,
        Message,
        Order,
        PrivacyRequest,
        ProductView,
        StoredEvent,
        Suppression,
        Visitor,
    )
)


@dataclass
class Erased:
    """What a transaction erased: scrubbed from the files once it is committed."""

    tables: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)


_ERASED = "triggerpost_erased"  # the session.info key


def _note_erased(session: Session, tables: Iterable[str], emails: Iterable[str]) -> None:
    erased: Erased = session.info.setdefault(_ERASED, Erased())
    erased.tables.update(tables)
    erased.emails.update(emails)


def scrub_erased(runtime: Runtime, session: Session) -> None:
    """After the session's commit: scrub the files of what it erased, if it erased anything.

    An erasure that was rolled back to a savepoint is scrubbed all the same; a
    checkpoint or VACUUM too many costs little, and the request is applied again.
    """
    erased: Erased | None = session.info.pop(_ERASED, None)
    if erased is None:
        return
    db.scrub(runtime.engine, erased.tables)
    outbox = urlsplit(runtime.settings.email_url)
    if outbox.scheme == "file" and erased.emails:
        removed = FileOutbox(outbox.path).erase(erased.emails)
        log.info("erased %d emails of %d addresses from the outbox", removed, len(erased.emails))


def _address(email: str | None) -> str | None:
    """The address a request names, normalised; None if it names none."""
    return ev.normalise_email(email) if email and "@" in email else None


def _find(
    session: Session, shop_id: int, customer_id: str | None, email: str | None
) -> list[Contact]:
    """Every contact the request may mean (a guest and a customer record can both exist)."""
    clauses = []
    if customer_id:
        clauses.append(Contact.customer_id == customer_id)
    if email:
        clauses.append(Contact.email == email)
    if not clauses:
        return []
    return list(session.scalars(select(Contact).where(Contact.shop_id == shop_id, or_(*clauses))))


def _body_mentions(session: Session, text: str) -> Any:
    """SQL: the raw body contains ``text`` (lower case), ignoring case."""
    if session.get_bind().dialect.name == "sqlite":
        return func.instr(func.lower(Delivery.body), text) > 0
    # bytea has no lower(); as escaped text, ASCII (an address) reads as itself
    return func.strpos(func.lower(func.encode(Delivery.body, "escape")), text) > 0


# --- export ------------------------------------------------------------------------


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def export_contact(session: Session, contact: Contact) -> dict[str, Any]:
    """Everything we hold about one contact, as plain JSON for the merchant to pass on."""
    orders = session.scalars(select(Order).where(Order.contact_id == contact.id)).all()
    checkouts = session.scalars(select(Checkout).where(Checkout.contact_id == contact.id)).all()
    messages = session.scalars(select(Message).where(Message.contact_id == contact.id)).all()
    engagements = session.scalars(
        select(Engagement).where(Engagement.contact_id == contact.id)
    ).all()
    not_started = session.scalars(
        select(NonEnrolment).where(NonEnrolment.contact_id == contact.id)
    ).all()
    linked = session.scalars(select(Visitor).where(Visitor.contact_id == contact.id)).all()
    views = session.scalars(
        select(ProductView)
        .where(ProductView.contact_id == contact.id)
        .order_by(ProductView.last_viewed_at.desc(), ProductView.product_id)
    ).all()
    blocked = (
        session.scalars(
            select(Suppression).where(
                Suppression.shop_id == contact.shop_id, Suppression.email == contact.email
            )
        ).all()
        if contact.email
        else []
    )
    return {
        "contact": {
            "customer_id": contact.customer_id,
            "email": contact.email,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "phone": contact.phone,
            "locale": contact.locale,
            "country_code": contact.country_code,
            "timezone": contact.timezone,
            "birthday": contact.birthday.isoformat() if contact.birthday else None,
            "tags": contact.tags.strip("\n").split("\n") if contact.tags else [],
            "email_marketing": {
                "state": contact.consent_state,
                "source": contact.consent_source,
                "at": _when(contact.consent_at),
            },
            "orders_count": contact.orders_count,
            "total_spent": str(contact.total_spent),
        },
        "orders": [
            {
                "order_id": o.order_id,
                "name": o.name,
                "placed_at": _when(o.placed_at),
                "status": o.status,
                "total": str(o.total),
                "currency": o.currency,
            }
            for o in orders
        ],
        "checkouts": [
            {
                "token": c.token,
                "status": c.status,
                "updated_at": _when(c.platform_updated_at),
                "total": str(c.total),
                "currency": c.currency,
            }
            for c in checkouts
        ],
        "emails": [
            {
                "flow": m.flow,
                "step": m.step,
                "state": m.state,
                "reason": m.reason,
                "to": m.email_to,
                "subject": m.subject_line,
                "sent_at": _when(m.sent_at),
                "discount_code": m.discount_code,
                "legal_basis": m.legal_basis,
            }
            for m in messages
        ],
        "flows_not_started": [
            {
                "flow": n.flow,
                "reason": n.reason,
                "detail": n.detail,
                "at": _when(n.at),
                "times": n.count,
            }
            for n in not_started
        ],
        "product_views": [
            {
                "product_id": v.product_id,
                "views": v.views,
                "first_viewed_at": _when(v.first_viewed_at),
                "last_viewed_at": _when(v.last_viewed_at),
            }
            for v in views
        ],
        "engagements": [{"kind": e.kind, "at": _when(e.at), "url": e.url} for e in engagements],
        "suppressions": [
            {"scope": s.scope, "reason": s.reason, "source": s.source, "at": _when(s.created_at)}
            for s in blocked
        ],
        # the ids the browsers she said who she is in keep (their later visits are hers)
        "storefront_visitors": [
            {"visitor_id": v.visitor_id, "linked_at": _when(v.linked_at)} for v in linked
        ],
    }


Outcome = tuple[Contact | None, dict[str, Any]]  # the contact, and what the event log keeps


def data_request(session: Session, shop: Shop, event: ev.CustomerDataRequested) -> Outcome:
    """Store the export for the merchant (the event log keeps only the request id)."""
    contacts = _find(session, shop.id, event.customer_id, _address(event.email))
    _record_export(session, shop, contacts, event)
    return (contacts[0] if contacts else None), {"request": event.request_id}


def _record_export(
    session: Session,
    shop: Shop,
    contacts: list[Contact],
    event: ev.CustomerDataRequested,
    **detail: Any,
) -> PrivacyRequest:
    export = {
        "request": event.request_id,
        "found": bool(contacts),
        "contacts": [export_contact(session, c) for c in contacts],
    }
    row = PrivacyRequest(
        shop_id=shop.id,
        kind=PrivacyRequestKind.DATA_REQUEST,
        reference=event.request_id,
        contact_id=contacts[0].id if contacts else None,
        received_at=event.occurred_at,
        completed_at=event.occurred_at,
        export=export,
        detail={
            "contacts": len(contacts),
            "orders_requested": list(event.orders_requested),
            **detail,
        },
    )
    session.add(row)
    return row


# --- asked by the merchant ---------------------------------------------------------
#
# A platform without privacy webhooks (WooCommerce), or a customer who wrote to the
# shop: the merchant asks from their privacy page. The same export and the same
# erasure as Shopify's data_request and customers/redact, recorded the same way, for
# an address the shop holds only (an unknown one is refused: nothing to export, and
# an erasure that matched nobody would record a request it did not carry out).


def merchant_export(
    session: Session, shop: Shop, email: str, at: datetime
) -> PrivacyRequest | None:
    """A customer's export the merchant asked for, kept like a data request; None
    when the shop holds nobody with the address."""
    address = _address(email)
    contacts = _find(session, shop.id, None, address)
    if not contacts:
        return None
    event = ev.CustomerDataRequested(occurred_at=at, customer_id=None, email=address)
    row = _record_export(session, shop, contacts, event, asked_by="merchant")
    session.flush()
    return row


def merchant_erase(
    session: Session, shop: Shop, email: str, at: datetime
) -> tuple[dict[str, int], PrivacyRequest] | None:
    """Erase a customer the merchant names, as Shopify's customers/redact does: the
    counts of what was erased and the request that records it, or None when the shop
    holds nobody with the address. The caller scrubs the files once committed
    (:func:`scrub_erased`)."""
    address = _address(email)
    if not _find(session, shop.id, None, address):
        return None
    event = ev.CustomerRedactRequested(occurred_at=at, customer_id=None, email=address)
    _, counts, row = _redact(session, shop, event, asked_by="merchant")
    session.flush()
    return counts, row


# --- customer erasure --------------------------------------------------------------


def erase_contact(
    session: Session,
    shop_id: int,
    contact: Contact | None,
    *,
    emails: set[str],
    order_ids: tuple[str, ...],
    at: datetime,
) -> dict[str, int]:
    """Erase one person's data in the shop; returns how many rows of each kind changed."""
    counts: dict[str, int] = {}

    def note(kind: str, result: Any) -> None:
        counts[kind] = counts.get(kind, 0) + int(result.rowcount or 0)

    contact_ids = [contact.id] if contact else []
    # the visitor ids their browsers keep: where they browsed is no longer theirs
    forgotten = visitors.forget(session, shop_id, contact_ids)
    if forgotten:
        counts["visitors"] = forgotten
    if contact is not None:
        if contact.email:
            emails.add(contact.email)
        counts["enrollments_cancelled"] = enrolment.cancel_contact(
            session, contact, "customer_redacted", at
        )
    emails = {e for e in emails if e}
    by_person = lambda model: or_(  # noqa: E731 (one condition, four tables)
        model.contact_id.in_(contact_ids), model.email.in_(emails)
    )

    checkout_tokens = list(
        session.scalars(
            select(Checkout.token).where(Checkout.shop_id == shop_id, by_person(Checkout))
        )
    )
    order_keys = set(order_ids) | set(
        session.scalars(select(Order.order_id).where(Order.shop_id == shop_id, by_person(Order)))
    )
    note(
        "checkouts",
        session.execute(
            update(Checkout)
            .where(Checkout.shop_id == shop_id, by_person(Checkout))
            .values(email=None, recovery_url=None, data={}, not_mailable_reason="redacted")
        ),
    )
    note(
        "orders",
        session.execute(
            update(Order)
            .where(
                Order.shop_id == shop_id,
                or_(by_person(Order), Order.order_id.in_(order_keys)),
            )
            .values(email=None, data={})
        ),
    )
    subjects = checkout_tokens + sorted(order_keys)
    event_rows = select(StoredEvent.id, StoredEvent.delivery_id).where(
        StoredEvent.shop_id == shop_id,
        or_(StoredEvent.contact_id.in_(contact_ids), StoredEvent.subject.in_(subjects)),
    )
    found = session.execute(event_rows).all()
    note(
        "events",
        session.execute(
            update(StoredEvent)
            .where(StoredEvent.id.in_([row.id for row in found]))
            .values(data={"erased": True})
        ),
    )
    delivery_ids = {row.delivery_id for row in found if row.delivery_id is not None}
    # deliveries that named the person without becoming one of their events
    # (a failed translation, a privacy request itself): matched on the raw bytes,
    # case-insensitively (a checkout keeps the address as typed). A full scan of
    # the shop's deliveries, acceptable for a request that comes rarely.
    for email in emails:
        for spelling in {email, email.replace("/", "\\/")}:
            delivery_ids |= set(
                session.scalars(
                    select(Delivery.id).where(
                        Delivery.shop_id == shop_id, _body_mentions(session, spelling)
                    )
                )
            )
    note(
        "deliveries",
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids))
            .values(body=ERASED_BODY, error=None)
        ),
    )
    messages = select(Message.id).where(
        Message.shop_id == shop_id,
        or_(Message.contact_id.in_(contact_ids), Message.email_to.in_(emails)),
    )
    message_ids = list(session.scalars(messages))
    note(
        "messages",
        session.execute(
            update(Message)
            .where(Message.id.in_(message_ids))
            .values(email_to=None, subject_line=None, data={})
        ),
    )
    note(
        "decisions",
        session.execute(
            update(Decision)
            .where(
                Decision.shop_id == shop_id,
                or_(Decision.contact_id.in_(contact_ids), Decision.message_id.in_(message_ids)),
            )
            .values(detail={})
        ),
    )
    note(
        "engagements",
        session.execute(
            update(Engagement)
            .where(
                Engagement.shop_id == shop_id,
                or_(Engagement.contact_id.in_(contact_ids), Engagement.message_id.in_(message_ids)),
            )
            .values(url=None)
        ),
    )
    # what she looked at is hers alone: nothing of it is kept
    note(
        "product_views",
        session.execute(
            delete(ProductView).where(
                ProductView.shop_id == shop_id, ProductView.contact_id.in_(contact_ids)
            )
        ),
    )
    note(
        "enrollments",
        session.execute(
            update(Enrollment)
            .where(Enrollment.shop_id == shop_id, Enrollment.contact_id.in_(contact_ids))
            .values(context={})
        ),
    )
    for email in emails:
        for row in session.scalars(
            select(Suppression).where(Suppression.shop_id == shop_id, Suppression.email == email)
        ):
            tombstone = suppressions.erased_form(email)
            taken = session.scalar(
                select(Suppression.id).where(
                    Suppression.shop_id == shop_id,
                    Suppression.email == tombstone,
                    Suppression.scope == row.scope,
                )
            )
            if taken is None:
                row.email = tombstone
            else:
                session.delete(row)
            counts["suppressions"] = counts.get("suppressions", 0) + 1
    note(
        "exports",
        session.execute(
            update(PrivacyRequest)
            .where(PrivacyRequest.shop_id == shop_id, PrivacyRequest.contact_id.in_(contact_ids))
            .values(export=None)
        ),
    )
    if contact is not None:
        for attribute in (
            "email",
            "customer_id",
            "first_name",
            "last_name",
            "phone",
            "locale",
            "country_code",
            "timezone",
            "birthday",
            "consent_source",
            "tags",
        ):
            setattr(contact, attribute, None)
        contact.consent_state = ev.ConsentState.REDACTED
        contact.redacted_at = at
        counts["contacts"] = 1
    session.flush()
    _note_erased(session, CUSTOMER_TABLES, emails)
    return counts


def customer_redact(session: Session, shop: Shop, event: ev.CustomerRedactRequested) -> Outcome:
    contacts, counts, _ = _redact(session, shop, event)
    return (contacts[0] if contacts else None), {"erased": counts}


def _redact(
    session: Session, shop: Shop, event: ev.CustomerRedactRequested, **detail: Any
) -> tuple[list[Contact], dict[str, int], PrivacyRequest]:
    """Erase everyone the request may mean; their contacts, the counts, and its record."""
    email = _address(event.email)
    contacts = _find(session, shop.id, event.customer_id, email)
    counts: dict[str, int] = {}
    targets: list[Contact | None] = [*contacts] or [None]
    for contact in targets:
        for kind, n in erase_contact(
            session,
            shop.id,
            contact,
            emails={email} if email else set(),
            order_ids=event.orders_to_redact,
            at=event.occurred_at,
        ).items():
            counts[kind] = counts.get(kind, 0) + n
    row = PrivacyRequest(
        shop_id=shop.id,
        kind=PrivacyRequestKind.CUSTOMER_REDACT,
        contact_id=contacts[0].id if contacts else None,
        received_at=event.occurred_at,
        completed_at=event.occurred_at,
        detail={"contacts": len(contacts), **counts, **detail},
    )
    session.add(row)
    log.info("shop %s: erased a customer: %s", shop.id, counts)
    return contacts, counts, row


# --- shop erasure ------------------------------------------------------------------


def erase_shop(session: Session, shop_id: int) -> dict[str, int]:
    """Delete every row of the shop, children first (no reliance on cascades)."""
    addresses = (
        select(Contact.email).where(Contact.shop_id == shop_id),
        select(Checkout.email).where(Checkout.shop_id == shop_id),
        select(Order.email).where(Order.shop_id == shop_id),
        select(Message.email_to).where(Message.shop_id == shop_id),
        select(Suppression.email).where(Suppression.shop_id == shop_id),
    )
    emails = {e for query in addresses for e in session.scalars(query) if e and "@" in e}
    counts: dict[str, int] = {}
    for table in reversed(Base.metadata.sorted_tables):
        if table.name != "shops" and "shop_id" in table.c:
            result = session.execute(delete(table).where(table.c.shop_id == shop_id))
            counts[table.name] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    session.execute(delete(Shop).where(Shop.id == shop_id))
    session.expunge_all()
    _note_erased(session, [*counts, Shop.__tablename__], emails)
    return counts


def shop_redact(session: Session, shop: Shop, event: ev.ShopRedactRequested) -> bool:
    """Erase the shop; False (and nothing erased) if it is installed again meanwhile.

    Shopify sends this 48 h after an uninstall and not when the merchant came
    back within that time, so an active shop here means a late or stray
    request: erasing a shop in use would destroy the merchant's live data.
    """
    if shop.status == ShopStatus.ACTIVE:
        log.warning("shop %s: redact request for an installed shop; kept", shop.id)
        session.add(
            PrivacyRequest(
                shop_id=shop.id,
                kind=PrivacyRequestKind.SHOP_REDACT,
                received_at=event.occurred_at,
                detail={"kept": "the shop is installed"},
            )
        )
        return False
    enrolment.cancel_shop(session, shop.id, "shop_redacted", event.occurred_at)
    counts = erase_shop(session, shop.id)
    log.info("shop %s erased: %s", shop.id, counts)
    return True
