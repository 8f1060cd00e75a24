"""Installing the Shopify app end to end, Shopify's endpoints faked by ``responses``."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import responses
from flask.testing import FlaskClient
from sqlalchemy import select, update

from adapters.shopify import oauth
from adapters.shopify.client import topic_enum
from connector.app import create_app
from connector.platforms.shopify import NONCE_KEY
from jobs.merchant.shops import mark_uninstalled
from jobs.platforms import shopify as shopify_app
from jobs.platforms.shopify import StoredTokens
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.store.models import ConnectNonce, Notice, Shop, ShopStatus, Subscription, now
from tests.adapters.shopify_web_pixel import WebPixels
from tests.connector.test_merchant import COOKIE, cookie_of, signed_in_shop
from tests.support import SHOPIFY_SECRET

SHOP = "fjallbutik.myshopify.com"
API_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
GRAPHQL = f"https://{SHOP}/admin/api/2026-07/graphql.json"
TOKEN_URL = f"https://{SHOP}/admin/oauth/access_token"
GRANTED = (
    "read_customer_events,read_customers,read_fulfillments,read_orders,read_products,"
    "write_discounts,write_pixels"
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings, with the Shopify app's client id configured."""
    return dataclasses.replace(settings, shopify_api_key=API_KEY)


@pytest.fixture
def web(runtime: Runtime) -> Iterator[FlaskClient]:
    with create_app(runtime=runtime).test_client() as client:
        yield client


_last_stamp = [0]


def _timestamp() -> str:
    """Shopify signs each visit at its own second (two in one second would be one link)."""
    _last_stamp[0] = max(int(time.time()), _last_stamp[0] + 1)
    return str(_last_stamp[0])


def signed(params: dict[str, str], secret: str = SHOPIFY_SECRET) -> str:
    query = urlencode({"timestamp": _timestamp(), **params})
    return f"{query}&hmac={oauth.query_hmac(secret, query)}"


class FakeShopify:
    """Shopify's token endpoint and GraphQL Admin API for one shop."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.mock = mock
        self.tokens = iter(["shpat_first", "shpat_second", "shpat_third"])
        self.subscribed: list[dict[str, Any]] = []
        self.pixels = WebPixels()
        mock.add_callback(responses.POST, TOKEN_URL, callback=self.token)
        mock.add_callback(responses.POST, GRAPHQL, callback=self.graphql)

    def token(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        form = parse_qs(str(request.body))
        assert form["client_id"] == [API_KEY]
        assert form["client_secret"] == [SHOPIFY_SECRET]
        body = {
            "access_token": next(self.tokens),
            "scope": GRANTED,
            "expires_in": 3600,
            "refresh_token": "shprt_" + form.get("code", form.get("refresh_token", ["?"]))[0],
            "refresh_token_expires_in": 7776000,
        }
        return 200, {}, json.dumps(body)

    def graphql(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        query = json.loads(request.body or b"{}")
        text, variables = query["query"], query["variables"]
        if self.pixels.handles(text):
            return 200, {}, json.dumps(self.pixels.answer(text, variables))
        if "webhookSubscriptions(" in text:
            data: dict[str, Any] = {
                "webhookSubscriptions": {
                    "nodes": [],
                    "pageInfo": {"hasNextPage": False, "endCursor": None},
                }
            }
        elif "webhookSubscriptionCreate" in text:
            self.subscribed.append(variables)
            sid = f"gid://shopify/WebhookSubscription/{len(self.subscribed)}"
            data = {
                "webhookSubscriptionCreate": {"webhookSubscription": {"id": sid}, "userErrors": []}
            }
        elif "shop {" in text:
            data = {
                "shop": {
                    "name": "Fjällbutiken",
                    "currencyCode": "SEK",
                    "ianaTimezone": "Europe/Stockholm",
                    "primaryDomain": {"url": "https://fjallbutiken.se"},
                }
            }
        else:
            raise AssertionError(f"unexpected query {text}")
        return 200, {}, json.dumps({"data": data})

    def calls_to(self, url: str) -> list[Any]:
        return [c for c in self.mock.calls if c.request.url == url]


@pytest.fixture
def shopify() -> Iterator[FakeShopify]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeShopify(mock)


def start_install(web: FlaskClient, shop: str = SHOP) -> str:
    answer = web.get(f"/shopify/install?{signed({'shop': shop, 'host': 'YWRtaW4'})}")
    assert answer.status_code == 302
    target = urlsplit(answer.headers["Location"])
    assert (target.scheme, target.netloc, target.path) == ("https", shop, "/admin/oauth/authorize")
    query = parse_qs(target.query)
    assert query["client_id"] == [API_KEY]
    assert query["scope"] == [Settings.shopify_scopes]
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/shopify/callback"]
    return query["state"][0]


def test_full_install_stores_encrypted_tokens_subscribes_and_signs_in(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify
) -> None:
    state = start_install(web)
    answer = web.get(f"/shopify/callback?{signed({'shop': SHOP, 'code': 'c0de', 'state': state})}")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/app/"

    [exchange] = shopify.calls_to(TOKEN_URL)
    assert parse_qs(str(exchange.request.body))["expiring"] == ["1"]
    assert parse_qs(str(exchange.request.body))["code"] == ["c0de"]
    topics = {s["topic"] for s in shopify.subscribed}
    assert topics == {topic_enum(t) for t in shopify_app.WEBHOOK_TOPICS}
    assert "ORDERS_UPDATED" in topics
    assert "CUSTOMERS_REDACT" not in topics  # compliance topics live in shopify.app.toml
    plain = {"uri": "http://127.0.0.1:8000/webhooks/shopify", "format": "JSON"}
    # customer payloads carry the birthday metafield's namespace (the standard one by default)
    for s in shopify.subscribed:
        customers = s["topic"] in ("CUSTOMERS_CREATE", "CUSTOMERS_UPDATE")
        extra = {"metafieldNamespaces": ["facts"]} if customers else {}
        assert s["webhookSubscription"] == {**plain, **extra}, s["topic"]
    assert all(
        c.request.headers["X-Shopify-Access-Token"] == "shpat_first"
        for c in shopify.calls_to(GRAPHQL)
    )

    with runtime.sessions() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOP)).one()
        assert shop.access_token_enc is not None
        assert "shpat_first" not in shop.access_token_enc
        assert runtime.secrets.open(shop.access_token_enc) == "shpat_first"
        assert runtime.secrets.open_optional(shop.refresh_token_enc) == "shprt_c0de"
        assert shop.access_token_expires_at is not None
        assert (shop.name, shop.currency, shop.timezone) == (
            "Fjällbutiken",
            "SEK",
            "Europe/Stockholm",
        )
        assert shop.base_url == "https://fjallbutiken.se"
        assert shop.scopes == GRANTED
        subscribed = session.scalars(
            select(Subscription.topic).where(Subscription.shop_id == shop.id)
        )
        assert set(subscribed) == set(shopify_app.WEBHOOK_TOPICS)
        shop_id = shop.id

    assert signed_in_shop(web) == shop_id
    assert "Fjällbutiken" in web.get("/app/").get_data(as_text=True)


def install(web: FlaskClient) -> None:
    state = start_install(web)
    answer = web.get(f"/shopify/callback?{signed({'shop': SHOP, 'code': 'c0de', 'state': state})}")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/app/"


def pixel_notice(runtime: Runtime) -> str | None:
    with runtime.sessions() as session:
        notice = session.scalar(
            select(Notice).where(
                Notice.code == shopify_app.NOTICE_PIXEL, Notice.cleared_at.is_(None)
            )
        )
        return notice.message if notice else None


def test_an_install_turns_the_storefront_pixel_on_with_the_shops_own_key(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify
) -> None:
    install(web)
    with runtime.sessions() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOP)).one()
        key = shop.storefront_key
    assert key is not None
    assert re.fullmatch(r"pk_[a-z2-7]{26}", key)
    assert shopify.pixels.pixel is not None
    assert shopify.pixels.pixel["settings"] == {
        "endpoint": "http://127.0.0.1:8000/events/shopify",
        "key": key,
    }
    assert pixel_notice(runtime) is None


def test_a_reinstall_keeps_the_shops_key_and_its_pixel_comes_back_the_same(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify
) -> None:
    install(web)
    first = dict(shopify.pixels.pixel or {})
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOP)).one()
        mark_uninstalled(shop, now())
    shopify.pixels.pixel = None  # an uninstall takes the app's pixel away
    install(web.application.test_client())
    assert shopify.pixels.pixel == first
    assert shopify.pixels.calls == ["create", "create"]


@pytest.mark.parametrize(
    ("refusal", "words"),
    [("NO_EXTENSION", "No extension found"), ("ACCESS_DENIED", "write_pixels")],
)
def test_an_install_whose_pixel_shopify_refuses_still_completes_and_the_merchant_is_told(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify, refusal: str, words: str
) -> None:
    if refusal == "ACCESS_DENIED":
        shopify.pixels.denied = True
    else:
        shopify.pixels.refuse = refusal
    install(web)
    assert signed_in_shop(web) is not None
    message = pixel_notice(runtime)
    assert message is not None
    assert words in message
    assert "browse reminders" in message

    # once Shopify accepts it (the extension deployed, the scope approved), the notice goes
    shopify.pixels.refuse = None
    shopify.pixels.denied = False
    with runtime.sessions() as session:
        shop_id = session.scalars(select(Shop.id).where(Shop.key == SHOP)).one()
    shopify_app.connect_pixel(runtime, shop_id)
    assert pixel_notice(runtime) is None
    assert shopify.pixels.pixel is not None


@pytest.mark.parametrize(
    "forge",
    [
        "bad_hmac",
        "wrong_state",
        "foreign_shop",
        "not_myshopify",
        "stale",
        "no_nonce",
        "replayed",
        "state_expired",
    ],
)
def test_a_forged_callback_is_refused_without_any_outbound_call(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify, forge: str
) -> None:
    state = start_install(web)
    params = {"shop": SHOP, "code": "c0de", "state": state}
    if forge == "replayed":
        good = signed(params)
        assert web.get(f"/shopify/callback?{good}").status_code == 302
        shopify.mock.calls.reset()
        query = good
    elif forge == "bad_hmac":
        query = signed(params, secret="not-the-app-secret")
    elif forge == "wrong_state":
        query = signed({**params, "state": "guessed"})
    elif forge == "foreign_shop":
        query = signed({**params, "shop": "other-shop.myshopify.com"})
    elif forge == "not_myshopify":
        query = signed({**params, "shop": "evil.example.com"})
    elif forge == "stale":
        old = urlencode({"timestamp": str(int(time.time()) - 3600), **params})
        query = f"{old}&hmac={oauth.query_hmac(SHOPIFY_SECRET, old)}"
    elif forge == "state_expired":  # the merchant left the grant screen open too long
        with runtime.sessions.begin() as session:
            session.execute(update(ConnectNonce).values(expires_at=now() - timedelta(seconds=1)))
        query = signed(params)
    else:
        with web.session_transaction() as cookie:
            cookie.clear()
        query = signed(params)
    answer = web.get(f"/shopify/callback?{query}")
    assert answer.status_code in (400, 403)
    assert len(shopify.mock.calls) == 0
    assert signed_in_shop(web) is None or forge == "replayed"


def test_a_callback_replayed_with_the_old_cookie_is_refused_without_any_outbound_call(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify
) -> None:
    state = start_install(web)
    old_cookie = cookie_of(web)  # holds the state, as a copied or restored cookie would
    callback = f"/shopify/callback?{signed({'shop': SHOP, 'code': 'c0de', 'state': state})}"
    assert web.get(callback).status_code == 302
    shopify.mock.calls.reset()

    replayer = web.application.test_client()
    replayer.set_cookie(COOKIE, old_cookie)
    assert replayer.get(callback).status_code == 403
    replayer.set_cookie(COOKIE, old_cookie)
    fresh = f"/shopify/callback?{signed({'shop': SHOP, 'code': 'other', 'state': state})}"
    assert replayer.get(fresh).status_code == 403
    assert len(shopify.mock.calls) == 0
    assert signed_in_shop(replayer) is None


@pytest.mark.parametrize("installed", [True, False])
def test_a_signed_install_link_works_once(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify, installed: bool
) -> None:
    if installed:
        state = start_install(web)
        web.get(f"/shopify/callback?{signed({'shop': SHOP, 'code': 'c0de', 'state': state})}")
    link = f"/shopify/install?{signed({'shop': SHOP, 'host': 'YWRtaW4'})}"
    assert web.application.test_client().head(link).status_code == 200  # a link checker
    first = web.application.test_client().get(link)
    assert first.status_code == 302
    assert (first.headers["Location"] == "/app/") is installed

    holder = web.application.test_client()  # whoever copied the link from a log or history
    answer = holder.get(link)
    assert answer.status_code == 403
    assert "location" not in answer.headers
    assert signed_in_shop(holder) is None
    with holder.session_transaction() as cookie:
        assert NONCE_KEY not in cookie
    shopify.mock.calls.reset()


def at_once(count: int, request: Callable[[FlaskClient], int], web: FlaskClient) -> list[int]:
    """``count`` browsers send the same request at the same moment; their answers' codes."""
    clients = [web.application.test_client() for _ in range(count)]
    start = threading.Barrier(count)

    def one(client: FlaskClient) -> int:
        start.wait()
        return request(client)

    with ThreadPoolExecutor(count) as pool:
        return sorted(pool.map(one, clients))


def test_a_signed_install_link_sent_by_many_browsers_at_once_signs_in_one(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify
) -> None:
    state = start_install(web)
    web.get(f"/shopify/callback?{signed({'shop': SHOP, 'code': 'c0de', 'state': state})}")
    link = f"/shopify/install?{signed({'shop': SHOP})}"
    assert at_once(8, lambda client: client.get(link).status_code, web) == [302] + [403] * 7


def test_a_callback_replayed_by_many_browsers_at_once_exchanges_its_code_once(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify
) -> None:
    state = start_install(web)
    old_cookie = cookie_of(web)
    callback = f"/shopify/callback?{signed({'shop': SHOP, 'code': 'c0de', 'state': state})}"

    def replay(client: FlaskClient) -> int:
        client.set_cookie(COOKIE, old_cookie)
        return client.get(callback).status_code

    assert at_once(8, replay, web) == [302] + [403] * 7
    assert len(shopify.calls_to(TOKEN_URL)) == 1


def test_a_new_grant_ends_every_earlier_session_of_the_shop(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify
) -> None:
    state = start_install(web)
    web.get(f"/shopify/callback?{signed({'shop': SHOP, 'code': 'one', 'state': state})}")
    earlier = web.application.test_client()
    assert earlier.get(f"/shopify/install?{signed({'shop': SHOP})}").status_code == 302
    shop_id = signed_in_shop(earlier)
    assert shop_id is not None
    assert signed_in_shop(web) == shop_id

    # a scope is missing: opening the app goes through Shopify's grant screen again
    with runtime.sessions.begin() as session:
        session.get_one(Shop, shop_id).scopes = "read_orders"
    granting = web.application.test_client()
    state = start_install(granting)
    granting.get(f"/shopify/callback?{signed({'shop': SHOP, 'code': 'two', 'state': state})}")

    assert signed_in_shop(granting) == shop_id
    assert granting.get("/app/").status_code == 200
    assert signed_in_shop(earlier) is None
    assert signed_in_shop(web) is None
    assert earlier.get("/app/").status_code == 401


def test_install_refuses_a_bad_signature_or_shop_before_redirecting(
    web: FlaskClient, shopify: FakeShopify
) -> None:
    assert web.get(f"/shopify/install?{signed({'shop': SHOP}, 'nope')}").status_code == 400
    assert web.get(f"/shopify/install?{signed({'shop': 'shop.evil.com'})}").status_code == 400
    assert web.get("/shopify/install?shop=" + SHOP).status_code == 400
    assert len(shopify.mock.calls) == 0


def test_reinstall_after_uninstall_and_reopening_an_installed_app(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify
) -> None:
    state = start_install(web)
    web.get(f"/shopify/callback?{signed({'shop': SHOP, 'code': 'one', 'state': state})}")
    # opening the installed app again from the admin signs in without a new grant
    web.get("/")  # new request, same browser
    with web.session_transaction() as cookie:
        cookie.clear()
    answer = web.get(f"/shopify/install?{signed({'shop': SHOP})}")
    assert answer.headers["Location"] == "/app/"
    assert len(shopify.calls_to(TOKEN_URL)) == 1

    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOP)).one()
        mark_uninstalled(shop, now())
    state = start_install(web)
    web.get(f"/shopify/callback?{signed({'shop': SHOP, 'code': 'two', 'state': state})}")
    with runtime.sessions() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOP)).one()
        assert shop.status == ShopStatus.ACTIVE
        assert runtime.secrets.open_optional(shop.access_token_enc) == "shpat_second"
        assert runtime.secrets.open_optional(shop.refresh_token_enc) == "shprt_two"


def test_failed_registration_is_retried_by_a_job_and_shown_meanwhile(
    web: FlaskClient, runtime: Runtime
) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = FakeShopify(mock)
        mock.replace(responses.POST, GRAPHQL, status=503, body="unavailable")
        state = start_install(web)
        answer = web.get(f"/shopify/callback?{signed({'shop': SHOP, 'code': 'x', 'state': state})}")
        assert answer.headers["Location"] == "/app/"
        page = web.get("/app/").get_data(as_text=True)
        assert "could not yet subscribe" in page
        queued = {queued.func_name: queued for queued in runtime.queue("default").get_jobs()}
        # the retry of the registration, beside the import of the shop's history
        assert set(queued) == {"jobs.tasks.register_webhooks", "jobs.tasks.import_history"}
        job = queued["jobs.tasks.register_webhooks"]
        # reopening the app before any subscription exists goes through the grant again
        reopened = web.get(f"/shopify/install?{signed({'shop': SHOP})}")
        assert "/admin/oauth/authorize" in reopened.headers["Location"]

        mock.remove(responses.POST, GRAPHQL)
        mock.add_callback(responses.POST, GRAPHQL, callback=fake.graphql)
        assert job.perform() == len(shopify_app.WEBHOOK_TOPICS)
    with runtime.sessions() as session:
        assert session.scalars(select(Notice).where(Notice.cleared_at.is_(None))).all() == []


def test_tokens_refresh_before_expiry_and_after_a_401_and_rotate(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify
) -> None:
    state = start_install(web)
    web.get(f"/shopify/callback?{signed({'shop': SHOP, 'code': 'c0de', 'state': state})}")
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOP)).one()
        shop.access_token_expires_at = now() + timedelta(minutes=2)  # inside REFRESH_AHEAD
        shop_id = shop.id
    first, second = StoredTokens(runtime, shop_id), StoredTokens(runtime, shop_id)
    assert first.access_token() == "shpat_second"
    [refresh] = shopify.calls_to(TOKEN_URL)[1:]
    form = parse_qs(str(refresh.request.body))
    assert (form["grant_type"], form["refresh_token"]) == (["refresh_token"], ["shprt_c0de"])
    # a second worker holding the old token after a 401 takes the stored one, no new refresh
    assert second.after_rejection("shpat_first") == "shpat_second"
    assert len(shopify.calls_to(TOKEN_URL)) == 2
    # a 401 on the current token refreshes with the rotated refresh token
    assert second.after_rejection("shpat_second") == "shpat_third"
    assert parse_qs(str(shopify.calls_to(TOKEN_URL)[2].request.body))["refresh_token"] == [
        "shprt_shprt_c0de"
    ]


def test_a_refused_refresh_tells_the_merchant_to_reconnect(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify
) -> None:
    state = start_install(web)
    web.get(f"/shopify/callback?{signed({'shop': SHOP, 'code': 'c0de', 'state': state})}")
    shopify.mock.remove(responses.POST, TOKEN_URL)
    shopify.mock.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with runtime.sessions() as session:
        shop_id = session.scalars(select(Shop.id).where(Shop.key == SHOP)).one()
    assert StoredTokens(runtime, shop_id).after_rejection("shpat_first") is None
    assert "reconnect" in web.get("/app/").get_data(as_text=True)


def test_registering_again_asks_for_the_shops_birthday_namespace(
    web: FlaskClient, runtime: Runtime, shopify: FakeShopify
) -> None:
    state = start_install(web)
    web.get(f"/shopify/callback?{signed({'shop': SHOP, 'code': 'c0de', 'state': state})}")
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOP)).one()
        shop.settings = {"birthday": {"metafield": "custom.fodelsedag"}}
        shop_id = shop.id
    shopify.subscribed.clear()
    shopify_app.register_webhooks_now(runtime, shop_id)
    asked = {
        s["topic"]: s["webhookSubscription"].get("metafieldNamespaces") for s in shopify.subscribed
    }
    assert asked["CUSTOMERS_CREATE"] == asked["CUSTOMERS_UPDATE"] == ["custom"]
    assert asked["ORDERS_CREATE"] is None


def test_the_app_toml_lists_the_topics_scopes_and_routes_we_serve() -> None:
    config = tomllib.loads((Path(__file__).parents[2] / "shopify.app.toml").read_text())
    regular, compliance = config["webhooks"]["subscriptions"]
    assert tuple(regular["topics"]) == shopify_app.WEBHOOK_TOPICS
    assert set(compliance["compliance_topics"]) == shopify_app.COMPLIANCE_TOPICS
    assert regular["uri"].endswith("/webhooks/shopify")
    assert config["webhooks"]["api_version"] == Settings.shopify_api_version
    assert config["access_scopes"]["scopes"] == Settings.shopify_scopes
    assert config["application_url"].endswith("/shopify/install")
    assert config["auth"]["redirect_urls"][0].endswith("/shopify/callback")


@pytest.mark.parametrize("declares", [False, True])
def test_an_install_imports_the_shops_history_when_the_platform_offers_one(
    web: FlaskClient,
    runtime: Runtime,
    shopify: FakeShopify,
    monkeypatch: pytest.MonkeyPatch,
    declares: bool,
) -> None:
    # Shopify declares one (bulk operations); a platform without one imports nothing
    assert shopify_app.SERVER.history is shopify_app.history
    if not declares:
        monkeypatch.setattr(
            shopify_app, "SERVER", dataclasses.replace(shopify_app.SERVER, history=None)
        )
    state = start_install(web)
    web.get(f"/shopify/callback?{signed({'shop': SHOP, 'code': 'c0de', 'state': state})}")
    with runtime.sessions() as session:
        shop_id = session.scalars(select(Shop.id).where(Shop.key == SHOP)).one()
    queued = runtime.queue("default").job_ids
    assert (f"history-{shop_id}" in queued) is declares
