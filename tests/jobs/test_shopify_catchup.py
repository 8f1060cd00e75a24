"""Shopify's catch-up: an order whose webhook never came is found, processed once, and
ends the cart reminder; subscriptions that went missing come back. The Admin API is
faked with ``responses`` in the shapes Shopify's GraphQL answers take."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from flask.testing import FlaskClient
from sqlalchemy import select

from adapters.platform import AdminApiError
from adapters.shopify.client import topic_enum
from jobs.platforms import shopify, shopify_catchup
from jobs.runtime import Runtime
from jobs.store.models import (
    Contact,
    Delivery,
    Message,
    MessageState,
    Notice,
    Order,
    Shop,
    Subscription,
    SyncCursor,
    now,
)
from tests.adapters.shopify_web_pixel import WebPixels
from tests.support import (
    FIXTURES,
    SHOPIFY_SECRET,
    SHOPIFY_SHOP,
    count,
    dumps,
    post,
    run_worker,
    shopify_headers,
)

TOKEN = "shpat_catch_up"
ADDRESS = "http://127.0.0.1:8000/webhooks/shopify"
ORDER = json.loads((FIXTURES / "shopify_graphql" / "order__paid.json").read_text())
COST = {
    "requestedQueryCost": 102,
    "actualQueryCost": 12,
    "throttleStatus": {
        "maximumAvailable": 2000.0,
        "currentlyAvailable": 1988,
        "restoreRate": 100.0,
    },
}


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class FakeShopify:
    """The GraphQL Admin endpoint of one shop: orders, customers, subscriptions."""

    def __init__(self, mock: responses.RequestsMock, runtime: Runtime) -> None:
        self.orders: list[dict[str, Any]] = []
        self.customers: list[dict[str, Any]] = []
        self.subscriptions = {
            topic_enum(t): {
                "id": f"gid://shopify/WebhookSubscription/{n}",
                "topic": topic_enum(t),
                "uri": ADDRESS,
                "metafieldNamespaces": ["facts"] if t in shopify.CUSTOMER_TOPICS else [],
            }
            for n, t in enumerate(shopify.WEBHOOK_TOPICS, 1)
        }
        self.created: list[str] = []
        self.searches: list[str] = []
        self.throttle: list[dict[str, Any]] = []  # answers given before the real ones
        self.page_size = 100
        self.pixels = WebPixels()
        endpoint = (
            f"https://{SHOPIFY_SHOP}/admin/api/{runtime.settings.shopify_api_version}/graphql.json"
        )
        mock.add_callback(responses.POST, endpoint, callback=self.answer)

    def answer(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body or b"{}")
        query, variables = body["query"], body.get("variables") or {}
        if self.throttle and "query CatchUp" in query:
            return 200, {}, json.dumps(self.throttle.pop(0))
        if self.pixels.handles(query):
            return 200, {}, json.dumps(self.pixels.answer(query, variables))
        return (
            200,
            {},
            json.dumps({"data": self.data(query, variables), "extensions": {"cost": COST}}),
        )

    def data(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        if "query CatchUp" in query:
            connection = "orders" if "orders(" in query else "customers"
            self.searches.append(f"{connection} {variables['query']}")
            items = sorted(getattr(self, connection), key=lambda n: n["updatedAt"])
            since = variables["query"].split('"')[1]
            fresh = [
                n
                for n in items
                if datetime.fromisoformat(n["updatedAt"]) >= datetime.fromisoformat(since)
            ]
            start = int(variables.get("after") or 0)
            page = fresh[start : start + self.page_size]
            nodes = [
                {k: n[k] for k in ("id", "legacyResourceId", "createdAt", "updatedAt")}
                for n in page
            ]
            more = start + self.page_size < len(fresh)
            return {
                connection: {
                    "nodes": nodes,
                    "pageInfo": {
                        "hasNextPage": more,
                        "endCursor": str(start + self.page_size) if more else None,
                    },
                }
            }
        if "query Nodes" in query:
            known = {n["id"]: n for n in [*self.orders, *self.customers]}
            return {"nodes": [known.get(i) for i in variables["ids"]]}
        if "query Subscriptions" in query:
            return {
                "webhookSubscriptions": {
                    "nodes": list(self.subscriptions.values()),
                    "pageInfo": {"hasNextPage": False, "endCursor": None},
                }
            }
        if "mutation Subscribe" in query:
            topic = variables["topic"]
            made = {
                "id": f"gid://shopify/WebhookSubscription/new-{topic}",
                "topic": topic,
                "uri": variables["webhookSubscription"]["uri"],
                "metafieldNamespaces": variables["webhookSubscription"].get(
                    "metafieldNamespaces", []
                ),
            }
            self.subscriptions[f"{topic}-{len(self.created)}"] = made
            self.created.append(topic)
            return {
                "webhookSubscriptionCreate": {
                    "webhookSubscription": {"id": made["id"]},
                    "userErrors": [],
                }
            }
        if "query ShopDetails" in query:
            return {
                "shop": {
                    "name": "Nordljus",
                    "currencyCode": "SEK",
                    "ianaTimezone": "Europe/Stockholm",
                    "primaryDomain": {"url": "https://nordljus.se"},
                }
            }
        if "query OrderedSince" in query:
            return {"orders": {"nodes": []}}
        if "query Products" in query:
            return {"nodes": []}
        raise AssertionError(f"unexpected query: {query[:80]}")


@pytest.fixture
def shop(client: FlaskClient, runtime: Runtime) -> Shop:
    with runtime.sessions.begin() as session:
        found = session.scalars(select(Shop).where(Shop.key == SHOPIFY_SHOP)).one()
        found.access_token_enc = runtime.secrets.seal(TOKEN)
        found.installed_at = now() - timedelta(hours=2)
        return found


@pytest.fixture
def store(runtime: Runtime) -> Iterator[FakeShopify]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeShopify(mock, runtime)


def missed_order(at: datetime) -> dict[str, Any]:
    """The fixture order, placed and paid at ``at``; its webhooks never came."""
    order = json.loads(json.dumps(ORDER))
    order["createdAt"] = stamp(at)
    order["updatedAt"] = order["customer"]["updatedAt"] = stamp(at + timedelta(seconds=2))
    return order


def abandon(client: FlaskClient, started: datetime) -> None:
    """A subscribed customer leaves a checkout (its reminder waits an hour)."""
    payload = json.loads((FIXTURES / "shopify" / "checkouts_create__customer.json").read_text())
    stamp_ = started.isoformat()
    payload["created_at"] = payload["updated_at"] = payload["customer"]["updated_at"] = stamp_
    payload["customer"]["email_marketing_consent"] = {
        "state": "subscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": "2026-01-10T12:00:00+00:00",
    }
    body = dumps(payload)
    headers = shopify_headers("checkouts/update", body, SHOPIFY_SECRET, SHOPIFY_SHOP, "checkout-1")
    assert post(client, "shopify", body, headers).status_code == 200


def test_a_missed_order_is_found_processed_once_and_ends_the_cart_reminder(
    client: FlaskClient, runtime: Runtime, shop: Shop, store: FakeShopify
) -> None:
    started = now().replace(microsecond=0) - timedelta(minutes=20)
    abandon(client, started)
    run_worker(runtime)
    with runtime.sessions() as session:
        reminder = session.scalars(select(Message).where(Message.step == "email_1")).one()
        assert reminder.state == MessageState.PLANNED

    # placed within the overlap: the second pass reads it again, and knows it
    store.orders = [missed_order(now().replace(microsecond=0) - timedelta(minutes=3))]
    counts = shopify_catchup.catch_up(runtime, shop.id)
    assert counts["missed"] == 1
    assert counts["repaired"] == 0
    run_worker(runtime)

    with runtime.sessions() as session:
        order = session.scalars(select(Order)).one()
        assert (order.order_id, order.status) == ("6123456789012", "paid")
        delivery = session.scalars(select(Delivery).where(Delivery.topic.like("graphql/%"))).one()
        assert (delivery.status, delivery.topic) == ("processed", "graphql/orders/updated")
        assert delivery.headers["X-Triggerpost-Source"] == "reconciliation"
        assert json.loads(delivery.body)["legacyResourceId"] == "6123456789012"
        reminder = session.scalars(select(Message).where(Message.step == "email_1")).one()
        assert (reminder.state, reminder.reason) == (MessageState.EXITED, "order_placed")
        assert all(m.state != MessageState.SENT for m in session.scalars(select(Message)))
        deliveries = count(session, Delivery)

    # a second pass finds nothing new, and stores nothing
    again = shopify_catchup.catch_up(runtime, shop.id)
    run_worker(runtime)
    assert again["missed"] == 0
    assert again["orders_seen"] == 1
    with runtime.sessions() as session:
        assert count(session, Delivery) == deliveries
        assert count(session, Order) == 1


def test_the_webhook_that_comes_late_after_the_catch_up_changes_nothing(
    client: FlaskClient, runtime: Runtime, shop: Shop, store: FakeShopify
) -> None:
    placed = now().replace(microsecond=0) - timedelta(minutes=10)
    store.orders = [missed_order(placed)]
    assert shopify_catchup.catch_up(runtime, shop.id)["missed"] == 1
    run_worker(runtime)
    hook = json.loads((FIXTURES / "shopify" / "orders_create__customer.json").read_text())
    hook["created_at"] = placed.isoformat()
    hook["updated_at"] = (placed + timedelta(seconds=2)).isoformat()
    body = dumps(hook)
    headers = shopify_headers("orders/create", body, SHOPIFY_SECRET, SHOPIFY_SHOP, "late-1")
    assert post(client, "shopify", body, headers).status_code == 200
    run_worker(runtime)
    with runtime.sessions() as session:
        order = session.scalars(select(Order)).one()
        assert order.status == "paid"  # the late webhook's older state does not win


def test_the_cursor_moves_to_the_pass_and_the_next_reads_again_with_an_overlap(
    client: FlaskClient, runtime: Runtime, shop: Shop, store: FakeShopify
) -> None:
    before = now()
    shopify_catchup.catch_up(runtime, shop.id)
    with runtime.sessions() as session:
        cursor = session.scalars(
            select(SyncCursor).where(SyncCursor.shop_id == shop.id, SyncCursor.resource == "orders")
        ).one()
        synced = cursor.synced_until
    assert synced >= before
    # the first pass started at the install, less the overlap
    first = store.searches[1]
    assert first.startswith("orders updated_at:>=")
    assert str((shop.installed_at - shopify_catchup.OVERLAP).astimezone(UTC).isoformat()) in first
    store.searches.clear()
    shopify_catchup.catch_up(runtime, shop.id)
    expected = (synced - shopify_catchup.OVERLAP).astimezone(UTC).isoformat()
    assert store.searches == [
        f'customers updated_at:>="{expected}"',
        f'orders updated_at:>="{expected}"',
    ]


def test_a_pass_stops_after_its_pages_and_the_next_goes_on(
    client: FlaskClient,
    runtime: Runtime,
    shop: Shop,
    store: FakeShopify,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shopify_catchup, "PAGES_PER_PASS", 1)
    store.page_size = 2
    base = now().replace(microsecond=0) - timedelta(minutes=50)
    orders = []
    for n in range(3):
        order = missed_order(base + timedelta(minutes=10 * n))
        order["id"] = f"gid://shopify/Order/{100 + n}"
        order["legacyResourceId"] = str(100 + n)
        orders.append(order)
    store.orders = orders
    first = shopify_catchup.catch_up(runtime, shop.id)
    assert (first["missed"], first["pages_capped"]) == (2, 1)
    with runtime.sessions() as session:
        cursor = session.scalars(
            select(SyncCursor).where(SyncCursor.shop_id == shop.id, SyncCursor.resource == "orders")
        ).one()
        # as far as the page it read: the newest change it listed
        assert cursor.synced_until == datetime.fromisoformat(orders[1]["updatedAt"])
    second = shopify_catchup.catch_up(runtime, shop.id)
    assert second["missed"] == 1  # the third; the second is read again in the overlap, known
    run_worker(runtime)
    with runtime.sessions() as session:
        assert count(session, Order) == 3


def test_a_throttled_answer_ends_the_pass_early_and_keeps_the_cursor(
    client: FlaskClient, runtime: Runtime, shop: Shop, store: FakeShopify
) -> None:
    store.orders = [missed_order(now().replace(microsecond=0) - timedelta(minutes=5))]
    # the bucket needs 100 s to refill: longer than the client waits, so the pass stops
    store.throttle = [
        {
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {
                "cost": {
                    "requestedQueryCost": 102,
                    "throttleStatus": {
                        "maximumAvailable": 2000.0,
                        "currentlyAvailable": 2,
                        "restoreRate": 1.0,
                    },
                }
            },
        }
    ]
    counts = shopify_catchup.catch_up(runtime, shop.id)
    assert (counts["interrupted"], counts["missed"]) == (1, 0)
    with runtime.sessions() as session:
        assert count(session, SyncCursor, SyncCursor.resource == "customers") == 0
        assert count(session, Delivery) == 0
        assert count(session, Notice, Notice.cleared_at.is_(None)) == 0
    # a short wait is waited for within the pass
    store.throttle = [
        {
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {
                "cost": {
                    "requestedQueryCost": 102,
                    "throttleStatus": {
                        "maximumAvailable": 2000.0,
                        "currentlyAvailable": 100,
                        "restoreRate": 100.0,
                    },
                }
            },
        }
    ]
    assert shopify_catchup.catch_up(runtime, shop.id)["missed"] == 1


def test_a_deleted_or_moved_subscription_is_recreated_and_the_merchant_told(
    client: FlaskClient, runtime: Runtime, shop: Shop, store: FakeShopify
) -> None:
    del store.subscriptions["ORDERS_CREATE"]
    store.subscriptions["CHECKOUTS_UPDATE"]["uri"] = "https://old.example.com/webhooks/shopify"
    counts = shopify_catchup.catch_up(runtime, shop.id)
    assert counts["repaired"] == 2
    assert sorted(store.created) == ["CHECKOUTS_UPDATE", "ORDERS_CREATE"]
    with runtime.sessions() as session:
        notice = session.scalars(
            select(Notice).where(Notice.code == shopify_catchup.NOTICE_REPAIRED)
        ).one()
        assert "missing: orders/create" in notice.message
        assert "another address: checkouts/update" in notice.message
        recorded = session.scalars(
            select(Subscription).where(Subscription.topic == "orders/create")
        ).one()
        assert recorded.address == ADDRESS
    # repaired: the next pass has nothing to do
    assert shopify_catchup.catch_up(runtime, shop.id)["repaired"] == 0
    assert len(store.created) == 2


def test_a_pass_turns_on_a_pixel_the_install_could_not_and_then_checks_it_daily(
    client: FlaskClient, runtime: Runtime, shop: Shop, store: FakeShopify
) -> None:
    assert shopify_catchup.catch_up(runtime, shop.id)["pixel"] == 1
    assert store.pixels.pixel is not None
    with runtime.sessions() as session:
        key = session.get_one(Shop, shop.id).storefront_key
    assert store.pixels.pixel["settings"] == {
        "endpoint": "http://127.0.0.1:8000/events/shopify",
        "key": key,
    }
    # on: the passes of the same day leave it alone
    assert shopify_catchup.catch_up(runtime, shop.id)["pixel"] == 0
    assert store.pixels.calls == ["create"]

    # the merchant deleted it in the admin: the next day's pass puts it back, same key
    store.pixels.pixel = None
    assert 0 < runtime.redis.ttl(shopify.pixel_check_key(shop.id)) <= 86400
    runtime.redis.delete(shopify.pixel_check_key(shop.id))  # a day went by
    assert shopify_catchup.catch_up(runtime, shop.id)["pixel"] == 1
    assert store.pixels.pixel["settings"]["key"] == key


def test_a_pixel_shopify_refuses_is_told_once_and_asked_again_a_day_later(
    client: FlaskClient, runtime: Runtime, shop: Shop, store: FakeShopify
) -> None:
    store.pixels.refuse = "NO_EXTENSION"
    counts = shopify_catchup.catch_up(runtime, shop.id)
    assert counts["pixel"] == 0
    assert counts["repaired"] == 0  # the rest of the pass went on
    with runtime.sessions() as session:
        notice = session.scalars(select(Notice).where(Notice.code == shopify.NOTICE_PIXEL)).one()
        assert "No extension found" in notice.message
        assert notice.cleared_at is None
    shopify_catchup.catch_up(runtime, shop.id)
    assert store.pixels.calls == ["create"]  # not again before a day


def test_a_pixel_check_cut_short_by_shopify_being_away_is_tried_at_the_next_pass(
    client: FlaskClient, runtime: Runtime, shop: Shop, store: FakeShopify
) -> None:
    real = store.pixels.answer
    store.pixels.answer = lambda query, variables: {  # type: ignore[method-assign]
        "errors": [{"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]
    }
    assert shopify_catchup.catch_up(runtime, shop.id)["pixel"] == 0
    with runtime.sessions() as session:
        assert session.scalar(select(Notice).where(Notice.code == shopify.NOTICE_PIXEL)) is None
    store.pixels.answer = real  # type: ignore[method-assign]
    assert shopify_catchup.catch_up(runtime, shop.id)["pixel"] == 1
    assert store.pixels.pixel is not None


def test_the_sweeper_schedule_asks_for_each_installed_shop_once_per_interval(
    client: FlaskClient, runtime: Runtime, shop: Shop, store: FakeShopify
) -> None:
    assert shopify.SERVER.reconcile_due is shopify.schedule_due
    assert shopify.schedule_due(runtime) == 1
    assert shopify.schedule_due(runtime) == 0  # its job is still waiting
    run_worker(runtime)
    with runtime.sessions() as session:
        assert shopify.due_shops(session, now()) == []
        assert shopify.due_shops(session, now() + shopify.CATCH_UP_INTERVAL) == [shop.id]


def test_a_shop_that_refuses_our_token_is_told_and_not_asked_again_before_the_interval(
    client: FlaskClient, runtime: Runtime, shop: Shop
) -> None:
    endpoint = (
        f"https://{SHOPIFY_SHOP}/admin/api/{runtime.settings.shopify_api_version}/graphql.json"
    )
    with responses.RequestsMock() as mock:
        mock.post(endpoint, status=401, json={"errors": "[API] Invalid API key or access token"})
        with pytest.raises(AdminApiError) as caught:
            shopify_catchup.catch_up(runtime, shop.id)
    assert not caught.value.transient
    with runtime.sessions() as session:
        notice = session.scalars(
            select(Notice).where(Notice.code == shopify_catchup.NOTICE_API)
        ).one()
        assert notice.cleared_at is None
        assert shopify.due_shops(session, now()) == []
        assert count(session, Delivery) == 0


def test_a_missed_new_customer_arrives_as_created_with_consent_and_birthday(
    client: FlaskClient, runtime: Runtime, shop: Shop, store: FakeShopify
) -> None:
    customer = json.loads((FIXTURES / "shopify_graphql" / "customer__birthday.json").read_text())
    joined = now().replace(microsecond=0) - timedelta(minutes=30)
    customer["createdAt"] = stamp(joined)
    customer["updatedAt"] = stamp(joined + timedelta(seconds=1))
    store.customers = [customer]
    assert shopify_catchup.catch_up(runtime, shop.id)["missed"] == 1
    run_worker(runtime)
    with runtime.sessions() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.topic, delivery.status) == ("graphql/customers/create", "processed")
        contact = session.scalars(select(Contact)).one()
        assert contact.customer_id == "8012345678901"
        assert contact.consent_state == "subscribed"
        assert str(contact.birthday) == "1991-03-09"
    # changed later: read again as an update, once
    customer["updatedAt"] = stamp(now().replace(microsecond=0))
    customer["firstName"] = "Astri"
    assert shopify_catchup.catch_up(runtime, shop.id)["missed"] == 1
    assert shopify_catchup.catch_up(runtime, shop.id)["missed"] == 0
    run_worker(runtime)
    with runtime.sessions() as session:
        topics = [d.topic for d in session.scalars(select(Delivery).order_by(Delivery.id))]
        assert topics == ["graphql/customers/create", "graphql/customers/update"]
        assert session.scalars(select(Contact)).one().first_name == "Astri"
