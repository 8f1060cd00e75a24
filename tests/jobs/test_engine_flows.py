"""Declarations the engine must honour without changes: priority, branches, waits, holdout,
and what the emails earned."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from adapters import events as ev
from jobs.flows.model import (
    End,
    Flow,
    Label,
    MessageKind,
    Send,
    Trigger,
    Wait,
    WaitForEvent,
    WaitUntil,
    common,
)
from jobs.reports import attribution
from jobs.runtime import Runtime
from jobs.store.models import Attribution, Engagement, Message, MessageState, Order, Shop
from tests.jobs.engine_support import T0, Harness, checkout, customer, extra_flow, hours, order


@pytest.fixture
def shop(runtime: Runtime) -> Harness:
    return Harness(runtime)


def _customer_subject(event: ev.Event) -> str | None:
    assert isinstance(event, (ev.CustomerCreated, ev.CustomerUpdated))
    return event.customer.customer_id


def _occurred(event: ev.Event) -> object:
    return event.occurred_at


WIN_BACK = Flow(
    name="test_win_back",
    title="Win-back (test)",
    category="winback",
    kind=MessageKind.MARKETING,
    priority=20,
    trigger=Trigger(
        events=(ev.CustomerUpdated,), subject=_customer_subject, anchor=lambda e: e.occurred_at
    ),
    steps=(Wait(duration=timedelta(minutes=30)), Send("email", "win_back")),
    options=common(expires_hours=72),
)

WELCOME = Flow(
    name="test_welcome",
    title="Welcome with a branch (test)",
    category="welcome",
    kind=MessageKind.MARKETING,
    priority=25,
    trigger=Trigger(
        events=(ev.CustomerCreated,), subject=_customer_subject, anchor=lambda e: e.occurred_at
    ),
    steps=(
        Send("welcome_1", "welcome_1"),
        WaitForEvent((ev.OrderPlaced,), timeout=timedelta(days=3), goto="bought"),
        Send("welcome_2", "welcome_2"),
        End(),
        Label("bought"),
        Wait(duration=timedelta(days=1)),
        Send("related", "welcome_related"),
    ),
    options=common(expires_hours=48),
)


def test_higher_priority_flow_takes_the_slot(shop: Harness) -> None:
    anna = customer()
    # room in the week for all four: only the gap between two emails is at stake
    shop.settings(engine={"marketing_per_window": 5})
    with extra_flow(WIN_BACK):
        # the win-back is due at +0.5 h, the cart reminder (higher priority) at +1 h
        shop.at(T0, checkout("tok-1", T0, anna))
        shop.at(T0, ev.CustomerUpdated(occurred_at=T0, customer=anna))
        shop.run(T0 + hours(48))
    by_flow = {(m.flow, m.step): m for m in shop.messages()}
    cart = by_flow[("cart_recovery", "email_1")]
    win_back = by_flow[("test_win_back", "email")]
    assert cart.sent_at == T0 + hours(1)
    assert win_back.sent_at is not None
    assert win_back.sent_at >= cart.sent_at + hours(16)
    reasons = [r["reason"] for r in shop.log() if r["message"] == win_back.id]
    assert "cap:priority" in reasons


def test_a_lower_priority_email_leaves_the_last_slot_of_the_week_to_a_higher_one(
    shop: Harness,
) -> None:
    """Three marketing emails a week: the cart's reminders at 1 h and 24 h took two; the
    win-back, due between them and the third reminder (72 h), would take the last
    slot and leave the reminder none, so it waits behind it, and expires."""
    anna = customer()
    with extra_flow(WIN_BACK):
        shop.at(T0, checkout("tok-1", T0, anna))
        shop.at(T0, ev.CustomerUpdated(occurred_at=T0, customer=anna))
        shop.run(T0 + hours(24 * 5))
    sent = sorted((m.sent_at, m.flow, m.step) for m in shop.messages() if m.sent_at)
    assert [(flow, step) for _, flow, step in sent] == [
        ("cart_recovery", "email_1"),
        ("cart_recovery", "email_2"),
        ("cart_recovery", "email_3"),
    ]
    win_back = next(m for m in shop.messages() if m.flow == "test_win_back")
    assert (win_back.state, win_back.reason) == (MessageState.EXPIRED, "cap:priority")


def test_deferral_past_expiry_expires_with_the_reason(shop: Harness) -> None:
    anna = customer()
    shop.settings(flows={"test_win_back": {"expires_hours": 2}})
    with extra_flow(WIN_BACK):
        shop.at(T0, checkout("tok-1", T0, anna))
        shop.at(T0, ev.CustomerUpdated(occurred_at=T0, customer=anna))
        shop.run(T0 + hours(48))
    win_back = next(m for m in shop.messages() if m.flow == "test_win_back")
    assert (win_back.state, win_back.reason) == (MessageState.EXPIRED, "cap:priority")


def test_wait_for_event_takes_the_branch_when_she_buys(shop: Harness) -> None:
    anna = customer()
    shop.settings(flows={"welcome": {"enabled": False}})  # the built-in one would take the slot
    with extra_flow(WELCOME):
        shop.at(T0, ev.CustomerCreated(occurred_at=T0, customer=anna))
        shop.at(T0 + hours(26), order("7", T0 + hours(26), anna, None))
        shop.run(T0 + hours(24 * 6))
    steps = {m.step: m.state for m in shop.messages() if m.flow == "test_welcome"}
    assert steps == {"welcome_1": MessageState.SENT, "related": MessageState.SENT}


def test_wait_for_event_times_out_into_the_next_step(shop: Harness) -> None:
    with extra_flow(WELCOME):
        shop.at(T0, ev.CustomerCreated(occurred_at=T0, customer=customer()))
        shop.run(T0 + hours(24 * 6))
    welcome = [m for m in shop.messages() if m.flow == "test_welcome"]
    assert [(m.step, m.state) for m in welcome] == [
        ("welcome_1", MessageState.SENT),
        ("welcome_2", MessageState.SENT),
    ]
    assert welcome[1].sent_at == T0 + hours(72)
    assert "timed_out" in shop.outcomes()


def test_holdout_enrollments_get_nothing_and_are_counted(shop: Harness, runtime: Runtime) -> None:
    shop.settings(flows={"cart_recovery": {"holdout_percent": 100}})
    anna = customer()
    shop.at(T0, checkout("tok-1", T0, anna))
    shop.at(T0 + hours(30), order("1", T0 + hours(30), anna, "tok-1"))
    shop.run(T0 + hours(24 * 5))
    assert shop.sent() == []
    assert shop.messages()[0].reason == "holdout"
    with runtime.sessions() as session:
        measured = attribution.lift(
            session, session.get_one(Shop, shop.shop_id), "cart_recovery", T0 - hours(1)
        )
    assert (measured.holdout, measured.holdout_converted) == (1, 1)
    assert (measured.treated, measured.lift) == (0, None)


def test_holdout_share_is_deterministic_and_near_its_percentage() -> None:
    from jobs.engine.enrolment import in_holdout

    picks = [in_holdout(1, "cart_recovery", f"tok-{i}:1", 10) for i in range(5000)]
    assert picks == [in_holdout(1, "cart_recovery", f"tok-{i}:1", 10) for i in range(5000)]
    assert 400 < sum(picks) < 600


def _engaged(shop: Harness, runtime: Runtime, who: ev.Customer, kind: str) -> Message:
    """Cart recovery's first email sent at +1 h, and a click or open of it at +3 h."""
    shop.at(T0, checkout("tok-1", T0, who))
    shop.run(T0 + hours(2))
    first = shop.messages()[0]
    with runtime.sessions.begin() as session:
        session.add(
            Engagement(
                shop_id=shop.shop_id,
                message_id=first.id,
                contact_id=first.contact_id,
                kind=kind,
                url="https://shop.example/cart",
                at=T0 + hours(3),
            )
        )
    return first


def test_order_after_a_click_is_credited_once(shop: Harness, runtime: Runtime) -> None:
    anna = customer()
    first = _engaged(shop, runtime, anna, "click")
    placed = T0 + hours(24 * 2)
    for _ in range(3):  # replays and updates credit it once
        shop.at(placed, order("1001", placed, anna, "tok-1"))
    with runtime.sessions() as session:
        rows = session.scalars(select(Attribution)).all()
        assert [(a.flow, a.message_id, a.revenue, a.currency) for a in rows] == [
            ("cart_recovery", first.id, Decimal("499.00"), "SEK")
        ]
    shop.at(
        placed + hours(1),
        ev.OrderCancelled(
            occurred_at=placed + hours(1), order=order("1001", placed, anna, None).order
        ),
    )
    with runtime.sessions() as session:
        assert session.scalars(select(Attribution)).all() == []
        assert session.scalar(select(Order.status)) == "cancelled"


def test_no_credit_outside_the_window(shop: Harness, runtime: Runtime) -> None:
    anna = customer()
    _engaged(shop, runtime, anna, "open")
    # an open does not count by default; and 6 days is past the 5-day window
    shop.at(T0 + hours(30), order("1", T0 + hours(30), anna, None))
    shop.at(T0 + hours(24 * 6), order("2", T0 + hours(24 * 6), anna, None))
    with runtime.sessions() as session:
        assert session.scalars(select(Attribution)).all() == []


BIRTHDAY_MORNING = Flow(
    name="test_morning",
    title="At ten in the morning, her time (test)",
    category="birthday",
    kind=MessageKind.TRANSACTIONAL,
    priority=10,
    trigger=Trigger(
        events=(ev.CustomerCreated,), subject=_customer_subject, anchor=lambda e: e.occurred_at
    ),
    steps=(WaitUntil(time(10, 0)), Send("greeting", "birthday")),
    options=common(expires_hours=12),
)


def test_wait_until_a_local_time_of_day(shop: Harness) -> None:
    tokyo = customer("ken@example.jp", customer_id="c7", timezone="Asia/Tokyo", subscribed=False)
    with extra_flow(BIRTHDAY_MORNING):
        shop.at(T0, ev.CustomerCreated(occurred_at=T0, customer=tokyo))  # 18:00 in Tokyo
        shop.run(T0 + hours(48))
    (greeting,) = [m for m in shop.messages() if m.flow == "test_morning"]
    # the next 10:00 in Tokyo is 01:00 UTC the next day; transactional: no consent needed
    assert greeting.sent_at == datetime(2026, 3, 3, 1, 0, tzinfo=UTC)
