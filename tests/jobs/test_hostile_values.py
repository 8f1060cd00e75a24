"""Values a signed delivery may carry that no store column can hold as they are.

Each case goes the real way in (signed webhook -> intake -> RQ worker -> drain)
on SQLite and on PostgreSQL, and must end the same on both: processed with the
value made to fit (a NUL dropped, a lone surrogate replaced, a name or phone
clipped, a code that is no code left out), or refused with a ``WebhookError``
naming the field when an identity cannot be one. Never a database error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from adapters.payload import clean_text
from jobs.runtime import Runtime
from jobs.store.models import Checkout, Contact, Delivery, Order
from tests.support import (
    FIXTURES,
    SHOPIFY_SECRET,
    SHOPIFY_SHOP,
    STORE,
    WOO_SECRET,
    dumps,
    post,
    run_worker,
    shopify_headers,
    woocommerce_headers,
)

Edit = Callable[[dict[str, Any]], None]

#: a buyer's note in the phone field: 70 characters where the column holds 64
LONG_PHONE = "+46 70 123 45 67 (ring efter 17:00, annars sms till samma nummer tack)"


def deliver(
    client: FlaskClient, runtime: Runtime, platform: str, topic: str, fixture: str, edit: Edit
) -> Delivery:
    """The fixture, edited and signed as its platform signs, stored and drained."""
    payload = json.loads((FIXTURES / platform / f"{fixture}.json").read_bytes())
    edit(payload)
    body = dumps(payload)  # NUL and lone surrogates go out as JSON escapes
    if platform == "shopify":
        headers = shopify_headers(topic, body, SHOPIFY_SECRET, SHOPIFY_SHOP, "d-hostile")
    else:
        headers = woocommerce_headers(topic, body, WOO_SECRET, STORE, "d-hostile")
    response = post(client, platform, body, headers)
    assert response.status_code == 200, response.json
    assert response.json["status"] == "stored"
    run_worker(runtime)
    with runtime.sessions() as session:
        return session.scalars(select(Delivery)).one()


def processed(delivery: Delivery) -> None:
    assert (delivery.status, delivery.error) == ("processed", None)


def the_contact(runtime: Runtime) -> Contact:
    with runtime.sessions() as session:
        return session.scalars(select(Contact)).one()


# --- text no database can hold -----------------------------------------------------


def test_a_lone_surrogate_in_an_order_number_is_replaced_and_the_cancellation_applied(
    client: FlaskClient, runtime: Runtime
) -> None:
    def edit(order: dict[str, Any]) -> None:
        order["number"] = "\ud800"

    delivery = deliver(
        client, runtime, "woocommerce", "order.updated", "order_updated__cancelled", edit
    )

    processed(delivery)
    with runtime.sessions() as session:
        order = session.scalars(select(Order)).one()
    assert (order.name, order.status) == ("#\ufffd", "cancelled")


@pytest.mark.parametrize(
    ("key", "value", "read"),
    [
        ("first_name", "Ma\x00ryam", lambda c: c.first_name == "Maryam"),
        ("email", "maryam\x00.rezaei@example.se", lambda c: c.email == "maryam.rezaei@example.se"),
    ],
    ids=["first_name", "email"],
)
def test_a_nul_character_in_a_shopify_customer_is_dropped(
    client: FlaskClient, runtime: Runtime, key: str, value: str, read: Callable[[Contact], bool]
) -> None:
    def edit(customer: dict[str, Any]) -> None:
        customer[key] = value

    delivery = deliver(
        client,
        runtime,
        "shopify",
        "customers/create",
        "customers_create__api_2024_10_consent",
        edit,
    )

    processed(delivery)
    assert read(the_contact(runtime))


def test_a_nul_character_in_a_checkout_locale_is_dropped(
    client: FlaskClient, runtime: Runtime
) -> None:
    def edit(checkout: dict[str, Any]) -> None:
        checkout["customer_locale"] = "sv\x00-SE"

    delivery = deliver(
        client, runtime, "shopify", "checkouts/create", "checkouts_create__customer", edit
    )

    processed(delivery)
    with runtime.sessions() as session:
        assert session.scalars(select(Checkout.locale)).one() == "sv-SE"


def test_a_nul_character_in_a_payment_link_is_dropped(
    client: FlaskClient, runtime: Runtime
) -> None:
    link = "https://ullboden.se/kassan/order-pay/4812/?pay_for_order=true&key=wc_order_4812"

    def edit(order: dict[str, Any]) -> None:
        order["payment_url"] = link[:30] + "\x00" + link[30:]

    delivery = deliver(
        client, runtime, "woocommerce", "order.created", "order_created__pending_guest", edit
    )

    processed(delivery)
    with runtime.sessions() as session:
        assert session.scalars(select(Checkout.recovery_url)).one() == link


def test_the_payload_reader_hands_out_no_nul_and_no_lone_surrogate() -> None:
    assert clean_text("\x00Ma\x00ryam\x00") == "Maryam"
    assert clean_text("\udc00\ud800 #12") == "\ufffd\ufffd #12"
    assert clean_text("\x00 \x00") is None  # blank once cleaned
    assert clean_text("Öl 🍺 ok") == "Öl 🍺 ok"  # a real pair is one character, kept


# --- text longer than its column ---------------------------------------------------


def test_a_phone_longer_than_its_column_is_clipped_and_the_order_applied(
    client: FlaskClient, runtime: Runtime
) -> None:
    def edit(order: dict[str, Any]) -> None:
        order["billing"]["phone"] = LONG_PHONE

    delivery = deliver(
        client, runtime, "woocommerce", "order.created", "order_created__processing_paid", edit
    )

    processed(delivery)
    assert len(LONG_PHONE) == 70
    assert the_contact(runtime).phone == LONG_PHONE[:64]  # on SQLite as on PostgreSQL
    with runtime.sessions() as session:
        assert session.scalars(select(Order.status)).one() == "paid"


def test_a_country_code_that_is_no_country_code_is_left_out(
    client: FlaskClient, runtime: Runtime
) -> None:
    def edit(customer: dict[str, Any]) -> None:
        customer["default_address"]["country_code"] = "SVERIG"

    delivery = deliver(
        client,
        runtime,
        "shopify",
        "customers/create",
        "customers_create__api_2024_10_consent",
        edit,
    )

    processed(delivery)
    contact = the_contact(runtime)
    assert contact.country_code is None
    assert contact.email == "maryam.rezaei@example.se"


def test_an_email_longer_than_any_address_is_left_out(
    client: FlaskClient, runtime: Runtime
) -> None:
    def edit(customer: dict[str, Any]) -> None:
        customer["email"] = "m" * 400 + "@example.se"  # the column holds 320

    delivery = deliver(
        client,
        runtime,
        "shopify",
        "customers/create",
        "customers_create__api_2024_10_consent",
        edit,
    )

    processed(delivery)
    contact = the_contact(runtime)
    assert (contact.customer_id, contact.email) == ("8012345679001", None)


def set_woocommerce_customer_id(order: dict[str, Any]) -> None:
    order["customer_id"] = int("7" * 400)


def set_shopify_customer_id(customer: dict[str, Any]) -> None:
    customer["id"] = int("7" * 400)


@pytest.mark.parametrize(
    ("platform", "topic", "fixture", "edit"),
    [
        (
            "woocommerce",
            "order.created",
            "order_created__processing_paid",
            set_woocommerce_customer_id,
        ),
        (
            "shopify",
            "customers/create",
            "customers_create__api_2024_10_consent",
            set_shopify_customer_id,
        ),
    ],
    ids=["woocommerce-order", "shopify-customer"],
)
def test_a_customer_id_longer_than_any_id_fails_the_delivery_with_its_reason(
    client: FlaskClient, runtime: Runtime, platform: str, topic: str, fixture: str, edit: Edit
) -> None:
    delivery = deliver(client, runtime, platform, topic, fixture, edit)

    assert delivery.status == "failed"
    assert delivery.error == (
        "WebhookError: customer.customer_id is 400 characters long: no id is longer than 64"
    )
    with runtime.sessions() as session:
        assert session.scalars(select(Contact)).all() == []
        assert session.scalars(select(Order)).all() == []
