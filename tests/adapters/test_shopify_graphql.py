"""Orders and customers read through the Admin API become the same events as their webhooks."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from adapters.events import (
    ConsentState,
    CustomerCreated,
    CustomerUpdated,
    OrderCancelled,
    OrderPaid,
    OrderPlaced,
    from_dict,
    to_dict,
)
from adapters.platform import BirthdayRule, ShopContext, WebhookError
from adapters.shopify import PLATFORM, graphql
from tests.support import FIXTURES

SHOP = ShopContext(
    domain="nordljus-test.myshopify.com",
    currency="SEK",
    received_at=datetime(2026, 9, 14, 18, tzinfo=UTC),
)


def node(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / "shopify_graphql" / f"{name}.json").read_text())
    assert isinstance(data, dict)
    return data


def webhook(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / "shopify" / f"{name}.json").read_text())
    assert isinstance(data, dict)
    return data


def test_an_order_read_from_the_api_is_the_order_its_webhook_describes() -> None:
    from_api = PLATFORM.topic_handlers[graphql.ORDER_TOPIC](node("order__paid"), SHOP)
    from_hook = PLATFORM.topic_handlers["orders/updated"](webhook("orders_create__customer"), SHOP)
    assert [type(e) for e in from_api] == [OrderPlaced, OrderPaid] == [type(e) for e in from_hook]
    api, hook = from_api[0].order, from_hook[0].order  # type: ignore[attr-defined]
    assert api.order_id == hook.order_id == "6123456789012"
    assert api.name == hook.name
    assert api.email == hook.email
    assert api.total == hook.total
    assert api.shop_total == hook.shop_total
    assert api.placed_at == hook.placed_at
    assert api.updated_at == hook.updated_at
    assert api.financial_status == hook.financial_status == "paid"
    assert api.fulfillment_status is hook.fulfillment_status is None
    assert api.discount_codes == hook.discount_codes
    assert api.customer.customer_id == hook.customer.customer_id == "8012345678901"
    assert [(i.product_id, i.variant_id, i.quantity, i.unit_price) for i in api.line_items] == [
        (i.product_id, i.variant_id, i.quantity, i.unit_price) for i in hook.line_items
    ]
    for event in from_api:
        assert from_dict(to_dict(event)) == event


def test_a_cancelled_order_read_from_the_api_is_cancelled_with_its_reason() -> None:
    order = node("order__paid") | {
        "cancelledAt": "2026-09-15T08:00:00Z",
        "cancelReason": "CUSTOMER",
        "displayFinancialStatus": "REFUNDED",
        "displayFulfillmentStatus": "FULFILLED",
    }
    events = graphql.order_node_events(order, SHOP)
    cancelled = next(e for e in events if isinstance(e, OrderCancelled))
    assert cancelled.reason == "customer"
    assert cancelled.order.fulfillment_status == "fulfilled"


def test_a_customer_node_carries_consent_and_the_shops_birthday_metafield() -> None:
    (created,) = PLATFORM.topic_handlers[graphql.CUSTOMER_CREATED_TOPIC](
        node("customer__birthday"), SHOP
    )
    assert isinstance(created, CustomerCreated)
    customer = created.customer
    assert customer.customer_id == "8012345678901"
    assert customer.email == "astrid.lindqvist@example.se"
    assert customer.birthday == date(1991, 3, 9)
    assert customer.consent is not None
    assert customer.consent.state == ConsentState.SUBSCRIBED
    assert customer.consent.opt_in_level == "single_opt_in"
    assert customer.tags == ("vip",)
    assert created.occurred_at == datetime(2025, 11, 2, 9, 14, 55, tzinfo=UTC)
    (updated,) = PLATFORM.topic_handlers[graphql.CUSTOMER_UPDATED_TOPIC](
        node("customer__birthday"), SHOP
    )
    assert isinstance(updated, CustomerUpdated)
    assert updated.occurred_at == datetime(2026, 9, 14, 17, 20, 4, tzinfo=UTC)


def test_the_birthday_is_asked_under_the_shops_own_metafield() -> None:
    fields = graphql.customer_fields(BirthdayRule(metafield="custom.fodelsedag"))
    assert 'birthday: metafield(namespace: "custom", key: "fodelsedag")' in fields


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"totalPriceSet": None}, "order.totalPriceSet is missing"),
        ({"lineItems": {"nodes": [{"title": "x"}]}}, "order.lineItems.nodes[0].quantity"),
        ({"createdAt": "yesterday"}, "order.createdAt is not usable"),
    ],
)
def test_a_malformed_order_node_is_refused_with_the_path_that_is_wrong(
    change: dict[str, Any], path: str
) -> None:
    with pytest.raises(WebhookError) as caught:
        graphql.order_node_events(node("order__paid") | change, SHOP)
    assert path in caught.value.message


def test_a_webhook_topic_is_never_subscribed_for_a_node_topic() -> None:
    from jobs.platforms.shopify import WEBHOOK_TOPICS

    assert not [t for t in WEBHOOK_TOPICS if t.startswith(graphql.TOPIC_PREFIX)]
    assert (
        Decimal("542.2")
        == graphql.order_node_events(node("order__paid"), SHOP)[0].order.total.amount
    )  # type: ignore[attr-defined]


def test_a_consent_state_added_after_this_code_leaves_consent_unsaid_not_the_customer() -> None:
    customer = node("customer__birthday")
    customer["defaultEmailAddress"]["marketingState"] = "SUBSCRIBED_TWICE"
    (event,) = graphql.customer_updated_node(customer, SHOP)
    assert event.customer.consent is None  # type: ignore[attr-defined]
    assert event.customer.email == "astrid.lindqvist@example.se"  # type: ignore[attr-defined]
