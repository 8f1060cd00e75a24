"""Across flows: a contact who sets off five flows in one week gets at most what the
shop's caps allow, the higher priority first, and no cart reminder after she bought.

Maja, a Monday at 10:00 in Stockholm: she signs up at a checkout and leaves it (the
welcome and cart recovery), orders the next afternoon (the welcome's ideas for her first
order, or a thank-you), her parcel is delivered on Thursday (a review request a week
later), and on Friday a new product of the kind she bought is published (an
announcement). The shop keeps the default caps: 3 marketing emails in any 7 days, 16
hours apart. The flows are the built-in ones; that the caps order any two flows by
priority is shown with a made-up flow in ``tests/jobs/test_engine_flows.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

import pytest

from adapters import events as ev
from emails.content import MessageKind
from jobs.engine.policy import Policy
from jobs.runtime import Runtime
from jobs.store.models import MessageState, Shop
from tests.jobs.engine_support import SHOP, T0, Harness, customer, hours, sek

HOME = f"https://{SHOP}"
HAT = ev.LineItem("Ullmössa", 1, sek("299.00"), product_id="p-hat")
MAJA = customer("maja@example.se", customer_id="maja")
MONDAY = T0  # 10:00 in Stockholm
ORDERED = T0 + hours(29)  # Tuesday 15:00
DELIVERED = T0 + hours(72)  # Thursday 10:00
PUBLISHED = T0 + hours(96)  # Friday 10:00


def product(product_id: str, title: str, at: datetime) -> ev.Product:
    return ev.Product(
        product_id=product_id,
        title=title,
        updated_at=at,
        url=f"{HOME}/products/{product_id}",
        handle=product_id,
        price=sek("299.00"),
        status="active",
        tags=("ull", "vinter"),
    )


def her_order(at: datetime) -> ev.Order:
    return ev.Order(
        order_id="o-1",
        name="#1001",
        customer=MAJA,
        email=MAJA.email,
        total=sek("299.00"),
        line_items=(HAT,),
        placed_at=ORDERED,
        updated_at=at,
        checkout_token="tok-maja",
        status_url=f"{HOME}/orders/o-1",
    )


def maja_s_week(shop: Harness, *, orders: bool = True) -> None:
    """Her week, then three more for what it deferred."""
    catalogue = T0 - timedelta(days=30)
    shop.at(catalogue, ev.ProductUpdated(catalogue, product("p-hat", "Ullmössa", catalogue)))
    cart = ev.Checkout(
        token="tok-maja",
        customer=MAJA,
        email=MAJA.email,
        recovery_url=f"{HOME}/checkouts/tok-maja/recover",
        total=sek("299.00"),
        line_items=(HAT,),
        updated_at=MONDAY,
        created_at=MONDAY,
    )
    shop.at(MONDAY, ev.CheckoutUpdated(MONDAY, cart))
    shop.at(MONDAY, ev.CustomerCreated(MONDAY, MAJA))  # made at the checkout, subscribed
    if orders:
        shop.at(ORDERED, ev.OrderPlaced(ORDERED, her_order(ORDERED)))
        shop.at(ORDERED, ev.OrderPaid(ORDERED, her_order(ORDERED)))
        shipped = T0 + hours(48)
        shop.at(shipped, ev.OrderFulfilled(shipped, her_order(shipped)))
        shop.at(DELIVERED, ev.ShipmentDelivered(DELIVERED, order_id="o-1", email=MAJA.email))
    socks = product("p-socks", "Stickade sockor", PUBLISHED)
    shop.at(PUBLISHED, ev.ProductCreated(PUBLISHED, socks))
    shop.run(T0 + timedelta(days=28))


@pytest.fixture
def shop(runtime: Runtime) -> Harness:
    return Harness(runtime)


def marketing_sent(shop: Harness) -> list[tuple[datetime, str, str]]:
    return sorted(
        (m.sent_at, m.flow, m.step)
        for m in shop.messages()
        if m.kind == MessageKind.MARKETING and m.state == MessageState.SENT and m.sent_at
    )


def outcome(shop: Harness, flow: str, step: str) -> list[str]:
    return [
        row["outcome"] + (f":{row['reason']}" if row["reason"] else "")
        for row in shop.log()
        if (row["flow"], row["step"]) == (flow, step) and row["outcome"] != "planned"
    ]


def test_maja_never_gets_more_marketing_emails_than_the_caps_allow(shop: Harness) -> None:
    maja_s_week(shop)
    with shop.runtime.sessions() as session:
        policy = Policy.of(session.get_one(Shop, shop.shop_id))
    assert (policy.marketing_per_window, policy.window, policy.min_gap) == (
        3,
        timedelta(days=7),
        hours(16),
    )
    planned = [m for m in shop.messages() if m.kind == MessageKind.MARKETING]
    times = [at for at, _, _ in marketing_sent(shop)]
    assert (len(planned), len(times)) == (8, 5)  # of the eight her week planned, five went
    for at in times:  # every rolling window, as the cap counts it: (at - 7 days, at]
        assert len([t for t in times if at - policy.window < t <= at]) <= 3
    assert all(later - earlier >= policy.min_gap for earlier, later in pairwise(times))


def test_her_cart_reminders_go_first_and_her_welcome_waits_for_them(shop: Harness) -> None:
    maja_s_week(shop)
    assert marketing_sent(shop)[:3] == [
        (MONDAY + hours(1), "cart_recovery", "email_1"),  # an hour after she left
        (MONDAY + hours(24), "cart_recovery", "email_2"),
        # the welcome came due at once, but a reminder (higher priority) was due within
        # a gap of it, and then the next: it went in the first morning a gap after both
        (T0 + hours(24 + 22), "welcome", "welcome_1"),  # Wednesday 08:00
    ]
    assert outcome(shop, "welcome", "welcome_1") == ["deferred:cap:priority", "sent"]
    deferred = next(r for r in shop.log() if (r["step"], r["outcome"]) == ("welcome_1", "deferred"))
    assert deferred["until"] == (T0 + hours(24 + 22)).isoformat()


def test_once_she_ordered_no_reminder_for_that_cart_goes(shop: Harness) -> None:
    maja_s_week(shop)
    assert outcome(shop, "cart_recovery", "email_3") == ["exited:checkout_completed"]
    ended = [r for r in shop.log() if r["flow"] == "cart_recovery" and r["step"] is None]
    assert [(r["outcome"], r["reason"], r["at"]) for r in ended][-1] == (
        "exited",
        "checkout_completed",
        ORDERED.isoformat(),
    )
    sent_after = [
        s for at, flow, s in marketing_sent(shop) if flow == "cart_recovery" and at > ORDERED
    ]
    assert sent_after == []


def test_what_her_full_week_has_no_room_for_expires_or_waits_for_the_next(shop: Harness) -> None:
    maja_s_week(shop)
    # the ideas for her first order were due Wednesday 15:00: too close to the welcome,
    # and then the week was full until Monday, past their two days: the full week is
    # what they expired of
    assert outcome(shop, "welcome", "welcome_related") == ["expired:cap:weekly"]
    # so the thank-you for that order, due beside them, did not stand aside for them;
    # the week had no room for it either
    assert outcome(shop, "thank_you", "thanks") == ["expired:cap:weekly"]
    # the announcement can wait: it goes when Monday's reminder leaves the window
    assert outcome(shop, "new_product", "announcement") == ["deferred:cap:weekly", "sent"]
    # and the review request on its day, a week after the parcel came
    assert marketing_sent(shop)[3:] == [
        (MONDAY + timedelta(days=7, hours=1), "new_product", "announcement"),
        (DELIVERED + timedelta(days=7), "review_request", "after_delivery"),
    ]


def test_if_she_never_orders_the_last_slot_of_her_week_is_kept_for_the_third_reminder(
    shop: Harness,
) -> None:
    """Two reminders went on Monday and Tuesday; the welcome, due Wednesday morning,
    would take the week's third slot from the last reminder (higher priority, with its
    code) due Thursday: it waits behind it instead, with the reason."""
    maja_s_week(shop, orders=False)
    assert outcome(shop, "cart_recovery", "email_3") == ["sent"]
    assert [(flow, step) for _, flow, step in marketing_sent(shop)[:3]] == [
        ("cart_recovery", "email_1"),
        ("cart_recovery", "email_2"),
        ("cart_recovery", "email_3"),
    ]
    assert "deferred:cap:priority" in outcome(shop, "welcome", "welcome_1")
