"""The Shopify Admin GraphQL client against ``responses`` shaped like Shopify's answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import responses
from responses import matchers

from adapters.events import Money, Product
from adapters.http import ApiSession, RetryPolicy
from adapters.platform import AdminApiError, DiscountRequest, verify_base64_hmac
from adapters.shopify import oauth
from adapters.shopify.client import ShopifyAdmin, WebPixelError
from tests.adapters.shopify_web_pixel import MESSAGES, WebPixels

SHOP = "nordljus-test.myshopify.com"
ENDPOINT = f"https://{SHOP}/admin/api/2026-07/graphql.json"
THROTTLED = {
    "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
    "extensions": {
        "cost": {
            "requestedQueryCost": 10,
            "actualQueryCost": None,
            "throttleStatus": {
                "maximumAvailable": 2000.0,
                "currentlyAvailable": 4,
                "restoreRate": 100.0,
            },
        }
    },
}


OLD, NEW = "shpat_old", "shpat_new"


class Tokens:
    def __init__(self, token: str = OLD, fresh: str | None = NEW) -> None:
        self.token = token
        self.fresh = fresh
        self.rejected: list[str] = []

    def access_token(self) -> str:
        return self.token

    def after_rejection(self, rejected: str) -> str | None:
        self.rejected.append(rejected)
        if self.fresh is None:
            return None
        self.token = self.fresh
        return self.fresh


def client(
    version: str = "2026-07", tokens: Tokens | None = None
) -> tuple[ShopifyAdmin, list[float]]:
    waits: list[float] = []
    http = ApiSession(retry=RetryPolicy(sleep=waits.append, jitter=lambda x: x))
    return ShopifyAdmin(SHOP, tokens or Tokens(), version, http=http, sleep=waits.append), waits


def sent(call_index: int) -> dict[str, Any]:
    body = responses.calls[call_index].request.body
    assert body is not None
    return json.loads(body)


REQUEST = DiscountRequest(
    code="TP-7KQ2-MX4D",
    title="triggerpost cart_recovery 42",
    expires_at=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
    percent=Decimal(15),
    email="astrid@example.se",
    customer_id="7012345678901",
)


# --- signatures: the published vectors -------------------------------------------


def test_the_published_webhook_vector_verifies_and_a_tampered_body_does_not() -> None:
    signature = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="
    assert verify_base64_hmac(b'{"foo": "bar"}', signature, ["test_secret_key"])
    assert not verify_base64_hmac(b'{"foo": "baz"}', signature, ["test_secret_key"])
    assert verify_base64_hmac(b'{"foo": "bar"}', signature, ["new-secret", "test_secret_key"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            (
                "code=0907a61c0c8d55e99db179b68161bc00&shop=some-shop.myshopify.com"
                "&state=0.6784241404160823&timestamp=1337178173"
            ),
            "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf",
        ),
        (
            (
                "code=0907a61c0c8d55e99db179b68161bc00&shop=some-shop.myshopify.com"
                "&timestamp=1337178173"
            ),
            "4712bf92ffc2917d15a2f5a273e39f0116667419aa4b6ac0b3baaf26fa3c4d20",
        ),
    ],
)
def test_the_published_oauth_query_vectors(query: str, expected: str) -> None:
    assert oauth.query_hmac("hush", query) == expected
    # the order pairs arrive in does not matter, and hmac itself is left out
    shuffled = "&".join(reversed(query.split("&"))) + f"&hmac={expected}"
    assert oauth.verify_query(shuffled, ["hush"])
    assert not oauth.verify_query(shuffled.replace("some-shop", "evil-shop"), ["hush"])
    assert not oauth.verify_query(shuffled, ["other-secret"])


def test_escaped_query_values_are_verified_as_received() -> None:
    raw = "host=YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvbm9yZGxqdXM%3D&shop=a.myshopify.com&timestamp=1"
    signature = oauth.query_hmac("hush", raw)
    assert oauth.query_message(raw).startswith(
        "host=YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvbm9yZGxqdXM%3D"
    )
    assert oauth.verify_query(f"{raw}&hmac={signature}", ["hush"])
    decoded = raw.replace("%3D", "=")
    assert not oauth.verify_query(f"{decoded}&hmac={signature}", ["hush"])


# --- discount codes ----------------------------------------------------------------


@responses.activate
def test_discount_code_is_created_single_use_for_the_customer() -> None:
    responses.post(
        ENDPOINT,
        json={
            "data": {
                "discountCodeBasicCreate": {
                    "codeDiscountNode": {"id": "gid://shopify/DiscountCodeNode/1057856"},
                    "userErrors": [],
                }
            }
        },
        match=[matchers.header_matcher({"X-Shopify-Access-Token": "shpat_old"})],
    )
    admin, _ = client()
    assert admin.create_discount(REQUEST) == "gid://shopify/DiscountCodeNode/1057856"
    fields = sent(0)["variables"]["basicCodeDiscount"]
    assert fields["code"] == "TP-7KQ2-MX4D"
    assert fields["customerGets"] == {"value": {"percentage": 0.15}, "items": {"all": True}}
    assert fields["context"] == {"customers": {"add": ["gid://shopify/Customer/7012345678901"]}}
    assert (fields["usageLimit"], fields["appliesOncePerCustomer"]) == (1, True)
    assert fields["endsAt"] == "2026-11-24T12:00:00+00:00"
    assert "discountCodeBasicCreate" in sent(0)["query"]


@responses.activate
def test_an_older_api_version_selects_customers_the_old_way_and_fixed_amounts_work() -> None:
    responses.post(
        "https://nordljus-test.myshopify.com/admin/api/2025-01/graphql.json",
        json={
            "data": {
                "discountCodeBasicCreate": {
                    "codeDiscountNode": {"id": "gid://shopify/DiscountCodeNode/9"},
                    "userErrors": [],
                }
            }
        },
    )
    admin, _ = client("2025-01")
    guest = DiscountRequest(
        code="TP-GUEST",
        title="t",
        expires_at=REQUEST.expires_at,
        amount=Money(Decimal("50.00"), "SEK"),
        minimum_subtotal=Money(Decimal("300"), "SEK"),
    )
    admin.create_discount(guest)
    fields = sent(0)["variables"]["basicCodeDiscount"]
    assert fields["customerSelection"] == {"all": True}
    assert "context" not in fields
    assert fields["customerGets"]["value"] == {
        "discountAmount": {"amount": "50.00", "appliesOnEachItem": False}
    }
    assert fields["minimumRequirement"] == {"subtotal": {"greaterThanOrEqualToSubtotal": "300"}}


@responses.activate
def test_a_code_we_already_made_is_found_instead_of_failing() -> None:
    taken = {
        "data": {
            "discountCodeBasicCreate": {
                "codeDiscountNode": None,
                "userErrors": [
                    {
                        "field": ["basicCodeDiscount", "code"],
                        "code": "TAKEN",
                        "message": "Code must be unique. Please try a different code.",
                    }
                ],
            }
        }
    }
    responses.post(ENDPOINT, json=taken)
    responses.post(
        ENDPOINT,
        json={"data": {"codeDiscountNodeByCode": {"id": "gid://shopify/DiscountCodeNode/77"}}},
    )
    admin, _ = client()
    assert admin.create_discount(REQUEST) == "gid://shopify/DiscountCodeNode/77"
    assert sent(1)["variables"] == {"code": "TP-7KQ2-MX4D"}


@responses.activate
def test_other_user_errors_are_permanent_and_name_the_problem() -> None:
    responses.post(
        ENDPOINT,
        json={
            "data": {
                "discountCodeBasicCreate": {
                    "codeDiscountNode": None,
                    "userErrors": [
                        {"field": ["endsAt"], "code": "INVALID", "message": "Ends at is invalid"}
                    ],
                }
            }
        },
    )
    admin, _ = client()
    with pytest.raises(AdminApiError) as caught:
        admin.create_discount(REQUEST)
    assert not caught.value.transient
    assert "Ends at is invalid" in str(caught.value)


# --- rate limits and tokens ------------------------------------------------------


@responses.activate
def test_http_429_then_success_waits_retry_after() -> None:
    responses.post(ENDPOINT, status=429, headers={"Retry-After": "2.0"}, body="Exceeded 2 calls")
    responses.post(ENDPOINT, json={"data": {"order": None}})
    admin, waits = client()
    assert admin.order_state("1") is None
    assert waits == [2.0]


@responses.activate
def test_the_cost_throttle_waits_for_the_bucket_to_refill() -> None:
    responses.post(ENDPOINT, json=THROTTLED)
    responses.post(ENDPOINT, json={"data": {"order": None}})
    admin, waits = client()
    admin.order_state("1")
    assert waits == [pytest.approx(0.5)]  # (10 - 4) / 100 s is under the floor of 0.5 s
    assert len(responses.calls) == 2


@responses.activate
def test_a_quick_session_waits_for_the_throttle_no_longer_nor_oftener_than_its_policy() -> None:
    slow = {**THROTTLED, "extensions": {"cost": {**THROTTLED["extensions"]["cost"]}}}
    slow["extensions"]["cost"]["requestedQueryCost"] = 500  # 5 s to refill
    waits: list[float] = []
    quick = ApiSession(retry=RetryPolicy(attempts=2, cap=2.0, sleep=waits.append))
    admin = ShopifyAdmin(SHOP, Tokens(), "2026-07", http=quick, sleep=waits.append)
    responses.post(ENDPOINT, json=slow)
    with pytest.raises(AdminApiError, match="cost throttle") as caught:
        admin.order_state("1")
    assert caught.value.transient
    assert (waits, len(responses.calls)) == ([], 1)  # longer than its cap: not waited for
    responses.replace(responses.POST, ENDPOINT, json=THROTTLED)
    with pytest.raises(AdminApiError, match="cost throttle"):
        admin.order_state("1")
    assert (waits, len(responses.calls)) == ([pytest.approx(0.5)], 3)  # once, then no more


@responses.activate
def test_a_rejected_token_is_refreshed_once_then_the_call_repeats() -> None:
    responses.post(
        ENDPOINT,
        status=401,
        json={"errors": "[API] Invalid API key or access token"},
        match=[matchers.header_matcher({"X-Shopify-Access-Token": "shpat_old"})],
    )
    responses.post(
        ENDPOINT,
        json={"data": {"order": None}},
        match=[matchers.header_matcher({"X-Shopify-Access-Token": "shpat_new"})],
    )
    tokens = Tokens()
    admin, _ = client(tokens=tokens)
    admin.order_state("1")
    assert tokens.rejected == ["shpat_old"]


@responses.activate
def test_a_rejected_token_without_refresh_fails_permanently() -> None:
    responses.post(ENDPOINT, status=401, json={"errors": "[API] Invalid API key or access token"})
    admin, _ = client(tokens=Tokens(fresh=None))
    with pytest.raises(AdminApiError) as caught:
        admin.order_state("1")
    assert (caught.value.status, caught.value.transient) == (401, False)


# --- live state ------------------------------------------------------------------


@responses.activate
def test_order_state_reads_payment_cancellation_and_refunds() -> None:
    responses.post(
        ENDPOINT,
        json={
            "data": {
                "order": {
                    "id": "gid://shopify/Order/6123456789012",
                    "cancelledAt": None,
                    "displayFinancialStatus": "REFUNDED",
                    "displayFulfillmentStatus": "FULFILLED",
                }
            }
        },
    )
    admin, _ = client()
    state = admin.order_state("6123456789012")
    assert state is not None
    assert (state.order_id, state.paid, state.refunded, state.cancelled) == (
        "6123456789012",
        True,
        True,
        False,
    )
    assert state.fulfillment_status == "fulfilled"
    assert sent(0)["variables"] == {"id": "gid://shopify/Order/6123456789012"}


def _order(number: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/Order/{number}",
        "createdAt": "2026-09-14T17:20:00Z",
        "test": False,
        "cancelledAt": None,
        "displayFinancialStatus": "PAID",
        "displayFulfillmentStatus": "UNFULFILLED",
        **fields,
    }


@responses.activate
def test_a_customers_order_since_a_time_is_searched_by_email_and_creation_time() -> None:
    responses.post(
        ENDPOINT,
        json={
            "data": {
                "orders": {
                    "nodes": [
                        _order("1", test=True),  # a Bogus-gateway order: not a purchase
                        _order("2", cancelledAt="2026-09-14T17:25:00Z"),
                        _order("6123456789012"),
                    ]
                }
            }
        },
    )
    admin, _ = client()
    since = datetime(2026, 9, 14, 19, 2, 11, tzinfo=UTC)
    state = admin.ordered_since("astrid@example.se", since)
    assert state is not None
    assert (state.order_id, state.paid) == ("6123456789012", True)
    body = sent(0)
    assert "orders(first: 10, sortKey: CREATED_AT, query: $query)" in body["query"]
    assert body["variables"] == {
        "query": 'email:"astrid@example.se" created_at:>="2026-09-14T19:02:11+00:00"'
    }


@responses.activate
def test_no_order_since_is_none_and_quotes_in_an_address_stay_inside_the_value() -> None:
    responses.post(ENDPOINT, json={"data": {"orders": {"nodes": []}}})
    admin, _ = client()
    since = datetime(2026, 9, 14, 19, 2, 11, tzinfo=UTC)
    assert admin.ordered_since('"odd" created_at:<0"@example.se', since) is None
    assert sent(0)["variables"]["query"].startswith(r'email:"\"odd\" created_at:<0\"@example.se" ')


def product_node(legacy: str, **fields: Any) -> dict[str, Any]:
    """A ``Product`` as ``nodes`` answers it for the PRODUCTS query."""
    return {
        "id": f"gid://shopify/Product/{legacy}",
        "title": "Ullmössa Fjäll",
        "handle": "ullmossa-fjall",
        "status": "ACTIVE",
        "onlineStoreUrl": "https://nordljus.se/products/ullmossa-fjall",
        "updatedAt": "2026-09-01T08:05:01Z",
        "tags": ["merino", "vinter"],
        "featuredMedia": {"preview": {"image": {"url": "https://cdn.shopify.com/m.jpg"}}},
        "priceRangeV2": {"minVariantPrice": {"amount": "349.0", "currencyCode": "SEK"}},
        "variants": {"nodes": [{"availableForSale": False}, {"availableForSale": True}]},
        **fields,
    }


@responses.activate
def test_products_come_back_in_the_common_model_and_a_deleted_one_not_at_all() -> None:
    # null: the id names no product (deleted); a node of another type is empty
    responses.post(ENDPOINT, json={"data": {"nodes": [product_node("8123"), None, {}]}})
    admin, _ = client()
    [product] = admin.products(["8123", "999", "77"])
    assert product == Product(
        product_id="8123",
        title="Ullmössa Fjäll",
        updated_at=datetime(2026, 9, 1, 8, 5, 1, tzinfo=UTC),
        handle="ullmossa-fjall",
        url="https://nordljus.se/products/ullmossa-fjall",
        image_url="https://cdn.shopify.com/m.jpg",
        price=Money(Decimal("349.0"), "SEK"),
        status="active",
        available=True,
        tags=("merino", "vinter"),
    )
    assert sent(0)["variables"]["ids"] == [
        "gid://shopify/Product/8123",
        "gid://shopify/Product/999",
        "gid://shopify/Product/77",
    ]
    assert "updatedAt" in sent(0)["query"]


@responses.activate
def test_a_product_whose_variants_cannot_be_sold_is_not_available_and_a_draft_says_so() -> None:
    sold_out = {"nodes": [{"availableForSale": False}, {"availableForSale": False}]}
    bare = {"featuredMedia": None, "priceRangeV2": None, "onlineStoreUrl": None}
    responses.post(
        ENDPOINT,
        json={
            "data": {
                "nodes": [
                    product_node("1", variants=sold_out),
                    product_node("2", status="DRAFT", variants={"nodes": []}, **bare),
                ]
            }
        },
    )
    first, second = client()[0].products(["1", "2"])
    assert (first.status, first.available) == ("active", False)
    assert (second.status, second.available, second.url, second.price) == (
        "draft",
        None,
        None,
        None,
    )


@responses.activate
def test_many_products_are_asked_in_pages_a_query_can_afford() -> None:
    ids = [str(n) for n in range(60)]
    responses.post(ENDPOINT, json={"data": {"nodes": []}})
    assert client()[0].products(ids) == []
    assert [len(sent(n)["variables"]["ids"]) for n in range(3)] == [25, 25, 10]


@responses.activate
@pytest.mark.parametrize(
    "answer",
    [
        {"data": {"orders": {"nodes": []}}},
        {"data": {"nodes": [product_node("8123", updatedAt=None)]}},
        {"data": {"nodes": [product_node("8123", variants={"nodes": "many"})]}},
        {"data": {"nodes": [product_node("8123", tags="merino")]}},
    ],
    ids=["no-nodes", "no-updatedAt", "variants-not-a-list", "tags-not-a-list"],
)
def test_an_answer_not_shaped_like_products_is_an_error_never_products_gone(
    answer: dict[str, Any],
) -> None:
    responses.post(ENDPOINT, json=answer)
    with pytest.raises(AdminApiError, match="Shopify"):
        client()[0].products(["8123"])


# --- subscriptions -----------------------------------------------------------------


@responses.activate
@pytest.mark.parametrize(("version", "field"), [("2026-07", "uri"), ("2025-07", "callbackUrl")])
def test_subscriptions_are_created_once_with_the_versions_address_field(
    version: str, field: str
) -> None:
    endpoint = f"https://{SHOP}/admin/api/{version}/graphql.json"
    address = "https://app.triggerpost.test/webhooks/shopify"
    existing = (
        {"id": "gid://shopify/WebhookSubscription/1", "topic": "ORDERS_CREATE", "uri": address}
        if field == "uri"
        else {
            "id": "gid://shopify/WebhookSubscription/1",
            "topic": "ORDERS_CREATE",
            "endpoint": {"callbackUrl": address},
        }
    )
    responses.post(
        endpoint,
        json={
            "data": {
                "webhookSubscriptions": {
                    "nodes": [existing],
                    "pageInfo": {"hasNextPage": False, "endCursor": None},
                }
            }
        },
    )
    responses.post(
        endpoint,
        json={
            "data": {
                "webhookSubscriptionCreate": {
                    "webhookSubscription": {"id": "gid://shopify/WebhookSubscription/2"},
                    "userErrors": [],
                }
            }
        },
    )
    admin, _ = client(version)
    made = admin.ensure_subscriptions(["orders/create", "checkouts/update"], address)
    assert made == {
        "orders/create": "gid://shopify/WebhookSubscription/1",
        "checkouts/update": "gid://shopify/WebhookSubscription/2",
    }
    assert len(responses.calls) == 2
    assert sent(1)["variables"] == {
        "topic": "CHECKOUTS_UPDATE",
        "webhookSubscription": {field: address, "format": "JSON"},
    }


@responses.activate
def test_customer_subscriptions_ask_for_the_birthday_namespace() -> None:
    """A new subscription asks for it; one made before (without it) is updated to."""
    endpoint = f"https://{SHOP}/admin/api/2026-07/graphql.json"
    address = "https://app.triggerpost.test/webhooks/shopify"
    responses.post(
        endpoint,
        json={
            "data": {
                "webhookSubscriptions": {
                    "nodes": [
                        {
                            "id": "gid://shopify/WebhookSubscription/1",
                            "topic": "CUSTOMERS_CREATE",
                            "uri": address,
                            "metafieldNamespaces": ["loyalty"],
                        },
                        {
                            "id": "gid://shopify/WebhookSubscription/3",
                            "topic": "ORDERS_CREATE",
                            "uri": address,
                            "metafieldNamespaces": [],
                        },
                    ],
                    "pageInfo": {"hasNextPage": False, "endCursor": None},
                }
            }
        },
    )
    responses.post(
        endpoint,
        json={
            "data": {
                "webhookSubscriptionUpdate": {
                    "webhookSubscription": {
                        "id": "gid://shopify/WebhookSubscription/1",
                        "metafieldNamespaces": ["facts", "loyalty"],
                    },
                    "userErrors": [],
                }
            }
        },
    )
    responses.post(
        endpoint,
        json={
            "data": {
                "webhookSubscriptionCreate": {
                    "webhookSubscription": {"id": "gid://shopify/WebhookSubscription/2"},
                    "userErrors": [],
                }
            }
        },
    )
    admin, _ = client("2026-07")
    wanted = {"customers/create": ("facts",), "customers/update": ("facts",)}
    made = admin.ensure_subscriptions(
        ["customers/create", "customers/update", "orders/create"], address, wanted
    )
    assert made == {
        "customers/create": "gid://shopify/WebhookSubscription/1",
        "customers/update": "gid://shopify/WebhookSubscription/2",
        "orders/create": "gid://shopify/WebhookSubscription/3",
    }
    assert len(responses.calls) == 3
    assert "webhookSubscriptionUpdate" in sent(1)["query"]
    assert sent(1)["variables"] == {
        "id": "gid://shopify/WebhookSubscription/1",
        "webhookSubscription": {"metafieldNamespaces": ["facts", "loyalty"]},
    }
    assert sent(2)["variables"] == {
        "topic": "CUSTOMERS_UPDATE",
        "webhookSubscription": {"uri": address, "format": "JSON", "metafieldNamespaces": ["facts"]},
    }

    responses.calls.reset()
    responses.replace(
        responses.POST,
        endpoint,
        json={
            "data": {
                "webhookSubscriptions": {
                    "nodes": [
                        {
                            "id": "gid://shopify/WebhookSubscription/1",
                            "topic": "CUSTOMERS_CREATE",
                            "uri": address,
                            "metafieldNamespaces": ["facts", "loyalty"],
                        }
                    ],
                    "pageInfo": {"hasNextPage": False, "endCursor": None},
                }
            }
        },
    )
    assert admin.ensure_subscriptions(["customers/create"], address, wanted) == {
        "customers/create": "gid://shopify/WebhookSubscription/1"
    }
    assert len(responses.calls) == 1  # it already asks: nothing to change


# --- the web pixel -------------------------------------------------------------

PIXEL_SETTINGS = {
    "endpoint": "https://triggerpost.example.com/events/shopify",
    "key": "pk_abcdefghijklmnopqrstuvwxyz",
}


def pixel_shop() -> WebPixels:
    pixels = WebPixels()

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        assert pixels.handles(body["query"])
        return 200, {}, json.dumps(pixels.answer(body["query"], body["variables"]))

    responses.add_callback(responses.POST, ENDPOINT, callback=answer)
    return pixels


@responses.activate
def test_the_web_pixel_is_turned_on_with_the_settings_the_extension_declares() -> None:
    pixels = pixel_shop()
    admin, _ = client()
    pixel = admin.ensure_web_pixel(PIXEL_SETTINGS)
    assert pixel.remote_id == "gid://shopify/WebPixel/5505077"
    assert pixel.settings == PIXEL_SETTINGS  # Shopify answers them as JSON text
    assert pixels.calls == ["create"]
    assert sent(0)["variables"] == {"webPixel": {"settings": PIXEL_SETTINGS}}


@responses.activate
def test_a_pixel_already_on_with_the_same_settings_is_left_alone() -> None:
    pixels = pixel_shop()
    admin, _ = client()
    admin.ensure_web_pixel(PIXEL_SETTINGS)
    again = admin.ensure_web_pixel(PIXEL_SETTINGS)
    assert again.settings == PIXEL_SETTINGS
    assert pixels.calls == ["create", "create", "read"]


@responses.activate
def test_a_pixel_on_with_other_settings_is_updated_to_ours() -> None:
    pixels = pixel_shop()
    pixels.pixel = {
        "id": "gid://shopify/WebPixel/77",
        "settings": {"endpoint": "https://old.example.com/events/shopify", "key": "pk_old"},
    }
    admin, _ = client()
    pixel = admin.ensure_web_pixel(PIXEL_SETTINGS)
    assert pixels.calls == ["create", "read", "update"]
    assert pixel.remote_id == "gid://shopify/WebPixel/77"
    assert pixels.pixel["settings"] == PIXEL_SETTINGS
    assert sent(2)["variables"] == {
        "id": "gid://shopify/WebPixel/77",
        "webPixel": {"settings": PIXEL_SETTINGS},
    }


@pytest.mark.parametrize("code", ["NO_EXTENSION", "INVALID_SETTINGS"])
@responses.activate
def test_shopify_refusing_the_pixel_is_a_permanent_error_in_words(code: str) -> None:
    pixels = pixel_shop()
    pixels.refuse = code
    admin, _ = client()
    with pytest.raises(WebPixelError) as refused:
        admin.ensure_web_pixel(PIXEL_SETTINGS)
    assert not refused.value.transient
    assert code in str(refused.value)
    assert MESSAGES[code].rstrip(".") in str(refused.value)


@responses.activate
def test_settings_the_deployed_extension_does_not_declare_are_refused() -> None:
    pixel_shop()
    admin, _ = client()
    with pytest.raises(WebPixelError, match="INVALID_SETTINGS"):
        admin.ensure_web_pixel({"endpoint": PIXEL_SETTINGS["endpoint"]})


@responses.activate
def test_a_shop_that_did_not_grant_the_pixel_scopes_is_a_permanent_error() -> None:
    pixels = pixel_shop()
    pixels.denied = True
    admin, _ = client()
    with pytest.raises(AdminApiError, match="write_pixels") as denied:
        admin.ensure_web_pixel(PIXEL_SETTINGS)
    assert not denied.value.transient
