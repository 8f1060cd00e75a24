"""The flow engine on a virtual clock: cart recovery, exits, guards, timing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobs.runtime import Runtime
from jobs.store.models import MessageState
from tests.jobs.engine_support import T0, Harness, checkout, customer, hours, order


@pytest.fixture
def shop(runtime: Runtime) -> Harness:
    return Harness(runtime)


def sent_at(shop: Harness) -> dict[str, datetime]:
    return {m.step: m.sent_at for m in shop.messages() if m.sent_at is not None}


def test_cart_recovery_sends_three_emails_at_1h_24h_72h(shop: Harness) -> None:
    shop.settings(flows={"cart_recovery": {"discount": True}})
    anna = customer()
    shop.at(T0, checkout("tok-1", T0, anna))
    shop.run(T0 + hours(24 * 5))

    assert sent_at(shop) == {
        "email_1": T0 + hours(1),
        "email_2": T0 + hours(24),
        "email_3": T0 + hours(72),
    }
    assert [to for to, _ in shop.sent()] == ["anna@example.se"] * 3
    # the code only in the third, issued once, for her address
    codes = [m.discount_code for m in shop.messages()]
    assert codes[:2] == [None, None]
    assert codes[2] is not None
    assert codes[2].startswith("TP-")
    assert list(shop.discounts.issued) == [codes[2]]
    assert shop.discounts.issued[codes[2]].email == "anna@example.se"


def test_discount_is_off_unless_the_shop_turns_it_on(shop: Harness) -> None:
    shop.at(T0, checkout("tok-1", T0, customer()))
    shop.run(T0 + hours(24 * 5))
    assert [m.discount_code for m in shop.messages()] == [None, None, None]
    assert shop.discounts.issued == {}


def test_no_reminder_after_the_order(shop: Harness) -> None:
    anna = customer()
    shop.at(T0, checkout("tok-1", T0, anna))
    shop.at(T0 + hours(2), order("1001", T0 + hours(2), anna, "tok-1"))
    shop.run(T0 + hours(24 * 5))

    assert list(sent_at(shop)) == ["email_1"]
    states = {m.step: (m.state, m.reason) for m in shop.messages()}
    assert states["email_2"] == (MessageState.EXITED, "checkout_completed")
    assert states["email_3"] == (MessageState.EXITED, "checkout_completed")


def test_the_order_for_the_checkout_ends_it_at_once_under_another_address(
    shop: Harness,
) -> None:
    anna = customer()
    shop.at(T0, checkout("tok-1", T0, anna))
    # she paid as a guest with her work address: the checkout is still hers
    work = customer("anna@work.example", customer_id=None)
    shop.at(T0 + hours(2), order("1001", T0 + hours(2), work, "tok-1"))
    # exited when the order came, not only when each reminder's time came
    states = {m.step: (m.state, m.reason) for m in shop.messages()}
    assert states["email_2"] == (MessageState.EXITED, "checkout_completed")
    assert states["email_3"] == (MessageState.EXITED, "checkout_completed")


def test_any_order_by_the_contact_ends_recovery(shop: Harness) -> None:
    anna = customer()
    shop.at(T0, checkout("tok-1", T0, anna))
    # a different checkout turned into an order: she bought, so no reminders
    shop.at(T0 + hours(30), order("1002", T0 + hours(30), anna, "tok-other"))
    shop.run(T0 + hours(24 * 5))
    assert list(sent_at(shop)) == ["email_1", "email_2"]
    assert shop.messages()[2].reason == "order_placed"


def test_order_arriving_before_the_checkout_update_prevents_enrollment(shop: Harness) -> None:
    anna = customer()
    shop.at(T0, order("1001", T0, anna, "tok-1"))
    # the stale checkouts/update delivered late must not start a recovery
    shop.at(T0 + hours(1), checkout("tok-1", T0 - hours(1), anna))
    shop.run(T0 + hours(24 * 5))
    assert shop.messages() == []


def test_a_later_update_pushes_the_reminders_back(shop: Harness) -> None:
    anna = customer()
    shop.at(T0, checkout("tok-1", T0, anna, created=T0))
    later = T0 + hours(0.5)
    shop.at(later, checkout("tok-1", later, anna, created=T0))
    shop.run(T0 + hours(24 * 5))
    assert sent_at(shop) == {
        "email_1": later + hours(1),
        "email_2": later + hours(24),
        "email_3": later + hours(72),
    }


def test_replayed_checkout_event_plans_nothing_twice(shop: Harness) -> None:
    anna = customer()
    for _ in range(5):
        shop.at(T0, checkout("tok-1", T0, anna))
    shop.run(T0 + hours(24 * 5))
    assert len(shop.messages()) == 3
    assert len(shop.sent()) == 3


def test_marketing_needs_consent(shop: Harness) -> None:
    shop.at(T0, checkout("tok-1", T0, customer(subscribed=False)))
    shop.run(T0 + hours(24 * 5))
    assert shop.sent() == []
    assert {m.reason for m in shop.messages()} == {"no_consent"}


def test_softer_consent_policy_reaches_past_customers_only(shop: Harness) -> None:
    shop.settings(flows={"cart_recovery": {"consent": "subscribed_or_customer"}})
    buyer = customer("buyer@example.se", customer_id="c2", subscribed=False)
    shop.at(T0 - hours(24 * 60), order("900", T0 - hours(24 * 60), buyer, None))
    shop.at(T0, checkout("tok-b", T0, buyer))
    stranger = customer("new@example.se", customer_id="c3", subscribed=False)
    shop.at(T0, checkout("tok-n", T0, stranger))
    shop.run(T0 + hours(24 * 5))
    assert {to for to, _ in shop.sent()} == {"buyer@example.se"}


def test_unsubscribing_after_scheduling_stops_everything_after(shop: Harness) -> None:
    from adapters import events as ev

    anna = customer()
    shop.at(T0, checkout("tok-1", T0, anna))
    shop.run(T0 + hours(2))
    unsubscribed = ev.MarketingConsentChanged(
        occurred_at=T0 + hours(3),
        customer_id="c1",
        email="anna@example.se",
        consent=ev.Consent(ev.ConsentState.UNSUBSCRIBED, "test", T0 + hours(3)),
    )
    shop.at(T0 + hours(3), unsubscribed)
    shop.run(T0 + hours(24 * 5))
    assert list(sent_at(shop)) == ["email_1"]
    assert [m.reason for m in shop.messages()][1:] == ["unsubscribed", "unsubscribed"]


def test_suppressed_address_is_cancelled_at_once(shop: Harness, runtime: Runtime) -> None:
    from jobs.engine import suppressions

    shop.at(T0, checkout("tok-1", T0, customer()))
    with runtime.sessions.begin() as session:
        suppressions.suppress(
            session,
            shop.shop_id,
            "Anna@Example.se",
            scope="marketing",
            reason="unsubscribed",
            source="one_click",
            at=T0 + hours(0.5),
        )
    states = {m.state for m in shop.messages()}
    assert states == {MessageState.CANCELLED}
    shop.run(T0 + hours(24 * 5))
    assert shop.sent() == []


def test_quiet_hours_defer_to_the_morning_in_her_timezone(shop: Harness) -> None:
    evening = datetime(2026, 3, 2, 19, 45, tzinfo=UTC)  # 20:45 in Stockholm
    shop.at(evening, checkout("tok-1", evening, customer()))
    shop.run(evening + hours(5 * 24))
    first = shop.messages()[0]
    # due 21:45 local: deferred to 08:00 local (07:00 UTC), sent then
    assert first.sent_at == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
    assert "deferred:quiet_hours" in shop.outcomes("email_1")


def test_quiet_hours_across_the_spring_dst_switch(shop: Harness) -> None:
    # Stockholm springs forward on 2026-03-29 at 02:00 (UTC+1 -> UTC+2)
    evening = datetime(2026, 3, 28, 19, 45, tzinfo=UTC)  # 20:45 local, UTC+1
    shop.at(evening, checkout("tok-1", evening, customer()))
    shop.run(evening + hours(24))
    first = shop.messages()[0]
    assert first.sent_at == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)  # 08:00 local, UTC+2


def test_quiet_hours_across_the_autumn_dst_switch(shop: Harness) -> None:
    # falls back on 2026-10-25 at 03:00 (UTC+2 -> UTC+1)
    evening = datetime(2026, 10, 24, 18, 45, tzinfo=UTC)  # 20:45 local, UTC+2
    shop.at(evening, checkout("tok-1", evening, customer()))
    shop.run(evening + hours(24))
    assert shop.messages()[0].sent_at == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)


def test_a_contact_in_another_timezone_gets_her_own_morning(shop: Harness) -> None:
    # 10:00 in Stockholm is 04:00 in New York
    maria = customer("maria@example.com", customer_id="c9", timezone="America/New_York")
    shop.at(T0, checkout("tok-m", T0, maria))
    shop.run(T0 + hours(24))
    # due 05:00 New York (EST, UTC-5) -> 08:00 New York = 13:00 UTC
    assert shop.messages()[0].sent_at == datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


def test_country_gives_the_timezone_when_the_contact_has_none(shop: Harness) -> None:
    kim = customer("kim@example.com", customer_id="c8", country="US")
    shop.at(T0, checkout("tok-k", T0, kim))
    shop.run(T0 + hours(24))
    assert shop.messages()[0].sent_at == datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


def test_min_gap_defers_the_second_checkouts_reminder(shop: Harness) -> None:
    anna = customer()
    shop.at(T0, checkout("tok-a", T0, anna))
    shop.at(T0 + hours(2), checkout("tok-b", T0 + hours(2), anna))
    shop.run(T0 + hours(30))
    by_key = {(m.dedupe_key.split(":")[2], m.step): m for m in shop.messages()}
    a1, b1 = by_key[("tok-a", "email_1")], by_key[("tok-b", "email_1")]
    assert a1.sent_at == T0 + hours(1)
    # b1 was due at +3 h; 16 h after a1 is 03:00 local, so it waits for 08:00 local
    assert b1.sent_at == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
    decisions = [(r["outcome"], r["reason"]) for r in shop.log() if r["message"] == b1.id]
    assert ("deferred", "cap:gap") in decisions
    # a2 (due +24 h) now sits within 16 h of b1: it moves on, never two within 16 h
    a2 = by_key[("tok-a", "email_2")]
    assert a2.sent_at is None
    assert a2.due_at >= b1.sent_at + hours(16)


def test_weekly_cap_expires_what_cannot_fit(shop: Harness) -> None:
    anna = customer()
    shop.settings(engine={"min_gap_hours": 1})
    for i, token in enumerate(["t1", "t2", "t3", "t4"]):
        at = T0 + hours(2 * i)
        shop.at(at, checkout(token, at, anna))
    shop.run(T0 + hours(12))
    firsts = [m for m in shop.messages() if m.step == "email_1"]
    assert [m.state for m in firsts] == [MessageState.SENT] * 3 + [MessageState.EXPIRED]
    assert firsts[3].reason == "cap:weekly"
