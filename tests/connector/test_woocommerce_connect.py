"""Connecting a WooCommerce store end to end, the store's REST API faked by ``responses``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from flask.testing import FlaskClient
from sqlalchemy import select, update

from adapters.woocommerce.client import WEBHOOK_TOPICS
from jobs import woocommerce_app
from jobs.runtime import Runtime
from jobs.store.models import ConnectNonce, Notice, Shop, Subscription, now
from tests.connector.test_merchant import signed_in_shop
from tests.support import run_worker

STORE = "https://ullboden.example.se"
API = f"{STORE}/wp-json/wc/v3"
ADDRESS = "http://127.0.0.1:8000/webhooks/woocommerce"
KEY_POST = {
    "key_id": 7,
    "consumer_key": "ck_5f8e0c1d2b3a4f5e6d7c8b9a0f1e2d3c4b5a6978",
    "consumer_secret": "cs_0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8091",
    "key_permissions": "read_write",
}
Answer = tuple[int, dict[str, str], str]


class FakeStore:
    """The store's webhooks endpoint: what we created, and what we changed."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.mock = mock
        self.hooks: dict[str, dict[str, Any]] = {}
        mock.add_callback(responses.GET, f"{API}/webhooks", callback=self.list)
        mock.add_callback(responses.POST, f"{API}/webhooks", callback=self.create)
        mock.add_callback(responses.PUT, re.compile(rf"{API}/webhooks/\d+"), callback=self.change)

    def list(self, request: requests.PreparedRequest) -> Answer:
        return 200, {"X-WP-TotalPages": "1"}, json.dumps(list(self.hooks.values()))

    def create(self, request: requests.PreparedRequest) -> Answer:
        body = json.loads(request.body or b"{}")
        hook = {"id": len(self.hooks) + 1, **body}
        self.hooks[str(hook["id"])] = hook
        return 201, {}, json.dumps(hook)

    def change(self, request: requests.PreparedRequest) -> Answer:
        hook_id = str(request.url).rsplit("/", 1)[-1]
        self.hooks[hook_id].update(json.loads(request.body or b"{}"))
        return 200, {}, json.dumps(self.hooks[hook_id])


@pytest.fixture
def store() -> Iterator[FakeStore]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeStore(mock)


def start(web: FlaskClient, address: str = STORE + "/") -> str:
    answer = web.get("/woocommerce/connect", query_string={"store_url": address})
    assert answer.status_code == 302
    target = urlsplit(answer.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{STORE}/wc-auth/v1/authorize"
    query = parse_qs(target.query)
    assert query["app_name"] == ["triggerpost"]
    assert query["scope"] == ["read_write"]
    assert query["return_url"] == ["http://127.0.0.1:8000/woocommerce/return"]
    assert query["callback_url"] == ["http://127.0.0.1:8000/woocommerce/callback"]
    return query["user_id"][0]


def the_shop(runtime: Runtime) -> Shop:
    with runtime.sessions() as session:
        return session.scalars(select(Shop).where(Shop.key == "ullboden.example.se")).one()


def test_connect_end_to_end(client: FlaskClient, runtime: Runtime, store: FakeStore) -> None:
    nonce = start(client)
    answer = client.post("/woocommerce/callback", json={**KEY_POST, "user_id": nonce})
    assert answer.status_code == 200
    assert len(store.mock.calls) == 0  # webhooks are a job's work, the answer is immediate

    shop = the_shop(runtime)
    assert runtime.secrets.open(shop.consumer_key_enc or "") == KEY_POST["consumer_key"]
    assert KEY_POST["consumer_secret"] not in (shop.consumer_secret_enc or "")
    assert shop.base_url == STORE
    secret = runtime.secrets.open(shop.webhook_secret_enc or "")
    assert secret.isalnum()
    assert len(secret) >= 32

    run_worker(runtime)
    created = [json.loads(c.request.body) for c in store.mock.calls if c.request.method == "POST"]
    assert [c["topic"] for c in created] == list(WEBHOOK_TOPICS)
    assert all(
        (c["delivery_url"], c["secret"], c["status"]) == (ADDRESS, secret, "active")
        for c in created
    )
    with runtime.sessions() as session:
        rows = session.scalars(select(Subscription).where(Subscription.shop_id == shop.id))
        assert {r.topic: r.remote_id for r in rows} == {
            t: str(n) for n, t in enumerate(WEBHOOK_TOPICS, 1)
        }
        assert session.scalars(select(Notice).where(Notice.cleared_at.is_(None))).all() == []

    landing = client.get("/woocommerce/return", query_string={"success": "1", "user_id": nonce})
    assert landing.headers["Location"] == "/settings"
    assert signed_in_shop(client) == shop.id


@pytest.mark.parametrize("case", ["unknown", "used", "expired", "read_only", "not_json"])
def test_a_key_post_without_a_live_nonce_is_refused_and_calls_nobody(
    client: FlaskClient, runtime: Runtime, store: FakeStore, case: str
) -> None:
    nonce = start(client)
    body: Any = {**KEY_POST, "user_id": nonce}
    if case == "unknown":
        body["user_id"] = "guessed-" + nonce[:8]
    elif case == "used":
        assert client.post("/woocommerce/callback", json=body).status_code == 200
        runtime.redis.flushdb()  # forget the first connect's job; count only what follows
    elif case == "expired":
        with runtime.sessions.begin() as session:
            session.execute(update(ConnectNonce).values(expires_at=now() - timedelta(seconds=1)))
    elif case == "read_only":
        body["key_permissions"] = "read"
    answer = (
        client.post("/woocommerce/callback", data="user_id=x")
        if case == "not_json"
        else client.post("/woocommerce/callback", json=body)
    )
    assert answer.status_code == 403
    run_worker(runtime)
    assert len(store.mock.calls) == 0
    with runtime.sessions() as session:
        shops = session.scalars(select(Shop).where(Shop.key == "ullboden.example.se")).all()
    assert len(shops) == (1 if case == "used" else 0)


def test_the_return_signs_in_only_the_browser_that_started(
    client: FlaskClient, runtime: Runtime, store: FakeStore
) -> None:
    nonce = start(client)
    # declined in the store's admin
    assert (
        client.get(
            "/woocommerce/return", query_string={"success": "0", "user_id": nonce}
        ).status_code
        == 400
    )
    nonce = start(client)
    client.post("/woocommerce/callback", json={**KEY_POST, "user_id": nonce})
    with client.session_transaction() as cookie:
        cookie.clear()  # another browser holding the link
    answer = client.get("/woocommerce/return", query_string={"success": "1", "user_id": nonce})
    assert answer.status_code == 403
    with client.session_transaction() as cookie:
        assert "shop_id" not in cookie


def test_the_store_address_is_checked(client: FlaskClient) -> None:
    assert client.get("/woocommerce/connect").status_code == 400
    assert (
        client.get("/woocommerce/connect", query_string={"store_url": "ftp://x"}).status_code == 400
    )
    with pytest.raises(woocommerce_app.ConnectError, match="https"):
        woocommerce_app.store_home("http://shop.example.com", dev_mode=False)
    assert (
        woocommerce_app.store_home("shop.example.com/", dev_mode=False)
        == "https://shop.example.com"
    )


def test_reconnecting_re_points_existing_webhooks_to_the_new_secret(
    client: FlaskClient, runtime: Runtime, store: FakeStore
) -> None:
    for _ in range(2):
        nonce = start(client)
        client.post("/woocommerce/callback", json={**KEY_POST, "user_id": nonce})
        run_worker(runtime)
    secret = runtime.secrets.open(the_shop(runtime).webhook_secret_enc or "")
    assert len(store.hooks) == len(WEBHOOK_TOPICS)  # none created twice
    assert all(h["secret"] == secret and h["status"] == "active" for h in store.hooks.values())


def test_webhook_set_up_failure_is_shown_and_retried(client: FlaskClient, runtime: Runtime) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{API}/webhooks", status=401, json={"code": "woocommerce_rest_cannot_view"})
        nonce = start(client)
        client.post("/woocommerce/callback", json={**KEY_POST, "user_id": nonce})
        run_worker(runtime)
    with runtime.sessions() as session:
        notice = session.scalars(select(Notice)).one()
    assert "could not yet create your store's webhooks" in notice.message
    assert runtime.queue("default").scheduled_job_registry.count == 1  # RQ's retry, waiting
