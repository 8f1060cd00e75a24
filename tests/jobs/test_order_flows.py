"""The flows about an order, through the simulator with real composed emails: the
review request, the loyalty reward and the delivered notice."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from adapters import events as ev
from emails.outgoing import OutgoingEmail
from jobs import shop_settings
from jobs.flows import registry
from jobs.flows.model import (
    Hours,
    Label,
    Option,
    ProductLine,
    SubjectKind,
    SubjectView,
    WaitForEvent,
)
from jobs.flows.review_request import review_link
from jobs.runtime import Runtime
from jobs.sending import links
from jobs.store.models import MessageState
from tests.jobs.engine_support import T0, customer, sek
from tests.jobs.test_flow_extensions import HOME, Rendering

#: March in Stockholm is UTC+1: the shop's quiet hours (21:00-08:00) in UTC
EVENING = timedelta(hours=20, minutes=30)  # 21:30 in Stockholm
MORNING = timedelta(hours=7)  # 08:00 in Stockholm

HAT = ev.LineItem("Ullmössa", 1, sek("299.00"), product_id="p-hat")
SCARF = ev.LineItem("Halsduk", 2, sek("199.00"), product_id="p-scarf")
WRAP = ev.LineItem("Presentinslagning", 1, sek("20.00"))  # a custom item: no product


def day(n: int, at: timedelta = timedelta(hours=9)) -> datetime:
    """Midnight UTC of T0's day plus n days, at ``at`` (09:00 UTC: 10:00 in Stockholm)."""
    return T0.replace(hour=0) + timedelta(days=n) + at


@pytest.fixture
def shop(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Rendering:
    # every paid order here would also be thanked: that flow has its own tests
    # (tests/jobs/test_thank_you.py, a loyalty milestone among them)
    monkeypatch.delitem(registry.flows(), "thank_you")
    shop = Rendering(runtime)
    for product_id, title, handle in (
        ("p-hat", "Ullmössa", "ullmossa"),
        ("p-scarf", "Halsduk", "halsduk"),
    ):
        product = ev.Product(
            product_id=product_id,
            title=title,
            updated_at=T0,
            url=f"{HOME}/products/{handle}",
            handle=handle,
            image_url=f"https://cdn.example/{product_id}.jpg",
            price=sek("299.00"),
            status="active",
        )
        shop.at(T0, ev.ProductCreated(T0, product))
    return shop


def order(
    order_id: str,
    who: ev.Customer,
    at: datetime,
    *items: ev.LineItem,
    placed: datetime | None = None,
    test: bool = False,
) -> ev.Order:
    return ev.Order(
        order_id=order_id,
        name=f"#{order_id}",
        customer=who,
        email=who.email,
        total=sek("499.00"),
        line_items=items or (HAT,),
        placed_at=placed or at,
        updated_at=at,
        status_url=f"{HOME}/orders/{order_id}/status",
        test=test,
    )


def bought(
    shop: Rendering, order_id: str, who: ev.Customer, at: datetime, *items: ev.LineItem
) -> None:
    """Placed and paid."""
    shop.at(at, ev.OrderPlaced(at, order(order_id, who, at, *items)))
    shop.at(at, ev.OrderPaid(at, order(order_id, who, at, *items, placed=at)))


def fulfilled(
    shop: Rendering, order_id: str, who: ev.Customer, at: datetime, *items: ev.LineItem
) -> None:
    shop.at(at, ev.OrderFulfilled(at, order(order_id, who, at, *items, placed=T0)))


def delivered(shop: Rendering, order_id: str, who: ev.Customer, at: datetime) -> None:
    shop.at(at, ev.ShipmentDelivered(at, order_id=order_id, email=who.email))


def targets(shop: Rendering, email: OutgoingEmail) -> list[str]:
    """Where the links of the text part lead (each product, then the button), without
    our UTM parameters but with the link's own query and fragment."""
    tokens = re.findall(rf"/t/c/{shop.shop_id}/([^\s\"<]+)", email.text)
    found = []
    for token in tokens:
        parts = urlsplit(links.read_click(shop.runtime.settings, shop.shop_id, token).url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if not k.startswith("utm_")]
        found.append(urlunsplit(parts._replace(query=urlencode(query))))
    return found


def outcomes_of(shop: Rendering, flow: str) -> list[str]:
    return [
        row["outcome"] + (f":{row['reason']}" if row["reason"] else "")
        for row in shop.log()
        if row["flow"] == flow
    ]


# --- review request -----------------------------------------------------------------------


def test_a_customer_is_asked_to_review_each_product_a_week_after_her_parcel_arrived(
    shop: Rendering,
) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(0), HAT, SCARF, WRAP)
    fulfilled(shop, "1", anna, day(1), HAT, SCARF, WRAP)
    delivered(shop, "1", anna, day(3, timedelta(hours=14)))
    shop.run(day(30))
    (email,) = shop.emails()
    assert email.to == "anna@example.se"
    assert email.subject == "How do you like it?"
    assert email.date == day(10, timedelta(hours=14))  # 7 days after delivery, 15:00 local
    assert targets(shop, email) == [
        f"{HOME}/products/ullmossa#reviews",  # each product: its review form
        f"{HOME}/products/halsduk#reviews",
        HOME,  # the custom item has no page of its own: the shop
        f"{HOME}/products/ullmossa#reviews",  # the button: the first product's
    ]
    assert email.html.count(">Write a review</a>") == 3
    assert "We hope you're enjoying your order #1." in email.text
    steps = [(m.flow, m.step, m.state) for m in shop.messages()]
    assert steps == [("review_request", "after_delivery", MessageState.SENT)]
    assert "resumed:event:ShipmentDelivered" in outcomes_of(shop, "review_request")


def test_a_review_request_due_in_the_night_waits_for_the_morning(shop: Rendering) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(0))
    fulfilled(shop, "1", anna, day(1))
    delivered(shop, "1", anna, day(3, EVENING))
    shop.run(day(30))
    (email,) = shop.emails()
    assert email.date == day(11, MORNING)
    assert "deferred:quiet_hours" in outcomes_of(shop, "review_request")


def test_without_a_delivery_report_she_is_asked_two_weeks_after_shipping(shop: Rendering) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(0))
    fulfilled(shop, "1", anna, day(1))
    # a delivery of another order of hers does not count for this one
    delivered(shop, "9", anna, day(4))
    shop.run(day(30))
    (email,) = shop.emails()
    assert email.date == day(15)  # 14 days after fulfilment
    assert targets(shop, email) == [f"{HOME}/products/ullmossa#reviews"] * 2  # row, button
    (message,) = shop.messages()
    assert (message.step, message.state) == ("after_fulfilment", MessageState.SENT)
    assert "timed_out" in outcomes_of(shop, "review_request")


def test_the_shop_may_send_review_links_to_its_review_app(shop: Rendering) -> None:
    shop.settings(
        flows={
            "review_request": {"review_url": "https://reviews.example/w?p={product_id}&h={handle}"}
        }
    )
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(0), HAT, SCARF)
    fulfilled(shop, "1", anna, day(1), HAT, SCARF)
    delivered(shop, "1", anna, day(2))
    shop.run(day(20))
    (email,) = shop.emails()
    assert targets(shop, email) == [
        "https://reviews.example/w?p=p-hat&h=ullmossa",
        "https://reviews.example/w?p=p-scarf&h=halsduk",
        "https://reviews.example/w?p=p-hat&h=ullmossa",
    ]


def test_a_review_link_pattern_with_an_unknown_placeholder_is_refused() -> None:
    problems = shop_settings.validate({"flows": {"review_request": {"review_url": "{url}{sku}"}}})
    assert [str(p) for p in problems] == [
        (
            "flows.review_request.review_url: unknown placeholder (you may use: {url}, {handle}, "
            "{product_id})"
        )
    ]
    assert shop_settings.validate({"flows": {"review_request": {"review_url": "{url}"}}}) == []


def test_a_second_orders_review_request_comes_a_week_after_the_first_not_the_same_week(
    shop: Rendering,
) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(0))
    bought(shop, "2", anna, day(0), SCARF)
    fulfilled(shop, "1", anna, day(1))
    fulfilled(shop, "2", anna, day(1), SCARF)
    delivered(shop, "1", anna, day(2))
    delivered(shop, "2", anna, day(4))
    shop.run(day(40))
    first, second = shop.emails()
    assert first.date == day(9)
    assert second.date == day(16)  # due on day 11, then a week after the first
    assert targets(shop, second) == [f"{HOME}/products/halsduk#reviews"] * 2
    later = [m for m in shop.messages() if m.enrollment_id and m.sent_at == day(16)]
    assert [r["reason"] for r in shop.log() if r["message"] == later[0].id] == [
        None,  # planned
        "cap:flow_repeat",  # deferred: asked about order 1 this week
        None,  # sent
    ]
    assert "deferred:cap:flow_repeat" in outcomes_of(shop, "review_request")


def test_a_cancelled_or_refunded_order_gets_no_review_request(shop: Rendering) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(0))
    bought(shop, "2", anna, day(0))
    fulfilled(shop, "1", anna, day(1))
    fulfilled(shop, "2", anna, day(1))
    shop.at(day(2), ev.OrderCancelled(day(2), order("1", anna, day(2), placed=day(0))))
    delivered(shop, "2", anna, day(3))
    shop.at(day(6), ev.OrderRefunded(day(6), order("2", anna, day(6), placed=day(0))))
    shop.run(day(30))
    assert shop.emails() == []
    log = outcomes_of(shop, "review_request")
    assert "exited:order_cancelled" in log
    assert "exited:order_refunded" in log


def test_a_customer_who_never_subscribed_gets_no_review_request(shop: Rendering) -> None:
    bo = customer("bo@example.se", customer_id="bo", subscribed=False)
    bought(shop, "1", bo, day(0))
    fulfilled(shop, "1", bo, day(1))
    delivered(shop, "1", bo, day(2))
    shop.run(day(30))
    assert shop.emails() == []
    (message,) = shop.messages()
    assert (message.state, message.reason) == (MessageState.SKIPPED, "no_consent")
    assert "skipped:no_consent" in outcomes_of(shop, "review_request")


def test_review_requests_switched_off_ask_nobody(shop: Rendering) -> None:
    shop.settings(flows={"review_request": {"enabled": False}})
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(0))
    fulfilled(shop, "1", anna, day(1))
    delivered(shop, "1", anna, day(2))
    shop.run(day(30))
    assert shop.emails() == []
    assert outcomes_of(shop, "review_request") == []  # nobody enrolled


# --- loyalty -------------------------------------------------------------------------------


def test_a_customer_gets_a_personal_code_on_her_third_fifth_and_tenth_paid_order_once_each(
    shop: Rendering,
) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    for n in range(1, 4):
        bought(shop, f"o{n}", anna, day(2 * n))
    shop.at(day(7), ev.OrderRefunded(day(7), order("o2", anna, day(7), placed=day(4))))
    # her count falls to 2; o4 makes it 3 again: that milestone was rewarded already
    for n in range(4, 12):
        bought(shop, f"o{n}", anna, day(2 * n))
        if n == 6:  # neither a test order nor an unpaid one counts
            test_order = order("t1", anna, day(2 * n), test=True)
            shop.at(day(2 * n), ev.OrderPlaced(day(2 * n), test_order))
            shop.at(day(2 * n), ev.OrderPaid(day(2 * n), test_order))
            shop.at(day(2 * n), ev.OrderPlaced(day(2 * n), order("u1", anna, day(2 * n))))
    shop.at(day(30), ev.OrderPaid(day(30), order("o3", anna, day(30), placed=day(6))))  # again
    shop.run(day(40))
    emails = shop.emails()
    rewarded = [(m.step, m.state) for m in shop.messages() if m.flow == "loyalty"]
    assert rewarded == [("reward", MessageState.SENT)] * 3
    # o3: her 3rd; o6: her 5th (o2 refunded), due on day 13, a week after the first
    # reward; o11: her 10th
    assert [e.date for e in emails] == [day(7), day(14), day(23)]
    assert "deferred:cap:flow_repeat" in outcomes_of(shop, "loyalty")
    codes = [m.discount_code for m in shop.messages() if m.flow == "loyalty"]
    assert len(set(codes)) == 3
    assert all(codes)
    for email, code in zip(emails, codes, strict=True):
        assert email.subject == "Thank you for coming back to us"
        assert code in email.text
        assert targets(shop, email)[-1] == HOME  # the button: the reward is for anything
        request = shop.discounts.issued[code]
        assert request.percent == Decimal(15)
        assert request.expires_at == email.date + timedelta(days=30)


def test_a_loyal_customer_who_never_subscribed_gets_no_reward_and_no_code(shop: Rendering) -> None:
    bo = customer("bo@example.se", customer_id="bo", subscribed=False)
    for n in range(1, 4):
        bought(shop, f"o{n}", bo, day(n))
    shop.run(day(10))
    assert shop.emails() == []
    assert shop.discounts.issued == {}
    assert "skipped:no_consent" in outcomes_of(shop, "loyalty")


def test_the_shop_chooses_its_milestones_written_as_a_list() -> None:
    def loaded(value: Any) -> Any:
        return shop_settings.validate({"flows": {"loyalty": {"milestones": value}}})

    assert loaded("10, 3,5") == []
    assert loaded([2, 4]) == []
    assert [str(p) for p in loaded("3, five")] == [
        "flows.loyalty.milestones: must be whole numbers, e.g. 3, 5, 10"
    ]
    assert [str(p) for p in loaded([0, 3])] == [
        "flows.loyalty.milestones: each must be between 1 and 1000"
    ]


def test_a_loyalty_milestone_the_shop_chose_is_rewarded(shop: Rendering) -> None:
    shop.settings(flows={"loyalty": {"milestones": "2", "discount": False}})
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "o1", anna, day(1))
    bought(shop, "o2", anna, day(2))
    bought(shop, "o3", anna, day(3))
    shop.run(day(10))
    (email,) = shop.emails()
    assert email.date == day(3)
    assert shop.discounts.issued == {}  # the shop gives no code


# --- delivered notice ------------------------------------------------------------------------


def test_the_delivered_notice_is_off_unless_the_shop_turns_it_on(shop: Rendering) -> None:
    assert registry.built_in()["delivered_notice"].defaults["enabled"] is False
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(0))
    delivered(shop, "1", anna, day(1))
    shop.run(day(3))
    assert shop.emails() == []
    assert outcomes_of(shop, "delivered_notice") == []


def test_a_customer_without_marketing_consent_is_told_her_parcel_arrived_and_nothing_more(
    shop: Rendering,
) -> None:
    shop.settings(flows={"delivered_notice": {"enabled": True}})
    bo = customer("bo@example.se", customer_id="bo", subscribed=False)
    bought(shop, "1", bo, day(0), HAT, SCARF)
    fulfilled(shop, "1", bo, day(1), HAT, SCARF)
    delivered(shop, "1", bo, day(2, EVENING))
    shop.run(day(4))
    (email,) = shop.emails()
    assert email.to == "bo@example.se"
    assert email.kind == "transactional"
    assert email.subject == "Your order #1 has arrived"
    assert email.date == day(3, MORNING)  # quiet hours keep it for the morning
    assert targets(shop, email) == [
        f"{HOME}/products/ullmossa",
        f"{HOME}/products/halsduk",
        f"{HOME}/orders/1/status",  # the button: the order status page
    ]
    # nothing to sell: no code, no other products, no unsubscribe footer of marketing mail
    assert email.unsubscribe_url is None
    (notice,) = [m for m in shop.messages() if m.flow == "delivered_notice"]
    assert notice.discount_code is None
    assert shop.discounts.issued == {}
    assert "Ullmössa" in email.text
    assert "Halsduk" in email.text
    assert email.text.count("\n- ") == 2  # the order's two items, nothing else


def test_a_parcel_of_an_order_refunded_before_the_notice_went_gets_no_notice(
    shop: Rendering,
) -> None:
    shop.settings(flows={"delivered_notice": {"enabled": True}})
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(0))
    delivered(shop, "1", anna, day(2, EVENING))
    shop.at(
        day(2, EVENING + timedelta(hours=1)),
        ev.OrderRefunded(
            day(2, EVENING + timedelta(hours=1)),
            order("1", anna, day(2, EVENING + timedelta(hours=1)), placed=day(0)),
        ),
    )
    shop.run(day(4))
    assert shop.emails() == []
    assert outcomes_of(shop, "delivered_notice")[-1] == "exited:order_refunded"


# --- the pieces ----------------------------------------------------------------------------


def test_an_awaited_events_timeout_may_be_a_shops_option_in_days() -> None:
    wait = WaitForEvent(events=(ev.ShipmentDelivered,), option="fallback_days", goto="x")
    assert wait.length({"fallback_days": 14}) == timedelta(days=14)
    fixed = WaitForEvent((ev.OrderPlaced,), timeout=timedelta(days=3), goto="x")
    assert fixed.length({}) == timedelta(days=3)


def test_a_flow_naming_an_hours_option_for_days_is_refused() -> None:
    hours = Option("fallback", Hours(14), label="Fallback", help="Hours.")
    with pytest.raises(ValueError, match="which is not Days"):
        dataclasses.replace(
            registry.built_in()["review_request"],
            steps=(
                WaitForEvent((ev.ShipmentDelivered,), option="fallback", goto="done"),
                Label("done"),
            ),
            options=(hours,),
        )
    with pytest.raises(ValueError, match="spacing 'fallback' is not a Days option"):
        dataclasses.replace(
            registry.built_in()["delivered_notice"], options=(hours,), spacing="fallback"
        )


def test_a_review_link_is_the_products_page_when_the_pattern_cannot_be_filled() -> None:
    view = SubjectView(SubjectKind.ORDER, "1", HOME, options={"review_url": "/r/{handle}"})
    hat = ProductLine("Ullmössa", f"{HOME}/products/ullmossa", "p-hat", handle="ull mössa")
    nameless = ProductLine("Okänd", f"{HOME}/products/p-x", "p-x")
    assert review_link(hat, view) == f"{HOME}/r/ull%20m%C3%B6ssa"
    assert review_link(nameless, view) == f"{HOME}/products/p-x"  # no handle known
    odd = dataclasses.replace(view, options={"review_url": "javascript:{product_id}"})
    assert review_link(hat, odd) == f"{HOME}/products/ullmossa"  # not a web address
