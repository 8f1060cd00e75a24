"""Webhook intake: what is accepted, what is refused, and that refusals leave nothing."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from connector.app import create_app
from jobs.intake.deliveries import MAX_DEPTH, drain_flag
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.store.models import Delivery, DeliveryStatus, Shop
from tests.support import (
    SHOPIFY_SECRET,
    SHOPIFY_SHOP,
    STORE,
    WOO_SECRET,
    count,
    dumps,
    post,
    shopify_headers,
    woocommerce_headers,
)

SHOP = SHOPIFY_SHOP
APP_SECRET = SHOPIFY_SECRET
BODY = dumps({"token": "abc", "email": "kund@example.se"})


def deliveries(runtime: Runtime) -> list[Delivery]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def shopify(topic: str = "checkouts/update", body: bytes = BODY, **kw: str) -> dict[str, str]:
    defaults = {"secret": APP_SECRET, "shop": SHOP, "webhook_id": "wh-1"}
    return shopify_headers(topic, body, **{**defaults, **kw})


def test_signed_shopify_delivery_is_stored_before_the_answer(
    client: FlaskClient, runtime: Runtime
) -> None:
    response = post(client, "shopify", BODY, shopify())
    assert response.status_code == 200
    assert response.json == {"status": "stored"}
    [stored] = deliveries(runtime)
    assert stored.body == BODY
    assert stored.topic == "checkouts/update"
    assert stored.delivery_key == "wh-1"
    assert stored.status == DeliveryStatus.RECEIVED
    assert stored.headers["X-Shopify-Shop-Domain"] == SHOP
    assert stored.triggered_at is not None
    # handed over: one drain job queued for the shop, and its flag set
    assert runtime.queue("intake").count == 1
    assert runtime.redis.exists(drain_flag(stored.shop_id))


def test_many_deliveries_cost_one_drain_job(client: FlaskClient, runtime: Runtime) -> None:
    for n in range(5):
        assert post(client, "shopify", BODY, shopify(webhook_id=f"wh-{n}")).status_code == 200
    assert len(deliveries(runtime)) == 5
    assert runtime.queue("intake").count == 1


def test_replayed_delivery_is_stored_once(client: FlaskClient, runtime: Runtime) -> None:
    for _ in range(3):
        response = post(client, "shopify", BODY, shopify())
        assert response.status_code == 200
    assert response.json == {"status": "duplicate"}
    assert len(deliveries(runtime)) == 1


def test_header_names_are_case_insensitive(client: FlaskClient, runtime: Runtime) -> None:
    headers = {k.lower(): v for k, v in shopify().items()}
    assert post(client, "shopify", BODY, headers).status_code == 200
    assert len(deliveries(runtime)) == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param(shopify(secret="not-the-secret"), 401, id="forged"),
        pytest.param(shopify(shop="someone-else.myshopify.com"), 401, id="unknown-shop"),
        pytest.param(shopify(shop="evil.example.com"), 401, id="not-a-shop-domain"),
        pytest.param({**shopify(), "X-Shopify-Hmac-Sha256": ""}, 401, id="unsigned"),
        pytest.param(
            {k: v for k, v in shopify().items() if k != "X-Shopify-Topic"}, 400, id="no-topic"
        ),
    ],
)
def test_refused_deliveries_leave_nothing(
    client: FlaskClient, runtime: Runtime, headers: dict[str, str], status: int
) -> None:
    response = post(client, "shopify", BODY, headers)
    assert response.status_code == status
    assert response.json["status"] == "refused"
    assert deliveries(runtime) == []
    assert runtime.queue("intake").count == 0


def test_truncated_body_fails_the_signature(client: FlaskClient, runtime: Runtime) -> None:
    response = post(client, "shopify", BODY[:-5], shopify())
    assert response.status_code == 401
    assert deliveries(runtime) == []


def test_malformed_json_is_a_clear_400(
    client: FlaskClient, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    body = BODY[:-5]  # truncated, but signed as it is: the sender's own bug
    with caplog.at_level(logging.WARNING):
        response = post(client, "shopify", body, shopify(body=body))
    assert response.status_code == 400
    assert response.json["status"] == "malformed"
    assert "not valid JSON" in response.json["message"]
    assert "not valid JSON" in caplog.text
    assert deliveries(runtime) == []


def test_wrong_content_type_is_415(client: FlaskClient, runtime: Runtime) -> None:
    headers = {**shopify(), "Content-Type": "application/x-www-form-urlencoded"}
    assert post(client, "shopify", BODY, headers).status_code == 415
    assert deliveries(runtime) == []


def test_oversized_body_is_413(client: FlaskClient, runtime: Runtime) -> None:
    limit = runtime.settings.max_webhook_bytes
    body = dumps({"token": "x", "note": "a" * limit})
    response = post(client, "shopify", body, shopify(body=body))
    assert response.status_code == 413
    assert deliveries(runtime) == []


def test_unsupported_topic_is_200_and_logged(
    client: FlaskClient, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        response = post(client, "shopify", BODY, shopify(topic="bulk_operations/finish"))
    assert response.status_code == 200
    assert response.json == {"status": "unsupported"}
    assert "unsupported topic 'bulk_operations/finish'" in caplog.text
    assert deliveries(runtime) == []


def test_unknown_platform_is_404(client: FlaskClient) -> None:
    assert post(client, "magento", BODY, shopify()).status_code == 404


def test_woocommerce_ping_is_answered_200(client: FlaskClient, runtime: Runtime) -> None:
    response = client.post(
        "/webhooks/woocommerce",
        data=b"webhook_id=17",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert deliveries(runtime) == []


def test_woocommerce_delivery_found_by_normalised_source(
    client: FlaskClient, runtime: Runtime
) -> None:
    headers = woocommerce_headers(
        "order.updated", BODY, WOO_SECRET, "https://Butik.Example.se/", "9f2c" * 8
    )
    response = post(client, "woocommerce", BODY, headers)
    assert response.status_code == 200
    [stored] = deliveries(runtime)
    with runtime.sessions() as session:
        assert session.get_one(Shop, stored.shop_id).platform == "woocommerce"
    assert stored.delivery_key.startswith("17/" + "9f2c" * 8 + ":")


def test_two_woocommerce_deliveries_in_one_second_are_both_kept(
    client: FlaskClient, runtime: Runtime
) -> None:
    # WooCommerce's delivery id is wp_hash(webhook id . current second): two
    # changes saved in the same second arrive under one id with different bodies
    first = b'{"id":4711,"status":"pending","date_modified_gmt":"2026-09-14T17:12:41"}'
    second = b'{"id":4712,"status":"pending","date_modified_gmt":"2026-09-14T17:12:41"}'
    for body in (first, second, first):
        headers = woocommerce_headers("order.updated", body, WOO_SECRET, STORE, "5a" * 16)
        assert post(client, "woocommerce", body, headers).status_code == 200
    stored = deliveries(runtime)
    assert sorted(d.body for d in stored) == sorted([first, second])  # the replay: once


def test_the_same_delivery_id_of_another_webhook_is_another_delivery(
    client: FlaskClient, runtime: Runtime
) -> None:
    for webhook_id in ("17", "18"):
        headers = woocommerce_headers("order.updated", BODY, WOO_SECRET, STORE, "5a" * 16)
        headers["X-WC-Webhook-ID"] = webhook_id
        assert post(client, "woocommerce", BODY, headers).status_code == 200
    assert len(deliveries(runtime)) == 2


@pytest.mark.parametrize(
    "source", ["https://a:abc/", "https://[::1", "http://", "ftp://shop.example.com", "::::"]
)
def test_a_malformed_woocommerce_source_is_refused_not_an_error(
    client: FlaskClient, runtime: Runtime, source: str
) -> None:
    headers = woocommerce_headers("order.updated", BODY, WOO_SECRET, source, "d1")
    assert post(client, "woocommerce", BODY, headers).status_code == 401
    assert deliveries(runtime) == []


def test_woocommerce_forged_delivery_is_refused(client: FlaskClient, runtime: Runtime) -> None:
    headers = woocommerce_headers("order.updated", BODY, "guessed", STORE, "d1")
    assert post(client, "woocommerce", BODY, headers).status_code == 401
    # a Shopify signature does not open a WooCommerce shop either
    headers = woocommerce_headers("order.updated", BODY, APP_SECRET, STORE, "d1")
    assert post(client, "woocommerce", BODY, headers).status_code == 401
    assert deliveries(runtime) == []


def test_deliveries_without_an_id_are_deduplicated_by_content(
    client: FlaskClient, runtime: Runtime
) -> None:
    headers = woocommerce_headers("order.updated", BODY, WOO_SECRET, STORE, "")
    for _ in range(2):
        assert post(client, "woocommerce", BODY, headers).status_code == 200
    [stored] = deliveries(runtime)
    assert stored.delivery_key.startswith("sha256:")


def test_new_webhook_secret_works_at_once(client: FlaskClient, runtime: Runtime) -> None:
    old = woocommerce_headers("order.updated", BODY, WOO_SECRET, STORE, "d1")
    assert post(client, "woocommerce", BODY, old).status_code == 200  # identity now cached
    with runtime.sessions.begin() as session:
        add_shop(session, runtime.secrets, "woocommerce", STORE, webhook_secret="rotated-secret")
    new = woocommerce_headers("order.updated", BODY, "rotated-secret", STORE, "d2")
    assert post(client, "woocommerce", BODY, new).status_code == 200
    old_again = woocommerce_headers("order.updated", BODY, WOO_SECRET, STORE, "d3")
    assert post(client, "woocommerce", BODY, old_again).status_code == 401


def test_previous_shopify_secret_is_accepted_during_rotation(runtime: Runtime) -> None:
    from dataclasses import replace

    from jobs import runtime as runtimes

    rotated = replace(
        runtime.settings,
        shopify_api_secret="new-app-secret",
        shopify_api_secret_previous=APP_SECRET,
    )
    other = Runtime.create(rotated)
    try:
        with other.sessions.begin() as session:
            add_shop(session, other.secrets, "shopify", SHOP)
        client = create_app(runtime=other).test_client()
        assert post(client, "shopify", BODY, shopify(secret=APP_SECRET)).status_code == 200
        headers = shopify(secret="new-app-secret", webhook_id="wh-2")
        assert post(client, "shopify", BODY, headers).status_code == 200
        headers = shopify(secret="retired-secret", webhook_id="wh-3")
        assert post(client, "shopify", BODY, headers).status_code == 401
    finally:
        other.close()
        runtimes.install(runtime)


def test_shops_are_kept_apart(client: FlaskClient, runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        add_shop(session, runtime.secrets, "shopify", "other-shop.myshopify.com")
    post(client, "shopify", BODY, shopify())
    post(client, "shopify", BODY, shopify(shop="other-shop.myshopify.com"))
    with runtime.sessions() as session:
        # the same webhook id in two shops is two deliveries
        assert count(session, Delivery) == 2


def test_escaped_raw_body_is_verified_as_received_never_reserialised(
    client: FlaskClient, runtime: Runtime
) -> None:
    raw = (
        b'{"token":"esc-1","email":"kund@example.se",'
        b'"abandoned_checkout_url":"https:\\/\\/nordljus.se\\/checkouts\\/ac\\/x\\/recover?key=k\\u0026locale=sv",'
        b'"note":"\\u003cb\\u003eR\xc3\xb6d\\u003c\\/b\\u003e"}'
    )
    reserialised = json.dumps(json.loads(raw), separators=(",", ":")).encode()
    assert reserialised != raw
    # a signature over the re-serialised form does not vouch for what was sent
    forged = shopify(body=reserialised, webhook_id="wh-esc")
    assert post(client, "shopify", raw, forged).status_code == 401
    response = post(client, "shopify", raw, shopify(body=raw, webhook_id="wh-esc"))
    assert response.status_code == 200
    [stored] = deliveries(runtime)
    assert stored.body == raw


class UntouchedBody(io.BytesIO):
    """A request body that records whether anything read it."""

    touched = False

    def read(self, size: int | None = -1) -> bytes:
        self.touched = True
        return super().read(size)

    def readinto(self, buffer: Any) -> int:
        self.touched = True
        return super().readinto(buffer)

    def readline(self, size: int | None = -1) -> bytes:
        self.touched = True
        return super().readline(size)


def woocommerce(body: bytes = BODY, source: str = STORE) -> dict[str, str]:
    return woocommerce_headers("order.updated", body, WOO_SECRET, source, "d-unread")


@pytest.mark.parametrize(
    ("platform", "headers", "status"),
    [
        pytest.param("shopify", shopify(shop="someone-else.myshopify.com"), 401, id="unknown-shop"),
        pytest.param(
            "woocommerce", woocommerce(source="https://other.example/"), 401, id="unknown-store"
        ),
        pytest.param("shopify", {**shopify(), "X-Shopify-Hmac-Sha256": ""}, 401, id="unsigned"),
        pytest.param("shopify", woocommerce(), 401, id="woocommerce-headers-to-shopify"),
        pytest.param("woocommerce", shopify(), 401, id="shopify-headers-to-woocommerce"),
        pytest.param("magento", shopify(), 404, id="no-such-platform"),
    ],
)
def test_a_delivery_refused_on_its_headers_is_refused_without_reading_its_body(
    client: FlaskClient, runtime: Runtime, platform: str, headers: dict[str, str], status: int
) -> None:
    body = UntouchedBody(BODY * 100)
    response = client.post(f"/webhooks/{platform}", input_stream=body, headers=headers)
    assert response.status_code == status
    assert not body.touched
    assert deliveries(runtime) == []


def test_a_declared_length_over_the_limit_is_413_unread_for_any_shop(
    client: FlaskClient, runtime: Runtime
) -> None:
    declared = str(runtime.settings.max_webhook_bytes + 1)
    for shop in (SHOP, "someone-else.myshopify.com"):  # known or not: the same answer
        body = UntouchedBody(BODY)
        response = client.post(
            "/webhooks/shopify",
            input_stream=body,
            headers=shopify(shop=shop),
            environ_overrides={"CONTENT_LENGTH": declared},
        )
        assert response.status_code == 413
        assert not body.touched
    assert deliveries(runtime) == []


def post_chunked(client: FlaskClient, body: bytes, headers: dict[str, str]) -> Any:
    """As a server hands on a chunked request: no length, the stream ends at the last chunk."""
    return client.post(
        "/webhooks/shopify",
        data=body,
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_a_chunked_body_over_the_limit_is_413_not_a_bad_signature(
    client: FlaskClient, runtime: Runtime
) -> None:
    limit = runtime.settings.max_webhook_bytes
    body = dumps({"token": "x", "note": "a" * limit})
    response = post_chunked(client, body, shopify(body=body))
    assert response.status_code == 413
    assert response.json["status"] == "refused"
    assert deliveries(runtime) == []
    assert runtime.queue("intake").count == 0


def test_a_chunked_body_of_exactly_the_limit_is_stored(
    client: FlaskClient, runtime: Runtime
) -> None:
    limit = runtime.settings.max_webhook_bytes
    body = dumps({"token": "x", "note": ""})
    body = dumps({"token": "x", "note": "a" * (limit - len(body))})
    assert len(body) == limit
    response = post_chunked(client, body, shopify(body=body))
    assert response.status_code == 200
    [stored] = deliveries(runtime)
    assert stored.body == body


def nested(depth: int) -> bytes:
    """A checkout whose note is ``depth - 1`` arrays deep (the object is the first level)."""
    return b'{"token":"deep","note":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_a_signed_body_nested_too_deep_is_a_logged_400(
    client: FlaskClient, runtime: Runtime, caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    body = nested(depth)
    with caplog.at_level(logging.WARNING):
        response = post(client, "shopify", body, shopify(body=body))
    assert response.status_code == 400
    assert response.json["status"] == "malformed"
    assert f"nested deeper than {MAX_DEPTH} levels" in response.json["message"]
    assert f"nested deeper than {MAX_DEPTH} levels" in caplog.text
    assert deliveries(runtime) == []


def test_a_body_nested_to_the_limit_is_stored(client: FlaskClient, runtime: Runtime) -> None:
    body = nested(MAX_DEPTH)
    assert post(client, "shopify", body, shopify(body=body)).status_code == 200
    assert len(deliveries(runtime)) == 1


@pytest.mark.parametrize(
    "when", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+23:59", "tomorrow", "2026-13-01"]
)
def test_a_triggered_at_shopify_cannot_mean_is_ignored_and_the_delivery_stored(
    client: FlaskClient, runtime: Runtime, when: str
) -> None:
    headers = shopify()
    headers["X-Shopify-Triggered-At"] = when
    assert post(client, "shopify", BODY, headers).status_code == 200
    [stored] = deliveries(runtime)
    assert stored.triggered_at is None
