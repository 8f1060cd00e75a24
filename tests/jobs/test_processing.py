"""Applying events to the store: idempotent, order-independent, stale-proof."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters import events as ev
from jobs.intake import apply as intake_apply
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.store.models import (
    Checkout,
    CheckoutStatus,
    Contact,
    Order,
    OrderStatus,
    Shop,
    ShopStatus,
    StoredEvent,
)
from tests.support import count, sek

T0 = datetime(2026, 9, 14, 17, 0, tzinfo=UTC)


LINE = ev.LineItem(title="Ullsockor", quantity=1, unit_price=sek("149.00"), product_id="1")


def checkout(at: datetime, *, email: str | None = "kund@example.se", **kw: object) -> ev.Checkout:
    fields: dict[str, object] = {
        "token": "tok-1",
        "customer": None,
        "email": email,
        "recovery_url": "https://shop/recover",
        "total": sek("149.00"),
        "line_items": (LINE,),
        "updated_at": at,
    }
    return ev.Checkout(**{**fields, **kw})  # type: ignore[arg-type]


def order(at: datetime, **kw: object) -> ev.Order:
    fields: dict[str, object] = {
        "order_id": "1001",
        "name": "#1001",
        "customer": None,
        "email": "kund@example.se",
        "total": sek("149.00"),
        "shop_total": sek("149.00"),
        "line_items": (LINE,),
        "placed_at": at,
        "updated_at": at,
        "checkout_token": "tok-1",
    }
    return ev.Order(**{**fields, **kw})  # type: ignore[arg-type]


@pytest.fixture
def session(runtime: Runtime) -> Iterator[Session]:
    with runtime.sessions.begin() as s:
        add_shop(s, runtime.secrets, "shopify", "a-shop.myshopify.com")
    with runtime.sessions() as s:
        yield s


def shop(session: Session) -> Shop:
    return session.scalars(select(Shop)).one()


def apply(session: Session, *events: ev.Event) -> None:
    for event in events:
        intake_apply.apply(session, shop(session), event, delivery_id=None)
    session.commit()


def the_checkout(session: Session) -> Checkout:
    return session.scalars(select(Checkout)).one()


def test_checkout_creates_contact_and_is_logged(session: Session) -> None:
    apply(session, ev.CheckoutStarted(T0, checkout(T0)))
    row = the_checkout(session)
    contact = session.scalars(select(Contact)).one()
    assert row.status == CheckoutStatus.OPEN
    assert row.contact_id == contact.id
    assert contact.email == "kund@example.se"
    assert row.total == Decimal("149.00")
    assert row.data["line_items"][0]["title"] == "Ullsockor"
    logged = session.scalars(select(StoredEvent)).one()
    assert (logged.type, logged.subject, logged.contact_id) == (
        "CheckoutStarted",
        "tok-1",
        contact.id,
    )


def test_replayed_events_change_nothing(session: Session) -> None:
    events = [ev.CheckoutUpdated(T0, checkout(T0)), ev.OrderPlaced(T0, order(T0))]
    apply(session, *events)
    apply(session, *events)
    assert count(session, Contact) == 1
    assert count(session, Order) == 1
    contact = session.scalars(select(Contact)).one()
    assert contact.orders_count == 1
    assert contact.total_spent == Decimal("149.00")


def test_order_completes_its_checkout(session: Session) -> None:
    apply(session, ev.CheckoutUpdated(T0, checkout(T0)))
    apply(session, ev.OrderPlaced(T0 + timedelta(minutes=5), order(T0 + timedelta(minutes=5))))
    row = the_checkout(session)
    assert row.status == CheckoutStatus.COMPLETED
    assert row.order_id == "1001"


def test_order_arriving_before_its_checkout_still_completes_it(session: Session) -> None:
    apply(session, ev.OrderPlaced(T0, order(T0)))
    apply(
        session, ev.CheckoutUpdated(T0 - timedelta(minutes=1), checkout(T0 - timedelta(minutes=1)))
    )
    assert the_checkout(session).status == CheckoutStatus.COMPLETED


def test_stale_checkout_update_does_not_overwrite_or_reopen(session: Session) -> None:
    later = T0 + timedelta(hours=1)
    apply(session, ev.CheckoutUpdated(later, checkout(later, total=sek("300.00"))))
    apply(session, ev.OrderPlaced(later, order(later)))
    apply(session, ev.CheckoutUpdated(T0, checkout(T0, total=sek("100.00"))))
    row = the_checkout(session)
    assert row.total == Decimal("300.00")
    assert row.status == CheckoutStatus.COMPLETED
    # even a newer update without completed_at does not reopen a bought checkout
    latest = later + timedelta(hours=1)
    apply(session, ev.CheckoutUpdated(latest, checkout(latest)))
    assert the_checkout(session).status == CheckoutStatus.COMPLETED


def test_guest_checkout_without_email_names_nobody(session: Session) -> None:
    apply(
        session,
        ev.CheckoutStarted(T0, checkout(T0, email=None, not_mailable_reason="no_email")),
    )
    row = the_checkout(session)
    assert row.contact_id is None
    assert row.not_mailable_reason == "no_email"
    assert count(session, Contact) == 0


def test_guest_then_customer_is_one_contact(session: Session) -> None:
    apply(session, ev.OrderPlaced(T0, order(T0)))
    customer = ev.Customer(
        customer_id="42", email="Kund@Example.se", first_name="Åsa", updated_at=T0
    )
    apply(session, ev.CustomerCreated(T0 + timedelta(minutes=1), customer))
    contact = session.scalars(select(Contact)).one()
    assert (contact.customer_id, contact.email, contact.first_name) == (
        "42",
        "kund@example.se",
        "Åsa",
    )
    assert contact.orders_count == 1


def test_customer_changing_email_absorbs_the_guest_contact(session: Session) -> None:
    apply(session, ev.CustomerCreated(T0, ev.Customer(customer_id="42", email="old@example.se")))
    apply(session, ev.OrderPlaced(T0, order(T0, email="new@example.se")))  # as a guest
    assert count(session, Contact) == 2
    updated = ev.Customer(customer_id="42", email="new@example.se", updated_at=T0)
    apply(session, ev.CustomerUpdated(T0 + timedelta(minutes=1), updated))
    contact = session.scalars(select(Contact)).one()
    assert contact.email == "new@example.se"
    assert contact.orders_count == 1
    assert session.scalars(select(Order)).one().contact_id == contact.id


def test_order_stats_leave_out_tests_and_cancellations(session: Session) -> None:
    apply(
        session,
        ev.OrderPlaced(T0, order(T0)),
        ev.OrderPlaced(T0, order(T0, order_id="1002", shop_total=sek("50.00"))),
        ev.OrderPlaced(T0, order(T0, order_id="1003", test=True)),
    )
    contact = session.scalars(select(Contact)).one()
    assert (contact.orders_count, contact.total_spent) == (2, Decimal("199.00"))
    cancelled = order(
        T0 + timedelta(hours=1), order_id="1002", cancelled_at=T0 + timedelta(hours=1)
    )
    apply(session, ev.OrderCancelled(T0 + timedelta(hours=1), cancelled))
    session.refresh(contact)
    assert (contact.orders_count, contact.total_spent) == (1, Decimal("149.00"))
    assert contact.last_order_at == T0


def test_order_status_only_moves_forward(session: Session) -> None:
    later = T0 + timedelta(hours=1)
    apply(session, ev.OrderPaid(later, order(later, financial_status="paid")))
    apply(session, ev.OrderPlaced(T0, order(T0, financial_status="pending")))  # late arrival
    row = session.scalars(select(Order)).one()
    assert row.status == OrderStatus.PAID
    assert row.financial_status == "paid"
    assert row.paid_at == later


def test_newer_consent_wins_whatever_the_arrival_order(session: Session) -> None:
    unsubscribed = ev.Consent(
        ev.ConsentState.UNSUBSCRIBED, "shopify:consent", T0 + timedelta(days=1)
    )
    subscribed = ev.Consent(ev.ConsentState.SUBSCRIBED, "shopify:consent", T0)
    apply(session, ev.MarketingConsentChanged(T0, "42", "kund@example.se", unsubscribed))
    apply(session, ev.MarketingConsentChanged(T0, "42", "kund@example.se", subscribed))
    contact = session.scalars(select(Contact)).one()
    assert contact.consent_state == "unsubscribed"
    assert contact.consent_at == T0 + timedelta(days=1)


def test_assumed_consent_never_replaces_a_statement(session: Session) -> None:
    assumed = ev.Consent(ev.ConsentState.SUBSCRIBED, "woocommerce:assumed", T0, assumed=True)
    said_no = ev.Consent(ev.ConsentState.NOT_SUBSCRIBED, "woocommerce:order_meta:k", T0)
    apply(session, ev.MarketingConsentChanged(T0, "42", "kund@example.se", said_no))
    later = replace(assumed, updated_at=T0 + timedelta(days=2))
    apply(session, ev.MarketingConsentChanged(T0, "42", "kund@example.se", later))
    assert session.scalars(select(Contact)).one().consent_state == "not_subscribed"
    # a contact we know nothing about takes the shop's assumption
    apply(session, ev.MarketingConsentChanged(T0, "43", "ny@example.se", assumed))
    fresh = session.scalars(select(Contact).where(Contact.customer_id == "43")).one()
    assert (fresh.consent_state, fresh.consent_source) == ("subscribed", "woocommerce:assumed")


def test_stale_customer_update_keeps_newer_names(session: Session) -> None:
    new = ev.Customer(customer_id="42", email="k@example.se", first_name="New", updated_at=T0)
    old = replace(new, first_name="Old", updated_at=T0 - timedelta(days=1))
    apply(session, ev.CustomerUpdated(T0, new), ev.CustomerUpdated(T0, old))
    assert session.scalars(select(Contact)).one().first_name == "New"


def test_uninstall_drops_tokens(runtime: Runtime, session: Session) -> None:
    with runtime.sessions.begin() as s:
        add_shop(s, runtime.secrets, "shopify", "a-shop.myshopify.com", access_token="shpat_x")
    session.expire_all()
    apply(session, ev.AppUninstalled(T0))
    row = shop(session)
    assert row.status == ShopStatus.UNINSTALLED
    assert row.access_token_enc is None
    assert row.uninstalled_at == T0
