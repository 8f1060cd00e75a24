"""Connecting a WooCommerce store end to end, the store's REST API faked by ``responses``."""

from __future__ import annotations

import base64
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
from rq.job import Job
from sqlalchemy import select, update

from adapters.woocommerce.client import WEBHOOK_TOPICS
from connector.app import create_app
from jobs import tasks
from jobs.intake import history
from jobs.platforms import woocommerce
from jobs.runtime import Runtime
from jobs.store.models import (
    ConnectNonce,
    Contact,
    Notice,
    Shop,
    ShopStatus,
    Subscription,
    now,
)
from tests.conftest import FIXTURES
from tests.connector.test_merchant import signed_in_shop
from tests.support import run_worker, woocommerce_headers

STORE = "https://ullboden.example.se"
API = f"{STORE}/wp-json/wc/v3"
ADDRESS = "http://127.0.0.1:8000/webhooks/woocommerce"
KEY_POST = {
    "key_id": 7,
    "consumer_key": "ck_5f8e0c1d2b3a4f5e6d7c8b9a0f1e2d3c4b5a6978",
    "consumer_secret": "cs_0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8091",
    "key_permissions": "read_write",
}
#: well-formed keys the store never issued
MADE_UP = {
    **KEY_POST,
    "consumer_key": "ck_" + "a" * 40,
    "consumer_secret": "cs_" + "b" * 40,
}
Answer = tuple[int, dict[str, str], str]


def _basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


class FakeStore:
    """The store's REST API: it accepts only the keys it issued; what we created and changed."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.mock = mock
        self.hooks: dict[str, dict[str, Any]] = {}
        self.issued = {_basic(KEY_POST["consumer_key"], KEY_POST["consumer_secret"])}
        mock.add_callback(responses.GET, f"{API}/webhooks", callback=self.list)
        mock.add_callback(responses.POST, f"{API}/webhooks", callback=self.create)
        mock.add_callback(responses.PUT, re.compile(rf"{API}/webhooks/\d+"), callback=self.change)
        # the history import a connect starts: a new store with one customer, no orders
        self.customers = [
            {"id": 1, "email": "forsta@example.se", "date_created_gmt": "2026-01-02T03:04:05"}
        ]
        mock.add_callback(responses.GET, f"{API}/customers", callback=self.listing)
        mock.add_callback(responses.GET, f"{API}/orders", callback=self.listing)

    def issue(self, key: str, secret: str) -> None:
        self.issued.add(_basic(key, secret))

    def refused(self, request: requests.PreparedRequest) -> Answer | None:
        if request.headers.get("Authorization") in self.issued:
            return None
        body = {
            "code": "woocommerce_rest_authentication_error",
            "message": "Consumer key is invalid.",
        }
        return 401, {}, json.dumps(body)

    def list(self, request: requests.PreparedRequest) -> Answer:
        return self.refused(request) or (
            200,
            {"X-WP-TotalPages": "1"},
            json.dumps(list(self.hooks.values())),
        )

    def listing(self, request: requests.PreparedRequest) -> Answer:
        items = self.customers if "/customers" in str(request.url) else []
        headers = {"X-WP-Total": str(len(items)), "X-WP-TotalPages": "1"}
        return self.refused(request) or (200, headers, json.dumps(items))

    def create(self, request: requests.PreparedRequest) -> Answer:
        if refused := self.refused(request):
            return refused
        body = json.loads(request.body or b"{}")
        hook = {"id": len(self.hooks) + 1, **body}
        self.hooks[str(hook["id"])] = hook
        return 201, {}, json.dumps(hook)

    def change(self, request: requests.PreparedRequest) -> Answer:
        if refused := self.refused(request):
            return refused
        hook_id = str(request.url).rsplit("/", 1)[-1]
        self.hooks[hook_id].update(json.loads(request.body or b"{}"))
        return 200, {}, json.dumps(self.hooks[hook_id])


@pytest.fixture
def store() -> Iterator[FakeStore]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeStore(mock)


def form_token(web: FlaskClient, address: str = STORE + "/") -> str:
    page = web.get("/woocommerce/connect", query_string={"store_url": address})
    assert page.status_code == 200
    found = re.search(r'name="form_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found is not None
    return found.group(1)


def start(web: FlaskClient, address: str = STORE + "/", **environ: str) -> str:
    answer = web.post(
        "/woocommerce/connect",
        data={"store_url": address, "form_token": form_token(web, address)},
        environ_base=environ,
    )
    assert answer.status_code == 303, answer.get_data(as_text=True)
    target = urlsplit(answer.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{STORE}/wc-auth/v1/authorize"
    query = parse_qs(target.query)
    assert query["app_name"] == ["triggerpost"]
    assert query["scope"] == ["read_write"]
    assert query["return_url"] == ["http://127.0.0.1:8000/woocommerce/return"]
    assert query["callback_url"] == ["http://127.0.0.1:8000/woocommerce/callback"]
    return query["user_id"][0]


def back(web: FlaskClient, nonce: str) -> Any:
    """The store sends the browser back; once connected, it follows its login link."""
    answer = web.get("/woocommerce/return", query_string={"success": "1", "user_id": nonce})
    if answer.status_code == 303 and answer.headers["Location"].startswith("/login/"):
        return web.get(answer.headers["Location"])
    return answer


def the_shop(runtime: Runtime) -> Shop:
    with runtime.sessions() as session:
        return session.scalars(select(Shop).where(Shop.key == "ullboden.example.se")).one()


def shops(runtime: Runtime) -> list[Shop]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Shop).where(Shop.key == "ullboden.example.se")))


def connect(web: FlaskClient, runtime: Runtime, keys: dict[str, Any] = KEY_POST) -> str:
    nonce = start(web)
    assert web.post("/woocommerce/callback", json={**keys, "user_id": nonce}).status_code == 200
    run_worker(runtime)
    return nonce


ORDER = (FIXTURES / "woocommerce" / "order_updated__cancelled.json").read_bytes()


def webhook(web: FlaskClient, secret: str, delivery: str) -> int:
    body = ORDER.replace(b"}", b', "note": "' + delivery.encode() + b'"}', 1)
    headers = woocommerce_headers("order.updated", body, secret, STORE + "/", delivery)
    return int(web.post("/webhooks/woocommerce", data=body, headers=headers).status_code)


def test_connect_end_to_end(client: FlaskClient, runtime: Runtime, store: FakeStore) -> None:
    nonce = start(client)
    answer = client.post("/woocommerce/callback", json={**KEY_POST, "user_id": nonce})
    assert answer.status_code == 200
    assert len(store.mock.calls) == 0  # the keys are tried by a job, the answer is immediate
    assert shops(runtime) == []  # and nothing is kept before they have worked
    waiting = back(client, nonce)
    assert waiting.status_code == 202
    assert '<meta http-equiv="refresh"' in waiting.get_data(as_text=True)

    run_worker(runtime)
    first = store.mock.calls[0].request
    assert (first.method, urlsplit(first.url).path) == ("GET", "/wp-json/wc/v3/webhooks")
    shop = the_shop(runtime)
    assert runtime.secrets.open(shop.consumer_key_enc or "") == KEY_POST["consumer_key"]
    assert KEY_POST["consumer_secret"] not in (shop.consumer_secret_enc or "")
    assert shop.base_url == STORE
    secret = runtime.secrets.open(shop.webhook_secret_enc or "")
    assert secret.isalnum()
    assert len(secret) >= 32
    with runtime.sessions() as session:
        settled = session.scalars(select(ConnectNonce)).one()
        assert (settled.state, settled.shop_id) == ("connected", shop.id)
        assert settled.consumer_key_enc is None
        assert settled.consumer_secret_enc is None

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

    landing = back(client, nonce)
    assert landing.headers["Location"] == "/app/"
    assert signed_in_shop(client) == shop.id
    assert back(client, nonce).status_code == 403  # once


@pytest.mark.parametrize("uninstalled", [False, True])
def test_made_up_keys_for_a_connected_store_change_nothing(
    client: FlaskClient, runtime: Runtime, store: FakeStore, uninstalled: bool
) -> None:
    back(client, connect(client, runtime))  # the merchant is signed in
    if uninstalled:
        with runtime.sessions.begin() as session:
            session.execute(update(Shop).values(status=ShopStatus.UNINSTALLED))
    before = the_shop(runtime)
    secret = runtime.secrets.open(before.webhook_secret_enc or "")

    # someone else, in another browser, posts keys the store never issued
    attacker = client.application.test_client()
    nonce = start(attacker)
    answered = attacker.post("/woocommerce/callback", json={**MADE_UP, "user_id": nonce})
    assert answered.status_code == 200  # WooCommerce's contract; the keys are not trusted
    run_worker(runtime)

    after = the_shop(runtime)
    for column in (
        "consumer_key_enc",
        "consumer_secret_enc",
        "webhook_secret_enc",
        "previous_webhook_secret_enc",
        "status",
        "installed_at",
    ):
        assert getattr(after, column) == getattr(before, column), column
    refused = back(attacker, nonce)
    assert refused.status_code == 403
    assert "did not accept the keys" in refused.get_data(as_text=True)
    assert signed_in_shop(attacker) is None
    if not uninstalled:  # the store's genuine webhooks still get in, its merchant stays in
        assert webhook(client, secret, "genuine-1") == 200
        assert signed_in_shop(client) == before.id


def test_a_refused_connect_never_shows_what_the_store_answered(
    client: FlaskClient, runtime: Runtime
) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{API}/webhooks", status=500, body="<h1>internal: db password hunter2</h1>")
        nonce = start(client)
        client.post("/woocommerce/callback", json={**KEY_POST, "user_id": nonce})
        run_worker(runtime)
    page = back(client, nonce)
    assert page.status_code == 403
    assert "could not reach your store" in page.get_data(as_text=True)
    assert "hunter2" not in page.get_data(as_text=True)
    assert shops(runtime) == []


@pytest.mark.parametrize(
    "case", ["unknown", "used", "expired", "read_only", "not_json", "not_keys"]
)
def test_a_key_post_without_a_live_nonce_is_refused_and_calls_nobody(
    client: FlaskClient, runtime: Runtime, store: FakeStore, case: str
) -> None:
    nonce = start(client)
    body: Any = {**KEY_POST, "user_id": nonce}
    if case == "unknown":
        body["user_id"] = "guessed-" + nonce[:8]
    elif case == "used":
        assert client.post("/woocommerce/callback", json=body).status_code == 200
        run_worker(runtime)
        store.mock.calls.reset()
        body = {**MADE_UP, "user_id": nonce}
    elif case == "expired":
        with runtime.sessions.begin() as session:
            session.execute(update(ConnectNonce).values(expires_at=now() - timedelta(seconds=1)))
    elif case == "read_only":
        body["key_permissions"] = "read"
    elif case == "not_keys":
        body["consumer_secret"] = "x" * 5000
    answer = (
        client.post("/woocommerce/callback", data="user_id=x")
        if case == "not_json"
        else client.post("/woocommerce/callback", json=body)
    )
    assert answer.status_code == 403
    run_worker(runtime)
    assert len(store.mock.calls) == 0
    assert len(shops(runtime)) == (1 if case == "used" else 0)


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
    nonce = connect(client, runtime)
    with client.session_transaction() as cookie:
        cookie.pop("woocommerce_connect")  # another browser holding the link
    answer = back(client, nonce)
    assert answer.status_code == 403
    assert signed_in_shop(client) is None


def test_a_link_on_another_site_cannot_start_a_connect(
    client: FlaskClient, runtime: Runtime, store: FakeStore
) -> None:
    # following a link shows the form; it starts nothing
    page = client.get("/woocommerce/connect", query_string={"store_url": STORE})
    assert page.status_code == 200
    assert "Location" not in page.headers
    token = form_token(client)
    victim = client.application.test_client()
    attempts = [
        # a cross-site form post carries no cookie, so no token of the victim's session
        victim.post("/woocommerce/connect", data={"store_url": STORE}),
        victim.post("/woocommerce/connect", data={"store_url": STORE, "form_token": token}),
        # the right token, posted from another site's page
        client.post(
            "/woocommerce/connect",
            data={"store_url": STORE, "form_token": token},
            headers={"Origin": "https://attacker.example"},
        ),
    ]
    assert [a.status_code for a in attempts] == [403, 403, 403]
    with runtime.sessions() as session:
        assert session.scalars(select(ConnectNonce)).all() == []


def test_connect_attempts_are_rate_limited_per_address(
    client: FlaskClient, store: FakeStore
) -> None:
    for _ in range(woocommerce.CONNECTS_PER_CLIENT):
        start(client, REMOTE_ADDR="198.51.100.7")
    too_many = client.post(
        "/woocommerce/connect",
        data={"store_url": STORE, "form_token": form_token(client)},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert too_many.status_code == 429
    start(client, REMOTE_ADDR="198.51.100.8")  # someone else is not held up


@pytest.mark.parametrize(
    "address",
    ["https://169.254.169.254", "https://127.0.0.1:8080", "https://localhost", "https://[::1]"],
)
def test_a_store_on_a_private_address_is_refused_before_anything(
    client: FlaskClient, runtime: Runtime, address: str
) -> None:
    answer = client.post(
        "/woocommerce/connect", data={"store_url": address, "form_token": form_token(client)}
    )
    assert answer.status_code == 400
    with runtime.sessions() as session:
        assert session.scalars(select(ConnectNonce)).all() == []


def test_the_store_address_is_checked(client: FlaskClient) -> None:
    for address in (
        "",
        "ftp://x",
        "https://a:abc/",
        "x" * 600,
        "https://" + "x" * 70 + ".example",
        "https://user:pass@shop.example.com",
        "https://shop.example.com/?next=x",
    ):
        answer = client.post(
            "/woocommerce/connect", data={"store_url": address, "form_token": form_token(client)}
        )
        assert answer.status_code == 400, address
    with pytest.raises(woocommerce.ConnectError, match="https"):
        woocommerce.store_home("http://shop.example.com", dev_mode=False)
    assert woocommerce.store_home("shop.example.com/", dev_mode=False) == "https://shop.example.com"


def test_reconnecting_re_points_existing_webhooks_to_the_new_secret(
    client: FlaskClient, runtime: Runtime, store: FakeStore
) -> None:
    for _ in range(2):
        connect(client, runtime)
    secret = runtime.secrets.open(the_shop(runtime).webhook_secret_enc or "")
    assert len(store.hooks) == len(WEBHOOK_TOPICS)  # none created twice
    assert all(h["secret"] == secret and h["status"] == "active" for h in store.hooks.values())


def test_a_verified_reconnect_signs_out_whoever_held_the_shop(
    client: FlaskClient, runtime: Runtime, store: FakeStore
) -> None:
    back(client, connect(client, runtime))
    shop_id = the_shop(runtime).id
    assert signed_in_shop(client) == shop_id
    other = client.application.test_client()
    nonce = connect(other, runtime)
    assert signed_in_shop(client) is None
    back(other, nonce)
    assert signed_in_shop(other) == shop_id


def test_the_old_secret_holds_until_the_webhooks_are_re_pointed(
    client: FlaskClient, runtime: Runtime, store: FakeStore
) -> None:
    connect(client, runtime)
    old = runtime.secrets.open(the_shop(runtime).webhook_secret_enc or "")
    store.issue("ck_" + "1" * 40, "cs_" + "2" * 40)
    nonce = start(client)
    keys = {**KEY_POST, "consumer_key": "ck_" + "1" * 40, "consumer_secret": "cs_" + "2" * 40}
    client.post("/woocommerce/callback", json={**keys, "user_id": nonce})
    with runtime.sessions() as session:
        nonce_id = session.scalars(select(ConnectNonce.id).where(ConnectNonce.used_at.is_not(None))
                                   .order_by(ConnectNonce.id.desc())).first()  # fmt: skip
    assert tasks.verify_connect(int(nonce_id or 0)) == "connected"
    new = runtime.secrets.open(the_shop(runtime).webhook_secret_enc or "")
    assert new != old
    # the store's webhooks still sign with the old secret until set-up has re-pointed them
    assert webhook(client, old, "before-1") == 200
    assert webhook(client, new, "before-2") == 200
    run_worker(runtime)
    assert all(h["secret"] == new for h in store.hooks.values())
    # a web process re-reads a shop's secrets within IDENTITY_TTL; a new one at once
    fresh = create_app(runtime=runtime).test_client()
    assert webhook(fresh, new, "after-1") == 200
    assert webhook(fresh, old, "after-2") == 401
    assert the_shop(runtime).previous_webhook_secret_enc is None


def test_a_connected_store_has_its_history_imported_once(
    client: FlaskClient, runtime: Runtime, store: FakeStore
) -> None:
    connect(client, runtime)
    shop_id = the_shop(runtime).id
    with runtime.sessions() as session:
        imported = history.state(session, shop_id)
        contact = session.scalars(select(Contact)).one()
    assert imported is not None
    assert (imported.status, imported.customers, imported.orders) == ("done", 1, 0)
    assert contact.email == "forsta@example.se"
    assert history.progress_line(imported) == (
        "History imported: 1 customer, 0 orders from the last 2 years"
    )
    connect(client, runtime)  # a reconnect does not import it again
    assert (
        not Job.exists(history.job_id(shop_id), connection=runtime.redis)
        or Job.fetch(history.job_id(shop_id), connection=runtime.redis).is_finished
    )
    assert sum("/customers" in str(c.request.url) for c in store.mock.calls) == 1


def test_webhook_set_up_failure_is_shown_and_retried(
    client: FlaskClient, runtime: Runtime, store: FakeStore
) -> None:
    store.mock.add(
        responses.POST,
        f"{API}/webhooks",
        status=403,
        body="<p>internal: you may not, says 10.0.0.7</p>",
    )
    store.mock.registered().insert(0, store.mock.registered().pop())  # answered first
    connect(client, runtime)
    with runtime.sessions() as session:
        notice = session.scalars(select(Notice)).one()
    assert "could not yet create your store's webhooks" in notice.message
    assert "10.0.0.7" not in notice.message  # the store's words stay in the log
    assert runtime.queue("default").scheduled_job_registry.count == 1  # RQ's retry, waiting


def test_connects_long_over_are_forgotten_keys_and_all(
    client: FlaskClient, runtime: Runtime, store: FakeStore
) -> None:
    nonce = start(client)
    client.post("/woocommerce/callback", json={**KEY_POST, "user_id": nonce})  # never verified
    with runtime.sessions.begin() as session:
        session.execute(
            update(ConnectNonce).values(created_at=now() - woocommerce.KEEP_CONNECTS * 2)
        )
    start(client)
    with runtime.sessions() as session:
        [left] = session.scalars(select(ConnectNonce)).all()
    assert left.consumer_key_enc is None
    assert left.state == "issued"
