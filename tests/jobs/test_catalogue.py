"""Products no webhook told us of are asked of the platform right before the email that
shows them: webhooks in, real RQ workers, the file outbox, and the shops' APIs faked
with ``responses`` in the shapes Shopify's GraphQL and WooCommerce's REST answers take."""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.policy import default
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from flask.testing import FlaskClient
from sqlalchemy import select

from jobs.runtime import Runtime
from jobs.sending.catalogue import MAX_ASKED
from jobs.store.models import DELETED_PRODUCT_STATUS, Message, MessageState, Product, Shop
from tests.support import (
    FIXTURES,
    INSTANT,
    SHOPIFY_SECRET,
    SHOPIFY_SHOP,
    STORE,
    WOO_SECRET,
    dumps,
    post,
    run_worker,
    shopify_headers,
    woocommerce_headers,
)

#: the Shopify checkout fixture's products, and the WooCommerce pending order's
HAT, SOCKS = "8123456789012", "8123456789055"
WOOL_SOCKS, WOOL_HAT = "1186", "1190"
IMAGE = "https://cdn.shopify.com/s/files/1/0712/3456/7890/files/ullmossa-gra.jpg"
WOO_API = STORE.rstrip("/") + "/wp-json/wc/v3"


@pytest.fixture
def started() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


@pytest.fixture
def api(runtime: Runtime) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def shop_row(runtime: Runtime, platform: str) -> Shop:
    with runtime.sessions() as session:
        return session.scalars(select(Shop).where(Shop.platform == platform)).one()


@pytest.fixture
def shopify(client: FlaskClient, runtime: Runtime) -> Shop:
    """The Shopify shop, installed (an Admin API token): its API is asked."""
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOPIFY_SHOP)).one()
        shop.settings = INSTANT
        shop.access_token_enc = runtime.secrets.seal("shpat_catalogue")
        return shop


@pytest.fixture
def woocommerce(client: FlaskClient, runtime: Runtime) -> Shop:
    """The WooCommerce store, connected with REST keys: its API is asked."""
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.platform == "woocommerce")).one()
        shop.settings = INSTANT
        shop.consumer_key_enc = runtime.secrets.seal("ck_" + "5" * 40)
        shop.consumer_secret_enc = runtime.secrets.seal("cs_" + "6" * 40)
        return shop


# --- Shopify's Admin GraphQL, as it answers ----------------------------------------------


def graphql_endpoint(runtime: Runtime) -> str:
    return f"https://{SHOPIFY_SHOP}/admin/api/{runtime.settings.shopify_api_version}/graphql.json"


def product_node(legacy: str, **fields: Any) -> dict[str, Any]:
    """A ``Product`` as ``nodes(ids:)`` answers it for our query."""
    return {
        "id": f"gid://shopify/Product/{legacy}",
        "title": "Ullmössa Fjäll",
        "handle": "ullmossa-fjall",
        "status": "ACTIVE",
        "onlineStoreUrl": "https://nordljus.se/products/ullmossa-fjall",
        "updatedAt": "2026-09-01T08:05:01Z",
        "tags": ["merino", "vinter"],
        "featuredMedia": {"preview": {"image": {"url": IMAGE}}},
        "priceRangeV2": {"minVariantPrice": {"amount": "249.0", "currencyCode": "SEK"}},
        "variants": {"nodes": [{"availableForSale": True}]},
        **fields,
    }


class FakeShopify:
    """The GraphQL endpoint: a products answer for ``nodes``, no order since the checkout
    for the live re-check; each query kept."""

    def __init__(self, mock: responses.RequestsMock, runtime: Runtime) -> None:
        self.nodes: dict[str, dict[str, Any] | None] = {}
        self.products_answer: dict[str, Any] | None = None  # instead of ``nodes``
        self.asked: list[list[str]] = []
        mock.add_callback(responses.POST, graphql_endpoint(runtime), callback=self.answer)

    def answer(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body or b"{}")
        if "nodes(ids:" not in body["query"]:
            return 200, {}, json.dumps({"data": {"orders": {"nodes": []}}})
        ids = [gid.rsplit("/", 1)[1] for gid in body["variables"]["ids"]]
        self.asked.append(ids)
        if self.products_answer is not None:
            return 200, {}, json.dumps(self.products_answer)
        return 200, {}, json.dumps({"data": {"nodes": [self.nodes.get(i) for i in ids]}})


@pytest.fixture
def admin(api: responses.RequestsMock, runtime: Runtime) -> FakeShopify:
    return FakeShopify(api, runtime)


def abandon(client: FlaskClient, started: datetime, other: str | None = None) -> None:
    """A subscribed customer leaves a checkout with a hat and socks no webhook told us of;
    ``other``: another customer, another checkout, of the product of that id."""
    payload = json.loads((FIXTURES / "shopify" / "checkouts_create__customer.json").read_text())
    if other is not None:
        payload["token"] = payload["cart_token"] = "other-checkout"
        payload["email"] = payload["customer"]["email"] = "bo@example.se"
        payload["customer"]["id"] += 1
        payload["customer"]["admin_graphql_api_id"] = (
            f"gid://shopify/Customer/{payload['customer']['id']}"
        )
        payload["line_items"] = payload["line_items"][:1]
        payload["line_items"][0]["product_id"] = int(other)
    stamp = started.isoformat()
    payload["created_at"] = payload["updated_at"] = payload["customer"]["updated_at"] = stamp
    payload["customer"]["email_marketing_consent"] = {
        "state": "subscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": "2026-01-10T12:00:00+00:00",
    }
    body = dumps(payload)
    delivery = "c-1" if other is None else "c-2"
    headers = shopify_headers("checkouts/update", body, SHOPIFY_SECRET, SHOPIFY_SHOP, delivery)
    assert post(client, "shopify", body, headers).status_code == 200


# --- what the store and the outbox hold ----------------------------------------------------


def products(runtime: Runtime) -> dict[str, Product]:
    with runtime.sessions() as session:
        return {p.product_id: p for p in session.scalars(select(Product))}


def messages(runtime: Runtime) -> list[tuple[str, str, str | None]]:
    with runtime.sessions() as session:
        found = session.scalars(select(Message).order_by(Message.id))
        return [(m.step, m.state, m.reason) for m in found]


def outbox(runtime: Runtime) -> list[email.message.EmailMessage]:
    files = sorted(runtime.settings.outbox_dir.glob("*.eml"))
    return [email.message_from_bytes(f.read_bytes(), policy=default) for f in files]  # type: ignore[misc]


def part(message: email.message.EmailMessage, kind: str) -> str:
    found = message.get_body((kind,))
    assert found is not None
    return str(found.get_content())


def first_reminder(runtime: Runtime) -> email.message.EmailMessage:
    assert messages(runtime)[0][:2] == ("email_1", MessageState.SENT)
    return outbox(runtime)[0]


# --- Shopify -------------------------------------------------------------------------------


def test_products_never_heard_of_are_asked_once_and_shown_as_the_shop_has_them_now(
    client: FlaskClient, runtime: Runtime, shopify: Shop, admin: FakeShopify, started: datetime
) -> None:
    # the hat is for sale; the socks were deleted (nodes answers null for them)
    admin.nodes = {HAT: product_node(HAT)}
    abandon(client, started)
    run_worker(runtime)  # every reminder, due at once (INSTANT): each asks nothing new

    assert admin.asked == [[HAT, SOCKS]]  # one call, for the first reminder only
    html = part(first_reminder(runtime), "html")
    text = part(first_reminder(runtime), "plain")
    assert "Ullmössa Fjäll" in text
    assert IMAGE in html  # the line item had no image: the shop's answer gives it
    assert "Yllesockor" not in text
    assert all(state == MessageState.SENT for _, state, _ in messages(runtime))
    held = products(runtime)
    hat, socks = held[HAT], held[SOCKS]
    assert (hat.title, hat.handle, hat.status, hat.available) == (
        "Ullmössa Fjäll",
        "ullmossa-fjall",
        "active",
        True,
    )
    assert (hat.url, hat.image_url, str(hat.price), hat.currency) == (
        "https://nordljus.se/products/ullmossa-fjall",
        IMAGE,
        "249.0",
        "SEK",
    )
    assert (socks.status, socks.available) == (DELETED_PRODUCT_STATUS, False)


def test_the_products_of_emails_sent_together_are_asked_in_one_call(
    client: FlaskClient, runtime: Runtime, shopify: Shop, admin: FakeShopify, started: datetime
) -> None:
    """Two customers' reminders come due in the same moment: one question for both."""
    scarf = "8123456789099"
    admin.nodes = {HAT: product_node(HAT), scarf: product_node(scarf, title="Halsduk")}
    abandon(client, started)
    abandon(client, started, other=scarf)
    run_worker(runtime)
    assert admin.asked == [[HAT, SOCKS, scarf]]
    assert {m["To"] for m in outbox(runtime)} == {"astrid.lindqvist@example.se", "bo@example.se"}
    assert all(state == MessageState.SENT for _, state, _ in messages(runtime))
    assert products(runtime)[scarf].title == "Halsduk"  # stored: no later email asks


def test_a_product_the_shop_has_taken_off_sale_or_sold_out_is_left_out(
    client: FlaskClient, runtime: Runtime, shopify: Shop, admin: FakeShopify, started: datetime
) -> None:
    sold_out = {"nodes": [{"availableForSale": False}]}
    admin.nodes = {
        HAT: product_node(HAT, status="DRAFT"),
        SOCKS: product_node(SOCKS, title="Yllesockor", handle="yllesockor", variants=sold_out),
    }
    abandon(client, started)
    run_worker(runtime)
    assert outbox(runtime) == []
    assert messages(runtime)[0] == ("email_1", MessageState.EXITED, "items_unavailable")
    assert {p: (r.status, r.available) for p, r in products(runtime).items()} == {
        HAT: ("draft", True),
        SOCKS: ("active", False),
    }


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 401, "json": {"errors": "[API] Invalid API key or access token"}},
        {"status": 404, "body": "Not Found"},
        {"status": 429, "headers": {"Retry-After": "0"}, "body": "Exceeded 2 calls per second"},
        {"status": 503, "body": "Service Unavailable"},
        {"body": requests.ReadTimeout("read timed out")},
        {"json": {"errors": [{"message": "Internal error", "extensions": {"code": "INTERNAL"}}]}},
        {"json": {"data": {"nodes": [{"id": "gid://shopify/Product/1"}]}}},
    ],
    ids=["401", "404", "429", "503", "timeout", "graphql-error", "garbled"],
)
def test_when_shopify_cannot_answer_the_email_goes_as_before_and_nothing_is_stored(
    client: FlaskClient,
    runtime: Runtime,
    shopify: Shop,
    api: responses.RequestsMock,
    started: datetime,
    failure: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    api.post(graphql_endpoint(runtime), **failure)
    abandon(client, started)
    run_worker(runtime)
    text = part(first_reminder(runtime), "plain")
    # what we know nothing of counts as for sale, shown as the line item has it
    assert "Ullmössa Fjäll" in text
    assert "Yllesockor" in text
    assert products(runtime) == {}
    asked = [c for c in api.calls if b"nodes(ids:" in (c.request.body or b"")]
    assert asked  # it did ask
    assert any("asking for 2 products" in r.getMessage() for r in caplog.records)


def test_a_shop_without_api_access_is_not_asked(
    client: FlaskClient, runtime: Runtime, api: responses.RequestsMock, started: datetime
) -> None:
    with runtime.sessions.begin() as session:
        session.scalars(select(Shop).where(Shop.key == SHOPIFY_SHOP)).one().settings = INSTANT
    abandon(client, started)
    run_worker(runtime)
    assert not api.calls
    assert "Yllesockor" in part(first_reminder(runtime), "plain")


def test_products_a_webhook_told_of_are_not_asked(
    client: FlaskClient, runtime: Runtime, shopify: Shop, admin: FakeShopify, started: datetime
) -> None:
    for product_id in (HAT, SOCKS):
        product = json.loads((FIXTURES / "shopify" / "products_create__active.json").read_text())
        product["id"] = int(product_id)
        body = dumps(product)
        headers = shopify_headers(
            "products/create", body, SHOPIFY_SECRET, SHOPIFY_SHOP, f"p-{product_id}"
        )
        assert post(client, "shopify", body, headers).status_code == 200
    abandon(client, started)
    run_worker(runtime)
    assert admin.asked == []
    assert outbox(runtime)


def test_a_cart_of_many_products_asks_for_a_bounded_number_in_one_call(
    client: FlaskClient, runtime: Runtime, shopify: Shop, admin: FakeShopify, started: datetime
) -> None:
    payload = json.loads((FIXTURES / "shopify" / "checkouts_create__customer.json").read_text())
    template = payload["line_items"][0]
    many = [str(9000 + n) for n in range(MAX_ASKED + 8)]
    lines = [{**template, "product_id": int(p), "title": f"Vara {p}"} for p in many]
    admin.nodes = {p: product_node(p, title=f"Vara {p}") for p in many}
    stamp = started.isoformat()
    payload.update(line_items=lines, created_at=stamp, updated_at=stamp)
    payload["customer"]["email_marketing_consent"] = {
        "state": "subscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": "2026-01-10T12:00:00+00:00",
    }
    body = dumps(payload)
    headers = shopify_headers("checkouts/update", body, SHOPIFY_SECRET, SHOPIFY_SHOP, "c-many")
    assert post(client, "shopify", body, headers).status_code == 200
    run_worker(runtime)
    assert admin.asked[0] == many[:MAX_ASKED]
    assert outbox(runtime)


# --- WooCommerce ---------------------------------------------------------------------------


def store_product(**fields: Any) -> dict[str, Any]:
    """A product as GET /wp-json/wc/v3/products answers it (the webhook's own shape)."""
    payload = json.loads((FIXTURES / "woocommerce" / "product_created__simple.json").read_text())
    assert isinstance(payload, dict)
    return {**payload, **fields}


class FakeStore:
    """The REST API: the products an ``include`` list names, and the pending order
    still unpaid for the live re-check."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.products: dict[str, dict[str, Any]] = {}
        self.failure: dict[str, Any] | None = None
        self.asked: list[str] = []
        mock.add_callback(responses.GET, f"{WOO_API}/products", callback=self.list_products)
        mock.get(f"{WOO_API}/orders/4812", json={"id": 4812, "status": "pending"})

    def list_products(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        [include] = parse_qs(urlsplit(request.url or "").query)["include"]
        self.asked.append(include)
        found = [self.products[i] for i in include.split(",") if i in self.products]
        return 200, {"X-WP-Total": str(len(found)), "X-WP-TotalPages": "1"}, json.dumps(found)


def leave_pending_order(client: FlaskClient, started: datetime) -> None:
    """A guest who said yes to email places an order and does not pay: socks and a hat."""
    order = json.loads((FIXTURES / "woocommerce" / "order_created__pending_guest.json").read_text())
    stamp = started.strftime("%Y-%m-%dT%H:%M:%S")
    order.update(date_created_gmt=stamp, date_modified_gmt=stamp)
    order["meta_data"].append({"id": 9001, "key": "_triggerpost_marketing_consent", "value": "yes"})
    body = dumps(order)
    headers = woocommerce_headers("order.created", body, WOO_SECRET, STORE, "o-1")
    assert post(client, "woocommerce", body, headers).status_code == 200


def test_a_store_product_is_asked_for_and_one_in_the_trash_is_left_out(
    client: FlaskClient,
    runtime: Runtime,
    woocommerce: Shop,
    api: responses.RequestsMock,
    started: datetime,
) -> None:
    store = FakeStore(api)
    # the socks are for sale; the hat is in the trash, which the list leaves out
    store.products = {WOOL_SOCKS: store_product(name="Raggsockor")}
    leave_pending_order(client, started)
    run_worker(runtime)
    assert store.asked == [f"{WOOL_SOCKS},{WOOL_HAT}"]
    text = part(first_reminder(runtime), "plain")
    assert "Raggsockor" in text
    assert "Ullmössa" not in text
    held = products(runtime)
    assert (held[WOOL_SOCKS].status, held[WOOL_SOCKS].available) == ("publish", True)
    assert held[WOOL_SOCKS].url == "https://ullboden.se/produkt/raggsockor/"
    assert (held[WOOL_HAT].status, held[WOOL_HAT].available) == (DELETED_PRODUCT_STATUS, False)


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 404, "json": {"code": "rest_no_route", "message": "No route was found"}},
        {"status": 401, "json": {"code": "woocommerce_rest_cannot_view", "message": "No"}},
        {"status": 500, "body": "<html>Fatal error</html>"},
        {"body": requests.ConnectTimeout("timed out")},
        {"status": 200, "body": "<html>not json</html>"},
    ],
    ids=["404", "401", "500", "timeout", "not-json"],
)
def test_when_the_store_cannot_answer_the_email_goes_as_before(
    client: FlaskClient,
    runtime: Runtime,
    woocommerce: Shop,
    api: responses.RequestsMock,
    started: datetime,
    failure: dict[str, Any],
) -> None:
    api.get(f"{WOO_API}/products", **failure)
    api.get(f"{WOO_API}/orders/4812", json={"id": 4812, "status": "pending"})
    leave_pending_order(client, started)
    run_worker(runtime)
    text = part(first_reminder(runtime), "plain")
    assert "Raggsockor" in text
    assert "Ullmössa" in text
    assert products(runtime) == {}
