"""The WooCommerce REST client against ``responses`` shaped like WooCommerce's answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from adapters.events import Money, Product
from adapters.http import ApiSession, OutboundPolicy, RetryPolicy
from adapters.platform import AdminApiError, DiscountRequest, verify_base64_hmac
from adapters.woocommerce.client import WooCommerceApi
from tests.support import FixtureSet

STORE = "https://butik.example.se"
API = f"{STORE}/wp-json/wc/v3"
REQUEST = DiscountRequest(
    code="TP-7KQ2-MX4D",
    title="triggerpost cart_recovery 42",
    expires_at=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
    percent=Decimal(15),
    email="elias.nyberg@example.com",
)


def client(
    base: str = STORE, policy: OutboundPolicy | None = None
) -> tuple[WooCommerceApi, list[float]]:
    waits: list[float] = []
    http = ApiSession(retry=RetryPolicy(sleep=waits.append, jitter=lambda x: x), policy=policy)
    return WooCommerceApi(base, "ck_live", "cs_live", currency="SEK", http=http), waits


def sent(index: int) -> Any:
    return json.loads(responses.calls[index].request.body or b"null")


def query(index: int) -> dict[str, list[str]]:
    return parse_qs(urlsplit(responses.calls[index].request.url).query)


def test_the_published_signature_example_verifies_and_tampering_fails() -> None:
    signature = "GBDo00G55h6IiV+6CxqivQPLbI//KzaOZm747971tPs="
    assert verify_base64_hmac(b"secret", signature, [""])
    assert not verify_base64_hmac(b"secret ", signature, [""])
    assert not verify_base64_hmac(b"secret", signature, ["x"])


@responses.activate
def test_coupon_is_single_use_restricted_to_her_email_and_expires() -> None:
    responses.post(f"{API}/coupons", status=201, json={"id": 719, "code": "tp-7kq2-mx4d"})
    api, _ = client()
    assert api.create_discount(REQUEST) == "719"
    body = sent(0)
    assert body == {
        "code": "tp-7kq2-mx4d",
        "description": "triggerpost cart_recovery 42",
        "individual_use": True,
        "usage_limit": 1,
        "usage_limit_per_user": 1,
        "date_expires_gmt": "2026-11-24T12:00:00",
        "discount_type": "percent",
        "amount": "15",
        "email_restrictions": ["elias.nyberg@example.com"],
    }
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")


@responses.activate
def test_a_coupon_we_already_made_is_found_not_duplicated() -> None:
    responses.post(
        f"{API}/coupons",
        status=400,
        json={
            "code": "woocommerce_rest_coupon_code_already_exists",
            "message": "The coupon code already exists",
            "data": {"status": 400},
        },
    )
    responses.get(f"{API}/coupons", json=[{"id": 719, "code": "tp-7kq2-mx4d"}])
    api, _ = client()
    assert api.create_discount(REQUEST) == "719"
    assert query(1)["code"] == ["tp-7kq2-mx4d"]


@responses.activate
def test_fixed_amounts_and_minimums_are_exact_strings() -> None:
    responses.post(f"{API}/coupons", status=201, json={"id": 720})
    api, _ = client()
    api.create_discount(
        DiscountRequest(
            code="TP-A",
            title="t",
            expires_at=REQUEST.expires_at,
            amount=Money(Decimal("50.00"), "SEK"),
            minimum_subtotal=Money(Decimal("300.50"), "SEK"),
        )
    )
    body = sent(0)
    assert (body["discount_type"], body["amount"], body["minimum_amount"]) == (
        "fixed_cart",
        "50",
        "300.5",
    )
    assert "email_restrictions" not in body


@responses.activate
def test_429_then_success() -> None:
    responses.get(f"{API}/orders/4814", status=429, headers={"Retry-After": "3"})
    responses.get(f"{API}/orders/4814", json={"id": 4814, "status": "pending"})
    api, waits = client()
    state = api.order_state("4814")
    assert state is not None
    assert (state.paid, state.cancelled, state.refunded) == (False, False, False)
    assert waits == [3.0]


@responses.activate
@pytest.mark.parametrize(
    ("status", "paid_at", "expected"),
    [
        ("processing", "2026-09-14T19:12:39", (True, False, False)),
        ("on-hold", None, (False, False, False)),
        ("cancelled", None, (False, True, False)),
        ("refunded", "2026-09-14T19:12:39", (True, False, True)),
    ],
)
def test_order_state_by_status(
    status: str, paid_at: str | None, expected: tuple[bool, ...]
) -> None:
    responses.get(
        f"{API}/orders/4814", json={"id": 4814, "status": status, "date_paid_gmt": paid_at}
    )
    state = client()[0].order_state("4814")
    assert state is not None
    assert (state.paid, state.cancelled, state.refunded) == expected


@responses.activate
def test_a_customers_order_since_a_time_is_found_by_her_billing_email_only() -> None:
    # ``search`` matches other fields too: an order naming her elsewhere does not count
    other = {"id": 4815, "status": "processing", "billing": {"email": "olle@example.com"}}
    hers = {"id": 4816, "status": "on-hold", "billing": {"email": "Elias.Nyberg@example.com"}}
    responses.get(f"{API}/orders", json=[other, hers])
    api, _ = client()
    since = datetime(2026, 9, 14, 17, 2, 11, tzinfo=UTC)
    state = api.ordered_since("elias.nyberg@example.com", since)
    assert state is not None
    assert state.order_id == "4816"
    asked = query(0)
    assert asked["search"] == ["elias.nyberg@example.com"]
    assert asked["after"] == ["2026-09-14T17:02:11"]
    assert asked["dates_are_gmt"] == ["true"]
    assert asked["status"] == ["completed,on-hold,processing,refunded"]


@responses.activate
def test_a_customer_without_orders_since_is_none() -> None:
    responses.get(f"{API}/orders", json=[])
    since = datetime(2026, 9, 14, 17, 2, 11, tzinfo=UTC)
    assert client()[0].ordered_since("elias.nyberg@example.com", since) is None


@responses.activate
def test_a_cart_not_yet_an_order_is_asked_nothing() -> None:
    """The re-check of a storefront cart's checkout (``cart-<token>``): the store has no
    order of that name, and is not asked."""
    assert client()[0].order_state("cart-Z3kq8PmW2xN7cR5tJ9bV4hL6sD1fG0aY") is None
    assert len(responses.calls) == 0


@responses.activate
def test_a_deleted_order_is_none_and_a_server_error_is_transient() -> None:
    responses.get(
        f"{API}/orders/1", status=404, json={"code": "woocommerce_rest_shop_order_invalid_id"}
    )
    for _ in range(4):
        responses.get(f"{API}/orders/2", status=502, body="Bad Gateway")
    api, _ = client()
    assert api.order_state("1") is None
    with pytest.raises(AdminApiError) as caught:
        api.order_state("2")
    assert caught.value.transient


@responses.activate
def test_lists_are_read_page_by_page() -> None:
    page = {"X-WP-Total": "150", "X-WP-TotalPages": "2"}
    responses.get(f"{API}/orders", json=[{"id": n} for n in range(100)], headers=page)
    responses.get(f"{API}/orders", json=[{"id": n} for n in range(100, 150)], headers=page)
    api, _ = client()
    since = datetime(2026, 9, 14, 17, 0, tzinfo=UTC)
    assert [o["id"] for o in api.orders_modified_after(since)] == list(range(150))
    assert query(0)["modified_after"] == ["2026-09-14T17:00:00"]
    assert query(0)["dates_are_gmt"] == ["true"]
    assert (query(0)["page"], query(1)["page"], query(1)["per_page"]) == (["1"], ["2"], ["100"])


def store_product(**fields: Any) -> dict[str, Any]:
    """A product as GET /wp-json/wc/v3/products answers it (the webhook fixture's shape)."""
    return {**FixtureSet("woocommerce").payload("product_created__simple"), **fields}


@responses.activate
def test_products_are_asked_at_once_and_read_as_their_webhooks_are() -> None:
    # 1190 is in the trash: the list (status "any") leaves it out
    sold_out = store_product(stock_status="outofstock", date_modified_gmt="2026-09-15T14:08:31")
    responses.get(f"{API}/products", json=[sold_out], headers={"X-WP-TotalPages": "1"})
    [product] = client()[0].products(["1186", "1190"])
    assert query(0)["include"] == ["1186,1190"]
    assert len(responses.calls) == 1
    assert product == Product(
        product_id="1186",
        title="Raggsockor 🧦",
        updated_at=datetime(2026, 9, 15, 14, 8, 31, tzinfo=UTC),
        handle="raggsockor",
        url="https://ullboden.se/produkt/raggsockor/",
        image_url="https://ullboden.se/wp-content/uploads/2026/08/raggsockor.jpg",
        price=Money(Decimal("166.29"), "SEK"),
        status="publish",
        available=False,
        tags=("ull", "vinter"),
        collections=("Strumpor", "Ull & lin"),
    )


@responses.activate
def test_a_product_answer_the_store_garbled_is_an_error_never_products_gone() -> None:
    garbled = store_product(name=None)
    responses.get(f"{API}/products", json=[garbled], headers={"X-WP-TotalPages": "1"})
    with pytest.raises(AdminApiError, match=r"product\.name is missing"):
        client()[0].products(["1186"])


@responses.activate
def test_a_development_store_over_http_gets_the_keys_in_the_query() -> None:
    responses.get("http://localhost:8080/wp-json/wc/v3/orders/5", json={"id": 5, "status": "x"})
    client("http://localhost:8080", OutboundPolicy(allow_private=True))[0].order_state("5")
    assert query(0)["consumer_key"] == ["ck_live"]
    assert "Authorization" not in responses.calls[0].request.headers


@responses.activate
def test_a_store_without_pretty_permalinks_is_explained() -> None:
    responses.get(f"{API}/orders/5", body="<html>not found</html>", status=200)
    with pytest.raises(AdminApiError, match="permalinks"):
        client()[0].order_state("5")


@responses.activate
def test_an_answer_nested_past_any_real_one_is_refused_not_a_crash() -> None:
    responses.get(f"{API}/webhooks", body="[" * 100_000 + "]" * 100_000)
    with pytest.raises(AdminApiError, match="not JSON"):
        client()[0].webhooks()
