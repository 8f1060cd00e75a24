"""What a flow's conditions may look at: current state, read when they are asked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.events import Event
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
