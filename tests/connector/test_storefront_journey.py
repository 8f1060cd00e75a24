"""A shopper's storefront events from the browser to the flow that answers them,
through the real endpoint, the stored deliveries and a real worker's drain."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flask.testing import FlaskClient
from sqlalchemy import select, update

from adapters.events import ConsentState
from jobs.engine import schedule
from jobs.runtime import Runtime
from jobs.store.models import (
    Checkout,
    Contact,
    Enrollment,
    Message,
    MessageState,
    Product,
    ProductView,
    Shop,
)
from tests.connector.test_storefront import SHOPIFY_ORIGIN, VISITOR, send, shop_of, viewed
from tests.support import INSTANT, STORE, run_worker


def known(runtime: Runtime, shop: Shop, email: str, consent: str) -> None:
    """A customer the shop's webhooks told of earlier, with her consent."""
    with runtime.sessions.begin() as session:
        session.add(
            Contact(
                shop_id=shop.id,
                email=email,
                customer_id=email.split("@")[0],
                consent_state=consent,
                consent_source="shopify",
                consent_at=datetime.now(UTC) - timedelta(days=30),
            )
        )


def now_iso(minutes: int = 0) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def identify(event_id: str, email: str) -> dict[str, object]:
    return {
        "id": event_id,
        "type": "identify",
        "at": now_iso(),
        "data": {"email": email, "source": "checkout"},
    }


def view(event_id: str, product_id: str, minutes: int) -> dict[str, object]:
    event = viewed(event_id, id=product_id)
    event["at"] = now_iso(minutes)
    return event


def browse_of(runtime: Runtime, email: str) -> list[tuple[str, list[str]]]:
    with runtime.sessions() as session:
        contact = session.scalars(select(Contact).where(Contact.email == email)).one()
        enrollments = session.scalars(
            select(Enrollment).where(
                Enrollment.contact_id == contact.id, Enrollment.flow == "browse_abandonment"
            )
        ).all()
        return [
            (
                row.state,
                [
                    m.state
                    for m in session.scalars(select(Message).where(Message.enrollment_id == row.id))
                ],
            )
            for row in enrollments
        ]


def test_a_subscribers_anonymous_views_plan_her_browse_reminder_once_she_says_who_she_is(
    client: FlaskClient, runtime: Runtime
) -> None:
    shop = shop_of(runtime, "shopify")
    known(runtime, shop, "anna@example.se", ConsentState.SUBSCRIBED)
    views = [view("ev-view-0001", "632910392", -30), view("ev-view-0002", "632910392", -20)]
    body = json.dumps({"visitor": VISITOR, "events": views}).encode()
    assert send(client, shop, body, origin=SHOPIFY_ORIGIN).status_code == 202
    run_worker(runtime)
    with runtime.sessions() as session:  # nobody's yet: nobody to remind
        assert session.scalars(select(ProductView)).all() == []

    who = json.dumps({"visitor": VISITOR, "events": [identify("ev-id-0001", "anna@example.se")]})
    assert send(client, shop, who.encode()).status_code == 202
    run_worker(runtime)
    with runtime.sessions() as session:
        [counted] = session.scalars(select(ProductView)).all()
        assert (counted.product_id, counted.views) == ("632910392", 2)
    assert browse_of(runtime, "anna@example.se") == [("active", [MessageState.PLANNED])]

    # the same browser's events again (a retry): nothing more
    assert send(client, shop, body).status_code == 202
    assert send(client, shop, who.encode()).status_code == 202
    run_worker(runtime)
    assert browse_of(runtime, "anna@example.se") == [("active", [MessageState.PLANNED])]
    send_what_is_due(runtime, shop)
    assert browse_of(runtime, "anna@example.se") == [("completed", [MessageState.SENT])]


def send_what_is_due(runtime: Runtime, shop: Shop) -> None:
    """Four hours on: the shop's planned emails due now, at any hour, and sent."""
    with runtime.sessions.begin() as session:
        session.get_one(Shop, shop.id).settings = INSTANT
        session.execute(
            update(Message)
            .where(Message.state == MessageState.PLANNED)
            .values(due_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    schedule.sweep(runtime, datetime.now(UTC) + schedule.GRACE + timedelta(seconds=1))
    run_worker(runtime)


def test_a_visitor_who_never_consented_is_never_mailed(
    client: FlaskClient, runtime: Runtime
) -> None:
    shop = shop_of(runtime, "shopify")
    events = [view("ev-view-0101", "632910392", -5), identify("ev-id-0101", "olle@example.se")]
    body = json.dumps({"visitor": "v_olle_0123456789abc", "events": events}).encode()
    assert send(client, shop, body).status_code == 202
    run_worker(runtime)
    with runtime.sessions() as session:
        olle = session.scalars(select(Contact).where(Contact.email == "olle@example.se")).one()
        assert olle.consent_state in (None, ConsentState.NOT_SUBSCRIBED)  # a browser grants none
    send_what_is_due(runtime, shop)
    with runtime.sessions() as session:
        [message] = session.scalars(select(Message).where(Message.flow == "browse_abandonment"))
        assert (message.state, message.reason) == (MessageState.SKIPPED, "no_consent")


def test_a_woocommerce_cart_with_an_email_typed_at_checkout_is_a_recoverable_checkout(
    client: FlaskClient, runtime: Runtime
) -> None:
    shop = shop_of(runtime, "woocommerce")
    cart = {
        "token": "Kq3ZrT8wYp2LmN4vBx7cHd1sGf6jAe9u",
        "items": [
            {
                "product_id": "1186",
                "title": "Ullmössa",
                "quantity": 1,
                "price": "249.00",
            }
        ],
        "total": "249.00",
        "currency": "SEK",
    }
    started = {
        "id": "ev-co-0001",
        "type": "checkout_started",
        "at": now_iso(),
        "data": {"cart": cart, "email": "karin@example.se"},
    }
    body = json.dumps({"visitor": "v_karin_0123456789ab", "events": [started]}).encode()
    assert send(client, shop, body, origin=STORE.rstrip("/")).status_code == 202
    run_worker(runtime)
    with runtime.sessions() as session:
        checkout = session.scalars(select(Checkout)).one()
        assert checkout.token == f"cart-{cart['token']}"
        assert checkout.email == "karin@example.se"
        assert checkout.recovery_url == f"{STORE}?triggerpost_cart={cart['token']}"
        cart_recovery = session.scalars(
            select(Enrollment).where(Enrollment.flow == "cart_recovery")
        ).all()
        assert [e.contact_id for e in cart_recovery] == [checkout.contact_id]
    send_what_is_due(runtime, shop)
    with runtime.sessions() as session:
        first = session.scalars(
            select(Message).where(Message.flow == "cart_recovery").order_by(Message.due_at)
        ).first()
        assert first is not None
        # she never said yes to marketing mail: a cart typed in a browser does not
        assert (first.state, first.reason) == (MessageState.SKIPPED, "no_consent")


def test_a_cart_typed_for_someone_else_shows_the_shops_own_product_words_not_the_browsers(
    client: FlaskClient, runtime: Runtime
) -> None:
    """Anyone can type a subscriber's address at a checkout: the reminder she gets then
    names the shop's products as the shop does, never text a browser made up."""
    shop = shop_of(runtime, "woocommerce")
    known(runtime, shop, "karin@example.se", ConsentState.SUBSCRIBED)
    with runtime.sessions.begin() as session:
        session.add(
            Product(
                shop_id=shop.id,
                product_id="1186",
                title="Raggsockor",
                url=f"{STORE}produkt/raggsockor/",
                price=Decimal("149.00"),
                currency="SEK",
                status="publish",
                available=True,
                data={},
                platform_updated_at=datetime.now(UTC) - timedelta(days=3),
            )
        )
    forged = {
        "product_id": "1186",
        "title": "Your account is locked: call +46 900 123 45 now",
        "quantity": 1,
        "price": "149.00",
        "image_url": "https://images.attacker.example/locked.png",
        "url": f"{STORE}produkt/raggsockor/",
    }
    cart = {"token": "Zt8wYp2LmN4vBx7cHd1sGf6jAe9uKq3Z", "items": [forged], "total": "149.00",
            "currency": "SEK"}  # fmt: skip
    started = {
        "id": "ev-co-0201",
        "type": "checkout_started",
        "at": now_iso(),
        "data": {"cart": cart, "email": "karin@example.se"},
    }
    body = json.dumps({"visitor": "v_forger_0123456789a", "events": [started]}).encode()
    assert send(client, shop, body, origin=STORE.rstrip("/")).status_code == 202
    run_worker(runtime)
    send_what_is_due(runtime, shop)

    outbox = sorted((runtime.settings.data_dir / "outbox").glob("*.eml"))
    assert outbox, "the reminder was sent"
    for path in outbox:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        parts = [p for p in message.walk() if p.get_content_type() in ("text/plain", "text/html")]
        assert len(parts) == 2
        for part in parts:
            text = part.get_content()
            assert "Raggsockor" in text
            assert "locked" not in text
            assert "attacker.example" not in text
