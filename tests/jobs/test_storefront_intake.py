"""Storefront events through the real drain: visitors stitched to contacts, and a
WooCommerce cart before "Place order" recovered as one checkout with its order.

Storefront deliveries are stored as the storefront endpoint stores them (contract:
topic ``storefront/<type>``, key ``sf-<sha256(visitor:id)>``, the canonical body);
webhooks come in signed through ``/webhooks/woocommerce``; real Redis, real RQ
workers, the file outbox; SQLite and PostgreSQL.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from adapters import events as ev
from jobs.intake import apply, deliveries, privacy, visitors
from jobs.runtime import Runtime
from jobs.store.models import (
    Checkout,
    CheckoutStatus,
    Contact,
    Delivery,
    Enrollment,
    Message,
    Shop,
    StoredEvent,
    Visitor,
    VisitorEvent,
    now,
)
from jobs.workers import sweeper
from tests.support import (
    FIXTURES,
    INSTANT,
    SHOPIFY_SHOP,
    STORE,
    WOO_SECRET,
    count,
    post,
    run_worker,
    woocommerce_headers,
)

VISITOR = "v1_Kx8hQ2mZpR4tW7yB"
OTHER_VISITOR = "v1_Yy3nP0qLs8dFg2Hk"
CART = "Z3kq8PmW2xN7cR5tJ9bV4hL6sD1fG0aY"
ELIAS = "elias.nyberg@example.com"
WOO_KEY = "butik.example.se"
#: the first reminder at once, the later ones at their usual hours; no quiet hours, no caps
FIRST_AT_ONCE: dict[str, Any] = copy.deepcopy(INSTANT)
FIRST_AT_ONCE["flows"]["cart_recovery"] = {"delay_1_hours": 0}


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def told(name: str, at: datetime, event_id: str | None = None, **data: Any) -> dict[str, Any]:
    """A storefront fixture's body as if it happened at ``at`` and came a moment later."""
    body: dict[str, Any] = json.loads((FIXTURES / "storefront" / f"{name}.json").read_bytes())
    body["at"] = iso(at)
    body["received_at"] = iso(at + timedelta(milliseconds=400))
    if event_id is not None:
        body["id"] = event_id
    body["data"].update(data)
    return body


def store(runtime: Runtime, shop_key: str, *bodies: dict[str, Any]) -> int:
    """Store storefront events as the endpoint does (a replay is stored once) and ask for
    the shop's drain; the shop's id."""
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == shop_key)).one()
        rows = []
        for body in bodies:
            key = hashlib.sha256(f"{body['visitor']}:{body['id']}".encode()).hexdigest()
            rows.append(
                {
                    "shop_id": shop.id,
                    "platform": shop.platform,
                    "topic": f"storefront/{body['type']}",
                    "delivery_key": f"sf-{key}",
                    "headers": {"X-Triggerpost-Source": "storefront"},
                    "body": json.dumps(body, sort_keys=True, separators=(",", ":")).encode(),
                    "received_at": datetime.fromisoformat(body["received_at"]),
                    "triggered_at": None,
                    "status": "received",
                    "attempts": 0,
                }
            )
        deliveries.insert_deliveries(session.connection(), rows)
        shop_id = shop.id
    deliveries.notify(runtime, shop_id)  # as the intake writer does after its commit
    return shop_id


def drain(runtime: Runtime, shop_key: str, *bodies: dict[str, Any]) -> int:
    shop_id = store(runtime, shop_key, *bodies)
    deliveries.drain(runtime, shop_id)
    return shop_id


def views_of(runtime: Runtime, email: str | None) -> list[str | None]:
    """Product ids of the logged views of the contact with this address (None: nobody's)."""
    with runtime.sessions() as session:
        contact_id = (
            session.scalar(select(Contact.id).where(Contact.email == email)) if email else None
        )
        rows = session.scalars(
            select(StoredEvent)
            .where(
                StoredEvent.type == "ProductViewed",
                StoredEvent.contact_id.is_(None)
                if contact_id is None
                else StoredEvent.contact_id == contact_id,
            )
            .order_by(StoredEvent.occurred_at, StoredEvent.id)
        ).all()
        return [row.data["product_id"] for row in rows]


def contact(runtime: Runtime, email: str) -> Contact:
    with runtime.sessions() as session:
        return session.scalars(select(Contact).where(Contact.email == email)).one()


@pytest.fixture
def start() -> datetime:
    return now().replace(microsecond=0) - timedelta(hours=2)


# --- visitors and stitching ----------------------------------------------------------


def test_anonymous_views_become_the_contacts_once_she_says_who_she_is(
    client: FlaskClient, runtime: Runtime, start: datetime
) -> None:
    socks = told("product_viewed__anonymous", start, "ev_view_socks_1")
    hat = told("product_viewed__anonymous", start + timedelta(minutes=2), "ev_view_hat_1")
    hat["data"]["product"]["id"] = "1190"
    drain(runtime, WOO_KEY, socks, hat)
    assert views_of(runtime, None) == ["1186", "1190"]  # nobody's yet
    with runtime.sessions() as session:
        assert count(session, Contact) == 0
        assert count(session, VisitorEvent) == 2

    identify = told("identify__newsletter_form", start + timedelta(minutes=5), "ev_identify_1")
    drain(runtime, WOO_KEY, identify)

    assert views_of(runtime, ELIAS) == ["1186", "1190"]
    elias = contact(runtime, ELIAS)
    assert elias.first_name == "Elias"
    assert elias.consent_state is None  # a browser never grants consent
    assert elias.consent_at is None
    with runtime.sessions() as session:
        assert count(session, VisitorEvent) == 0
        link = session.scalars(select(Visitor)).one()
        assert (link.visitor_id, link.contact_id) == (VISITOR, elias.id)
        # the views stitched are the views she made, at their own times
        stitched = session.scalars(
            select(StoredEvent).where(StoredEvent.contact_id == elias.id)
        ).all()
        times = sorted(r.occurred_at for r in stitched if r.type == "ProductViewed")
        assert times == [start, start + timedelta(minutes=2)]


def test_a_replayed_or_repeated_identify_stitches_nothing_twice(
    client: FlaskClient, runtime: Runtime, start: datetime
) -> None:
    identify = told("identify__newsletter_form", start + timedelta(minutes=5), "ev_identify_1")
    drain(runtime, WOO_KEY, told("product_viewed__anonymous", start, "ev_view_1"), identify)
    assert views_of(runtime, ELIAS) == ["1186"]

    drain(runtime, WOO_KEY, identify)  # the same event again: stored once
    again = told("identify__newsletter_form", start + timedelta(minutes=9), "ev_identify_2")
    drain(runtime, WOO_KEY, again)  # the visitor says it again, in a new event
    assert views_of(runtime, ELIAS) == ["1186"]
    with runtime.sessions() as session:
        assert count(session, StoredEvent, StoredEvent.type == "VisitorIdentified") == 2
        assert count(session, Delivery) == 3


def test_a_linked_visitors_later_views_are_the_contacts_as_they_come(
    client: FlaskClient, runtime: Runtime, start: datetime
) -> None:
    drain(runtime, WOO_KEY, told("identify__newsletter_form", start, "ev_identify_1"))
    later = told("product_viewed__anonymous", start + timedelta(minutes=3), "ev_view_later")
    drain(runtime, WOO_KEY, later)
    assert views_of(runtime, ELIAS) == ["1186"]
    assert views_of(runtime, None) == []
    with runtime.sessions() as session:
        assert count(session, VisitorEvent) == 0
        [view] = session.scalars(select(StoredEvent).where(StoredEvent.type == "ProductViewed"))
        assert view.data["customer"]["email"] == ELIAS
        assert view.data["visitor_id"] == VISITOR


def test_a_view_naming_a_logged_in_customer_links_the_visitor_and_stitches_the_earlier(
    client: FlaskClient, runtime: Runtime, start: datetime
) -> None:
    drain(runtime, WOO_KEY, told("product_viewed__anonymous", start, "ev_view_1"))
    seen = told("product_viewed__logged_in_customer", start + timedelta(minutes=1), "ev_view_2")
    drain(runtime, WOO_KEY, seen)
    assert views_of(runtime, ELIAS) == ["1186", "1190"]


def test_a_second_person_on_the_same_browser_takes_it_from_then_on_never_the_past(
    client: FlaskClient, runtime: Runtime, start: datetime
) -> None:
    first = told("identify__newsletter_form", start, "ev_identify_elias")
    viewed = told("product_viewed__anonymous", start + timedelta(minutes=1), "ev_view_elias")
    second = told(
        "identify__newsletter_form",
        start + timedelta(minutes=10),
        "ev_identify_sara",
        email="sara@example.se",
        first_name="Sara",
    )
    hers = told("product_viewed__anonymous", start + timedelta(minutes=11), "ev_view_sara")
    hers["data"]["product"]["id"] = "1190"
    drain(runtime, WOO_KEY, first, viewed, second, hers)
    assert views_of(runtime, ELIAS) == ["1186"]
    assert views_of(runtime, "sara@example.se") == ["1190"]

    # a late word from Elias's time links nothing: the newer word stands
    late = told("identify__newsletter_form", start + timedelta(minutes=4), "ev_identify_elias_late")
    drain(runtime, WOO_KEY, late)
    sara = contact(runtime, "sara@example.se")
    with runtime.sessions() as session:
        link = session.scalars(select(Visitor)).one()
        assert link.contact_id == sara.id


def test_identify_never_touches_a_known_customers_consent_or_identity(
    client: FlaskClient, runtime: Runtime, start: datetime
) -> None:
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == WOO_KEY)).one()
        known = ev.Customer(
            customer_id="57",
            email=ELIAS,
            first_name="Elias",
            consent=ev.Consent(ev.ConsentState.UNSUBSCRIBED, "woocommerce:customer_meta", start),
        )
        apply.apply(session, shop, ev.CustomerUpdated(start, known), delivery_id=None)
        other = ev.Customer(customer_id="58", email="sara@example.se")
        apply.apply(session, shop, ev.CustomerUpdated(start, other), delivery_id=None)
    # a browser names Sara's customer id beside Elias's address, and a new first name
    seen = told("product_viewed__logged_in_customer", start + timedelta(minutes=1), "ev_1")
    seen["data"]["customer"] = {"email": ELIAS, "customer_id": "58", "first_name": "Eve"}
    identify = told("identify__newsletter_form", start + timedelta(minutes=2), "ev_2")
    identify["data"]["customer_id"] = "58"
    drain(runtime, WOO_KEY, seen, identify)

    elias = contact(runtime, ELIAS)
    assert (elias.customer_id, elias.first_name) == ("57", "Elias")
    assert elias.consent_state == ev.ConsentState.UNSUBSCRIBED
    assert contact(runtime, "sara@example.se").customer_id == "58"


def test_an_anonymous_visitors_events_are_kept_bounded_and_pruned_after_30_days(
    client: FlaskClient, runtime: Runtime, start: datetime
) -> None:
    old = start - timedelta(days=31)
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == WOO_KEY)).one()
        for n in range(visitors.KEEP_PER_VISITOR + 5):
            view = ev.ProductViewed(start - timedelta(minutes=n), str(n), visitor_id=VISITOR)
            apply.apply(session, shop, view, delivery_id=None)
        apply.apply(
            session, shop, ev.ProductViewed(old, "old", visitor_id=OTHER_VISITOR), delivery_id=None
        )
    with runtime.sessions() as session:
        kept = session.scalars(
            select(VisitorEvent.event).where(VisitorEvent.visitor_id == VISITOR)
        ).all()
        # the newest 200 of this visitor
        assert sorted(int(e["data"]["product_id"]) for e in kept) == list(range(200))
    assert sweeper.sweep_visitors(runtime) == 1
    with runtime.sessions() as session:
        assert count(session, VisitorEvent, VisitorEvent.visitor_id == OTHER_VISITOR) == 0
        assert count(session, VisitorEvent) == visitors.KEEP_PER_VISITOR


def test_her_export_names_the_browsers_she_used_and_her_erasure_unlinks_them(
    client: FlaskClient, runtime: Runtime, start: datetime
) -> None:
    drain(runtime, WOO_KEY, told("identify__newsletter_form", start, "ev_identify_1"))
    with runtime.sessions() as session:
        elias = session.scalars(select(Contact).where(Contact.email == ELIAS)).one()
        exported = privacy.export_contact(session, elias)
        assert exported["storefront_visitors"] == [
            {"visitor_id": VISITOR, "linked_at": start.isoformat()}
        ]
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == WOO_KEY)).one()
        request = ev.CustomerRedactRequested(start + timedelta(hours=1), None, ELIAS)
        _contacts, counts, _ = privacy._redact(session, shop, request)
        assert counts["visitors"] == 1
    with runtime.sessions() as session:
        assert count(session, Visitor) == 0
    # her browser's next view is nobody's
    drain(runtime, WOO_KEY, told("product_viewed__anonymous", start + timedelta(hours=2), "v2"))
    assert views_of(runtime, None) == ["1186"]


def test_a_malformed_storefront_event_fails_with_its_path_and_holds_up_nothing(
    client: FlaskClient, runtime: Runtime, start: datetime
) -> None:
    bad = told("cart_viewed__anonymous", start, "ev_bad")
    bad["data"]["cart"]["items"][1]["quantity"] = -2
    good = told("product_viewed__anonymous", start, "ev_good")
    drain(runtime, WOO_KEY, bad, good)
    with runtime.sessions() as session:
        rows = session.scalars(select(Delivery).order_by(Delivery.id)).all()
        assert [r.status for r in rows] == ["failed", "processed"]
        assert rows[0].error is not None
        assert "storefront.data.cart.items[1].quantity must be positive" in rows[0].error


# --- WooCommerce carts before "Place order" ------------------------------------------


def woo_order(name: str, at: datetime, *, consent: str | None = "yes", **changes: Any) -> bytes:
    """A WooCommerce order fixture placed at ``at`` (modified a moment later)."""
    body: dict[str, Any] = json.loads((FIXTURES / "woocommerce" / f"{name}.json").read_bytes())
    naive = at.astimezone(UTC).replace(tzinfo=None)
    body["date_created_gmt"] = naive.isoformat(timespec="seconds")
    body["date_modified_gmt"] = (naive + timedelta(seconds=30)).isoformat(timespec="seconds")
    if body.get("date_paid_gmt"):
        body["date_paid_gmt"] = (naive + timedelta(seconds=20)).isoformat(timespec="seconds")
    if consent is not None:
        body["meta_data"].append(
            {"id": 91006, "key": "_triggerpost_marketing_consent", "value": consent}
        )
    body.update(changes)
    return json.dumps(body, separators=(",", ":")).encode()


def webhook(client: FlaskClient, topic: str, body: bytes, delivery_id: str) -> None:
    headers = woocommerce_headers(topic, body, WOO_SECRET, STORE, delivery_id)
    response = post(client, "woocommerce", body, headers)
    assert response.status_code == 200, response.data


def woo_shop(runtime: Runtime, settings: dict[str, Any] = FIRST_AT_ONCE) -> int:
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == WOO_KEY)).one()
        shop.settings = settings
        return shop.id


def cart_recovery(runtime: Runtime) -> tuple[list[Enrollment], list[Message]]:
    with runtime.sessions() as session:
        enrollments = session.scalars(
            select(Enrollment).where(Enrollment.flow == "cart_recovery")
        ).all()
        messages = session.scalars(
            select(Message).where(Message.flow == "cart_recovery").order_by(Message.id)
        ).all()
        return list(enrollments), list(messages)


def sent(runtime: Runtime) -> int:
    return len(list(runtime.settings.outbox_dir.glob("*.eml")))


def test_cart_then_pending_order_then_paid_order_is_one_checkout_and_one_email(
    client: FlaskClient, runtime: Runtime
) -> None:
    """The email typed at the checkout makes the cart the checkout ``cart-<token>``; the
    order "Place order" makes (marked with the cart's token) is that checkout, so it
    does not start a second series; one reminder goes, and the payment ends it."""
    woo_shop(runtime)
    at = now().replace(microsecond=0) - timedelta(minutes=20)
    store(
        runtime,
        WOO_KEY,
        told("cart_viewed__anonymous", at, "ev_cart"),
        told("checkout_started__email_typed", at + timedelta(minutes=1), "ev_checkout"),
    )
    pending = woo_order("order_created__pending_cart_token", at + timedelta(minutes=3))
    webhook(client, "order.created", pending, "d-pending")
    run_worker(runtime)

    enrollments, messages = cart_recovery(runtime)
    assert [e.subject for e in enrollments] == [f"cart-{CART}"]
    assert [m.state for m in messages if m.step == "email_1"] == ["sent"]
    assert sent(runtime) == 1
    with runtime.sessions() as session:
        checkout = session.scalars(select(Checkout)).one()
        assert checkout.token == f"cart-{CART}"
        assert checkout.email == ELIAS

    paid = woo_order("order_updated__processing_cart_token", at + timedelta(minutes=3))
    webhook(client, "order.updated", paid, "d-paid")
    run_worker(runtime)

    enrollments, messages = cart_recovery(runtime)
    assert [e.state for e in enrollments] == ["exited"]
    assert [m.state for m in messages if m.state == "sent"] == ["sent"]
    assert sent(runtime) == 1
    with runtime.sessions() as session:
        checkout = session.scalars(select(Checkout)).one()
        assert checkout.status == CheckoutStatus.COMPLETED
        assert checkout.order_id == "4812"


def test_a_subscribers_cart_left_before_place_order_gets_its_reminder_with_the_cart_link(
    client: FlaskClient, runtime: Runtime
) -> None:
    woo_shop(runtime)
    at = now().replace(microsecond=0) - timedelta(minutes=20)
    subscribed = ev.Customer(
        customer_id="57",
        email=ELIAS,
        consent=ev.Consent(ev.ConsentState.SUBSCRIBED, "woocommerce:customer_meta", at),
    )
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == WOO_KEY)).one()
        apply.apply(session, shop, ev.CustomerUpdated(at, subscribed), delivery_id=None)
    # she signed up on this browser earlier; now her cart, with no email in it
    store(
        runtime,
        WOO_KEY,
        told("identify__newsletter_form", at - timedelta(hours=1), "ev_identify"),
        told("cart_viewed__anonymous", at, "ev_cart"),
    )
    run_worker(runtime)
    enrollments, _ = cart_recovery(runtime)
    assert [e.subject for e in enrollments] == [f"cart-{CART}"]
    assert sent(runtime) == 1
    elias = contact(runtime, ELIAS)
    with runtime.sessions() as session:
        checkout = session.scalars(select(Checkout)).one()
        assert checkout.recovery_url == f"https://{WOO_KEY}/?triggerpost_cart={CART}"
        assert checkout.contact_id == elias.id


def test_a_shopify_storefront_cart_stays_a_cart_even_with_an_email(
    client: FlaskClient, runtime: Runtime, start: datetime
) -> None:
    """Shopify's checkouts come by webhook: no checkout, no reminder from a pixel's cart."""
    body = told("checkout_started__email_typed", start, "ev_checkout")
    for item in body["data"]["cart"]["items"]:
        item.pop("url")
    drain(runtime, SHOPIFY_SHOP, body)
    elias = contact(runtime, ELIAS)
    with runtime.sessions() as session:
        assert count(session, Checkout) == 0
        [cart] = session.scalars(select(StoredEvent).where(StoredEvent.type == "CartUpdated"))
        assert cart.contact_id == elias.id
    assert cart_recovery(runtime) == ([], [])


def test_without_the_plugins_cart_token_the_pending_order_is_still_recovered(
    client: FlaskClient, runtime: Runtime
) -> None:
    """The fallback: a store whose orders carry no cart token keeps the pending-order
    checkout (named by the order's id)."""
    woo_shop(runtime)
    at = now().replace(microsecond=0) - timedelta(minutes=20)
    webhook(client, "order.created", woo_order("order_created__pending_guest", at), "d-1")
    run_worker(runtime)
    enrollments, _ = cart_recovery(runtime)
    assert [e.subject for e in enrollments] == ["4812"]
    assert sent(runtime) == 1


def test_an_event_replayed_from_the_log_makes_nothing_the_log_holds_already(
    client: FlaskClient, runtime: Runtime, start: datetime
) -> None:
    """A dry run replays the event log, where a stitched view and the checkout a cart
    was are logged as their own events: replaying the cart must not make them again."""
    cart = ev.CartUpdated(
        start,
        CART,
        (),
        total=ev.Money(Decimal("10.00"), "SEK"),
        customer=ev.Customer(customer_id=None, email=ELIAS),
        visitor_id=VISITOR,
    )
    anonymous = ev.ProductViewed(start, "1186", visitor_id=OTHER_VISITOR)
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == WOO_KEY)).one()
        apply.apply(session, shop, anonymous, delivery_id=None, replayed=True)
        apply.apply(session, shop, cart, delivery_id=None, replayed=True)
    with runtime.sessions() as session:
        assert count(session, Checkout) == 0
        assert count(session, VisitorEvent) == 0
        assert count(session, Visitor) == 0
    with runtime.sessions.begin() as session:  # the same cart as it first came
        shop = session.scalars(select(Shop).where(Shop.key == WOO_KEY)).one()
        apply.apply(session, shop, cart, delivery_id=None)
    with runtime.sessions() as session:
        assert count(session, Checkout) == 1
