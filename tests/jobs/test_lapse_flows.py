"""The win-back and the re-engagement: a customer who stopped buying, a subscriber who
never started, each asked back once, at their own morning, and never after they order.

Facts come as the daily scans make them (``CustomerLapsed`` on the day the last order
turns 90 days old, ``SubscriberWentQuiet`` on the day the subscription turns 30).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from adapters import events as ev
from jobs.reports.decisions import format_timeline
from jobs.runtime import Runtime
from jobs.store.models import MessageState
from tests.jobs.engine_support import T0, customer
from tests.jobs.test_dated_flows import emails_of, not_started, why
from tests.jobs.test_recommendations import Rendering, product
from tests.jobs.test_welcome import an_order, buy

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def day(n: int, hour: int = 9) -> datetime:
    """Day ``n`` after T0's day at ``hour`` UTC (09:00 UTC: 10:00 or 11:00 in Stockholm)."""
    return T0.replace(hour=0) + timedelta(days=n, hours=hour)


def scan(n: int) -> datetime:
    """The shop's daily scan of day ``n``: 02:00 UTC, early morning in Stockholm."""
    return day(n, hour=2)


def ten_local(n: int) -> datetime:
    """10:00 in Stockholm on day ``n``: the send hour of both flows."""
    local = scan(n).astimezone(STOCKHOLM).replace(hour=10, minute=0)
    return local.astimezone(day(0).tzinfo)


@pytest.fixture
def shop(runtime: Runtime) -> Rendering:
    shop = Rendering(runtime)
    # the facts are played here as the daily scans make them (tests/jobs/test_scans.py
    # and examples/shop_year.json have the scans make them from the contacts' data)
    shop.sim.scans = False
    shop.catalogue(product("hat"), product("scarf"), product("mug"), product("lamp"))
    # what other customers bought: the scarf goes with the hat; the mug sells best
    buy(shop, "x1", customer("x@example.se", customer_id="x"), T0, "hat", "scarf")
    buy(shop, "y1", customer("y@example.se", customer_id="y"), T0, "mug")
    buy(shop, "z1", customer("z@example.se", customer_id="z"), T0, "mug", "lamp")
    return shop


def anna(*, subscribed: bool = True) -> ev.Customer:
    return customer("anna@example.se", customer_id="anna", subscribed=subscribed)


def paid(shop: Rendering, order_id: str, at: datetime, *products: str) -> None:
    data = an_order(order_id, anna(), at, *products or ("hat",))
    shop.at(at, ev.OrderPlaced(at, data))
    shop.at(at, ev.OrderPaid(at, data))


def lapsed(shop: Rendering, n: int, last_order: datetime, orders: int) -> None:
    at = scan(n)
    ref = ev.ContactRef("anna", None)
    shop.at(at, ev.CustomerLapsed(at, ref, last_order_at=last_order, orders_count=orders, days=90))


def went_quiet(shop: Rendering, n: int, who: str = "anna") -> None:
    at = scan(n)
    shop.at(at, ev.SubscriberWentQuiet(at, ev.ContactRef(who, None), days=30))


# --- the win-back ------------------------------------------------------------------------


def test_a_customer_of_two_paid_orders_is_asked_back_90_days_after_the_last(
    shop: Rendering,
) -> None:
    paid(shop, "o1", day(0), "hat")
    paid(shop, "o2", day(10), "hat")
    lapsed(shop, 100, day(10), 2)
    shop.run(day(103))
    (email,) = emails_of(shop, "win_back")
    assert email.to == "anna@example.se"
    assert email.date == ten_local(100)
    assert email.subject == "We've missed you at engine-test.myshopify.com"
    assert "Hi Anna," in email.text
    assert "You may also like" in email.text  # products that go with what she bought
    assert "Product scarf" in email.text  # bought together with her hat
    assert "Product hat" not in email.text  # never what she bought
    assert "unsubscribe" in email.text.lower()
    assert shop.discounts.issued == {}  # no code unless the shop turns it on


def test_a_one_order_customer_gets_no_win_back_and_why_says_so(shop: Rendering) -> None:
    paid(shop, "o1", day(10))
    lapsed(shop, 100, day(10), 1)
    shop.run(day(103))
    assert emails_of(shop, "win_back") == []
    assert not_started(shop, "anna@example.se", "win_back") == [
        (
            "not started: the flow's condition did not hold (she had fewer paid orders than it "
            "asks, or has ordered since) (on CustomerLapsed)"
        )
    ]


def test_a_win_back_comes_at_most_once_in_180_days(shop: Rendering) -> None:
    paid(shop, "o1", day(0))
    paid(shop, "o2", day(10))
    lapsed(shop, 100, day(10), 2)  # the first win-back
    paid(shop, "o3", day(130))  # she came back...
    lapsed(shop, 220, day(130), 3)  # ...and lapsed again, 120 days after the first
    shop.run(day(223))
    assert [e.date for e in emails_of(shop, "win_back")] == [ten_local(100)]
    assert not_started(shop, "anna@example.se", "win_back") == [
        (
            "not started: she had started it lately, about another time (it starts again only "
            "after 180 days) (on CustomerLapsed)"
        )
    ]
    paid(shop, "o4", day(250))
    lapsed(shop, 340, day(250), 4)  # 240 days after the first: again
    shop.run(day(343))
    assert [e.date for e in emails_of(shop, "win_back")] == [ten_local(100), ten_local(340)]


def test_a_scan_run_twice_asks_her_back_once(shop: Rendering) -> None:
    paid(shop, "o1", day(0))
    paid(shop, "o2", day(10))
    lapsed(shop, 100, day(10), 2)
    lapsed(shop, 100, day(10), 2)
    shop.run(day(103))
    assert len(emails_of(shop, "win_back")) == 1


def test_an_order_before_the_win_back_goes_ends_it(shop: Rendering) -> None:
    paid(shop, "o1", day(0))
    paid(shop, "o2", day(10))
    lapsed(shop, 100, day(10), 2)
    data = an_order("o3", anna(), day(100, hour=5), "mug")
    shop.at(day(100, hour=5), ev.OrderPlaced(day(100, hour=5), data))  # placed, not yet paid
    shop.run(day(103))
    assert emails_of(shop, "win_back") == []
    (message,) = [m for m in shop.messages() if m.flow == "win_back"]
    assert (message.state, message.reason) == (MessageState.EXITED, "ordered")
    assert "exited: she had ordered" in format_timeline(why(shop, "anna@example.se"))


def test_an_order_whose_webhook_beat_the_scan_s_fact_starts_no_win_back(shop: Rendering) -> None:
    paid(shop, "o1", day(0))
    paid(shop, "o2", day(10))
    paid(shop, "o3", day(99, hour=23))  # after the scan chose her, before its fact came
    lapsed(shop, 100, day(10), 2)
    shop.run(day(103))
    assert emails_of(shop, "win_back") == []


def test_a_win_back_code_the_shop_switched_on_comes_with_it(shop: Rendering) -> None:
    shop.settings(flows={"win_back": {"discount": True}})
    paid(shop, "o1", day(0))
    paid(shop, "o2", day(10))
    lapsed(shop, 100, day(10), 2)
    shop.run(day(103))
    (email,) = emails_of(shop, "win_back")
    (code,) = [m.discount_code for m in shop.messages() if m.flow == "win_back"]
    assert code is not None
    assert code in email.text
    assert shop.discounts.issued[code].expires_at == email.date + timedelta(days=14)


# --- the re-engagement ---------------------------------------------------------------


def test_a_subscriber_who_never_bought_hears_from_us_30_days_on_and_only_once(
    shop: Rendering,
) -> None:
    shop.at(day(0), ev.CustomerCreated(day(0), anna()))  # welcomed, then the series ends
    went_quiet(shop, 30)
    went_quiet(shop, 30)  # the scan ran twice
    went_quiet(shop, 60)  # and a later fact, if one came
    shop.run(day(63))
    (email,) = emails_of(shop, "re_engagement")
    assert email.date == ten_local(30)
    assert email.subject == "Still curious about engine-test.myshopify.com?"
    assert "You may also like" in email.text
    assert "Product mug" in email.text  # the shop's favourites
    assert "unsubscribe" in email.text.lower()
    assert not_started(shop, "anna@example.se", "re_engagement") == [
        "not started: she had started it before (it starts once for the same subject) "
        "(on SubscriberWentQuiet, 2 times since " + scan(30).isoformat() + ")"
    ]


def test_a_subscriber_in_a_welcome_series_under_way_is_left_to_it(shop: Rendering) -> None:
    shop.at(day(0), ev.CustomerCreated(day(0), anna()))
    went_quiet(shop, 2)  # a shop that asks after 2 days: her welcome still waits for day 4
    shop.run(day(10))
    assert emails_of(shop, "re_engagement") == []
    assert not_started(shop, "anna@example.se", "re_engagement") == [
        (
            "not started: it was already over (her welcome series was still under way) "
            "(on SubscriberWentQuiet)"
        )
    ]


def test_a_subscriber_who_ordered_gets_no_re_engagement(shop: Rendering) -> None:
    shop.at(day(0), ev.CustomerCreated(day(0), anna()))
    paid(shop, "o1", day(5))
    went_quiet(shop, 30)
    shop.run(day(33))
    assert emails_of(shop, "re_engagement") == []
    assert not_started(shop, "anna@example.se", "re_engagement") == [
        "not started: it was already over (she had ordered) (on SubscriberWentQuiet)"
    ]


def test_a_subscriber_whose_only_order_was_cancelled_gets_no_re_engagement(
    shop: Rendering,
) -> None:
    shop.at(day(0), ev.CustomerCreated(day(0), anna()))
    paid(shop, "o1", day(5))
    shop.at(
        day(6), ev.OrderCancelled(day(6), an_order("o1", anna(), day(5), "hat", updated=day(6)))
    )
    went_quiet(shop, 30)  # she counts no order now, but she did order
    shop.run(day(33))
    assert emails_of(shop, "re_engagement") == []
    assert not_started(shop, "anna@example.se", "re_engagement") == [
        "not started: it was already over (she had ordered) (on SubscriberWentQuiet)"
    ]


def test_a_contact_who_unsubscribed_gets_no_re_engagement(shop: Rendering) -> None:
    shop.at(day(0), ev.CustomerCreated(day(0), anna()))
    went_quiet(shop, 30)  # she enrolled; before 10:00 she unsubscribes
    gone = ev.Consent(ev.ConsentState.UNSUBSCRIBED, "test", day(30, hour=5))
    shop.at(day(30, hour=5), ev.MarketingConsentChanged(day(30, hour=5), "anna", None, gone))
    shop.run(day(33))
    assert emails_of(shop, "re_engagement") == []
    (message,) = [m for m in shop.messages() if m.flow == "re_engagement"]
    assert (message.state, message.reason) == (MessageState.SKIPPED, "unsubscribed")


def test_a_contact_unsubscribed_before_the_scan_s_fact_is_not_started(shop: Rendering) -> None:
    shop.at(day(0), ev.CustomerCreated(day(0), anna()))
    gone = ev.Consent(ev.ConsentState.UNSUBSCRIBED, "test", day(29))
    shop.at(day(29), ev.MarketingConsentChanged(day(29), "anna", None, gone))
    went_quiet(shop, 30)
    shop.run(day(33))
    assert emails_of(shop, "re_engagement") == []
    assert not_started(shop, "anna@example.se", "re_engagement") == [
        (
            "not started: the flow's condition did not hold (she was not subscribed) "
            "(on SubscriberWentQuiet)"
        )
    ]


def test_an_order_before_the_re_engagement_goes_ends_it(shop: Rendering) -> None:
    shop.at(day(0), ev.CustomerCreated(day(0), anna()))
    went_quiet(shop, 30)
    paid(shop, "o1", day(30, hour=5))
    shop.run(day(33))
    assert emails_of(shop, "re_engagement") == []
    (message,) = [m for m in shop.messages() if m.flow == "re_engagement"]
    assert (message.state, message.reason) == (MessageState.EXITED, "ordered")
