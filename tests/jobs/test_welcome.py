"""The welcome series through the simulator with real composed emails: a new
subscriber's welcome, the second email or the ideas for their first order, and
every case where it must not start."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from adapters import events as ev
from jobs.runtime import Runtime
from jobs.store.models import MessageState, NonEnrolment
from tests.jobs.engine_support import T0, customer, sek
from tests.jobs.test_flow_extensions import HOME
from tests.jobs.test_order_flows import EVENING, MORNING, day, outcomes_of, targets
from tests.jobs.test_recommendations import Rendering, product


@pytest.fixture
def shop(runtime: Runtime) -> Rendering:
    shop = Rendering(runtime)
    shop.catalogue(
        product("hat", collections=("winter",)),
        product("scarf", collections=("winter",)),
        product("mug", collections=("kitchen",)),
        product("lamp", collections=("home",)),
    )
    # what other customers bought: the scarf goes with the hat; the mug sells best
    buy(shop, "o1", customer("x@example.se", customer_id="x"), T0, "hat", "scarf")
    buy(shop, "o2", customer("y@example.se", customer_id="y"), T0, "mug")
    buy(shop, "o3", customer("z@example.se", customer_id="z"), T0, "mug", "lamp")
    return shop


def an_order(
    order_id: str,
    who: ev.Customer,
    at: datetime,
    *products: str,
    updated: datetime | None = None,
    test: bool = False,
) -> ev.Order:
    """Placed at ``at`` (last changed at ``updated``), of these products."""
    lines = tuple(ev.LineItem(f"Product {p}", 1, sek("199.00"), product_id=p) for p in products)
    return ev.Order(
        order_id=order_id,
        name=f"#{order_id}",
        customer=who,
        email=who.email,
        total=sek("199.00"),
        line_items=lines,
        placed_at=at,
        updated_at=updated or at,
        status_url=f"{HOME}/orders/{order_id}/status",
        test=test,
    )


def buy(shop: Rendering, order_id: str, who: ev.Customer, at: datetime, *products: str) -> None:
    """Placed and paid at ``at``."""
    data = an_order(order_id, who, at, *products)
    shop.at(at, ev.OrderPlaced(at, data))
    shop.at(at, ev.OrderPaid(at, data))


def signed_up(shop: Rendering, who: ev.Customer, at: datetime) -> None:
    shop.at(at, ev.CustomerCreated(at, who))


def anna(*, subscribed: bool = True) -> ev.Customer:
    return customer("anna@example.se", customer_id="anna", subscribed=subscribed)


def welcome_steps(shop: Rendering) -> list[tuple[str, str]]:
    return [(m.step, m.state) for m in shop.messages() if m.flow == "welcome"]


def not_started(shop: Rendering) -> list[tuple[str, str | None]]:
    with shop.runtime.sessions() as session:
        rows = session.scalars(select(NonEnrolment).where(NonEnrolment.flow == "welcome"))
        return [(row.reason, row.detail) for row in rows]


def mine(shop: Rendering) -> list[str]:
    return [e.subject for e in shop.emails() if e.to == "anna@example.se"]


def test_a_new_subscribed_customer_is_welcomed_at_once_and_shown_favourites_on_day_four(
    shop: Rendering,
) -> None:
    signed_up(shop, anna(), day(0))
    shop.run(day(10))
    first, second = [e for e in shop.emails() if e.to == "anna@example.se"]
    assert first.subject.startswith("Welcome to ")
    assert first.date == day(0)
    assert "Thanks for joining" in first.text
    # no purchases of hers yet: the shop's bestsellers, then the button to the shop
    assert targets(shop, first)[0] == f"{HOME}/products/mug"
    assert targets(shop, first)[-1] == HOME
    assert shop.discounts.issued == {}  # no code unless the shop turns it on
    assert second.subject == "Our customers' favourites"
    assert second.date == day(4)
    assert "You may also like" in second.text
    assert "Product mug" in second.text  # the shop's bestseller
    assert welcome_steps(shop) == [
        ("welcome_1", MessageState.SENT),
        ("welcome_2", MessageState.SENT),
    ]
    assert "timed_out" in outcomes_of(shop, "welcome")


def test_a_subscriber_whose_language_nobody_knows_is_welcomed_in_the_one_the_shop_chose(
    shop: Rendering,
) -> None:
    shop.settings(branding={"language": "sv"})
    signed_up(shop, anna(), day(0))
    shop.run(day(1))
    (email,) = [e for e in shop.emails() if e.to == "anna@example.se"]
    assert email.subject.startswith("Välkommen till ")
    assert "Välkommen!" in email.text


def test_a_customer_created_at_night_is_welcomed_at_eight_in_the_morning(shop: Rendering) -> None:
    signed_up(shop, anna(), day(0, EVENING))
    shop.run(day(2))
    (email,) = [e for e in shop.emails() if e.to == "anna@example.se"]
    assert email.date == day(1, MORNING)
    assert "deferred:quiet_hours" in outcomes_of(shop, "welcome")


def test_a_first_order_on_day_two_brings_related_products_a_day_later_and_no_second_email(
    shop: Rendering,
) -> None:
    signed_up(shop, anna(), day(0))
    buy(shop, "a1", anna(), day(2), "hat")
    shop.run(day(10))
    first, related = [e for e in shop.emails() if e.to == "anna@example.se"]
    assert first.date == day(0)
    assert related.subject == "Picked for you"
    assert related.date == day(3)  # a day after her order
    assert "Goes well with your order" in related.html
    assert "You may also like" in related.text
    assert "Product scarf" in related.text  # bought with the hat by others: first
    assert "Product hat" not in related.text  # what she bought herself
    assert f"{HOME}/products/scarf" in targets(shop, related)
    assert welcome_steps(shop) == [
        ("welcome_1", MessageState.SENT),
        ("welcome_related", MessageState.SENT),
    ]
    assert "resumed:event:OrderPlaced" in outcomes_of(shop, "welcome")


def test_a_test_order_she_places_does_not_count_as_her_first_order(shop: Rendering) -> None:
    """The merchant tries the checkout with her address: still no real order, so
    day four brings the favourites, not ideas for an order that is not one."""
    signed_up(shop, anna(), day(0))
    test_order = an_order("t1", anna(), day(2), "hat", test=True)
    shop.at(day(2), ev.OrderPlaced(day(2), test_order))
    shop.at(day(2), ev.OrderPaid(day(2), test_order))
    shop.run(day(10))
    assert [step for step, _ in welcome_steps(shop)] == ["welcome_1", "welcome_2"]
    assert "timed_out" in outcomes_of(shop, "welcome")
    assert not any(o.startswith("resumed") for o in outcomes_of(shop, "welcome"))


@pytest.mark.parametrize(
    ("ended", "reason"),
    [(ev.OrderCancelled, "order_cancelled"), (ev.OrderRefunded, "order_refunded")],
)
def test_her_first_order_called_off_before_the_ideas_go_ends_the_series(
    shop: Rendering, ended: type[ev.OrderCancelled] | type[ev.OrderRefunded], reason: str
) -> None:
    signed_up(shop, anna(), day(0))
    buy(shop, "a1", anna(), day(2), "hat")
    at = day(2, timedelta(hours=5))
    called_off = an_order("a1", anna(), day(2), "hat", updated=at)
    shop.at(at, ended(at, called_off))
    shop.run(day(10))
    assert mine(shop) == [mine(shop)[0]]  # the welcome only
    assert welcome_steps(shop) == [
        ("welcome_1", MessageState.SENT),
        ("welcome_related", MessageState.EXITED),
    ]
    assert f"exited:{reason}" in outcomes_of(shop, "welcome")


def test_another_customers_order_does_not_count_as_hers(shop: Rendering) -> None:
    signed_up(shop, anna(), day(0))
    # his order's id is her customer id: still not hers
    buy(shop, "anna", customer("bo@example.se", customer_id="bo"), day(2), "hat")
    shop.run(day(10))
    assert [step for step, _ in welcome_steps(shop)] == ["welcome_1", "welcome_2"]


def test_a_customer_created_without_consent_is_not_welcomed(shop: Rendering) -> None:
    signed_up(shop, anna(subscribed=False), day(0))
    shop.run(day(10))
    assert mine(shop) == []
    assert welcome_steps(shop) == []
    assert not_started(shop) == [("condition_not_met", "subscribed")]


def test_a_contact_who_already_ordered_is_not_welcomed(shop: Rendering) -> None:
    buy(shop, "a1", customer("anna@example.se", customer_id=None), day(0), "hat")  # as a guest
    signed_up(shop, anna(), day(1))
    shop.run(day(10))
    # her order is thanked for (the thank-you flow); no welcome comes
    assert mine(shop) == ["Thank you for your order"]
    assert welcome_steps(shop) == []
    assert not_started(shop) == [("already_over", "already_customer")]


def test_an_order_from_before_the_welcome_arriving_late_ends_it(shop: Rendering) -> None:
    signed_up(shop, anna(), day(1))
    buy(shop, "a1", anna(), day(0), "hat")  # placed the day before, told us now
    shop.run(day(10))
    assert [step for step, _ in welcome_steps(shop)] == ["welcome_1"]
    assert "exited:already_customer" in outcomes_of(shop, "welcome")


def test_a_contact_without_orders_who_subscribes_is_welcomed_then(shop: Rendering) -> None:
    signed_up(shop, anna(subscribed=False), day(0))
    consent = ev.Consent(ev.ConsentState.SUBSCRIBED, "newsletter", day(1))
    shop.at(day(1), ev.MarketingConsentChanged(day(1), "anna", "anna@example.se", consent))
    shop.run(day(10))
    assert [e.date for e in shop.emails() if e.to == "anna@example.se"] == [day(1), day(5)]
    assert [step for step, _ in welcome_steps(shop)] == ["welcome_1", "welcome_2"]


def test_a_welcome_switched_off_welcomes_nobody_and_says_why(shop: Rendering) -> None:
    shop.settings(flows={"welcome": {"enabled": False}})
    signed_up(shop, anna(), day(0))
    shop.run(day(10))
    assert mine(shop) == []
    assert outcomes_of(shop, "welcome") == []
    assert not_started(shop) == [("flow_off", None)]


def test_a_welcome_code_the_shop_switched_on_comes_in_the_first_email(shop: Rendering) -> None:
    shop.settings(flows={"welcome": {"discount": True, "discount_percent": 15}})
    signed_up(shop, anna(), day(0))
    shop.run(day(10))
    first, second = [e for e in shop.emails() if e.to == "anna@example.se"]
    codes = [m.discount_code for m in shop.messages() if m.flow == "welcome"]
    assert codes[0] is not None
    assert codes[1:] == [None]  # only the welcome carries it
    assert codes[0] in first.text
    assert codes[0] not in second.text
    request = shop.discounts.issued[codes[0]]
    assert request.percent == Decimal(15)
    assert request.expires_at == first.date + timedelta(days=14)


def test_replayed_events_welcome_her_once(shop: Rendering) -> None:
    for _ in range(2):
        signed_up(shop, anna(), day(0))
        consent = ev.Consent(ev.ConsentState.SUBSCRIBED, "newsletter", day(0))
        shop.at(day(0), ev.MarketingConsentChanged(day(0), "anna", "anna@example.se", consent))
    for _ in range(2):
        buy(shop, "a1", anna(), day(2), "hat")
    shop.run(day(10))
    assert [step for step, _ in welcome_steps(shop)] == ["welcome_1", "welcome_related"]
    assert len(mine(shop)) == 2
    assert not_started(shop) == [("already_enrolled", None)]
