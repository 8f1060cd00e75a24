"""Applying events to the store: contacts, checkouts, orders, products.

Handlers are mapped by event type (``HANDLERS``). Each runs inside the
delivery's transaction, is idempotent (a replayed event changes nothing) and
ignores stale data: a payload whose platform ``updated_at`` is older than what
we hold does not overwrite it, and a completed checkout never reopens.
Every event is also appended to the event log (``events`` table), which the
flow engine, the simulator and analytics read.

What the platforms sent is made to fit the store here, the same on SQLite and
PostgreSQL (the payload reader already made it storable text):

- an identity a row is found by (a customer, order, product id, a checkout
  token) longer than :data:`IDENTITY_LENGTH` is no platform's id, and cut it
  would name another row: the delivery is refused with a ``WebhookError``
  naming the field, and fails with that reason;
- a code or a reference (an email address, a country code, a locale, a status,
  a cart token) that cannot be what it claims to be is treated as absent and
  logged: the order or customer is still applied, without it;
- what a person wrote (a name, a phone number, an order name, a title) is cut
  to fit by its column (``jobs.store.models.ClippedText``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import delete, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from adapters import events as ev
from adapters import storefront
from adapters.platform import ShopContext, WebhookError
from adapters.registry import PLATFORMS
from jobs.audience import purchases, recommendations
from jobs.engine import enrolment
from jobs.intake import privacy, visitors
from jobs.merchant.shops import mark_uninstalled
from jobs.reports import attribution
from jobs.store import queries, rows
from jobs.store.db import plain
from jobs.store.models import (
    DELETED_PRODUCT_STATUS,
    Checkout,
    CheckoutStatus,
    Contact,
    Order,
    OrderStatus,
    PrivacyRequest,
    Product,
    ProductView,
    Shop,
    ShopStatus,
    StoredEvent,
    Subscription,
    now,
    stored_tags,
)

log = logging.getLogger(__name__)

E = TypeVar("E", bound=ev.Event)
Handler = Callable[[Session, Shop, Any], "Applied"]


class Applied:
    """What a handler touched: the contact and the subject the event is about.

    ``logged`` replaces the event's data in the event log (a privacy request
    must not leave the person it erased behind in the log); ``shop_erased``
    says the shop no longer exists, so nothing is logged at all.
    """

    __slots__ = ("contact", "logged", "shop_erased", "subject")

    def __init__(
        self,
        contact: Contact | None = None,
        subject: str | None = None,
        *,
        logged: dict[str, Any] | None = None,
        shop_erased: bool = False,
    ) -> None:
        self.contact = contact
        self.subject = subject
        self.logged = logged
        self.shop_erased = shop_erased


def apply(
    session: Session,
    shop: Shop,
    event: ev.Event,
    *,
    delivery_id: int | None,
    at: datetime | None = None,
    historical: bool = False,
    replayed: bool = False,
) -> Applied:
    """Apply the event to the store, log it, and let the flow engine act on it.

    ``at`` is the engine's "now" (the simulator passes its virtual clock).
    ``historical``: the event is the shop's past (a history import): it updates
    contacts, orders and products and is logged, but no flow acts on it and no
    email is credited with it.

    A storefront visitor's event first goes through :func:`visitor_bookkeeping`:
    it may become its contact's, and it may bring more events (the visitor's
    earlier ones, now theirs; the checkout a cart is), applied right after it.
    ``replayed``: the event comes from the event log (a dry run), which holds what
    the bookkeeping made of it already, logged as it was: none of it is made again.
    """
    later: list[ev.Event] = []
    if isinstance(event, VISITOR_EVENTS) and not historical and not replayed:
        event, later = visitor_bookkeeping(session, shop, event)
    handler = HANDLERS.get(type(event))
    applied = handler(session, shop, event) if handler else Applied()
    if applied.shop_erased:
        return applied
    logged = _log_row(shop, event, applied, delivery_id)
    event_id = plain(session).execute(queries.INSERT_STORED_EVENT, logged).scalar_one()
    if historical:
        return applied
    if (
        shop.status == ShopStatus.ACTIVE
        and isinstance(event, attribution.ORDER_EVENTS)
        and applied.subject is not None
    ):
        attribution.on_order_event(session, shop, event, applied.subject, at or now())
    enrolment.on_event(
        session,
        shop,
        event,
        applied.contact,
        applied.subject,
        event_id=event_id,
        at=at or now(),
    )
    for follow in later:
        apply(session, shop, follow, delivery_id=delivery_id, at=at)
    return applied


def _log_row(
    shop: Shop,
    event: ev.Event,
    applied: Applied,
    delivery_id: int | None,
    serialised: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The event log's row for the event (``events`` table); ``serialised``: its
    ``to_dict`` form when made already."""
    serialised = ev.to_dict(event) if serialised is None else serialised
    if applied.logged is not None:
        serialised["data"] = applied.logged
    return {
        "shop_id": shop.id,
        "delivery_id": delivery_id,
        "contact_id": applied.contact.id if applied.contact else None,
        "type": serialised["type"],
        "version": serialised["version"],
        "occurred_at": event.occurred_at,
        "subject": applied.subject,
        "data": serialised["data"],
    }


# --- the history import: a page of the shop's past at once --------------------------
#
# A history source tells each order's story at once: a completed order is an
# OrderPlaced, an OrderPaid and an OrderFulfilled in a row, all carrying the same
# order. Applied one by one, each writes the order's row, looks up its contact and
# checkout, counts its products and recomputes the contact's order count and spend:
# some twenty statements an order. ``apply_history`` comes to the same rows with
# about a third of them. The webhook path (``apply``) is not touched by any of this.

#: what the history import's page holds pending (its session's ``info``)
PENDING = "triggerpost.history_pending"


class _Pending:
    """What a history page has not written yet: its log rows, the contacts whose
    figures are due, the paid orders whose products are to be counted (with the
    products as they were when paid); and the contacts it found by customer id."""

    __slots__ = ("contacts", "counts", "known", "logged", "orders", "shop_id")

    def __init__(self, shop_id: int) -> None:
        self.shop_id = shop_id
        self.logged: list[dict[str, Any]] = []
        self.contacts: dict[int, Contact] = {}
        self.counts: dict[int, tuple[Order, list[str]]] = {}
        self.known: dict[str, Contact] = {}
        #: the orders written, whose products segments find (jobs.audience.purchases)
        self.orders: list[Order] = []


def apply_history(session: Session, shop: Shop, events: Sequence[ev.Event]) -> list[Applied]:
    """Apply a page of the shop's past; what each event did, in their order.

    The rows it leaves (contacts, orders, checkouts, products, the products' sales
    and pairs, the counted orders, the event log) are those of
    ``apply(session, shop, event, delivery_id=None, historical=True)`` for each
    event in turn, written with fewer statements:

    - an order's events in a row that carry the same order are applied as one:
      its row, contact and checkout found and written once, its products counted
      (or taken back) once for each status it reached, in turn;
    - a contact's order count, spend and first and last order are recomputed once,
      at the end of the page, from the orders table (as every event would have,
      so the figures are the same; where an order moved to another contact within
      the page, the contact it left is put right too);
    - every event is still logged as it came, all in one statement at the end of
      the page (before anything that reads or moves logged events).

    No flow acts on any of it and no email is credited with it, as with
    ``historical=True``. The caller commits (or rolls back) the page.
    """
    pending = _Pending(shop.id)
    _prefetch(session, shop, events, pending)
    session.info[PENDING] = pending
    try:
        done: list[Applied] = []
        for group in _order_runs(events):
            first = group[0]
            handler = HANDLERS.get(type(first))
            if handler is on_order:
                applied = _on_order_history(session, shop, group, pending)
                pending.logged.extend(
                    _log_row(shop, e, applied, None, serialised)
                    for e, serialised in zip(group, ev.to_dicts(group), strict=True)
                )
                done.extend(applied for _ in group)
                continue
            if handler is not None and handler not in _DEFERRABLE:
                write_pending(session)
            applied = handler(session, shop, first) if handler else Applied()
            done.append(applied)
            if applied.shop_erased:
                pending.logged.clear()
                continue
            pending.logged.append(_log_row(shop, first, applied, None))
        write_pending(session)
        return done
    finally:
        session.info.pop(PENDING, None)


def write_pending(session: Session) -> None:
    """Write what the history import's page holds pending: its log rows, then the
    figures of the contacts its orders touched. Nothing outside an import."""
    pending: _Pending | None = session.info.get(PENDING)
    if pending is None:
        return
    if pending.logged:
        plain(session).execute(queries.INSERT_STORED_EVENTS, pending.logged)
        pending.logged = []
    _write_counts(session, pending)
    if pending.orders:
        session.flush()  # the orders' row ids
        written, pending.orders = pending.orders, []
        purchases.keep(session, [o for o in written if inspect(o).persistent])
    if pending.contacts:
        session.flush()
        # not those merged into another meanwhile (gone from the store)
        contacts = [c for c in pending.contacts.values() if inspect(c).persistent]
        pending.contacts = {}
        orders: dict[int, list[Any]] = {c.id: [] for c in contacts}
        if orders:
            found = plain(session).execute(
                queries.COUNTED_ORDERS_OF_CONTACTS, {"ids": list(orders)}
            )
            for row in found:
                orders[row.contact_id].append(row)
        for contact in contacts:
            _set_order_stats(contact, orders[contact.id])


def _write_counts(session: Session, pending: _Pending) -> None:
    """Count the page's paid orders in the products' sales and pairs (before anything
    takes one back, so that it is taken back as it would have been)."""
    if pending.counts:
        counts, pending.counts = pending.counts, {}
        session.flush()  # the orders' row ids
        paid = {row.id: products for row, products in counts.values()}
        recommendations.count_orders(session, pending.shop_id, paid)


def _prefetch(session: Session, shop: Shop, events: Sequence[ev.Event], pending: _Pending) -> None:
    """The contacts of the customers the page names, its orders and their checkouts,
    each in one query (each is looked up on its own otherwise, one at a time)."""
    ids: set[str] = set()
    order_ids: set[str] = set()
    tokens: set[str] = set()
    for event in events:
        order = _order_of(event)
        if order is not None:
            order_ids.add(order.order_id)
            if order.checkout_token:
                tokens.add(order.checkout_token)
        customer = order.customer if order is not None else None
        if isinstance(event, ev.CustomerCreated | ev.CustomerUpdated):
            customer = event.customer
        if customer is not None and customer.customer_id:
            ids.add(customer.customer_id)
    # one that is no platform's id is refused by the handler before any lookup
    rows.prefetch(session, Order, shop.id, (i for i in order_ids if len(i) <= IDENTITY_LENGTH))
    rows.prefetch(session, Checkout, shop.id, tokens)
    ids = {i for i in ids if len(i) <= IDENTITY_LENGTH}
    if ids:
        params = {"shop_id": shop.id, "ids": sorted(ids)}
        for contact in session.scalars(queries.CONTACTS_BY_CUSTOMER_IDS, params):
            if contact.customer_id is not None:
                pending.known[contact.customer_id] = contact


def _order_runs(events: Sequence[ev.Event]) -> list[list[ev.Event]]:
    """The events in groups: an order's events in a row carrying the same order are
    one group, any other event is a group of its own."""
    groups: list[list[ev.Event]] = []
    for event in events:
        order = _order_of(event)
        if groups and order is not None:
            told = _order_of(groups[-1][-1])
            if told is order or told == order:
                groups[-1].append(event)
                continue
        groups.append([event])
    return groups


def _order_of(event: ev.Event) -> ev.Order | None:
    """The order an event ``on_order`` applies carries; None for any other event."""
    if HANDLERS.get(type(event)) is not on_order:
        return None
    order: ev.Order = event.order  # type: ignore[attr-defined]
    return order


def _on_order_history(
    session: Session, shop: Shop, events: list[ev.Event], pending: _Pending
) -> Applied:
    """``on_order`` for each of one order's events in turn (the same order in each),
    written once; the contact's figures left to ``write_pending``."""
    first: ev.OrderPlaced = events[0]  # type: ignore[assignment]
    data = first.order
    order_id = identity(data.order_id, "order.order_id")
    checkout_token = code(data.checkout_token, Order.checkout_token, "checkout token")
    # written with the page's others (write_pending flushes, as any query does)
    contact = upsert_contact(
        session, shop, data.customer, data.email, authoritative=False, flush=False
    )
    row, fresh = _order_row(session, shop, order_id, data)
    if fresh:  # the later events carry the same order: they write the same again
        _write_order(row, first, contact, checkout_token)
        pending.orders.append(row)
    # the statuses the order reached, in turn: its products are counted or taken
    # back for each, as each event's own application would
    reached: list[OrderStatus] = []
    for event in events:
        status, stamp = _order_transition(event)
        if ORDER_STATUS_RANK[status] > ORDER_STATUS_RANK[OrderStatus(row.status)]:
            row.status = status
        if stamp is not None and getattr(row, stamp) is None:
            setattr(row, stamp, event.occurred_at)
        if data.cancelled_at is not None and row.cancelled_at is None:
            row.cancelled_at = data.cancelled_at
        if not reached or reached[-1] != row.status:
            reached.append(OrderStatus(row.status))
    for status in reached:
        if status == OrderStatus.PAID and not row.test:
            # counted with the page's others (recommendations.on_order would count it now)
            pending.counts.setdefault(id(row), (row, recommendations.counted_products(row)))
        elif status != OrderStatus.PLACED:
            _write_counts(session, pending)
            recommendations.on_order(session, row, status)

    if checkout_token:
        checkout = rows.checkout(session, shop.id, checkout_token)
        if checkout is not None:
            complete_checkout(checkout, data.placed_at, order_id)
    if contact is not None:
        pending.contacts[contact.id] = contact
    return Applied(contact, order_id)


# --- fitting what the platforms sent to the store ---------------------------------

#: the longest identity accepted. Platform ids are far shorter (a Shopify id has
#: at most 20 digits, a checkout token 32 characters), and an identity is also
#: part of the enrollment and message keys (jobs.engine.enrolment), which must hold it with
#: a flow's and a step's name in their 255 characters.
IDENTITY_LENGTH = 64


def identity(value: str, what: str) -> str:
    """``value`` if it can be a platform's id; refuses the delivery otherwise."""
    if len(value) > IDENTITY_LENGTH:
        raise WebhookError(
            400, f"{what} is {len(value)} characters long: no id is longer than {IDENTITY_LENGTH}"
        )
    return value


def code(value: str | None, column: InstrumentedAttribute[Any], what: str) -> str | None:
    """``value`` if it fits ``column``; a longer code or reference is none, so absent."""
    length = getattr(column.expression.type, "length", None)
    if value is None or length is None or len(value) <= length:
        return value
    log.warning("a %s of %d characters is longer than any (%d): ignored", what, len(value), length)
    return None


def country_code(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2 in upper case; anything else is no country, so absent."""
    if value is None:
        return None
    if len(value) != 2 or not (value.isascii() and value.isalpha()):
        log.warning("a country code of %d characters that is not two letters: ignored", len(value))
        return None
    return value.upper()


# --- contacts ------------------------------------------------------------------


def stored_email(email: str | None) -> str | None:
    """The address as stored (normalised); None for one that cannot be anybody's address."""
    if email is None:
        return None
    email = code(ev.normalise_email(email), Contact.email, "email address")
    # one that fits but is no address is kept: the send-time guard says why it is not mailed
    return email if email is not None and "@" in email else None


def find_contact(
    session: Session, shop_id: int, customer_id: str | None, email: str | None
) -> Contact | None:
    if customer_id:
        pending: _Pending | None = session.info.get(PENDING)
        found = pending.known.get(customer_id) if pending is not None else None
        if found is None or found.customer_id != customer_id or not inspect(found).persistent:
            found = session.scalar(
                queries.CONTACT_BY_CUSTOMER_ID, {"shop_id": shop_id, "key": customer_id}
            )
        if found is not None:
            return found
    if email:
        return session.scalar(queries.CONTACT_BY_EMAIL, {"shop_id": shop_id, "key": email})
    return None


def upsert_contact(
    session: Session,
    shop: Shop,
    customer: ev.Customer | None,
    email: str | None,
    *,
    authoritative: bool,
    flush: bool = True,
) -> Contact | None:
    """Find or create the contact an event is about and update what it tells us.

    ``authoritative`` is true for customer events (their fields replace ours when
    newer); for checkouts and orders the embedded customer only fills blanks.
    Returns None when the event names nobody we could ever email or match.
    ``flush``: write the changes now (the history import leaves them to the
    next query or its page's end, to write many at once).
    """
    email = stored_email(email or (customer.email if customer else None))
    customer_id = customer.customer_id if customer else None
    if customer_id is not None:
        customer_id = identity(customer_id, "customer.customer_id")
    if not email and not customer_id:
        return None

    contact = find_contact(session, shop.id, customer_id, email)
    if contact is None:
        contact = _create_contact(session, shop.id, customer_id, email)
    else:
        if customer_id and contact.customer_id is None:
            contact.customer_id = customer_id
        if email and contact.email != email:
            _take_email(session, contact, email)
    if customer is not None:
        _update_fields(contact, customer, authoritative=authoritative)
    if flush:
        session.flush()
    return contact


def _create_contact(
    session: Session, shop_id: int, customer_id: str | None, email: str | None
) -> Contact:
    contact = Contact(shop_id=shop_id, customer_id=customer_id, email=email)
    try:
        with session.begin_nested():
            session.add(contact)
            session.flush()
    except IntegrityError:
        # another worker created the same person a moment ago: use theirs
        found = find_contact(session, shop_id, customer_id, email)
        if found is None:
            raise
        return found
    return contact


def _take_email(session: Session, contact: Contact, email: str) -> None:
    """A known customer now uses ``email``; a guest contact holding it merges in."""
    other = session.scalar(
        select(Contact).where(Contact.shop_id == contact.shop_id, Contact.email == email)
    )
    if other is not None and other.id != contact.id:
        if other.customer_id and other.customer_id != contact.customer_id:
            # two platform customers cannot share an email; keep ours as it is
            log.warning(
                "shop %s: customer %s uses %s, which belongs to customer %s",
                contact.shop_id,
                contact.customer_id,
                email,
                other.customer_id,
            )
            return
        _merge_into(session, contact, other)
    contact.email = email


def _merge_into(session: Session, keep: Contact, gone: Contact) -> None:
    write_pending(session)  # a history page's log rows name ``gone``: moved with the rest
    owned: tuple[type[Checkout] | type[Order] | type[StoredEvent], ...] = (
        Checkout,
        Order,
        StoredEvent,
    )
    for model in owned:
        session.execute(update(model).where(model.contact_id == gone.id).values(contact_id=keep.id))
    visitors.move(session, gone.id, keep.id)
    if keep.consent_at is None or (gone.consent_at and gone.consent_at > keep.consent_at):
        keep.consent_state = gone.consent_state
        keep.consent_source = gone.consent_source
        keep.consent_at = gone.consent_at
    _merge_views(session, keep, gone)
    session.delete(gone)
    session.flush()
    refresh_order_stats(session, keep)


def _merge_views(session: Session, keep: Contact, gone: Contact) -> None:
    """The merged contact's product views become ``keep``'s, counted together."""
    theirs = session.scalars(select(ProductView).where(ProductView.contact_id == gone.id)).all()
    if not theirs:
        return
    ours = {
        row.product_id: row
        for row in session.scalars(select(ProductView).where(ProductView.contact_id == keep.id))
    }
    for row in theirs:
        mine = ours.get(row.product_id)
        if mine is None:
            row.contact_id = keep.id
            continue
        mine.views += row.views
        mine.first_viewed_at = min(mine.first_viewed_at, row.first_viewed_at)
        mine.last_viewed_at = max(mine.last_viewed_at, row.last_viewed_at)
        session.delete(row)
    session.flush()


def _update_fields(contact: Contact, customer: ev.Customer, *, authoritative: bool) -> None:
    newer = authoritative and (
        customer.updated_at is None
        or contact.source_updated_at is None
        or customer.updated_at >= contact.source_updated_at
    )
    address = customer.address
    fields: dict[str, Any] = {
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "phone": customer.phone,
        "locale": code(customer.locale, Contact.locale, "locale"),
        "timezone": code(customer.timezone, Contact.timezone, "time zone"),
        "birthday": customer.birthday,
        "country_code": country_code(address.country_code) if address else None,
        "platform_created_at": customer.created_at,
    }
    for name, value in fields.items():
        if value is not None and (newer or getattr(contact, name) is None):
            setattr(contact, name, value)
    _update_tags(contact, customer, newer=newer)
    if newer and customer.updated_at is not None:
        contact.source_updated_at = customer.updated_at
    if customer.consent is not None:
        set_consent(contact, customer.consent, customer.updated_at)


def _update_tags(contact: Contact, customer: ev.Customer, *, newer: bool) -> None:
    """Her tags as the platform's newest customer record has them (an empty list then
    clears them); an order's or a checkout's copy of her only fills in none."""
    if newer or contact.tags is None:
        contact.tags = stored_tags(customer.tags)


def learn_language(contact: Contact | None, locale: str | None) -> None:
    """The language she last shopped in (a checkout's or an order's) is hers: emails
    about her or a product (a welcome, an announcement) go in it, as emails about
    that checkout or order do. Platforms' customer records seldom carry one; when
    one does, a later checkout or order still speaks for her."""
    if contact is not None and locale:
        contact.locale = locale


def set_consent(contact: Contact, consent: ev.Consent, fallback_at: datetime | None) -> None:
    """Record consent unless we already hold a newer statement of it."""
    if consent.assumed and contact.consent_state is not None:
        return
    at = consent.updated_at or fallback_at
    if contact.consent_at is not None and at is not None and at < contact.consent_at:
        return
    if contact.consent_state == consent.state and contact.consent_at == at:
        # the same statement told again (every later payload repeats it): keep where
        # it was first heard, which says how it was given (a checkout, an account)
        return
    contact.consent_state = consent.state.value
    contact.consent_source = consent.source
    contact.consent_at = at


def refresh_order_stats(session: Session, contact: Contact) -> None:
    """Recomputed from the orders table, so replays and reorderings cannot skew it."""
    params = {"contact_id": contact.id}
    _set_order_stats(contact, plain(session).execute(queries.COUNTED_ORDERS_OF_CONTACT, params))


def _set_order_stats(contact: Contact, counted: Iterable[Any]) -> None:
    """The contact's figures from her counted orders (``COUNTED_ORDERS_OF_CONTACT`` rows)."""
    orders = list(counted)
    contact.orders_count = len(orders)
    contact.total_spent = sum(
        (o.shop_total if o.shop_total is not None else o.total for o in orders), Decimal(0)
    )
    placed = [o.placed_at for o in orders]
    contact.first_order_at = min(placed) if placed else None
    contact.last_order_at = max(placed) if placed else None


# --- handlers --------------------------------------------------------------------


def on_customer(session: Session, shop: Shop, event: ev.CustomerCreated) -> Applied:
    contact = upsert_contact(session, shop, event.customer, None, authoritative=True)
    return Applied(contact, event.customer.customer_id)


def on_consent(session: Session, shop: Shop, event: ev.MarketingConsentChanged) -> Applied:
    customer = ev.Customer(customer_id=event.customer_id, email=event.email)
    contact = upsert_contact(session, shop, customer, None, authoritative=False)
    if contact is not None:
        set_consent(contact, event.consent, event.occurred_at)
    return Applied(contact, event.customer_id)


def on_checkout(session: Session, shop: Shop, event: ev.CheckoutUpdated) -> Applied:
    data = event.checkout
    token = identity(data.token, "checkout.token")
    contact = upsert_contact(session, shop, data.customer, data.email, authoritative=False)
    row = rows.checkout(session, shop.id, token)
    if row is None:
        row = Checkout(shop_id=shop.id, token=token, platform_updated_at=data.updated_at)
        session.add(row)
        rows.remember(session, row)
    elif data.updated_at < row.platform_updated_at:
        log.info("shop %s: stale checkout %s ignored", shop.id, token)
        return Applied(contact, token)

    row.contact_id = contact.id if contact else row.contact_id
    row.cart_token = code(data.cart_token, Checkout.cart_token, "cart token")
    row.email = stored_email(data.email)
    row.recovery_url = data.recovery_url
    row.currency = data.total.currency
    row.total = data.total.amount
    row.data = ev.to_dict(event)["data"]["checkout"]
    row.locale = code(data.locale, Checkout.locale, "locale")
    learn_language(contact, row.locale)
    row.not_mailable_reason = data.not_mailable_reason
    row.platform_created_at = data.created_at
    row.platform_updated_at = data.updated_at
    if data.completed_at is not None:
        complete_checkout(row, data.completed_at, None)
    elif row.status != CheckoutStatus.COMPLETED:
        # an order may have arrived before this checkout (delivery order is not guaranteed)
        params = {"shop_id": shop.id, "token": token}
        order = plain(session).execute(queries.ORDER_FOR_CHECKOUT, params).first()
        if order is not None:
            complete_checkout(row, order.placed_at, order.order_id)
    session.flush()
    return Applied(contact, token)


def complete_checkout(row: Checkout, at: datetime, order_id: str | None) -> None:
    row.status = CheckoutStatus.COMPLETED
    row.completed_at = row.completed_at or at
    row.order_id = row.order_id or order_id


ORDER_STATUS_RANK = {
    OrderStatus.PLACED: 0,
    OrderStatus.PAID: 1,
    OrderStatus.CANCELLED: 2,
    OrderStatus.REFUNDED: 3,
}


def _order_row(session: Session, shop: Shop, order_id: str, data: ev.Order) -> tuple[Order, bool]:
    """The shop's row of the order (a new one, placed, if none), and whether ``data`` is
    as new as what it holds (an older version of the order writes nothing)."""
    row = rows.order(session, shop.id, order_id)
    if row is None:
        row = Order(
            shop_id=shop.id,
            order_id=order_id,
            placed_at=data.placed_at,
            platform_updated_at=data.updated_at,
            status=OrderStatus.PLACED,
        )
        session.add(row)
        rows.remember(session, row)
        return row, True
    return row, data.updated_at >= row.platform_updated_at


def on_order(session: Session, shop: Shop, event: ev.OrderPlaced) -> Applied:
    data = event.order
    order_id = identity(data.order_id, "order.order_id")
    checkout_token = code(data.checkout_token, Order.checkout_token, "checkout token")
    contact = upsert_contact(session, shop, data.customer, data.email, authoritative=False)
    row, fresh = _order_row(session, shop, order_id, data)
    if fresh:
        _write_order(row, event, contact, checkout_token)

    status, stamp = _order_transition(event)
    if ORDER_STATUS_RANK[status] > ORDER_STATUS_RANK[OrderStatus(row.status)]:
        row.status = status
    if stamp is not None and getattr(row, stamp) is None:
        setattr(row, stamp, event.occurred_at)
    if data.cancelled_at is not None and row.cancelled_at is None:
        row.cancelled_at = data.cancelled_at
    session.flush()
    recommendations.on_order(session, row)
    purchases.keep(session, [row])

    if checkout_token:
        checkout = rows.checkout(session, shop.id, checkout_token)
        if checkout is not None:
            complete_checkout(checkout, data.placed_at, order_id)
    if contact is not None:
        refresh_order_stats(session, contact)
    return Applied(contact, order_id)


def _write_order(
    row: Order, event: ev.OrderPlaced, contact: Contact | None, checkout_token: str | None
) -> None:
    """The order's row says what the event's order says (news newer than it holds)."""
    data = event.order
    row.name = data.name
    row.contact_id = contact.id if contact else row.contact_id
    row.email = stored_email(data.email)
    row.checkout_token = checkout_token
    row.cart_token = code(data.cart_token, Order.cart_token, "cart token")
    row.financial_status = code(data.financial_status, Order.financial_status, "status")
    row.fulfillment_status = code(data.fulfillment_status, Order.fulfillment_status, "status")
    row.currency = data.total.currency
    row.total = data.total.amount
    row.shop_currency = data.shop_total.currency if data.shop_total else None
    row.shop_total = data.shop_total.amount if data.shop_total else None
    row.test = data.test
    row.data = ev.to_dict(event)["data"]["order"]
    row.locale = code(data.locale, Order.locale, "locale")
    learn_language(contact, row.locale)
    row.platform_updated_at = data.updated_at


def _order_transition(event: ev.Event) -> tuple[OrderStatus, str | None]:
    if isinstance(event, ev.OrderPaid):
        return OrderStatus.PAID, "paid_at"
    if isinstance(event, ev.OrderCancelled):
        return OrderStatus.CANCELLED, "cancelled_at"
    if isinstance(event, ev.OrderRefunded):
        return OrderStatus.REFUNDED, "refunded_at"
    if isinstance(event, ev.OrderFulfilled):
        return OrderStatus.PLACED, "fulfilled_at"
    return OrderStatus.PLACED, None


def on_delivered(session: Session, shop: Shop, event: ev.ShipmentDelivered) -> Applied:
    order_id = identity(event.order_id, "order_id")
    row = rows.order(session, shop.id, order_id)
    contact = None
    if row is not None:
        row.delivered_at = row.delivered_at or event.occurred_at
        contact = session.get(Contact, row.contact_id) if row.contact_id else None
    if contact is None:
        customer = ev.Customer(customer_id=event.customer_id, email=event.email)
        contact = upsert_contact(session, shop, customer, None, authoritative=False)
    return Applied(contact, order_id)


def on_product(session: Session, shop: Shop, event: ev.ProductCreated) -> Applied:
    return Applied(None, store_product(session, shop, event.product).product_id)


def on_product_deleted(session: Session, shop: Shop, event: ev.ProductDeleted) -> Applied:
    return Applied(None, delete_product(session, shop, event.product_id, event.occurred_at))


# --- products ----------------------------------------------------------------------
#
# A product's row changes only for news newer than it holds (``platform_updated_at``).
# A deleted product keeps its row, marked DELETED_PRODUCT_STATUS and not available (so
# never for sale), dated when we heard of it (a deletion states no time of its own),
# and leaves its collections and tags (jobs.audience.recommendations.on_product):
#
# - where deletions are final (the platform's ``restores_deleted_products`` is false),
#   nothing brings it back: any later word of it is stale;
# - where a product comes back from the trash, only news newer than the deletion
#   does (a restore is dated when it happened); an older update arriving after the
#   deletion does not. A restore so quick that its date precedes our receipt of the
#   trashing leaves the product deleted until its next change: the safe side.
#
# A deletion of a product we never held leaves a row all the same, so a create
# arriving after it is not taken for a new product and no email asks about it.
# Besides webhooks, jobs.sending.catalogue stores here what a platform's API said of
# products an email was about to show.


def store_product(session: Session, shop: Shop, data: ev.Product) -> Product:
    """The product's row with what ``data`` says, unless the row holds newer news."""
    product_id = identity(data.product_id, "product.product_id")
    row = _product_row(session, shop.id, product_id)
    if row is None:
        row = Product(shop_id=shop.id, product_id=product_id)
        session.add(row)
    elif row.status == DELETED_PRODUCT_STATUS:
        if not _restorable(shop) or data.updated_at <= row.platform_updated_at:
            log.info("shop %s: product %s was deleted: update ignored", shop.id, product_id)
            return row
    elif data.updated_at < row.platform_updated_at:
        return row
    row.title = data.title
    row.handle = code(data.handle, Product.handle, "handle")
    row.url = data.url
    row.image_url = data.image_url
    row.price = data.price.amount if data.price else None
    row.currency = data.price.currency if data.price else None
    row.status = code(data.status, Product.status, "status")
    row.available = data.available
    # kept in its serialised form, as an event carries it
    row.data = ev.to_dict(ev.ProductUpdated(data.updated_at, data))["data"]["product"]
    row.platform_updated_at = data.updated_at
    session.flush()
    recommendations.on_product(session, row)
    return row


def delete_product(session: Session, shop: Shop, product_id: str, at: datetime) -> str:
    """Mark the product deleted as of ``at``; its id. A replay changes nothing."""
    product_id = identity(product_id, "product.product_id")
    row = _product_row(session, shop.id, product_id)
    if row is None:
        row = Product(shop_id=shop.id, product_id=product_id, title="", data={})
        session.add(row)
    elif row.status == DELETED_PRODUCT_STATUS:
        return product_id  # deleted already: it stays dated by the first word of it
    elif at < row.platform_updated_at and _restorable(shop):
        # we hold news of it from after the deletion: it came back from the trash
        log.info("shop %s: product %s changed after its deletion: kept", shop.id, product_id)
        return product_id
    row.status = DELETED_PRODUCT_STATUS
    row.available = False
    row.platform_updated_at = max(at, row.platform_updated_at or at)
    session.flush()
    recommendations.on_product(session, row)
    return product_id


def _product_row(session: Session, shop_id: int, product_id: str) -> Product | None:
    return session.scalar(
        select(Product).where(Product.shop_id == shop_id, Product.product_id == product_id)
    )


def _restorable(shop: Shop) -> bool:
    platform = PLATFORMS.get(shop.platform)
    return platform is not None and platform.restores_deleted_products


def on_product_viewed(session: Session, shop: Shop, event: ev.ProductViewed) -> Applied:
    """A known customer looked at a product: she is found (or made, never with consent)
    and the view counted (``product_views``). An anonymous view names nobody yet and
    is only logged.

    A browser's word is anybody's: it never grants consent, and never changes a contact
    we hold (a view naming a customer id with another address does not give her that
    address, nor merge her with its holder); it only names whose view it was."""
    product_id = identity(event.product_id, "product.id")
    if event.customer is None:
        return Applied()
    contact = storefront_contact(session, shop, event.customer)
    if contact is not None:
        count_view(session, shop, contact, product_id, event.occurred_at)
    # no subject: the engine would look at every enrollment about the product (a new
    # product's announcement to each of its buyers) at every view
    return Applied(contact)


def count_view(
    session: Session, shop: Shop, contact: Contact, product_id: str, at: datetime
) -> ProductView:
    """One more view of the product by the contact (a view told late moves first and
    last only outward; one told again at the very moment of her first or last view is
    that view, not another). One drain applies a shop's events at a time: no racing insert."""
    row = session.scalar(
        select(ProductView).where(
            ProductView.contact_id == contact.id, ProductView.product_id == product_id
        )
    )
    if row is None:
        row = ProductView(
            shop_id=shop.id,
            contact_id=contact.id,
            product_id=product_id,
            views=1,
            first_viewed_at=at,
            last_viewed_at=at,
        )
        session.add(row)
    elif at not in (row.first_viewed_at, row.last_viewed_at):
        row.views += 1
        row.first_viewed_at = min(row.first_viewed_at, at)
        row.last_viewed_at = max(row.last_viewed_at, at)
    session.flush()
    return row


def on_cart(session: Session, shop: Shop, event: ev.CartUpdated) -> Applied:
    """A cart of a person the browser named is theirs (found or made as
    ``storefront_contact`` says): it ends their browse abandonment, through the
    engine; an anonymous one is only logged."""
    contact = storefront_contact(session, shop, event.customer) if event.customer else None
    return Applied(contact, identity(event.cart_token, "cart_token"))


def on_fact(session: Session, shop: Shop, event: Any) -> Applied:
    """A fact triggerpost made (a birthday came): about a contact we hold, never a new one."""
    ref: ev.ContactRef = event.contact
    return Applied(find_contact(session, shop.id, ref.customer_id, stored_email(ref.email)))


# --- storefront visitors (see jobs.intake.visitors) --------------------------------

#: the events a storefront visitor's browser tells of
VISITOR_EVENTS = (ev.ProductViewed, ev.CartUpdated, ev.VisitorIdentified)


def visitor_bookkeeping(
    session: Session, shop: Shop, event: ev.ProductViewed | ev.CartUpdated | ev.VisitorIdentified
) -> tuple[ev.Event, list[ev.Event]]:
    """A visitor's event as the store knows it, and the events it brings.

    - anonymous, of a visitor linked to a contact: that contact's (``customer`` set);
    - anonymous, of a visitor nobody claimed: kept for the day they say who they are;
    - naming a person (an identify, or a customer with an email): the visitor is
      linked to that contact (created if new, never with consent) and, when the link
      is new, the visitor's kept events come back as the contact's, oldest first;
    - a cart of a known person, where the platform's storefront carts are its
      checkouts: followed by that checkout (``adapters.storefront.cart_checkout``).

    Kept separate from the handlers, so that a flow's own handling of these events
    (``HANDLERS``) sees them already resolved.
    """
    visitor_id = event.visitor_id
    if not visitor_id:
        return event, _as_checkout(shop, event)
    later: list[ev.Event] = []
    if event.customer is None:
        assert not isinstance(event, ev.VisitorIdentified)
        row = visitors.link_of(session, shop.id, visitor_id)
        contact = session.get(Contact, row.contact_id) if row and row.contact_id else None
        if contact is None:
            visitors.keep(session, shop.id, visitor_id, event)
            return event, []
        event = dataclasses.replace(event, customer=_named(contact))
    else:
        contact = storefront_contact(session, shop, event.customer)
        if contact is not None and visitors.link(
            session, shop.id, visitor_id, contact.id, event.occurred_at
        ):
            taken = visitors.take(session, shop.id, visitor_id, event.occurred_at)
            later = [_as_theirs(e, contact) for e in _latest_carts(taken)]
    return event, later + _as_checkout(shop, event)


def _as_theirs(event: ev.Event, contact: Contact) -> ev.Event:
    """A kept anonymous event, applied again as the contact's."""
    assert isinstance(event, ev.ProductViewed | ev.CartUpdated)
    return dataclasses.replace(event, customer=_named(contact))


def _named(contact: Contact) -> ev.Customer:
    """The contact as an event names them (ids they are found by, nothing to update)."""
    return ev.Customer(customer_id=contact.customer_id, email=contact.email)


def _latest_carts(taken: list[ev.Event]) -> list[ev.Event]:
    """Kept events to apply again: every view, and of each cart only its newest state
    (the earlier ones are history, and each would move the checkout's reminders)."""
    newest: dict[str, ev.Event] = {}
    for event in taken:
        if isinstance(event, ev.CartUpdated):
            newest[event.cart_token] = event
    return [e for e in taken if not isinstance(e, ev.CartUpdated) or newest.get(e.cart_token) is e]


def _as_checkout(shop: Shop, event: ev.Event) -> list[ev.Event]:
    """The checkout a known person's storefront cart is, where the platform says so."""
    if not isinstance(event, ev.CartUpdated) or event.customer is None:
        return []
    platform = PLATFORMS.get(shop.platform)
    if platform is None:
        return []
    context = ShopContext(domain=shop.key, currency=shop.currency, base_url=shop.base_url)
    checkout = storefront.cart_checkout(platform, context, event, event.customer)
    return [checkout] if checkout is not None else []


def storefront_contact(session: Session, shop: Shop, customer: ev.Customer) -> Contact | None:
    """The contact a browser named: by email (created, without consent, if nobody has
    it; names fill only blanks), else by a customer id we hold. A browser never
    changes who a contact is (its id or address) nor their consent."""
    email = stored_email(customer.email)
    if email:
        contact = find_contact(session, shop.id, None, email)
        if contact is None:
            contact = _create_contact(session, shop.id, None, email)
        told = ev.Customer(
            customer_id=None,
            email=email,
            first_name=customer.first_name,
            last_name=customer.last_name,
        )
        _update_fields(contact, told, authoritative=False)
        session.flush()
        return contact
    if customer.customer_id:
        return find_contact(session, shop.id, identity(customer.customer_id, "customer_id"), None)
    return None


def on_visitor_identified(session: Session, shop: Shop, event: ev.VisitorIdentified) -> Applied:
    return Applied(storefront_contact(session, shop, event.customer), None)


def on_uninstalled(session: Session, shop: Shop, event: ev.AppUninstalled) -> Applied:
    mark_uninstalled(shop, event.occurred_at)
    # the platform deletes an uninstalled app's subscriptions; a reinstall makes new ones
    session.execute(delete(Subscription).where(Subscription.shop_id == shop.id))
    enrolment.cancel_shop(session, shop.id, "shop_uninstalled", event.occurred_at)
    return Applied()


def on_data_request(session: Session, shop: Shop, event: ev.CustomerDataRequested) -> Applied:
    reference = code(event.request_id, PrivacyRequest.reference, "data request id")
    if reference != event.request_id:
        event = dataclasses.replace(event, request_id=reference)
    contact, logged = privacy.data_request(session, shop, event)
    return Applied(contact, None, logged=logged)


def on_customer_redact(session: Session, shop: Shop, event: ev.CustomerRedactRequested) -> Applied:
    contact, logged = privacy.customer_redact(session, shop, event)
    return Applied(contact, None, logged=logged)


def on_shop_redact(session: Session, shop: Shop, event: ev.ShopRedactRequested) -> Applied:
    return Applied(shop_erased=privacy.shop_redact(session, shop, event))


HANDLERS: dict[type[ev.Event], Handler] = {
    ev.CustomerCreated: on_customer,
    ev.CustomerUpdated: on_customer,
    ev.MarketingConsentChanged: on_consent,
    ev.CheckoutStarted: on_checkout,
    ev.CheckoutUpdated: on_checkout,
    ev.OrderPlaced: on_order,
    ev.OrderPaid: on_order,
    ev.OrderCancelled: on_order,
    ev.OrderRefunded: on_order,
    ev.OrderFulfilled: on_order,
    ev.ShipmentDelivered: on_delivered,
    ev.ProductCreated: on_product,
    ev.ProductUpdated: on_product,
    ev.ProductDeleted: on_product_deleted,
    ev.AppUninstalled: on_uninstalled,
    ev.CustomerDataRequested: on_data_request,
    ev.CustomerRedactRequested: on_customer_redact,
    ev.ShopRedactRequested: on_shop_redact,
    **dict.fromkeys(ev.FACTS, on_fact),
    # a storefront visitor's: resolved first by visitor_bookkeeping (see apply)
    ev.ProductViewed: on_product_viewed,
    ev.CartUpdated: on_cart,
    ev.VisitorIdentified: on_visitor_identified,
}

#: handlers a history page applies with its log rows and contact figures still
#: pending: none of them reads or moves logged events or a contact's figures (a
#: contact merged into another writes what is pending first: ``_merge_into``)
_DEFERRABLE: frozenset[Handler] = frozenset(
    {on_customer, on_consent, on_product, on_product_deleted}
)
