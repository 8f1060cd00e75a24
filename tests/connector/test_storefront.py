"""Storefront events: what a shopper's browser may post, and what is refused with nothing kept."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from connector.storefront import LIMITER, MAX_BODY, RateLimiter, RateLimits
from jobs.intake.deliveries import drain, drain_flag
from jobs.merchant import shops
from jobs.runtime import Runtime
from jobs.store.models import Delivery, DeliveryStatus, Shop
from tests.support import SHOPIFY_SHOP, STORE

SHOPIFY_ORIGIN = f"https://{SHOPIFY_SHOP}"
STORE_ORIGIN = STORE.rstrip("/")
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
VISITOR = "v_0123456789abcdefXYZ"


def shop_of(runtime: Runtime, platform: str) -> Shop:
    with runtime.sessions() as session:
        shop = session.scalars(select(Shop).where(Shop.platform == platform)).one()
        session.expunge(shop)
        return shop


def viewed(event_id: str = "ev-00000001", **product: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "product_viewed",
        "at": "2026-12-07T10:00:00.000Z",
        "data": {
            "product": {
                "id": "632910392",
                "title": "Ullmössa",
                "price": "249.00",
                "currency": "SEK",
                **product,
            },
        },
    }


CART = {
    "token": "c1234567890abcdef",
    "items": [
        {
            "product_id": "632910392",
            "variant_id": "808950810",
            "title": "Ullmössa",
            "quantity": 2,
            "price": "249.00",
        },
    ],
    "total": "498.00",
    "currency": "SEK",
}


def batch(*events: dict[str, Any], visitor: str = VISITOR) -> bytes:
    return json.dumps({"visitor": visitor, "events": list(events) or [viewed()]}).encode()


def send(
    client: FlaskClient,
    shop: Shop,
    body: bytes | None = None,
    *,
    origin: str | None = SHOPIFY_ORIGIN,
    agent: str | None = BROWSER,
    key: str | None = None,
    platform: str | None = None,
    content_type: str = "text/plain;charset=UTF-8",
    **headers: str,
) -> Any:
    sent = {"Content-Type": content_type, **headers}
    if origin is not None:
        sent["Origin"] = origin
    if agent is not None:
        sent["User-Agent"] = agent
    return client.post(
        f"/events/{platform or shop.platform}/{key or shop.storefront_key}",
        data=batch() if body is None else body,
        headers=sent,
    )


def stored(runtime: Runtime) -> list[Delivery]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


@pytest.fixture
def shopify(client: FlaskClient, runtime: Runtime) -> Shop:
    return shop_of(runtime, "shopify")


@pytest.fixture
def woo(client: FlaskClient, runtime: Runtime) -> Shop:
    return shop_of(runtime, "woocommerce")


def test_every_shop_gets_a_public_storefront_key(shopify: Shop, woo: Shop) -> None:
    for shop in (shopify, woo):
        assert shop.storefront_key.startswith("pk_")
        assert len(shop.storefront_key) == 29
        assert set(shop.storefront_key[3:]) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert shopify.storefront_key != woo.storefront_key


def test_a_product_view_is_stored_as_one_delivery_and_handed_to_the_drain(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    response = send(client, shopify)
    assert response.status_code == 202
    assert response.json == {"accepted": 1}
    assert response.headers["Access-Control-Allow-Origin"] == SHOPIFY_ORIGIN
    [delivery] = stored(runtime)
    assert delivery.shop_id == shopify.id
    assert delivery.platform == "shopify"
    assert delivery.topic == "storefront/product_viewed"
    key = hashlib.sha256(f"{VISITOR}:ev-00000001".encode()).hexdigest()
    assert delivery.delivery_key == f"sf-{key}"
    assert delivery.headers == {"X-Triggerpost-Source": "storefront"}
    body = json.loads(delivery.body)
    assert set(body) == {"visitor", "id", "type", "at", "received_at", "data"}
    assert body["visitor"] == VISITOR
    assert body["at"] == "2026-12-07T10:00:00.000Z"  # exactly as sent
    assert body["received_at"].endswith("Z")
    assert body["data"] == viewed()["data"]
    # canonical: sorted keys, no spaces
    assert (
        delivery.body
        == json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    assert delivery.status == DeliveryStatus.RECEIVED
    assert runtime.queue("intake").count == 1
    assert runtime.redis.exists(drain_flag(shopify.id))


def test_the_drain_takes_storefront_events_without_failing_on_them(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    assert send(client, shopify).status_code == 202
    assert drain(runtime, shopify.id) == 1
    [delivery] = stored(runtime)
    assert delivery.status == DeliveryStatus.PROCESSED
    assert delivery.error is None


def test_a_batch_stores_one_delivery_per_event_of_each_type(
    client: FlaskClient, runtime: Runtime, woo: Shop
) -> None:
    events = [
        viewed("ev-00000001"),
        {
            "id": "ev-00000002",
            "type": "product_added_to_cart",
            "at": "2026-12-07T10:00:01+01:00",
            "data": {"product": {"id": "17"}, "quantity": 1, "cart": CART},
        },
        {
            "id": "ev-00000003",
            "type": "cart_viewed",
            "at": "2026-12-07T10:00:02Z",
            "data": {"cart": CART},
        },
        {
            "id": "ev-00000004",
            "type": "checkout_started",
            "at": "2026-12-07T10:00:03Z",
            "data": {"cart": CART, "email": "kund@example.se"},
        },
        {
            "id": "ev-00000005",
            "type": "identify",
            "at": "2026-12-07T10:00:04Z",
            "data": {"email": "kund@example.se", "source": "checkout", "first_name": "Kim"},
        },
    ]
    response = send(
        client, woo, batch(*events), origin=STORE_ORIGIN, content_type="application/json"
    )
    assert response.status_code == 202, response.json
    assert response.json == {"accepted": 5}
    deliveries = stored(runtime)
    assert [d.topic for d in deliveries] == [
        "storefront/product_viewed",
        "storefront/product_added_to_cart",
        "storefront/cart_viewed",
        "storefront/checkout_started",
        "storefront/identify",
    ]
    assert {d.platform for d in deliveries} == {"woocommerce"}
    assert runtime.queue("intake").count == 1


def test_a_replayed_event_is_stored_once(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    for _ in range(3):
        assert send(client, shopify).status_code == 202
    twice_in_one = batch(viewed("ev-00000001"), viewed("ev-00000001"))
    assert send(client, shopify, twice_in_one).status_code == 202
    assert len(stored(runtime)) == 1


def test_the_same_event_id_from_another_visitor_is_another_event(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    send(client, shopify)
    send(client, shopify, batch(viewed(), visitor="w_0123456789abcdefXYZ"))
    assert len(stored(runtime)) == 2


@pytest.mark.parametrize(
    ("key", "platform"),
    [
        ("pk_" + "a" * 26, None),  # no shop has it
        ("not-a-key", None),
        (None, "woocommerce"),  # a Shopify shop's key under another platform
        (None, "magento"),
    ],
)
def test_an_unknown_key_or_platform_is_404_and_nothing_stored(
    client: FlaskClient, runtime: Runtime, shopify: Shop, key: str | None, platform: str | None
) -> None:
    response = send(client, shopify, key=key, platform=platform)
    assert response.status_code == 404
    assert response.json == {"error": "unknown key"}
    assert response.headers["Access-Control-Allow-Origin"] == SHOPIFY_ORIGIN
    assert stored(runtime) == []


def test_an_uninstalled_shop_takes_no_more_events(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    with runtime.sessions.begin() as session:
        shops.mark_uninstalled(session.get_one(Shop, shopify.id), shopify.installed_at)
    client.application.extensions["triggerpost.storefront_keys"].forget()
    assert send(client, shopify).status_code == 404
    assert stored(runtime) == []


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        f"http://{SHOPIFY_SHOP}",  # not https
        f"https://{SHOPIFY_SHOP}.evil.example",
        "https://butik.example.se",  # another shop's domain
        "null",
    ],
)
def test_an_origin_not_the_shops_is_403_and_nothing_stored(
    client: FlaskClient, runtime: Runtime, shopify: Shop, origin: str
) -> None:
    response = send(client, shopify, origin=origin)
    assert response.status_code == 403
    assert response.json == {"error": "origin not allowed"}
    assert stored(runtime) == []


def test_without_origin_or_referer_it_is_403(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    assert send(client, shopify, origin=None).status_code == 403
    assert stored(runtime) == []


def test_the_referer_stands_in_for_a_missing_origin(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    page = f"{SHOPIFY_ORIGIN}/products/ullmossa?variant=1"
    assert send(client, shopify, origin=None, Referer=page).status_code == 202
    assert send(client, shopify, origin=None, Referer="https://evil.example/x").status_code == 403
    assert len(stored(runtime)) == 1


def test_an_extra_origin_the_merchant_added_is_allowed(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    from jobs.merchant import storefront

    with runtime.sessions.begin() as session:
        storefront.set_origins(session.get_one(Shop, shopify.id), ["https://www.nordljus.se/"])
    client.application.extensions["triggerpost.storefront_keys"].forget()
    assert send(client, shopify, origin="https://www.nordljus.se").status_code == 202


def test_a_declared_length_over_16_kib_is_413_unread(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    response = send(client, shopify, b"x" * (MAX_BODY + 1))
    assert response.status_code == 413
    assert stored(runtime) == []


def test_a_streamed_body_without_length_over_16_kib_is_413(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    def chunked(body: bytes) -> Any:
        """As a server hands on a chunked request: no length, the stream ends at the last chunk."""
        return client.post(
            f"/events/shopify/{shopify.storefront_key}",
            data=body,
            headers={
                "Origin": SHOPIFY_ORIGIN,
                "User-Agent": BROWSER,
                "Content-Type": "text/plain",
                "Transfer-Encoding": "chunked",
            },
            environ_overrides={"wsgi.input_terminated": True},
        )

    assert chunked(batch(viewed(title="x" * MAX_BODY))).status_code == 413
    assert stored(runtime) == []
    assert chunked(batch()).status_code == 202
    assert len(stored(runtime)) == 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "body: Invalid input type"),
        (json.dumps({"visitor": "short", "events": [viewed()]}).encode(), "visitor"),
        (json.dumps({"visitor": VISITOR, "events": []}).encode(), "events"),
        (json.dumps({"visitor": VISITOR, "events": [viewed()] * 21}).encode(), "events"),
        (batch({**viewed(), "type": "page_viewed"}), "events.0.type"),
        (batch({**viewed(), "at": "2026-12-07T10:00:00"}), "events.0.at"),  # no zone
        (batch({**viewed(), "at": "yesterday"}), "events.0.at"),
        (batch({**viewed(), "id": "short"}), "events.0.id"),
        (batch({**viewed(), "extra": 1}), "events.0.extra"),
        (batch(viewed(id="gid://shopify/Product/1")), "events.0.data.product.id"),
        (batch(viewed(price=12.5)), "events.0.data.product.price"),
        (batch(viewed(currency="kronor")), "events.0.data.product.currency"),
        (
            batch(
                {
                    "id": "ev-00000002",
                    "type": "identify",
                    "at": "2026-12-07T10:00:00Z",
                    "data": {"email": "not an address", "source": "form"},
                }
            ),
            "email",
        ),
        (
            batch(
                {
                    "id": "ev-00000002",
                    "type": "cart_viewed",
                    "at": "2026-12-07T10:00:00Z",
                    "data": {"cart": {**CART, "items": [{**CART["items"][0], "quantity": 0}]}},
                }
            ),
            "quantity",
        ),
        (b"[" * 200 + b"]" * 200, "nested"),
    ],
)
def test_a_malformed_batch_is_400_and_nothing_is_stored(
    client: FlaskClient,
    runtime: Runtime,
    shopify: Shop,
    body: bytes,
    says: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="connector.storefront"):
        response = send(client, shopify, body)
    assert response.status_code == 400
    assert says in response.json["error"]
    assert response.headers["Access-Control-Allow-Origin"] == SHOPIFY_ORIGIN
    assert stored(runtime) == []
    assert "malformed" in caplog.text


def test_a_form_body_is_refused_as_not_json(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    response = send(client, shopify, batch(), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert stored(runtime) == []


@pytest.mark.parametrize(
    "agent",
    [
        "",
        " ",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0)",
        "Mozilla/5.0 (compatible; Yahoo! Slurp)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/131.0.0.0",
        "Mozilla/5.0 (Linux; Android 11) Chrome-Lighthouse",
        "facebookexternalhit/1.1",
        "Baiduspider",
        "AhrefsBot/7.0",
    ],
)
def test_a_bot_is_answered_204_and_nothing_is_stored(
    client: FlaskClient, runtime: Runtime, shopify: Shop, agent: str | None
) -> None:
    response = send(client, shopify, agent=agent)
    assert response.status_code == 204
    assert stored(runtime) == []
    assert runtime.queue("intake").count == 0


def limit(client: FlaskClient, runtime: Runtime, **limits: int) -> None:
    client.application.extensions[LIMITER] = RateLimiter(runtime, RateLimits(**limits))


def test_a_burst_over_the_per_ip_limit_is_429_with_retry_after(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    limit(client, runtime, per_ip=5, per_shop=1000, window=60)
    answers = [send(client, shopify, batch(viewed(f"ev-0000000{n}"))).status_code for n in range(8)]
    assert answers == [202] * 5 + [429] * 3
    refused = send(client, shopify, batch(viewed("ev-00000099")))
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["Access-Control-Allow-Origin"] == SHOPIFY_ORIGIN
    assert len(stored(runtime)) == 5
    # another visitor's address is counted on its own
    other = client.post(
        f"/events/shopify/{shopify.storefront_key}",
        data=batch(viewed("ev-00000100")),
        headers={"Origin": SHOPIFY_ORIGIN, "User-Agent": BROWSER, "Content-Type": "text/plain"},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert other.status_code == 202


def test_a_burst_over_the_per_shop_limit_is_429_from_any_address(
    client: FlaskClient, runtime: Runtime, shopify: Shop, woo: Shop
) -> None:
    limit(client, runtime, per_ip=1000, per_shop=3, window=60)
    answers = [
        client.post(
            f"/events/shopify/{shopify.storefront_key}",
            data=batch(viewed(f"ev-0000000{n}")),
            headers={"Origin": SHOPIFY_ORIGIN, "User-Agent": BROWSER},
            environ_base={"REMOTE_ADDR": f"198.51.100.{n}"},
        ).status_code
        for n in range(5)
    ]
    assert answers == [202, 202, 202, 429, 429]
    assert len(stored(runtime)) == 3
    # another shop's shoppers are not held up
    assert send(client, woo, origin=STORE_ORIGIN).status_code == 202


def test_behind_a_proxy_the_forwarded_address_is_counted_not_a_forged_one(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    from dataclasses import replace

    from connector.storefront import client_ip

    with client.application.test_request_context(
        headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    ):
        assert client_ip(0) == "10.0.0.2"  # no proxy declared: a client's header is ignored
        assert client_ip(1) == "203.0.113.9"  # the address our one proxy saw
    assert replace(runtime.settings, proxy_hops=1).proxy_hops == 1


def test_a_cors_preflight_is_answered_for_the_shops_origin_only(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    path = f"/events/shopify/{shopify.storefront_key}"
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    ok = client.options(path, headers={"Origin": SHOPIFY_ORIGIN, **asked})
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == SHOPIFY_ORIGIN
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert ok.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert int(ok.headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in ok.headers
    assert (
        client.options(path, headers={"Origin": "https://evil.example", **asked}).status_code == 403
    )
    assert (
        client.options(
            "/events/shopify/pk_" + "b" * 26, headers={"Origin": SHOPIFY_ORIGIN, **asked}
        ).status_code
        == 404
    )
    assert stored(runtime) == []


def test_storefront_answers_carry_no_session_cookie(client: FlaskClient, shopify: Shop) -> None:
    response = send(client, shopify)
    assert "Set-Cookie" not in response.headers


def test_hundreds_of_mangled_batches_get_a_4xx_or_a_202_never_a_5xx(
    client: FlaskClient, runtime: Runtime, woo: Shop
) -> None:
    """A valid batch with one value anywhere in it replaced by something of another shape."""
    import random

    rng = random.Random(19)
    strange: list[Any] = [
        None,
        True,
        -1,
        0,
        1.5,
        10**30,
        "",
        "x" * 3000,
        [],
        {},
        [[[]]],
        {"a": {"b": None}},
        "\u0000",
        "2026-13-45T99:99:99Z",
        "😀" * 50,
    ]
    base = {
        "visitor": VISITOR,
        "events": [
            viewed(),
            {
                "id": "ev-00000002",
                "type": "checkout_started",
                "at": "2026-12-07T10:00:03Z",
                "data": {
                    "cart": CART,
                    "email": "kund@example.se",
                    "customer": {"email": "kund@example.se", "first_name": "Kim"},
                },
            },
        ],
    }

    def paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        found = [here]
        if isinstance(node, dict):
            for key, value in node.items():
                found += paths(value, (*here, key))
        elif isinstance(node, list):
            for n, value in enumerate(node):
                found += paths(value, (*here, n))
        return found

    every = paths(base)[1:]
    limit(client, runtime, per_ip=10_000, per_shop=10_000)  # the limits are another test's
    answers = set()
    for n in range(300):
        mangled = json.loads(json.dumps(base))
        where = rng.choice(every)
        node = mangled
        for step in where[:-1]:
            node = node[step]
        node[where[-1]] = rng.choice(strange)
        for event in mangled["events"] if isinstance(mangled.get("events"), list) else []:
            if isinstance(event, dict) and isinstance(event.get("id"), str):
                event["id"] = f"{event['id'][:40]}-{n:05d}"  # each try a new event
        response = send(client, woo, json.dumps(mangled).encode(), origin=STORE_ORIGIN)
        answers.add(response.status_code)
        assert response.status_code in (202, 400), (where, response.status_code)
    assert answers == {202, 400}  # some changes are harmless (a title), most are not


def test_a_shopify_shop_takes_events_from_its_primary_domain_and_its_myshopify_domain(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    with runtime.sessions.begin() as session:
        session.get_one(Shop, shopify.id).base_url = "https://www.nordljus.se"  # its primary domain
    client.application.extensions["triggerpost.storefront_keys"].forget()
    assert (
        send(
            client, shopify, batch(viewed("ev-00000001")), origin="https://www.nordljus.se"
        ).status_code
        == 202
    )
    assert (
        send(client, shopify, batch(viewed("ev-00000002")), origin=SHOPIFY_ORIGIN).status_code
        == 202
    )
    assert (
        send(
            client, shopify, batch(viewed("ev-00000003")), origin="https://nordljus.se"
        ).status_code
        == 403
    )


def test_an_engineer_reads_storefront_events_stored_and_refused_on_metrics(
    client: FlaskClient, shopify: Shop
) -> None:
    from tests.connector.test_metrics import scrape, value

    def counted(outcome: str) -> float:
        return value(scrape(client), "triggerpost_storefront_events_total", outcome=outcome)

    before = {o: counted(o) for o in ("stored", "refused_origin", "bot", "malformed")}
    two = batch(viewed("ev-00000011"), viewed("ev-00000012"))
    assert send(client, shopify, two).status_code == 202
    assert send(client, shopify, origin="https://elsewhere.example").status_code == 403
    assert send(client, shopify, agent="Googlebot/2.1").status_code == 204
    assert send(client, shopify, b'{"visitor": 1}').status_code == 400
    assert counted("stored") - before["stored"] == 2  # each event of the batch
    for outcome in ("refused_origin", "bot", "malformed"):
        assert counted(outcome) - before[outcome] == 1, outcome


def test_processed_storefront_deliveries_are_deleted_after_a_week_and_nothing_else(
    client: FlaskClient, runtime: Runtime, shopify: Shop
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from jobs.intake import storefront as rows
    from jobs.workers import sweeper
    from tests.support import SHOPIFY_SECRET, dumps, post, shopify_headers

    events = [viewed(f"ev-0000010{n}") for n in range(3)]
    assert send(client, shopify, batch(*events)).status_code == 202
    webhook = dumps({"id": 1, "email": "anna@example.se"})
    headers = shopify_headers("customers/create", webhook, SHOPIFY_SECRET, SHOPIFY_SHOP, "w-1")
    assert post(client, "shopify", webhook, headers).status_code == 200
    [_, _, third, hook] = stored(runtime)
    eight_days_ago = datetime.now(UTC) - timedelta(days=8)
    with runtime.sessions.begin() as session:
        session.execute(  # everything old; all processed but the third view, still waiting
            update(Delivery)
            .where(Delivery.id != third.id)
            .values(received_at=eight_days_ago, status=DeliveryStatus.PROCESSED)
        )
        session.execute(
            update(Delivery).where(Delivery.id == third.id).values(received_at=eight_days_ago)
        )

    assert sweeper.sweep_storefront(runtime, datetime.now(UTC) - timedelta(days=2)) == 0
    assert sweeper.sweep_storefront(runtime) == 2
    assert [d.id for d in stored(runtime)] == [third.id, hook.id]
    assert rows.prune_all(runtime.sessions, datetime.now(UTC)) == 0  # nothing more
