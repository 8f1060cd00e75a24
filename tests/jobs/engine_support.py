"""Building blocks for engine tests: a shop, its people and events, on a virtual clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from adapters import events as ev
from jobs.flows import registry
from jobs.flows.model import Flow
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.sending.pipeline import Sender
from jobs.simulator import DiscountBook, Outbox, SimulatedCourier, Simulator, timeline
from jobs.store.models import Message, Shop

SHOP = "engine-test.myshopify.com"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Stockholm


def sek(amount: str) -> ev.Money:
    return ev.Money(Decimal(amount), "SEK")


def customer(
    email: str = "anna@example.se",
    *,
    customer_id: str | None = "c1",
    subscribed: bool = True,
    timezone: str | None = None,
    country: str | None = "SE",
    at: datetime = T0,
) -> ev.Customer:
    consent = ev.Consent(
        ev.ConsentState.SUBSCRIBED if subscribed else ev.ConsentState.NOT_SUBSCRIBED,
        "test",
        at,
    )
    return ev.Customer(
        customer_id=customer_id,
        email=email,
        first_name="Anna",
        timezone=timezone,
        address=ev.Address(country_code=country) if country else None,
        consent=consent,
        updated_at=at,
    )


def checkout(
    token: str, at: datetime, who: ev.Customer, *, created: datetime | None = None
) -> ev.CheckoutUpdated:
    return ev.CheckoutUpdated(
        occurred_at=at,
        checkout=ev.Checkout(
            token=token,
            customer=who,
            email=who.email,
            recovery_url=f"https://{SHOP}/checkouts/{token}/recover",
            total=sek("499.00"),
            line_items=(ev.LineItem("Ullmössa", 1, sek("499.00"), product_id="p1"),),
            updated_at=at,
            created_at=created or at,
        ),
    )


def order(order_id: str, at: datetime, who: ev.Customer, token: str | None) -> ev.OrderPlaced:
    return ev.OrderPlaced(
        occurred_at=at,
        order=ev.Order(
            order_id=order_id,
            name=f"#{order_id}",
            customer=who,
            email=who.email,
            total=sek("499.00"),
            line_items=(),
            placed_at=at,
            updated_at=at,
            checkout_token=token,
        ),
    )


class Harness:
    """A shop on a virtual clock, with the outbox and decision log to look at."""

    def __init__(self, runtime: Runtime, *, timezone: str = "Europe/Stockholm") -> None:
        self.runtime = runtime
        with runtime.sessions.begin() as session:
            shop = add_shop(session, runtime.secrets, "shopify", SHOP, currency="SEK")
            shop.timezone = timezone
            self.shop_id = shop.id
        self.outbox = Outbox()
        self.discounts = DiscountBook()
        self.sender = Sender(
            runtime,
            SimulatedCourier(self.outbox),
            discounts=self.discounts,
            hand_off=lambda w: None,
        )
        self.sim = Simulator(self.sender, self.shop_id, T0)

    def settings(self, **blob: Any) -> None:
        with self.runtime.sessions.begin() as session:
            shop = session.get_one(Shop, self.shop_id)
            shop.settings = {**shop.settings, **blob}

    def at(self, when: datetime, event: ev.Event) -> None:
        self.sim.apply(event, when)

    def run(self, until: datetime) -> None:
        self.sim.run_until(until)

    def sent(self) -> list[tuple[str, str]]:
        return [(c.email_to, c.subject) for c in self.outbox.sent]

    def messages(self) -> list[Message]:
        with self.runtime.sessions() as session:
            return list(
                session.scalars(
                    select(Message).where(Message.shop_id == self.shop_id).order_by(Message.id)
                )
            )

    def log(self) -> list[dict[str, Any]]:
        with self.runtime.sessions() as session:
            return timeline(session, self.shop_id)

    def outcomes(self, step: str | None = None) -> list[str]:
        return [
            row["outcome"] + (f":{row['reason']}" if row["reason"] else "")
            for row in self.log()
            if step is None or row["step"] == step
        ]


@contextmanager
def extra_flow(flow: Flow) -> Iterator[Flow]:
    registry.register(flow)
    try:
        yield flow
    finally:
        registry.unregister(flow.name)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)
