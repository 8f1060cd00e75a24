"""`why` answers for every email: the legal basis each sent one went on, and why a flow
never started for her (kept as one row per contact and flow, however often it happens)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters import events as ev
from jobs.flows.model import Flow, MessageKind, Send, SubjectKind, Trigger
from jobs.intake.privacy import export_contact
from jobs.reports.decisions import explain, format_timeline
from jobs.runtime import Runtime
from jobs.store.models import Contact, Message, NonEnrolment
from tests.jobs.engine_support import (
    SHOP,
    T0,
    Harness,
    checkout,
    customer,
    extra_flow,
    hours,
    order,
)

CONSENTED = T0 - timedelta(days=1)


@pytest.fixture
def shop(runtime: Runtime) -> Harness:
    return Harness(runtime)


def subscribed_at_checkout(email: str = "anna@example.se") -> ev.Customer:
    consent = ev.Consent(ev.ConsentState.SUBSCRIBED, "shopify:checkouts/create", CONSENTED)
    return replace(customer(email), consent=consent)


def never_subscribed(email: str = "anna@example.se") -> ev.Customer:
    return customer(email, subscribed=False)


def why(shop: Harness, email: str = "anna@example.se") -> list[dict[str, Any]]:
    with shop.runtime.sessions() as session:
        contact_id = session.scalar(select(Contact.id).where(Contact.email == email))
        assert contact_id is not None
        return explain(session, shop.shop_id, contact_id)


def export(shop: Harness, email: str = "anna@example.se") -> dict[str, Any]:
    with shop.runtime.sessions() as session:
        contact = session.scalars(select(Contact).where(Contact.email == email)).one()
        return export_contact(session, contact)


def sent_message(shop: Harness, flow: str, step: str) -> Message:
    found = [m for m in shop.messages() if (m.flow, m.step) == (flow, step)]
    assert len(found) == 1
    assert found[0].sent_at is not None
    return found[0]


def not_started(shop: Harness) -> list[dict[str, Any]]:
    return [row for row in why(shop) if row["outcome"] == "not_started"]


# --- the legal basis of each send ---------------------------------------------------


def test_a_subscribed_contact_s_email_records_where_and_when_she_subscribed(
    shop: Harness,
) -> None:
    anna = subscribed_at_checkout()
    shop.at(T0, checkout("tok-1", T0, anna))
    shop.run(T0 + hours(2))
    message = sent_message(shop, "cart_recovery", "email_1")
    assert message.legal_basis == {
        "basis": "subscribed",
        "source": "shopify:checkouts/create",
        "at": CONSENTED.isoformat(),
    }
    sent = [row for row in why(shop) if row["outcome"] == "sent"]
    assert sent[0]["legal_basis"] == message.legal_basis
    assert sent[0]["says"] == "sent (subscribed via checkout on 2026-03-01)"
    assert "sent (subscribed via checkout on 2026-03-01)" in format_timeline(why(shop))
    emails = export(shop)["emails"]
    assert [e["legal_basis"] for e in emails if e["step"] == "email_1"] == [message.legal_basis]


def test_the_same_consent_told_again_keeps_where_it_was_first_heard(shop: Harness) -> None:
    anna = subscribed_at_checkout()
    shop.at(T0, checkout("tok-1", T0, anna))
    consent = ev.Consent(ev.ConsentState.SUBSCRIBED, "shopify:customers/update", CONSENTED)
    shop.at(T0, ev.CustomerUpdated(occurred_at=T0, customer=replace(anna, consent=consent)))
    shop.run(T0 + hours(2))
    basis = sent_message(shop, "cart_recovery", "email_1").legal_basis
    assert basis is not None
    assert basis["source"] == "shopify:checkouts/create"


def test_a_past_customer_under_the_customer_policy_is_mailed_on_soft_opt_in(
    shop: Harness,
) -> None:
    shop.settings(flows={"cart_recovery": {"consent": "subscribed_or_customer"}})
    bought = T0 - timedelta(days=40)
    anna = never_subscribed()
    shop.at(T0, order("1", bought, anna, None))
    shop.at(T0, checkout("tok-1", T0, anna))
    shop.run(T0 + hours(2))
    message = sent_message(shop, "cart_recovery", "email_1")
    assert message.legal_basis == {
        "basis": "soft_opt_in",
        "orders": 1,
        "customer_since": bought.isoformat(),
    }
    sent = [row for row in why(shop) if row["outcome"] == "sent"]
    assert sent[0]["says"] == "sent (soft opt-in: a customer since 2026-01-21, 1 order)"
    emails = export(shop)["emails"]
    assert [e["legal_basis"] for e in emails if e["step"] == "email_1"] == [message.legal_basis]


def _order_subject(event: ev.Event) -> str | None:
    return event.order.order_id if isinstance(event, ev.OrderPlaced) else None


RECEIPT = Flow(
    name="test_receipt",
    title="Receipt (test)",
    category="orders",
    kind=MessageKind.TRANSACTIONAL,
    priority=50,
    trigger=Trigger(
        events=(ev.OrderPlaced,), subject=_order_subject, anchor=lambda e: e.occurred_at
    ),
    steps=(Send("receipt", "thank_you"),),
    subject_kind=SubjectKind.ORDER,
)


def test_a_transactional_email_goes_on_its_own_basis_without_consent(shop: Harness) -> None:
    anna = never_subscribed()
    with extra_flow(RECEIPT):
        shop.at(T0, order("1", T0, anna, None))
        shop.run(T0 + hours(1))
        message = sent_message(shop, "test_receipt", "receipt")
        assert message.legal_basis == {"basis": "transactional"}
        sent = [row for row in why(shop) if row["outcome"] == "sent"]
        assert sent[0]["says"] == "sent (transactional)"
        assert [e["legal_basis"] for e in export(shop)["emails"]] == [{"basis": "transactional"}]


def test_an_email_not_sent_records_no_basis(shop: Harness) -> None:
    anna = never_subscribed()
    shop.at(T0, checkout("tok-1", T0, anna))
    shop.run(T0 + hours(2))
    (message, *_) = shop.messages()
    assert (message.state, message.reason, message.legal_basis) == ("skipped", "no_consent", None)


# --- why a flow did not start ----------------------------------------------------------


def test_a_flow_that_was_off_says_so(shop: Harness) -> None:
    shop.settings(flows={"cart_recovery": {"enabled": False}})
    shop.at(T0, checkout("tok-1", T0, subscribed_at_checkout()))
    (row,) = not_started(shop)
    assert (row["flow"], row["reason"], row["at"]) == ("cart_recovery", "flow_off", T0.isoformat())
    assert row["says"] == "not started: the flow was off (on CheckoutUpdated)"
    assert export(shop)["flows_not_started"] == [
        {
            "flow": "cart_recovery",
            "reason": "flow_off",
            "detail": None,
            "at": T0.isoformat(),
            "times": 1,
        }
    ]


def test_a_condition_that_did_not_hold_is_named(shop: Harness) -> None:
    event = checkout("tok-1", T0, subscribed_at_checkout())
    no_link = replace(event, checkout=replace(event.checkout, recovery_url=None))
    shop.at(T0, no_link)
    (row,) = not_started(shop)
    assert (row["reason"], row["detail"]) == ("condition_not_met", "recoverable")
    assert "the flow's condition did not hold (recoverable)" in row["says"]


def test_a_second_start_for_the_same_checkout_is_already_enrolled(shop: Harness) -> None:
    anna = subscribed_at_checkout()
    shop.at(T0, checkout("tok-1", T0, anna))
    shop.at(T0 + hours(0.5), checkout("tok-1", T0 + hours(0.5), anna))
    rows = why(shop)
    assert [r["outcome"] for r in rows if r["flow"] == "cart_recovery" and not r["step"]] == [
        "enrolled",
        "not_started",
    ]
    (row,) = not_started(shop)
    assert row["reason"] == "already_enrolled"
    assert "she had started it before" in row["says"]


def test_a_cart_she_has_bought_since_is_already_over(shop: Harness) -> None:
    anna = subscribed_at_checkout()
    shop.at(T0, order("1", T0, anna, None))
    shop.at(T0, checkout("tok-1", T0 - hours(1), anna))  # its update arrives late
    (row,) = not_started(shop)
    assert (row["reason"], row["detail"]) == ("already_over", "order_placed")
    assert "it was already over (order_placed)" in row["says"]
    assert not shop.messages()


def test_the_same_non_enrolment_a_hundred_times_is_one_row_kept_current(shop: Harness) -> None:
    shop.settings(flows={"cart_recovery": {"enabled": False}})
    anna = subscribed_at_checkout()
    for n in range(100):
        at = T0 + timedelta(minutes=n)
        shop.at(at, checkout("tok-1", at, anna))
    with shop.runtime.sessions() as session:
        rows = session.scalars(select(NonEnrolment)).all()
        assert len(rows) == 1
        (row,) = rows
        assert (row.reason, row.count) == ("flow_off", 100)
        assert (row.first_at, row.at) == (T0, T0 + timedelta(minutes=99))
    shop.settings(flows={"cart_recovery": {"enabled": True}})
    shop.at(T0 + hours(2), checkout("tok-1", T0 + hours(2), anna))
    shop.at(T0 + hours(3), checkout("tok-1", T0 + hours(3), anna))
    (latest,) = not_started(shop)
    assert (latest["reason"], latest["count"]) == ("already_enrolled", 101)


def test_events_that_do_not_trigger_a_flow_leave_no_trace_of_it(shop: Harness) -> None:
    anna = subscribed_at_checkout()
    shop.settings(flows={"cart_recovery": {"enabled": False}})
    shop.at(T0, ev.CustomerUpdated(occurred_at=T0, customer=anna))
    shop.at(T0, order("1", T0, anna, None))
    with shop.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(NonEnrolment)) == 0


def test_why_on_the_command_line_answers_for_a_flow_that_never_started(
    shop: Harness, runtime: Runtime
) -> None:
    from click.testing import CliRunner

    from connector.cli import main

    shop.settings(flows={"cart_recovery": {"enabled": False}})
    shop.at(T0, checkout("tok-1", T0, subscribed_at_checkout()))
    settings = runtime.settings
    env = {
        "TRIGGERPOST_DATA_DIR": str(settings.data_dir),
        "TRIGGERPOST_DATABASE_URL": settings.database_url,
        "TRIGGERPOST_SECRET_KEY": settings.secret_key,
    }
    result = CliRunner().invoke(main, ["why", SHOP, "anna@example.se"], env=env)
    assert result.exit_code == 0, result.output
    assert any(
        "cart_recovery" in line and "not started: the flow was off" in line
        for line in result.output.splitlines()
    )


def test_why_on_the_command_line_shows_times_on_the_shop_s_clock(
    shop: Harness, runtime: Runtime
) -> None:
    """The merchant reads her timeline in the shop's zone (Stockholm here); --json
    keeps UTC for programs."""
    from click.testing import CliRunner

    from connector.cli import main

    shop.settings(flows={"cart_recovery": {"enabled": False}})
    anna = subscribed_at_checkout()
    shop.at(T0, checkout("tok-1", T0, anna))
    shop.at(T0 + hours(2), checkout("tok-1", T0 + hours(2), anna))
    settings = runtime.settings
    env = {
        "TRIGGERPOST_DATA_DIR": str(settings.data_dir),
        "TRIGGERPOST_DATABASE_URL": settings.database_url,
        "TRIGGERPOST_SECRET_KEY": settings.secret_key,
    }
    result = CliRunner().invoke(main, ["why", SHOP, "anna@example.se"], env=env)
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if "not started" in line]
    # T0 is 09:00 UTC, 10:00 in Stockholm (CET); the latest time it did not start was 2 h later
    assert line.startswith("2026-03-02 12:00:00 CET  anna@example.se")
    assert "2 times since 2026-03-02 10:00:00 CET)" in line
    assert "+00:00" not in result.output

    as_json = CliRunner().invoke(main, ["why", SHOP, "anna@example.se", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    (row,) = [
        r for r in map(json.loads, as_json.output.splitlines()) if r["flow"] == "cart_recovery"
    ]
    assert row["at"] == "2026-03-02T11:00:00+00:00"
    assert row["first_at"] == "2026-03-02T09:00:00+00:00"


# --- clicks, credited orders and every row in words -----------------------------------


def test_her_click_and_the_order_it_earned_are_in_her_timeline_in_words(
    shop: Harness,
) -> None:
    from decimal import Decimal

    from jobs.store.models import Engagement, EngagementKind

    anna = subscribed_at_checkout()
    shop.at(T0, checkout("tok-1", T0, anna))
    shop.run(T0 + hours(2))
    message = sent_message(shop, "cart_recovery", "email_1")
    clicked = message.sent_at + timedelta(minutes=30)
    with shop.runtime.sessions.begin() as session:
        session.add(
            Engagement(
                shop_id=shop.shop_id,
                message_id=message.id,
                contact_id=message.contact_id,
                kind=EngagementKind.CLICK,
                url="https://example.se/cart",
                at=clicked,
            )
        )
    bought = clicked + hours(1)
    shop.at(bought, order("1001", bought, anna, "tok-1"))
    rows = why(shop)
    click = next(row for row in rows if row["outcome"] == "clicked")
    assert (click["flow"], click["step"], click["at"]) == (
        "cart_recovery",
        "email_1",
        clicked.isoformat(),
    )
    assert click["words"] == "clicked a link in the email"
    ordered = next(row for row in rows if row["outcome"] == "ordered")
    assert (ordered["order"], Decimal(ordered["revenue"]), ordered["currency"]) == (
        "#1001",
        Decimal("499.00"),
        "SEK",
    )
    assert ordered["words"] == "ordered #1001 (499.00 SEK), credited to this flow's email"
    assert [row["outcome"] for row in rows].index("clicked") < [
        row["outcome"] for row in rows
    ].index("ordered")
    exited = next(row for row in rows if row["outcome"] == "exited")
    assert exited["words"] == "stopped: she completed the checkout"
    assert all(row["words"] for row in rows)
    assert "clicked" in format_timeline(rows)


def test_a_guard_s_reason_reads_as_words() -> None:
    from jobs.reports.decisions import row_words

    def words(outcome: str, reason: str | None) -> str:
        return row_words({"outcome": outcome, "reason": reason})

    assert words("skipped", "no_consent") == "not sent: she had not subscribed to marketing email"
    assert words("deferred", "quiet_hours") == (
        "held back: it was night where she lives (quiet hours)"
    )
    assert words("skipped", "suppressed:marketing") == (
        "not sent: the address is on the shop's do-not-email list (marketing)"
    )
    assert (
        words("failed", "timeout:gave_up")
        == "could not be delivered: every attempt failed (timeout)"
    )
    assert words("enrolled", None) == "started the flow"
    assert words("skipped", "something_new") == "not sent: something_new"
