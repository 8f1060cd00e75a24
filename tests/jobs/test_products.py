"""Products kept current: one rule for what is for sale, and deletions that stay deleted."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from adapters import events as ev
from jobs.flows import registry
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.store.models import (
    DELETED_PRODUCT_STATUS,
    PRODUCT_FOR_SALE,
    Delivery,
    DeliveryStatus,
    Product,
    ProductGroup,
    StoredEvent,
    for_sale,
)
from tests.jobs.engine_support import T0, Harness, checkout, customer, sek
from tests.jobs.test_flow_extensions import HOME, Rendering
from tests.jobs.test_new_product import LAUNCH
from tests.jobs.test_new_product import announcements as new_product_announcements
from tests.jobs.test_new_product import outcomes as new_product_outcomes
from tests.jobs.test_new_product import paid as paid_order
from tests.jobs.test_new_product import person as new_product_person
from tests.jobs.test_recommendations import Shop as RecommendingShop
from tests.jobs.test_recommendations import order as recommendation_order
from tests.jobs.test_recommendations import product as recommendable
from tests.support import (
    FIXTURES,
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

WHEN = datetime(2026, 9, 14, 12, 0, tzinfo=UTC)
STATUSES = (None, "active", "ACTIVE", "publish", "draft", "archived", "unlisted")
STATUSES += ("private", "pending", "trash", "future", DELETED_PRODUCT_STATUS)


def test_the_rule_reads_the_same_in_python_and_in_sql(runtime: Runtime) -> None:
    cases = list(itertools.product(STATUSES, (True, False, None)))
    with runtime.sessions.begin() as session:
        shop = add_shop(session, runtime.secrets, "shopify", "a.myshopify.com")
        for n, (status, available) in enumerate(cases):
            session.add(
                Product(
                    shop_id=shop.id,
                    product_id=str(n),
                    title=f"{status} {available}",
                    status=status,
                    available=available,
                    data={},
                    platform_updated_at=WHEN,
                )
            )
    with runtime.sessions() as session:
        in_sql = set(session.scalars(select(Product.product_id).where(PRODUCT_FOR_SALE)))
    in_python = {str(n) for n, case in enumerate(cases) if for_sale(*case)}
    assert in_sql == in_python
    on_sale = {cases[int(n)] for n in in_python}
    assert on_sale == {
        (status, available)
        for status in (None, "active", "ACTIVE", "publish")
        for available in (True, None)
    }


# --- deletions through the webhooks --------------------------------------------------

NEXT_HOUR = datetime.now(UTC) + timedelta(hours=1)
HAT = "8123456789012"  # products_create__active
SOCKS = "1186"  # product_created__simple


def fixture(platform: str, name: str, **changes: Any) -> dict[str, Any]:
    payload = json.loads((FIXTURES / platform / f"{name}.json").read_text())
    assert isinstance(payload, dict)
    return {**payload, **changes}


def deliver(
    client: FlaskClient,
    topic: str,
    payload: Any,
    delivery_id: str,
    *,
    body: bytes | None = None,
    secret: str | None = None,
) -> Any:
    """A delivery signed as its platform signs it; the answer."""
    body = dumps(payload) if body is None else body
    if "/" in topic:
        headers = shopify_headers(topic, body, secret or SHOPIFY_SECRET, SHOPIFY_SHOP, delivery_id)
        return post(client, "shopify", body, headers)
    headers = woocommerce_headers(topic, body, secret or WOO_SECRET, STORE, delivery_id)
    return post(client, "woocommerce", body, headers)


def processed(client: FlaskClient, runtime: Runtime, *deliveries: tuple[str, Any]) -> None:
    for n, (topic, payload) in enumerate(deliveries):
        assert deliver(client, topic, payload, f"{topic}-{n}-{id(payload)}").status_code == 200
        run_worker(runtime)  # one at a time: in the order they arrived


def product_row(runtime: Runtime, product_id: str) -> Product | None:
    with runtime.sessions() as session:
        return session.scalar(select(Product).where(Product.product_id == product_id))


def groups(runtime: Runtime, product_id: str) -> set[tuple[str, str]]:
    with runtime.sessions() as session:
        found = session.execute(
            select(ProductGroup.kind, ProductGroup.name).where(
                ProductGroup.product_id == product_id
            )
        )
        return {(kind, name) for kind, name in found}


def on_sale(runtime: Runtime, product_id: str) -> bool:
    row = product_row(runtime, product_id)
    assert row is not None
    return for_sale(row.status, row.available)


def shopify_time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def woo_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_a_shopify_product_deleted_is_kept_as_deleted_never_for_sale_and_in_no_group(
    client: FlaskClient, runtime: Runtime
) -> None:
    created = fixture("shopify", "products_create__active")
    processed(client, runtime, ("products/create", created))
    assert on_sale(runtime, HAT)
    assert groups(runtime, HAT) == {("tag", "merino"), ("tag", "vinter")}

    processed(client, runtime, ("products/delete", {"id": int(HAT)}))
    row = product_row(runtime, HAT)
    assert row is not None
    assert (row.status, row.available, row.title) == (
        DELETED_PRODUCT_STATUS,
        False,
        "Ullmössa Fjäll",
    )
    assert not on_sale(runtime, HAT)
    assert groups(runtime, HAT) == set()


def test_a_shopify_update_arriving_after_the_delete_never_brings_the_product_back(
    client: FlaskClient, runtime: Runtime
) -> None:
    # even one stamped after our receipt of the deletion
    later = fixture("shopify", "products_create__active", updated_at=shopify_time(NEXT_HOUR))
    processed(
        client,
        runtime,
        ("products/create", fixture("shopify", "products_create__active")),
        ("products/delete", {"id": int(HAT)}),
        ("products/update", fixture("shopify", "products_create__active")),
        ("products/update", later),
    )
    assert not on_sale(runtime, HAT)
    assert groups(runtime, HAT) == set()


def test_a_delete_of_a_product_never_heard_of_stops_a_late_create(
    client: FlaskClient, runtime: Runtime
) -> None:
    processed(
        client,
        runtime,
        ("products/delete", {"id": int(HAT)}),
        ("products/create", fixture("shopify", "products_create__active")),
    )
    row = product_row(runtime, HAT)
    assert row is not None
    assert row.status == DELETED_PRODUCT_STATUS
    assert groups(runtime, HAT) == set()


def test_a_woocommerce_product_trashed_stays_out_until_it_is_restored(
    client: FlaskClient, runtime: Runtime
) -> None:
    processed(
        client,
        runtime,
        ("product.created", fixture("woocommerce", "product_created__simple")),
        ("product.deleted", {"id": int(SOCKS)}),
        # an update from before the trashing, arriving after it
        ("product.updated", fixture("woocommerce", "product_created__simple")),
    )
    assert not on_sale(runtime, SOCKS)
    assert groups(runtime, SOCKS) == set()

    restored_at = woo_time(datetime.now(UTC) + timedelta(minutes=1))
    restored = fixture("woocommerce", "product_created__simple", date_modified_gmt=restored_at)
    processed(client, runtime, ("product.restored", restored))
    assert on_sale(runtime, SOCKS)
    assert groups(runtime, SOCKS) == {
        ("collection", "Strumpor"),
        ("collection", "Ull & lin"),
        ("tag", "ull"),
        ("tag", "vinter"),
    }


def test_a_woocommerce_trashing_heard_after_its_restore_is_stale(
    client: FlaskClient, runtime: Runtime
) -> None:
    restored_at = woo_time(datetime.now(UTC) + timedelta(minutes=5))
    restored = fixture("woocommerce", "product_created__simple", date_modified_gmt=restored_at)
    processed(
        client,
        runtime,
        ("product.restored", restored),
        ("product.deleted", {"id": int(SOCKS)}),
    )
    assert on_sale(runtime, SOCKS)


def test_a_replayed_delete_changes_nothing(client: FlaskClient, runtime: Runtime) -> None:
    processed(
        client,
        runtime,
        ("products/create", fixture("shopify", "products_create__active")),
        ("products/delete", {"id": int(HAT)}),
    )
    first = product_row(runtime, HAT)
    assert first is not None
    # the same delivery again, then the same news in a delivery of its own
    assert deliver(client, "products/delete", {"id": int(HAT)}, "again").json == {
        "status": "stored"
    }
    assert deliver(client, "products/delete", {"id": int(HAT)}, "again").json == {
        "status": "duplicate"
    }
    run_worker(runtime)
    with runtime.sessions() as session:
        rows = session.scalars(select(Product)).all()
        logged = session.scalars(
            select(StoredEvent.type).where(StoredEvent.type == "ProductDeleted")
        ).all()
    assert [(r.product_id, r.status, r.platform_updated_at) for r in rows] == [
        (HAT, DELETED_PRODUCT_STATUS, first.platform_updated_at)
    ]
    assert len(logged) == 2


@pytest.mark.parametrize(
    ("topic", "secret"),
    [("products/delete", "not-the-app-secret"), ("product.deleted", "not-the-store-secret")],
)
def test_a_forged_delete_is_refused_and_the_product_stays(
    client: FlaskClient, runtime: Runtime, topic: str, secret: str
) -> None:
    shopify = "/" in topic
    product_id = HAT if shopify else SOCKS
    created = (
        ("products/create", fixture("shopify", "products_create__active"))
        if shopify
        else ("product.created", fixture("woocommerce", "product_created__simple"))
    )
    processed(client, runtime, created)
    answer = deliver(client, topic, {"id": int(product_id)}, "forged", secret=secret)
    assert answer.status_code == 401
    run_worker(runtime)
    assert on_sale(runtime, product_id)
    with runtime.sessions() as session:
        assert session.scalars(select(Delivery.topic)).all() == [created[0]]


@pytest.mark.parametrize("topic", ["products/delete", "product.deleted"])
def test_a_delete_that_is_not_json_is_answered_400_and_logged(
    client: FlaskClient, runtime: Runtime, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        answer = deliver(client, topic, None, "broken", body=b'{"id": 81234')
    assert answer.status_code == 400
    assert answer.json["status"] == "malformed"
    assert any("not valid JSON" in r.getMessage() for r in caplog.records)
    with runtime.sessions() as session:
        assert session.scalars(select(Delivery)).all() == []


@pytest.mark.parametrize("topic", ["products/delete", "product.deleted"])
def test_a_delete_naming_no_product_fails_with_its_reason_and_deletes_nothing(
    client: FlaskClient, runtime: Runtime, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        assert deliver(client, topic, {"product": 1186}, "no-id").status_code == 200
        run_worker(runtime)
    with runtime.sessions() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert session.scalars(select(Product)).all() == []
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error == "WebhookError: product.id is missing"
    assert any("product.id is missing" in r.getMessage() for r in caplog.records)


# --- what emails show: deleted, sold out, off the shop, unknown -------------------------


def gone_and_kept(shop: Harness, at: datetime = T0) -> None:
    """The catalogue each place below is tried with: one product for sale, one deleted,
    one sold out, a draft and an archived one (and no word of ``p-unknown``)."""
    for product_id, status, available in (
        ("p-ok", "active", True),
        ("p-deleted", "active", True),
        ("p-soldout", "active", False),
        ("p-draft", "draft", True),
        ("p-archived", "archived", None),
    ):
        shop.at(at, ev.ProductCreated(at, catalogue_product(product_id, status, available, at)))
    shop.at(at, ev.ProductDeleted(at, "p-deleted"))


def catalogue_product(
    product_id: str, status: str, available: bool | None, at: datetime, **kw: Any
) -> ev.Product:
    return ev.Product(
        product_id=product_id,
        title=f"Vara {product_id}",
        updated_at=at,
        url=f"{HOME}/products/{product_id}",
        price=sek("199.00"),
        status=status,
        available=available,
        collections=("vinter",),
        **kw,
    )


def cart_of(*product_ids: str) -> ev.CheckoutUpdated:
    cart = checkout("cart-1", T0, customer())
    lines = tuple(ev.LineItem(f"Vara {p}", 1, sek("199.00"), product_id=p) for p in product_ids)
    return dataclasses.replace(cart, checkout=dataclasses.replace(cart.checkout, line_items=lines))


def test_a_cart_reminder_shows_the_items_for_sale_and_those_never_heard_of(
    runtime: Runtime,
) -> None:
    shop = Rendering(runtime)
    gone_and_kept(shop)
    items = ("p-ok", "p-deleted", "p-soldout", "p-draft", "p-archived", "p-unknown")
    shop.at(T0, cart_of(*items))
    shop.run(T0 + timedelta(hours=2))
    first = shop.emails()[0]
    shown = [p for p in items if f"Vara {p}" in first.text]
    assert shown == ["p-ok", "p-unknown"]


def test_a_cart_whose_products_were_deleted_or_sold_out_since_gets_no_reminder(
    runtime: Runtime,
) -> None:
    shop = Rendering(runtime)
    for product_id in ("p-deleted", "p-soldout"):
        shop.at(T0, ev.ProductCreated(T0, catalogue_product(product_id, "active", True, T0)))
    shop.at(T0, cart_of("p-deleted", "p-soldout"))
    later = T0 + timedelta(minutes=20)
    shop.at(later, ev.ProductDeleted(later, "p-deleted"))
    shop.at(later, ev.ProductUpdated(later, catalogue_product("p-soldout", "active", False, later)))
    shop.run(T0 + timedelta(days=4))
    assert shop.emails() == []
    assert shop.outcomes("email_1") == ["planned", "exited:items_unavailable"]


def test_recommendations_never_offer_a_deleted_product_bought_together_alike_or_best_selling(
    runtime: Runtime,
) -> None:
    shop = RecommendingShop(runtime)
    shop.catalogue(recommendable("seed"))
    gone_and_kept(shop)
    everything = ["seed", "p-ok", "p-deleted", "p-soldout", "p-draft", "p-archived", "p-unknown"]
    shop.at(T0, recommendation_order("1", everything))
    shop.at(T0, recommendation_order("2", ["p-deleted"]))  # its best seller
    assert shop.related(["seed"], limit=10) == ["p-ok"]  # bought together
    assert shop.related(["p-ok"], limit=10) == ["seed"]  # together, then alike (vinter)
    assert shop.related([], limit=10) == ["p-ok", "seed"]  # bestsellers


def test_a_new_product_deleted_before_its_announcement_is_neither_announced_nor_listed(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(registry.flows(), "thank_you")  # its own tests thank buyers
    shop = Rendering(runtime)
    shop.at(T0, ev.ProductCreated(T0, catalogue_product("p-hat", "active", True, T0)))
    paid_order(shop, "1", new_product_person("anna"), "p-hat")
    for product_id in ("p-new", "p-deleted", "p-soldout", "p-later"):
        shop.at(
            LAUNCH, ev.ProductCreated(LAUNCH, catalogue_product(product_id, "active", True, LAUNCH))
        )
    soon = LAUNCH + timedelta(minutes=30)
    shop.at(soon, ev.ProductDeleted(soon, "p-deleted"))
    shop.at(soon, ev.ProductUpdated(soon, catalogue_product("p-soldout", "active", False, soon)))
    shop.at(soon, ev.ProductDeleted(soon, "p-later"))
    shop.run(LAUNCH + timedelta(days=12))
    assert new_product_announcements(shop) == {"anna@example.se": [["p-new"]]}
    assert new_product_outcomes(shop, "anna@example.se").count("exited:product_unavailable") == 3


def test_a_buyer_of_a_deleted_product_no_longer_hears_of_new_ones_of_its_kind(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(registry.flows(), "thank_you")
    shop = Rendering(runtime)
    shop.at(T0, ev.ProductCreated(T0, catalogue_product("p-hat", "active", True, T0)))
    paid_order(shop, "1", new_product_person("anna"), "p-hat")
    shop.at(T0, ev.ProductDeleted(T0 + timedelta(hours=1), "p-hat"))
    shop.at(LAUNCH, ev.ProductCreated(LAUNCH, catalogue_product("p-new", "active", True, LAUNCH)))
    shop.run(LAUNCH + timedelta(days=3))
    assert shop.emails() == []


def test_a_publication_heard_after_the_products_deletion_announces_nothing(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(registry.flows(), "thank_you")
    shop = Rendering(runtime)
    shop.at(T0, ev.ProductCreated(T0, catalogue_product("p-hat", "active", True, T0)))
    paid_order(shop, "1", new_product_person("anna"), "p-hat")
    shop.at(LAUNCH, ev.ProductCreated(LAUNCH, catalogue_product("p-new", "draft", True, LAUNCH)))
    published, deleted = LAUNCH + timedelta(minutes=30), LAUNCH + timedelta(hours=1)
    shop.at(deleted, ev.ProductDeleted(deleted, "p-new"))
    # the publication's webhook comes late, after the deletion's
    late = ev.ProductUpdated(published, catalogue_product("p-new", "active", True, published))
    shop.at(deleted + timedelta(minutes=5), late)
    shop.run(LAUNCH + timedelta(days=12))
    assert shop.emails() == []
    assert new_product_outcomes(shop, "anna@example.se") == []  # not even enrolled
    assert not on_sale(runtime, "p-new")
