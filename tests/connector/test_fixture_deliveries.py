"""Every fixture delivery, signed as its platform signs it, through the whole path.

intake (verify, store) -> real RQ worker -> adapter -> store: each fixture is
stored once, processed once, and leaves exactly the events its adapter yields.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from adapters.platform import ShopContext, translate
from adapters.registry import PLATFORMS
from jobs.intake.privacy import ERASED_BODY
from jobs.runtime import Runtime
from jobs.store.models import Checkout, Contact, Delivery, Order, StoredEvent
from tests.support import (
    FIXTURES,
    SHOPIFY_SECRET,
    SHOPIFY_SHOP,
    STORE,
    WOO_SECRET,
    FixtureSet,
    post,
    run_worker,
    shopify_headers,
    woocommerce_headers,
)


def topic_of(platform: str, path: Path) -> str:
    return FixtureSet(platform).topic(path.stem)


CASES = [
    pytest.param(platform, path, id=f"{platform}/{path.stem}")
    for platform in ("shopify", "woocommerce")
    for path in FixtureSet(platform).paths()
]


def deliver(client: FlaskClient, platform: str, topic: str, body: bytes, delivery_id: str) -> str:
    if platform == "shopify":
        headers = shopify_headers(topic, body, SHOPIFY_SECRET, SHOPIFY_SHOP, delivery_id)
    else:
        headers = woocommerce_headers(topic, body, WOO_SECRET, STORE, delivery_id)
    response = post(client, platform, body, headers)
    assert response.status_code == 200, response.json
    status: str = response.json["status"]
    return status


def test_fixtures_cover_both_platforms() -> None:
    counted = {p: len(list((FIXTURES / p).glob("*.json"))) for p in ("shopify", "woocommerce")}
    assert all(n >= 5 for n in counted.values()), counted


@pytest.mark.parametrize(("platform", "path"), CASES)
def test_fixture_is_stored_once_and_processed_into_its_events(
    client: FlaskClient, runtime: Runtime, platform: str, path: Path
) -> None:
    body = path.read_bytes()
    topic = topic_of(platform, path)
    if topic in PLATFORMS[platform].ignored_topics:
        assert deliver(client, platform, topic, body, "d-1") == "ignored"
        with runtime.sessions() as session:
            assert session.scalars(select(Delivery)).all() == []
        return
    assert deliver(client, platform, topic, body, "d-1") == "stored"
    assert deliver(client, platform, topic, body, "d-1") == "duplicate"
    run_worker(runtime)

    with runtime.sessions() as session:
        delivery = session.scalars(select(Delivery)).one()
        if topic == "customers/redact":
            assert delivery.body == ERASED_BODY  # it named the person it erased
        else:
            assert delivery.body == body  # kept byte for byte, as signed
        assert (delivery.status, delivery.error) == ("processed", None)
        stored = session.scalars(select(StoredEvent).order_by(StoredEvent.id)).all()
        shop_key = SHOPIFY_SHOP if platform == "shopify" else "butik.example.se"
        expected = translate(
            PLATFORMS[platform],
            topic,
            json.loads(body),
            ShopContext(
                domain=shop_key,
                currency="SEK",
                base_url=f"https://{shop_key}",
                received_at=delivery.received_at,
            ),
        )
    assert [e.type for e in stored] == [type(e).__name__ for e in expected]
    assert all(e.delivery_id == delivery.id for e in stored)


def process(client: FlaskClient, runtime: Runtime, platform: str, *names: str) -> None:
    for n, name in enumerate(names):
        path = FIXTURES / platform / f"{name}.json"
        deliver(client, platform, topic_of(platform, path), path.read_bytes(), f"d-{n}")
    run_worker(runtime)


def test_shopify_customer_becomes_a_contact_with_consent(
    client: FlaskClient, runtime: Runtime
) -> None:
    process(client, runtime, "shopify", "customers_create__api_2024_10_consent")
    with runtime.sessions() as session:
        contact = session.scalars(select(Contact)).one()
    assert contact.email == "maryam.rezaei@example.se"
    assert (contact.first_name, contact.last_name) == ("مریم", "رضایی")
    assert contact.customer_id == "8012345679001"
    assert contact.consent_state is not None
    assert contact.consent_source is not None
    assert contact.consent_source.startswith("shopify:")


def test_shopify_checkout_then_order(client: FlaskClient, runtime: Runtime) -> None:
    process(client, runtime, "shopify", "checkouts_update__guest", "orders_create__customer")
    with runtime.sessions() as session:
        checkout = session.scalars(select(Checkout)).one()
        order = session.scalars(select(Order)).one()
        contacts = {c.email: c for c in session.scalars(select(Contact))}
    assert checkout.email == "jonas.berg@example.com"
    assert checkout.recovery_url is not None
    assert "/recover" in checkout.recovery_url
    assert checkout.contact_id == contacts["jonas.berg@example.com"].id
    assert order.email == "astrid.lindqvist@example.se"
    assert order.checkout_token == "4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a"
    buyer = contacts["astrid.lindqvist@example.se"]
    assert order.contact_id == buyer.id
    assert buyer.orders_count == 1
    assert buyer.total_spent == order.shop_total


def test_woocommerce_unpaid_order_is_a_checkout_until_paid(
    client: FlaskClient, runtime: Runtime
) -> None:
    process(client, runtime, "woocommerce", "order_created__pending_guest")
    with runtime.sessions() as session:
        checkout = session.scalars(select(Checkout)).one()
        contact = session.scalars(select(Contact)).one()
    assert (checkout.token, checkout.status) == ("4812", "open")
    assert checkout.recovery_url is not None
    assert "order-pay/4812" in checkout.recovery_url
    assert contact.email == "elias.nyberg@example.com"
    assert contact.customer_id is None  # a guest

    # the same order, paid a little later (WooCommerce sends order.updated)
    pending = json.loads(
        (FIXTURES / "woocommerce" / "order_created__pending_guest.json").read_text()
    )
    paid = pending | {
        "status": "processing",
        "date_paid_gmt": "2026-09-14T17:31:00",
        "date_modified_gmt": "2026-09-14T17:31:00",
    }
    body = json.dumps(paid, separators=(",", ":")).encode()
    assert deliver(client, "woocommerce", "order.updated", body, "d-paid") == "stored"
    run_worker(runtime)
    with runtime.sessions() as session:
        checkout = session.scalars(select(Checkout)).one()
        order = session.scalars(select(Order)).one()
        contact = session.scalars(select(Contact)).one()
    assert checkout.status == "completed"
    assert checkout.order_id == order.order_id == "4812"
    assert order.status == "paid"
    assert contact.orders_count == 1


def test_woocommerce_customer_becomes_a_contact(client: FlaskClient, runtime: Runtime) -> None:
    process(client, runtime, "woocommerce", "customer_created__persian_name")
    with runtime.sessions() as session:
        contact = session.scalars(select(Contact)).one()
    assert (contact.email, contact.first_name, contact.customer_id) == (
        "neda.karimi@example.se",
        "ندا",
        "31",
    )
    assert contact.consent_state is None  # WooCommerce says nothing about consent
