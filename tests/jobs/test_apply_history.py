"""A history page applied at once leaves the rows its events leave applied one by one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from adapters import events as ev
from adapters.platform import translate
from adapters.registry import PLATFORMS
from jobs import shop_settings
from jobs.intake import apply
from jobs.intake.deliveries import shop_context
from jobs.merchant.shops import add_shop
from jobs.platforms import woocommerce
from jobs.runtime import Runtime
from jobs.store.models import (
    Base,
    Checkout,
    Contact,
    CountedOrder,
    Order,
    OrderProduct,
    Product,
    ProductPair,
    ProductSale,
    Shop,
    StoredEvent,
)
from tests.jobs.test_history import NOW, customer, order

#: the rows compared, with what names a row besides its own ids
TABLES = (
    Contact,
    Order,
    OrderProduct,
    Checkout,
    Product,
    ProductSale,
    ProductPair,
    CountedOrder,
    StoredEvent,
)
#: what differs between two shops however alike their stories are
OWN = {"id", "shop_id", "created_at", "updated_at"}


def a_shop(runtime: Runtime, url: str) -> int:
    with runtime.sessions.begin() as session:
        shop = add_shop(
            session,
            runtime.secrets,
            "woocommerce",
            url,
            webhook_secret="a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6",
            consumer_key="ck_test_key",
            consumer_secret="cs_test_secret",
            currency="SEK",
        )
        shop_settings.update(session, shop, {"birthday": {"meta_key": "billing_birth_date"}})
        return shop.id


def past(session: Session, shop: Shop, topic: str, items: list[dict[str, Any]]) -> list[ev.Event]:
    """The events the shop's history source makes of these items."""
    context = shop_context(session, shop, NOW)
    events, _, skipped = woocommerce._history_events(
        PLATFORMS["woocommerce"], topic, items, 0, context
    )
    assert skipped == 0
    return events


def webhook(session: Session, shop: Shop, payload: dict[str, Any]) -> None:
    for event in translate(
        PLATFORMS["woocommerce"], "order.updated", payload, shop_context(session, shop, NOW)
    ):
        apply.apply(session, shop, event, delivery_id=None)


def snapshot(session: Session, shop_id: int) -> dict[str, list[str]]:
    """Every row of the shop, named by what it is about rather than by its ids."""
    contacts = {c.id: (c.customer_id, c.email) for c in session.scalars(select(Contact))}
    orders = {o.id: o.order_id for o in session.scalars(select(Order))}
    found: dict[str, list[str]] = {}
    for model in TABLES:
        table: Table = Base.metadata.tables[model.__tablename__]
        listed = []
        for row in session.execute(select(table).where(table.c.shop_id == shop_id)).mappings():
            named = {k: v for k, v in row.items() if k not in OWN}
            if "contact_id" in named:
                named["contact_id"] = contacts.get(named["contact_id"])
            if "order_row_id" in named:
                named["order_row_id"] = orders.get(named["order_row_id"])
            listed.append(repr(sorted(named.items())))
        found[model.__tablename__] = sorted(listed)
    return found


def story() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Customers, their past orders, and webhooks that came first: a newer version
    of one order, the checkout of another."""
    placed = NOW - timedelta(days=40)
    customers = [customer(n) for n in (1, 2, 3, 4)]
    guest = order(106, 0, placed)
    guest["billing"]["email"] = "gast@example.se"
    # a guest order in her new address, then an order of hers from it: one contact
    moved = order(108, 0, placed + timedelta(days=1))
    moved["billing"]["email"] = "ny4@example.se"
    hers = order(109, 4, placed + timedelta(days=2))
    hers["billing"]["email"] = "ny4@example.se"
    orders = [
        order(101, 1, placed),
        order(102, 1, placed + timedelta(days=1), status="processing"),
        order(103, 2, placed, status="cancelled"),
        order(104, 2, placed + timedelta(days=3), status="refunded"),
        order(105, 3, placed, status="on-hold") | {"date_paid_gmt": None},
        guest,
        order(107, 3, placed + timedelta(days=5)),
        moved,
        hers,
        # the same order again further on, refunded since: the newer version wins
        order(107, 3, placed + timedelta(days=5), status="refunded", modified=NOW),
        order(110, 1, placed + timedelta(days=9), total="10.00"),
        order(111, 2, placed + timedelta(days=9)),
    ]
    newer = order(
        102, 1, placed + timedelta(days=1), total="300.00", modified=NOW - timedelta(hours=1)
    )
    checkout = order(111, 2, placed + timedelta(days=9), status="pending")
    return customers, orders, [newer, checkout]


@pytest.mark.parametrize("pages", [1, 3])
def test_a_page_applied_at_once_leaves_the_rows_of_its_events_applied_one_by_one(
    runtime: Runtime, pages: int
) -> None:
    one_by_one = a_shop(runtime, "https://ullboden.se")
    at_once = a_shop(runtime, "https://ullgarden.se")
    customers, orders, webhooks = story()
    for shop_id in (one_by_one, at_once):
        with runtime.sessions.begin() as session:
            for payload in webhooks:
                webhook(session, session.get_one(Shop, shop_id), payload)
    for n in range(pages):
        with runtime.sessions.begin() as session:
            shop = session.get_one(Shop, one_by_one)
            events = past(session, shop, "customer.updated", customers) if n == 0 else []
            events += past(session, shop, "order.updated", orders[n::pages])
            for event in events:
                apply.apply(session, shop, event, delivery_id=None, historical=True)
        with runtime.sessions.begin() as session:
            shop = session.get_one(Shop, at_once)
            events = past(session, shop, "customer.updated", customers) if n == 0 else []
            events += past(session, shop, "order.updated", orders[n::pages])
            assert len(apply.apply_history(session, shop, events)) == len(events)
    with runtime.sessions() as session:
        alone, together = snapshot(session, one_by_one), snapshot(session, at_once)
    for table in alone:
        assert together[table] == alone[table], table
    # the story did what it tells: a merge, a refund after payment, the webhook's total
    assert len(alone["contacts"]) == 5  # four customers and the guest
    assert "'completed'" in alone["checkouts"][0]
    assert len(alone["events"]) > len(orders)
    assert len(alone["order_products"]) >= len(orders) - 1  # each order's products, once


def test_a_page_at_once_logs_every_event_in_its_order_and_counts_nothing_twice(
    runtime: Runtime,
) -> None:
    shop_id = a_shop(runtime, "https://ullboden.se")
    customers, orders, _ = story()
    for _ in range(2):  # a page applied again (an import resumed) changes nothing but the log
        with runtime.sessions.begin() as session:
            shop = session.get_one(Shop, shop_id)
            events = past(session, shop, "customer.updated", customers)
            events += past(session, shop, "order.updated", orders)
            apply.apply_history(session, shop, events)
    with runtime.sessions() as session:
        logged = session.scalars(select(StoredEvent.type).order_by(StoredEvent.id)).all()
        assert logged == [type(e).__name__ for e in events] * 2
        regular = session.scalars(select(Contact).where(Contact.customer_id == "1")).one()
        # 101 and 110 paid, 102 paid too (the page's version): counted once each
        assert regular.orders_count == 3
        counted = session.scalars(select(CountedOrder)).all()
        assert len(counted) == len({c.order_row_id for c in counted})
