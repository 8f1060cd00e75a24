"""Reconciliation: what WooCommerce never delivered is found, processed once, never twice."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
from sqlalchemy import select

from adapters.woocommerce.client import WEBHOOK_TOPICS
from jobs.merchant.shops import add_shop
from jobs.platforms import woocommerce
from jobs.runtime import Runtime
from jobs.store.models import (
    Checkout,
    Delivery,
    Notice,
    Shop,
    StoredEvent,
    Subscription,
    SyncCursor,
    now,
)
from tests.support import FIXTURES, count, run_worker, woocommerce_headers

STORE = "https://ullboden.se"
API = f"{STORE}/wp-json/wc/v3"
ADDRESS = "http://127.0.0.1:8000/webhooks/woocommerce"
SECRET = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
PENDING = json.loads((FIXTURES / "woocommerce" / "order_created__pending_guest.json").read_bytes())


class FakeStore:
    def __init__(self, mock: responses.RequestsMock) -> None:
        self.orders: list[dict[str, Any]] = []
        self.customers: list[dict[str, Any]] = []
        self.hooks = {
            str(n): {"id": n, "topic": t, "delivery_url": ADDRESS, "status": "active"}
            for n, t in enumerate(WEBHOOK_TOPICS, 1)
        }
        self.order_queries: list[str] = []
        mock.add_callback(responses.GET, f"{API}/orders", callback=self.list_orders)
        mock.add_callback(responses.GET, f"{API}/customers", callback=self.list_customers)
        mock.add_callback(responses.GET, f"{API}/webhooks", callback=self.list_hooks)
        mock.add_callback(responses.PUT, re.compile(rf"{API}/webhooks/\d+"), callback=self.change)
        # the engine's live re-check before a send asks for the order itself
        mock.add_callback(responses.GET, re.compile(rf"{API}/orders/\d+"), callback=self.order)

    @staticmethod
    def page(items: list[Any]) -> tuple[int, dict[str, str], str]:
        return 200, {"X-WP-TotalPages": "1"}, json.dumps(items)

    def list_orders(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.order_queries.append(str(request.url))
        return self.page(self.orders)

    def order(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        order_id = str(request.url).rsplit("/", 1)[-1]
        found = [o for o in self.orders if str(o["id"]) == order_id]
        return (200, {}, json.dumps(found[-1])) if found else (404, {}, "{}")

    def list_customers(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        return self.page(self.customers)

    def list_hooks(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        return self.page(list(self.hooks.values()))

    def change(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        hook = self.hooks[str(request.url).rsplit("/", 1)[-1]]
        hook.update(json.loads(request.body or b"{}"))
        return 200, {}, json.dumps(hook)


@pytest.fixture
def store() -> Iterator[FakeStore]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeStore(mock)


@pytest.fixture
def shop_id(runtime: Runtime) -> int:
    with runtime.sessions.begin() as session:
        shop = add_shop(
            session,
            runtime.secrets,
            "woocommerce",
            STORE,
            webhook_secret=SECRET,
            consumer_key="ck_test_key",
            consumer_secret="cs_test_secret",
            currency="SEK",
        )
        shop.installed_at = now() - timedelta(hours=2)
        return shop.id


def test_a_missed_order_is_picked_up_once_and_a_rerun_changes_nothing(
    runtime: Runtime, store: FakeStore, shop_id: int
) -> None:
    store.orders = [PENDING]
    assert woocommerce.reconcile(runtime, shop_id)["missed"] == 1
    run_worker(runtime)
    with runtime.sessions() as session:
        checkout = session.scalars(select(Checkout)).one()
        assert checkout.token == str(PENDING["id"])
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.status, delivery.topic) == ("processed", "order.updated")
        events = count(session, StoredEvent)
        cursor = session.scalars(select(SyncCursor).where(SyncCursor.resource == "orders")).one()
    # the cursor starts at the connect, not at the store's beginning of time
    assert "modified_after=" in store.order_queries[0]

    again = woocommerce.reconcile(runtime, shop_id)
    run_worker(runtime)
    assert again == {"orders_seen": 1, "customers_seen": 0, "missed": 0, "reactivated": 0}
    with runtime.sessions() as session:
        assert count(session, Delivery) == 1
        assert count(session, StoredEvent) == events
        later = session.scalars(select(SyncCursor).where(SyncCursor.resource == "orders")).one()
    assert later.synced_until >= cursor.synced_until


def test_what_a_webhook_already_brought_is_not_stored_again(
    runtime: Runtime, store: FakeStore, shop_id: int
) -> None:
    from connector.app import create_app

    body = (FIXTURES / "woocommerce" / "order_created__pending_guest.json").read_bytes()
    headers = woocommerce_headers("order.created", body, SECRET, STORE + "/", "wc-1")
    with create_app(runtime=runtime).test_client() as web:
        assert web.post("/webhooks/woocommerce", data=body, headers=headers).status_code == 200
    run_worker(runtime)
    store.orders = [PENDING]
    assert woocommerce.reconcile(runtime, shop_id)["missed"] == 0
    with runtime.sessions() as session:
        assert count(session, Delivery) == 1


def test_a_newer_version_of_a_known_order_is_stored(
    runtime: Runtime, store: FakeStore, shop_id: int
) -> None:
    store.orders = [PENDING]
    woocommerce.reconcile(runtime, shop_id)
    run_worker(runtime)
    paid = {
        **PENDING,
        "status": "processing",
        "date_paid_gmt": "2026-09-14T20:01:00",
        "date_modified_gmt": "2026-09-14T20:01:00",
    }
    store.orders = [paid]
    assert woocommerce.reconcile(runtime, shop_id)["missed"] == 1
    run_worker(runtime)
    with runtime.sessions() as session:
        assert session.scalars(select(Checkout)).one().status == "completed"


def test_a_disabled_webhook_is_reactivated_and_the_merchant_told(
    runtime: Runtime, store: FakeStore, shop_id: int
) -> None:
    store.hooks["2"]["status"] = "disabled"
    assert woocommerce.reconcile(runtime, shop_id)["reactivated"] == 1
    assert store.hooks["2"]["status"] == "active"
    with runtime.sessions() as session:
        notice = session.scalars(select(Notice)).one()
        row = session.scalars(
            select(Subscription).where(Subscription.topic == "order.updated")
        ).one()
    assert notice.code == woocommerce.NOTICE_DISABLED
    assert "order.updated" in notice.message
    assert row.status == "active"


def test_an_unreachable_store_is_a_notice_and_a_failed_job(runtime: Runtime, shop_id: int) -> None:
    with responses.RequestsMock() as mock:
        mock.get(f"{API}/orders", status=401, json={"code": "woocommerce_rest_cannot_view"})
        with pytest.raises(Exception, match="401"):
            woocommerce.reconcile(runtime, shop_id)
    with runtime.sessions() as session:
        assert session.scalars(select(Notice.code)).all() == [woocommerce.NOTICE_API]
        cursors = session.scalars(select(SyncCursor).where(SyncCursor.shop_id == shop_id)).all()
        installed = session.get_one(Shop, shop_id).installed_at
    # asked again at the next interval, not at every sweep; nothing counted as read
    assert {c.synced_until for c in cursors} == {installed}
    assert woocommerce.schedule_due(runtime) == 0
    later = now() + woocommerce.INTERVAL + timedelta(minutes=1)
    assert woocommerce.schedule_due(runtime, later) == 1


def test_due_stores_get_one_job_each(runtime: Runtime, store: FakeStore, shop_id: int) -> None:
    assert woocommerce.schedule_due(runtime) == 1
    assert woocommerce.schedule_due(runtime) == 0  # its job is still waiting
    run_worker(runtime)
    assert woocommerce.schedule_due(runtime) == 0  # reconciled just now
    later = now() + woocommerce.INTERVAL + timedelta(minutes=1)
    assert woocommerce.schedule_due(runtime, later) == 1


def test_the_store_is_asked_before_a_reminder_and_a_paid_order_gets_none(
    runtime: Runtime, store: FakeStore, shop_id: int
) -> None:
    from jobs.store.models import Message

    store.orders = [PENDING]
    woocommerce.reconcile(runtime, shop_id)
    # paid at the store, but the webhook saying so never came
    store.orders = [{**PENDING, "status": "processing", "date_paid_gmt": "2026-09-14T20:01:00"}]
    run_worker(runtime)
    with runtime.sessions() as session:
        messages = session.scalars(select(Message)).all()
    assert messages
    assert {(m.state, m.reason) for m in messages if m.step == "email_1"} == {
        ("exited", "order_paid")
    }


def test_a_failed_pass_over_plain_http_leaves_the_keys_out_of_the_failed_job_and_the_notice(
    runtime: Runtime, unique: str
) -> None:
    import dataclasses
    import socket

    from jobs import runtime as runtimes
    from jobs.queues import DEFAULT

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    local = Runtime.create(dataclasses.replace(runtime.settings, allow_private_hosts=True))
    runtimes.install(local)
    try:
        with local.sessions.begin() as session:
            shop = add_shop(
                session,
                local.secrets,
                "woocommerce",
                f"http://127.0.0.1:{port}",
                webhook_secret=SECRET,
                consumer_key="ck_" + "5" * 40,
                consumer_secret="cs_" + unique * 5,
                dev_mode=True,
            )
            shop_id = shop.id
        job = local.queue(DEFAULT).enqueue("jobs.tasks.reconcile_shop", shop_id)
        run_worker(local)
        job.refresh()
        assert job.is_failed
        printed = job.latest_result().exc_string or ""  # what the worker logs and RQ keeps
        assert "no answer" in printed
        assert unique not in printed
        with local.sessions() as session:
            notice = session.scalars(select(Notice)).one()
        assert unique not in notice.message
    finally:
        runtimes.install(runtime)
        local.close()
