"""What a flow's conditions may look at: current state, read when they are asked."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.events import Event, OrderCancelled, OrderPaid, OrderRefunded
from jobs.flows.model import Exit
from jobs.store import queries, rows
from jobs.store.db import plain
from jobs.store.models import (
    Checkout,
    CheckoutStatus,
    Contact,
    Enrollment,
    Order,
    OrderStatus,
    Product,
    Shop,
)

#: where a session keeps what :func:`products_read_once` remembers
_SALE_STATE = "triggerpost.sale_state"


def unavailable_products(session: Session, shop_id: int, product_ids: Iterable[str]) -> set[str]:
    """Of these products, the ones the store holds that are no longer for sale
    (:func:`jobs.store.models.for_sale`: sold out, taken off the shop, deleted).

    A product the store has never heard of (no product webhook came for it, and
    its platform was not asked or could not answer) is not among them: we cannot
    know, so it counts as available.
    """
    ids = {str(p) for p in product_ids if p}
    if not ids:
        return set()
    known: dict[tuple[int, str], bool] | None = session.info.get(_SALE_STATE)
    asked = ids if known is None else {p for p in ids if (shop_id, p) not in known}
    gone: set[str] = set()
    if asked:
        params = {"shop_id": shop_id, "ids": sorted(asked)}
        found = plain(session).execute(queries.PRODUCTS_OFF_SALE, params)
        gone = set(found.scalars())
    if known is None:
        return gone
    known.update(((shop_id, p), p in gone) for p in asked)
    return {p for p in ids if known[(shop_id, p)]}


@contextmanager
def products_read_once(session: Session) -> Iterator[None]:
    """Within the block, :func:`unavailable_products` asks the store about each product
    once. Only for a stretch of a transaction that writes no products: a send judges
    its checkout's items (the flow's exit) and then leaves the same ones out of its
    email. What it remembered is forgotten when the block ends."""
    if _SALE_STATE in session.info:  # an enclosing block remembers already
        yield
        return
    session.info[_SALE_STATE] = {}
    try:
        yield
    finally:
        session.info.pop(_SALE_STATE, None)


@dataclass
class FlowContext:
    session: Session
    shop: Shop
    contact: Contact | None
    subject: str
    now: datetime
    options: Mapping[str, Any]
    #: the event being handled, when there is one (trigger and exit checks)
    event: Event | None = None
    enrollment: Enrollment | None = None
    #: the contact's timezone as the engine's local time finds it (her own, her
    #: country's, else the shop's): where her "today" is
    zone: tzinfo = UTC

    def contact_today(self) -> date:
        """The date it is now where the contact lives."""
        return self.now.astimezone(self.zone).date()

    @cached_property
    def shop_zone(self) -> tzinfo:
        """The shop's timezone (UTC if it has none we can read): its calendar."""
        try:
            return ZoneInfo(self.shop.timezone) if self.shop.timezone else UTC
        except (ZoneInfoNotFoundError, ValueError):
            return UTC

    def days_ago_in_shop_calendar(self, moment: datetime) -> int:
        """How many of the shop's calendar days lie between ``moment`` and now (0: today)."""
        zone = self.shop_zone
        return (self.now.astimezone(zone).date() - moment.astimezone(zone).date()).days

    def in_flow(self, flow: str) -> bool:
        """Is the contact in ``flow`` now (an active enrollment, e.g. a welcome series)?"""
        if self.contact is None:
            return False
        params = {"shop_id": self.shop.id, "contact_id": self.contact.id, "flow": flow}
        return bool(plain(self.session).scalar(queries.CONTACT_ACTIVE_IN_FLOW, params))

    @property
    def trigger_values(self) -> Mapping[str, Any]:
        """The values the trigger kept on the enrollment (or, before there is one, none)."""
        if self.enrollment is None:
            return {}
        kept = (self.enrollment.context or {}).get("values")
        return kept if isinstance(kept, dict) else {}

    @cached_property
    def checkout(self) -> Checkout | None:
        """The checkout this enrollment is about (subject = checkout token)."""
        return rows.checkout(self.session, self.shop.id, self.subject)

    @cached_property
    def order(self) -> Order | None:
        """The order this enrollment is about (subject = order id)."""
        return rows.order(self.session, self.shop.id, self.subject)

    @cached_property
    def product(self) -> Product | None:
        """The product this enrollment is about (subject = product id)."""
        return self.session.scalar(
            select(Product).where(
                Product.shop_id == self.shop.id, Product.product_id == self.subject
            )
        )

    @cached_property
    def checkout_items_gone(self) -> bool:
        """Every item of the checkout is a product the store no longer sells.

        An item without a product (a custom item) or of a product we never
        heard of is still there as far as we know, so then it is False.
        """
        checkout = self.checkout
        items = (checkout.data.get("line_items") or []) if checkout is not None else []
        ids = [str(item["product_id"]) for item in items if item.get("product_id")]
        if not items or len(ids) < len(items):
            return False
        return set(ids) <= unavailable_products(self.session, self.shop.id, ids)

    def order_open(self) -> bool:
        """The order is known, not a test, and neither cancelled nor refunded."""
        order = self.order
        return (
            order is not None
            and not order.test
            and order.status not in (OrderStatus.CANCELLED, OrderStatus.REFUNDED)
        )

    def order_is(self, status: OrderStatus) -> bool:
        return self.order is not None and self.order.status == status

    def checkout_completed(self) -> bool:
        checkout = self.checkout
        return checkout is not None and checkout.status == CheckoutStatus.COMPLETED

    def ordered_since(self, since: datetime) -> bool:
        """Did the contact place any real order (not a test) at or after ``since``?"""
        if self.contact is None:
            return False
        params = {"shop_id": self.shop.id, "contact_id": self.contact.id, "since": since}
        return bool(plain(self.session).scalar(queries.CONTACT_ORDERED_SINCE, params))

    def ever_ordered(self) -> bool:
        """Did the contact ever place a real order (not a test), even one since cancelled
        or refunded?"""
        if self.contact is None:
            return False
        params = {"shop_id": self.shop.id, "contact_id": self.contact.id}
        return bool(plain(self.session).scalar(queries.CONTACT_EVER_ORDERED, params))

    def paid_orders(self) -> int:
        """How many orders the contact paid for (not tests, not cancelled or refunded)."""
        if self.contact is None:
            return 0
        params = {"shop_id": self.shop.id, "contact_id": self.contact.id}
        return int(plain(self.session).scalar(queries.CONTACT_PAID_ORDERS, params) or 0)

    def enrollments_in(self, flow: str) -> int:
        """How many times ``flow`` enrolled the contact before (any outcome)."""
        if self.contact is None:
            return 0
        params = {"shop_id": self.shop.id, "contact_id": self.contact.id, "flow": flow}
        return int(plain(self.session).scalar(queries.CONTACT_ENROLLMENTS_IN_FLOW, params) or 0)

    def email_live_for_subject(self, flow: str) -> bool:
        """Has ``flow``'s enrollment about this same subject (this order) an email
        planned, on its way or sent? (False once it was skipped, expired or ended.)"""
        params = {"shop_id": self.shop.id, "flow": flow, "subject": self.subject}
        return bool(plain(self.session).scalar(queries.SUBJECT_FLOW_EMAIL_LIVE, params))

    @property
    def resumed_by(self) -> str | None:
        """The subject of the event that ended the enrollment's ``WaitForEvent`` (the
        order a welcome series waited for), once one has."""
        if self.enrollment is None:
            return None
        value = self.enrollment.context.get("resumed_by")
        return str(value) if value is not None else None

    def resumed_by_order_is(self, status: OrderStatus) -> bool:
        """The order that ended the wait has this status now."""
        subject = self.resumed_by
        if subject is None:
            return False
        order = rows.order(self.session, self.shop.id, subject)
        return order is not None and order.status == status

    def step_planned_since_order(self, flow: str, step: str) -> bool:
        """Did ``flow``'s ``step`` plan the contact an email due after this order was
        placed, or send one since, that is still planned, on its way or sent (not
        one skipped, expired or ended)?

        Read from the email's first due time and its sending time (the engine's
        clock), not from when its row was written: a step planned due after the
        order is one the order woke, or a later one's.
        """
        order = self.order
        if self.contact is None or order is None:
            return False
        params = {
            "shop_id": self.shop.id,
            "contact_id": self.contact.id,
            "flow": flow,
            "step": step,
            "since": order.placed_at,
        }
        return bool(plain(self.session).scalar(queries.CONTACT_STEP_PLANNED_SINCE, params))


def paid_order_id(event: Event) -> str | None:
    """The subject of a flow about an order that was paid: that order."""
    return event.order.order_id if isinstance(event, OrderPaid) else None


#: an order's flow ends when its order is cancelled or refunded before the email goes
ORDER_ENDED: tuple[Exit, ...] = (
    Exit(
        "order_cancelled",
        lambda ctx: ctx.order_is(OrderStatus.CANCELLED),
        on=(OrderCancelled,),
    ),
    Exit(
        "order_refunded",
        lambda ctx: ctx.order_is(OrderStatus.REFUNDED),
        on=(OrderRefunded,),
    ),
)
