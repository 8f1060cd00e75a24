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

    def checkout_completed(self) -> bool:
        checkout = self.checkout
        return checkout is not None and checkout.status == CheckoutStatus.COMPLETED

    def ordered_since(self, since: datetime) -> bool:
        """Did the contact place any real order (not a test) at or after ``since``?"""
        if self.contact is None:
            return False
        params = {"shop_id": self.shop.id, "contact_id": self.contact.id, "since": since}
        return bool(plain(self.session).scalar(queries.CONTACT_ORDERED_SINCE, params))
