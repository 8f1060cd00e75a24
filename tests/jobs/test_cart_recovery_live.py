"""Cart recovery on Shopify asks the store before each reminder, and leaves out what
the store no longer sells: webhooks in, real RQ workers, the file outbox, and the
Admin API faked with ``responses`` in the shape Shopify's GraphQL answers take."""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.policy import default
from typing import Any

import pytest
import requests
import responses
from flask.testing import FlaskClient
from sqlalchemy import select

from jobs.runtime import Runtime
from jobs.store.models import Message, MessageState, Shop
from tests.support import (
    FIXTURES,
    INSTANT,
    SHOPIFY_SECRET,
    SHOPIFY_SHOP,
    dumps,
    post,
    run_worker,
    shopify_headers,
)

TOKEN = "shpat_live_recheck"
HAT, SOCKS = "8123456789012", "8123456789055"  # the checkout fixture's two products


@pytest.fixture
def started() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


@pytest.fixture
def shop(client: FlaskClient, runtime: Runtime) -> Shop:
    with runtime.sessions.begin() as session:
        found = session.scalars(select(Shop).where(Shop.key == SHOPIFY_SHOP)).one()
        found.settings = INSTANT
        return found


@pytest.fixture
def installed(shop: Shop, runtime: Runtime) -> Shop:
    """The shop with an Admin API token, so the re-check before a send asks Shopify."""
    with runtime.sessions.begin() as session:
        session.get_one(Shop, shop.id).access_token_enc = runtime.secrets.seal(TOKEN)
    return shop


@pytest.fixture
def api(runtime: Runtime) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def endpoint(runtime: Runtime) -> str:
    return f"https://{SHOPIFY_SHOP}/admin/api/{runtime.settings.shopify_api_version}/graphql.json"


def orders_answer(*nodes: dict[str, Any]) -> dict[str, Any]:
    """An ``orders`` query's answer as Shopify gives it (nodes, and the query's cost)."""
    return {
        "data": {"orders": {"nodes": list(nodes)}},
        "extensions": {
            "cost": {
                "requestedQueryCost": 12,
                "actualQueryCost": 3,
                "throttleStatus": {
                    "maximumAvailable": 2000.0,
                    "currentlyAvailable": 1997,
                    "restoreRate": 100.0,
                },
            }
        },
    }


def placed_order(at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "id": "gid://shopify/Order/6123456789012",
        "createdAt": at.isoformat().replace("+00:00", "Z"),
        "test": False,
        "cancelledAt": None,
        "displayFinancialStatus": "PAID",
        "displayFulfillmentStatus": "UNFULFILLED",
        **fields,
    }


def deliver(client: FlaskClient, topic: str, payload: dict[str, Any], webhook_id: str) -> None:
    body = dumps(payload)
    headers = shopify_headers(topic, body, SHOPIFY_SECRET, SHOPIFY_SHOP, webhook_id)
    assert post(client, "shopify", body, headers).status_code == 200


def abandon(client: FlaskClient, started: datetime) -> None:
    """A subscribed customer leaves a checkout with a hat and socks in it."""
    payload = json.loads((FIXTURES / "shopify" / "checkouts_create__customer.json").read_text())
    stamp = started.isoformat()
    payload["created_at"] = payload["updated_at"] = payload["customer"]["updated_at"] = stamp
    payload["customer"]["email_marketing_consent"] = {
        "state": "subscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": "2026-01-10T12:00:00+00:00",
    }
    deliver(client, "checkouts/update", payload, "checkout-1")


def withdraw(client: FlaskClient, product_id: str, *, sold_out: bool = False) -> None:
    """The shop takes a product off sale: a draft, or active with nothing left to sell."""
    product = json.loads(
        (FIXTURES / "shopify" / "products_update__draft_sold_out.json").read_text()
    )
    product["id"] = int(product_id)
    product["admin_graphql_api_id"] = f"gid://shopify/Product/{product_id}"
    if sold_out:
        product["status"] = "active"
        for variant in product["variants"]:
            variant.update(inventory_management="shopify", inventory_policy="deny")
            variant["inventory_quantity"] = 0
    deliver(client, "products/update", product, f"product-{product_id}")


def messages(runtime: Runtime) -> list[tuple[str, str, str | None]]:
    with runtime.sessions() as session:
        found = session.scalars(select(Message).order_by(Message.id))
        return [(m.step, m.state, m.reason) for m in found]


def outbox(runtime: Runtime) -> list[email.message.EmailMessage]:
    files = sorted(runtime.settings.outbox_dir.glob("*.eml"))
    return [email.message_from_bytes(f.read_bytes(), policy=default) for f in files]  # type: ignore[misc]


def text_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def asked(api: responses.RequestsMock) -> list[dict[str, Any]]:
    """The live re-check's order searches (not the catalogue's questions for products
    no webhook told us of, asked for the drain's batch beforehand)."""
    bodies = [json.loads(call.request.body or b"{}") for call in api.calls]
    return [body for body in bodies if "query" in body.get("variables", {})]


# --- the live re-check on Shopify ------------------------------------------------------


def test_a_customer_who_already_ordered_at_the_store_gets_no_reminder(
    client: FlaskClient,
    runtime: Runtime,
    installed: Shop,
    api: responses.RequestsMock,
    started: datetime,
) -> None:
    # the order was placed, but its webhook has not come (late, or lost)
    api.post(endpoint(runtime), json=orders_answer(placed_order(started + timedelta(minutes=2))))
    abandon(client, started)
    run_worker(runtime)
    assert outbox(runtime) == []
    first = messages(runtime)[0]
    assert first == ("email_1", MessageState.EXITED, "order_placed")
    assert all(state != MessageState.SENT for _, state, _ in messages(runtime))
    search = asked(api)[0]["variables"]["query"]
    assert "email:" in search
    assert "astrid.lindqvist@example.se" in search.lower()
    assert f'created_at:>="{started.astimezone(UTC).isoformat()}"' in search
    assert all(call.request.headers["X-Shopify-Access-Token"] == TOKEN for call in api.calls)


def test_a_customer_with_no_order_since_the_checkout_gets_the_reminder(
    client: FlaskClient,
    runtime: Runtime,
    installed: Shop,
    api: responses.RequestsMock,
    started: datetime,
) -> None:
    # only a test order and a cancelled one: neither counts, as in our own store
    api.post(
        endpoint(runtime),
        json=orders_answer(
            placed_order(started, test=True),
            placed_order(started, cancelledAt=started.isoformat()),
        ),
    )
    abandon(client, started)
    run_worker(runtime)
    assert messages(runtime)[0][:2] == ("email_1", MessageState.SENT)
    assert outbox(runtime)
    assert len(api.calls) >= 1  # asked before each reminder


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 401, "json": {"errors": "[API] Invalid API key or access token"}},
        {"status": 429, "headers": {"Retry-After": "0"}, "body": "Exceeded 2 calls per second"},
        {"status": 503, "body": "Service Unavailable"},
        {"body": requests.ConnectTimeout("timed out")},
    ],
    ids=["401", "429", "503", "timeout"],
)
def test_when_the_store_cannot_answer_our_own_state_decides_and_the_reminder_goes(
    client: FlaskClient,
    runtime: Runtime,
    installed: Shop,
    api: responses.RequestsMock,
    started: datetime,
    failure: dict[str, Any],
) -> None:
    api.post(endpoint(runtime), **failure)
    abandon(client, started)
    run_worker(runtime)
    assert api.calls  # it did ask
    assert messages(runtime)[0][:2] == ("email_1", MessageState.SENT)
    assert outbox(runtime)


def test_a_shop_without_api_access_is_not_asked_and_its_reminders_go(
    client: FlaskClient,
    runtime: Runtime,
    shop: Shop,
    api: responses.RequestsMock,
    started: datetime,
) -> None:
    abandon(client, started)
    run_worker(runtime)
    assert not api.calls
    assert messages(runtime)[0][:2] == ("email_1", MessageState.SENT)


# --- products no longer for sale ---------------------------------------------------------


def test_a_withdrawn_product_is_left_out_of_the_reminder_and_an_unknown_one_stays(
    client: FlaskClient, runtime: Runtime, shop: Shop, started: datetime
) -> None:
    withdraw(client, HAT)  # now a draft; no webhook ever told us of the socks
    abandon(client, started)
    run_worker(runtime)
    sent = outbox(runtime)
    assert sent
    text = text_of(sent[0])
    assert "Yllesockor" in text
    assert "Ullmössa" not in text
    assert messages(runtime)[0][:2] == ("email_1", MessageState.SENT)


def test_a_cart_whose_products_are_all_gone_gets_no_reminder(
    client: FlaskClient, runtime: Runtime, shop: Shop, started: datetime
) -> None:
    abandon(client, started)
    # after the checkout, before its first reminder: one withdrawn, one sold out
    withdraw(client, HAT)
    withdraw(client, SOCKS, sold_out=True)
    run_worker(runtime)
    assert outbox(runtime) == []
    assert messages(runtime)[0] == ("email_1", MessageState.EXITED, "items_unavailable")
    assert all(state != MessageState.SENT for _, state, _ in messages(runtime))


def test_a_product_taken_off_sale_after_one_cart_reminder_is_left_out_of_the_next(
    client: FlaskClient, runtime: Runtime, shop: Shop, started: datetime
) -> None:
    # each send asks about its cart's products once; what it heard ends with that send
    abandon(client, started)
    run_worker(runtime)
    before = outbox(runtime)
    assert before
    assert all("Ullmössa" in text_of(sent) for sent in before)
    withdraw(client, HAT)
    payload = json.loads((FIXTURES / "shopify" / "checkouts_create__customer.json").read_text())
    stamp = started.isoformat()
    payload.update(token="second-cart-token", email="britt@example.se")
    payload["created_at"] = payload["updated_at"] = stamp
    payload["customer"].update(id=8012345678902, email="britt@example.se", updated_at=stamp)
    payload["customer"]["email_marketing_consent"] = {
        "state": "subscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": "2026-01-10T12:00:00+00:00",
    }
    deliver(client, "checkouts/update", payload, "checkout-2")
    run_worker(runtime)
    after = [sent for sent in outbox(runtime) if sent["To"] == "britt@example.se"]
    assert after
    assert all("Ullmössa" not in text_of(sent) for sent in after)
    assert all("Yllesockor" in text_of(sent) for sent in after)
