"""The thank-you after a paid order, through the simulator with real composed emails:
a day later, in her daytime, with her order and other products bought with it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from adapters import events as ev
from emails.outgoing import OutgoingEmail
from jobs.engine import suppressions
from jobs.flows import registry
from jobs.flows.model import (
    End,
    Flow,
    Label,
    MessageKind,
    Reentry,
    Send,
    SubjectKind,
    Trigger,
    WaitForEvent,
)
from jobs.reports.decisions import explain
from jobs.runtime import Runtime
from jobs.store.models import Contact, Enrollment, Message, MessageState
from tests.jobs.engine_support import T0, customer, sek
from tests.jobs.test_flow_extensions import HOME, Rendering
from tests.jobs.test_order_flows import EVENING, HAT, MORNING, SCARF, bought, day, order, targets

SUBJECT = "Thank you for your order"
MITTENS = ev.LineItem("Vantar", 1, sek("249.00"), product_id="p-mittens")
SOCKS = ev.LineItem("Ullsockor", 1, sek("149.00"), product_id="p-socks")
CANDLE = ev.LineItem("Ljus", 1, sek("99.00"), product_id="p-candle")
CATALOGUE = {
    "p-hat": ("Ullmössa", "ullmossa"),
    "p-scarf": ("Halsduk", "halsduk"),
    "p-mittens": ("Vantar", "vantar"),
    "p-socks": ("Ullsockor", "ullsockor"),
    "p-candle": ("Ljus", "ljus"),
}


@pytest.fixture
def shop(runtime: Runtime) -> Rendering:
    """The shop's catalogue, and what other customers (never subscribed) bought together
    on day 0: the hat with mittens twice, with socks once; candles alone, often."""
    shop = Rendering(runtime)
    for product_id, (title, handle) in CATALOGUE.items():
        product = ev.Product(
            product_id=product_id,
            title=title,
            updated_at=T0,
            url=f"{HOME}/products/{handle}",
            handle=handle,
            image_url=f"https://cdn.example/{product_id}.jpg",
            price=sek("199.00"),
            status="active",
            available=True,
        )
        shop.at(T0, ev.ProductCreated(T0, product))
    baskets = [(HAT, MITTENS), (HAT, MITTENS), (HAT, SOCKS), (CANDLE,), (CANDLE,), (CANDLE,)]
    for n, basket in enumerate(baskets):
        buyer = customer(f"buyer{n}@example.se", customer_id=f"b{n}", subscribed=False)
        bought(shop, f"other-{n}", buyer, day(0), *basket)
    return shop


def thanks(shop: Rendering, to: str = "anna@example.se") -> list[OutgoingEmail]:
    return [e for e in shop.emails() if e.to == to and e.subject == SUBJECT]


def decisions(shop: Rendering, to: str = "anna@example.se") -> list[str]:
    """Her thank-you's decisions, as ``outcome:reason``."""
    return [
        row["outcome"] + (f":{row['reason']}" if row["reason"] else "")
        for row in shop.log()
        if row["flow"] == "thank_you" and row["contact"] == to
    ]


def not_started(shop: Rendering, to: str = "anna@example.se") -> list[tuple[str, str | None]]:
    """Why the thank-you did not start for her: (reason, detail)."""
    with shop.runtime.sessions() as session:
        contact_id = session.scalar(select(Contact.id).where(Contact.email == to))
        assert contact_id is not None
        rows = explain(session, shop.shop_id, contact_id)
    return [
        (row["reason"], row["detail"])
        for row in rows
        if row["outcome"] == "not_started" and row["flow"] == "thank_you"
    ]


def by_order(shop: Rendering) -> dict[str, tuple[str, str | None]]:
    """Each order's thank-you: (state, reason)."""
    with shop.runtime.sessions() as session:
        rows = session.execute(
            select(Enrollment.subject, Message.state, Message.reason)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .where(Message.shop_id == shop.shop_id, Message.flow == "thank_you")
        )
        return {row.subject: (row.state, row.reason) for row in rows}


def recommended_part(email: OutgoingEmail) -> str:
    """The plain text from the recommendations' heading on."""
    assert "You may also like" in email.text
    return email.text.split("You may also like", 1)[1]


# --- the thank-you ------------------------------------------------------------------------


def test_a_customer_is_thanked_a_day_after_paying_with_what_others_bought_with_it_never_her_own(
    shop: Rendering,
) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(1), HAT)
    shop.run(day(5))
    (email,) = thanks(shop)
    assert email.date == day(2)  # a day after the payment: 10:00 in Stockholm
    assert email.kind == "marketing"
    assert email.unsubscribe_url is not None
    assert "We really appreciate your order #1. Here is what you chose" in email.text
    assert targets(shop, email) == [
        f"{HOME}/products/ullmossa",  # her order: the hat
        f"{HOME}/products/vantar",  # bought with the hat twice
        f"{HOME}/products/ullsockor",  # bought with it once
        f"{HOME}/products/ljus",  # then what sells most
        HOME,  # the button: the shop
    ]
    offered = recommended_part(email)
    assert "Ullmössa" not in offered  # never what she bought
    assert "Halsduk" not in offered  # nobody bought it: nothing to say for it
    assert "Ullmössa" in email.text.split("You may also like")[0]
    assert by_order(shop)["1"] == (MessageState.SENT, None)
    assert decisions(shop)[-1] == "sent"


def test_she_is_never_offered_what_she_bought_before(shop: Rendering) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(1), MITTENS)
    bought(shop, "2", anna, day(20), HAT)
    shop.run(day(25))
    first, second = thanks(shop)
    assert (first.date, second.date) == (day(2), day(21))
    offered = recommended_part(second)
    assert "Vantar" not in offered  # bought with the hat most, but she has them
    assert "Ullmössa" not in offered
    assert "Ullsockor" in offered


def test_a_thank_you_due_in_the_night_waits_for_the_morning(shop: Rendering) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(1, EVENING), HAT)
    shop.run(day(5))
    (email,) = thanks(shop)
    assert email.date == day(3, MORNING)  # due at 21:30, sent at 08:00 in Stockholm
    assert "deferred:quiet_hours" in decisions(shop)


def test_an_order_cancelled_or_refunded_before_the_thank_you_gets_none(shop: Rendering) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    bo = customer("bo@example.se", customer_id="bo")
    bought(shop, "1", anna, day(1), HAT)
    bought(shop, "2", bo, day(1), HAT)
    at = day(1, timedelta(hours=15))
    shop.at(at, ev.OrderCancelled(at, order("1", anna, at, HAT, placed=day(1))))
    shop.at(at, ev.OrderRefunded(at, order("2", bo, at, HAT, placed=day(1))))
    shop.run(day(5))
    assert thanks(shop) == []
    assert thanks(shop, "bo@example.se") == []
    assert decisions(shop)[-1] == "exited:order_cancelled"
    assert decisions(shop, "bo@example.se")[-1] == "exited:order_refunded"


def test_a_customer_who_never_subscribed_is_not_thanked_by_email(shop: Rendering) -> None:
    bo = customer("bo@example.se", customer_id="bo", subscribed=False)
    bought(shop, "1", bo, day(1), HAT)
    shop.run(day(5))
    assert thanks(shop, "bo@example.se") == []
    assert by_order(shop)["1"] == (MessageState.SKIPPED, "no_consent")
    assert "skipped:no_consent" in decisions(shop, "bo@example.se")


def test_thank_yous_switched_off_thank_nobody_and_say_why(shop: Rendering) -> None:
    shop.settings(flows={"thank_you": {"enabled": False}})
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(1), HAT)
    shop.run(day(5))
    assert thanks(shop) == []
    assert decisions(shop) == []  # nobody enrolled
    assert not_started(shop) == [("flow_off", None)]


def test_a_test_order_is_never_thanked(shop: Rendering) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    test_order = order("t1", anna, day(1), HAT, test=True)
    shop.at(day(1), ev.OrderPlaced(day(1), test_order))
    shop.at(day(1), ev.OrderPaid(day(1), test_order))
    shop.run(day(5))
    assert thanks(shop) == []
    assert not_started(shop) == [("condition_not_met", "order_open")]


def test_a_replayed_payment_thanks_her_once(shop: Rendering) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(1), HAT)
    paid = ev.OrderPaid(day(1), order("1", anna, day(1), HAT, placed=day(1)))
    shop.at(day(1, timedelta(hours=10)), paid)  # the platform sent it again
    shop.at(day(3), paid)  # and again, after the thank-you went
    shop.run(day(6))
    assert len(thanks(shop)) == 1
    assert [m.email_to for m in shop.messages() if m.flow == "thank_you" and m.sent_at] == [
        "anna@example.se"
    ]
    assert not_started(shop) == [("already_enrolled", None)]


# --- two orders ------------------------------------------------------------------------------


def test_orders_more_than_a_week_apart_are_each_thanked(shop: Rendering) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(1), HAT)
    bought(shop, "2", anna, day(10), SCARF)
    shop.run(day(15))
    first, second = thanks(shop)
    assert (first.date, second.date) == (day(2), day(11))
    assert "order #2" in second.text


def test_a_second_order_in_the_same_week_gets_no_second_thank_you_under_the_default_caps(
    shop: Rendering,
) -> None:
    """A one-email marketing flow mails a contact at most once a week: the second
    order's thank-you is skipped, not sent late (a thank-you a week on reads odd)."""
    anna = customer("anna@example.se", customer_id="anna")
    bought(shop, "1", anna, day(1), HAT)
    bought(shop, "2", anna, day(3), SCARF)
    shop.run(day(12))
    (email,) = thanks(shop)
    assert email.date == day(2)
    assert "order #1" in email.text
    assert by_order(shop)["2"] == (MessageState.SKIPPED, "cap:flow_repeat")
    assert "skipped:cap:flow_repeat" in decisions(shop)


# --- after the welcome series' own thanks ------------------------------------------------------


def _contact_subject(event: ev.Event) -> str | None:
    assert isinstance(event, ev.CustomerCreated)
    return event.customer.customer_id


#: stands for the welcome series (built on its own): a subscriber who orders during it
#: is thanked for that order at once, by its ``welcome_related`` step
WELCOME = Flow(
    name="welcome",
    title="Welcome (stand-in)",
    category="welcome",
    kind=MessageKind.MARKETING,
    priority=33,
    trigger=Trigger(
        events=(ev.CustomerCreated,), subject=_contact_subject, anchor=lambda e: e.occurred_at
    ),
    steps=(
        WaitForEvent((ev.OrderPlaced,), timeout=timedelta(days=7), goto="ordered"),
        End(),
        Label("ordered"),
        Send("welcome_related", "welcome_related"),
    ),
    reentry=Reentry.ONCE,
    subject_kind=SubjectKind.CONTACT,
)


@contextmanager
def welcome_series() -> Iterator[Any]:
    """The stand-in in place of any welcome flow, and whatever was there back after."""
    before = registry.get("welcome")
    registry.register(WELCOME)
    try:
        yield
    finally:
        if before is not None:
            registry.register(before)
        else:
            registry.unregister("welcome")


def test_the_order_the_welcome_series_thanked_her_for_gets_no_second_thank_you(
    shop: Rendering,
) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    with welcome_series():
        shop.at(day(1), ev.CustomerCreated(day(1), anna))
        bought(shop, "1", anna, day(2), HAT)
        bought(shop, "2", anna, day(12), SCARF)  # after the series: thanked as usual
        shop.run(day(16))
    welcome = [(m.step, m.state) for m in shop.messages() if m.flow == "welcome"]
    assert welcome == [("welcome_related", MessageState.SENT)]
    (email,) = thanks(shop)
    assert "order #2" in email.text
    assert email.date == day(13)
    # the series' ideas were planned when the order was placed, and went: when the
    # thank-you came due, it stood aside
    assert by_order(shop)["1"] == (MessageState.EXITED, "welcomed")


def test_a_thank_you_planned_before_the_welcome_series_thanked_her_ends_before_it_goes(
    shop: Rendering,
) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    with welcome_series():
        shop.at(day(1), ev.CustomerCreated(day(1), anna))
        # the payment's webhook came first; the order's creation, which wakes the
        # series, ten hours later
        shop.at(day(2), ev.OrderPaid(day(2), order("1", anna, day(2), HAT)))
        later = day(2, timedelta(hours=10))
        shop.at(later, ev.OrderPlaced(later, order("1", anna, later, HAT, placed=day(2))))
        shop.run(day(6))
    assert [m.step for m in shop.messages() if m.flow == "welcome"] == ["welcome_related"]
    assert thanks(shop) == []
    assert by_order(shop)["1"] == (MessageState.EXITED, "welcomed")
    assert decisions(shop)[-1] == "exited:welcomed"


def test_on_a_loyalty_milestone_the_reward_is_her_thank_you_with_ideas_and_no_second_one(
    shop: Rendering,
) -> None:
    """Both would be due a day after her third payment: the reward thanks her, with
    its code and what goes with her order; a second "thank you" beside it is one too many."""
    anna = customer("anna@example.se", customer_id="anna")
    for n, at in enumerate((day(1), day(10), day(20)), start=1):
        bought(shop, str(n), anna, at, HAT)
    shop.run(day(25))
    mine = [(e.subject, e.date) for e in shop.emails() if e.to == "anna@example.se"]
    assert mine == [
        (SUBJECT, day(2)),
        (SUBJECT, day(11)),
        ("Thank you for coming back to us", day(21)),
    ]
    reward = shop.emails()[-1]
    assert "Use my reward" in reward.text
    # bought with the hat by others: mittens first, then socks; never the hat
    assert "Vantar" in recommended_part(reward)
    assert "Ullsockor" in recommended_part(reward)
    assert "Ullmössa" not in recommended_part(reward)
    # it stood aside when it came due, whichever flow the payment enrolled first
    assert by_order(shop)["3"] == (MessageState.EXITED, "rewarded")
    assert decisions(shop)[-1] == "exited:rewarded"


def test_with_loyalty_rewards_switched_off_the_milestone_order_is_thanked_as_usual(
    shop: Rendering,
) -> None:
    shop.settings(flows={"loyalty": {"enabled": False}})
    anna = customer("anna@example.se", customer_id="anna")
    for n, at in enumerate((day(1), day(10), day(20)), start=1):
        bought(shop, str(n), anna, at, HAT)
    shop.run(day(25))
    mine = [(e.subject, e.date) for e in shop.emails() if e.to == "anna@example.se"]
    assert mine == [(SUBJECT, day(2)), (SUBJECT, day(11)), (SUBJECT, day(21))]


def test_a_reward_called_off_before_its_time_leaves_the_thank_you_to_thank_her(
    shop: Rendering,
) -> None:
    """She unsubscribes from rewards only (their category) an hour after paying: the
    reward is cancelled, so the thank-you, another category, thanks her."""
    anna = customer("anna@example.se", customer_id="anna")
    for n, at in enumerate((day(1), day(10), day(20)), start=1):
        bought(shop, str(n), anna, at, HAT)
    with shop.runtime.sessions.begin() as session:
        suppressions.suppress(
            session,
            shop.shop_id,
            "anna@example.se",
            scope="loyalty",
            reason="unsubscribed",
            source="preferences",
            at=day(20, timedelta(hours=1)),
        )
    shop.run(day(25))
    mine = [(e.subject, e.date) for e in shop.emails() if e.to == "anna@example.se"]
    assert mine == [(SUBJECT, day(2)), (SUBJECT, day(11)), (SUBJECT, day(21))]
    assert by_order(shop)["3"] == (MessageState.SENT, None)
