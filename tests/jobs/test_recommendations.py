"""Recommendations come from the shop's own paid orders, counted once as they arrive:
bought together first, then alike, then bestsellers, never what the contact has or
cannot buy, and a flow that declares them shows them in its email."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from mjml import mjml2html
from sqlalchemy import delete, select

from adapters import events as ev
from emails import render as rendering
from emails.content import Brand, EmailContent, MessageKind, ProductBlock
from jobs.audience import recommendations
from jobs.flows.model import Flow, Recommend, RecommendBasis, Send, SubjectKind, Trigger
from jobs.runtime import Runtime
from jobs.store.models import CountedOrder, Product, ProductGroup, ProductPair, ProductSale
from tests.jobs.engine_support import SHOP, T0, Harness, customer, extra_flow, sek
from tests.jobs.test_flow_extensions import Rendering as ComposingShop

HOME = f"https://{SHOP}"


def product(
    product_id: str,
    *,
    collections: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    available: bool | None = True,
    status: str | None = "active",
    at: datetime = T0,
    price: str = "199.00",
    image: str | None = None,
) -> ev.ProductCreated:
    return ev.ProductCreated(
        occurred_at=at,
        product=ev.Product(
            product_id=product_id,
            title=f"Product {product_id}",
            updated_at=at,
            url=f"{HOME}/products/{product_id}",
            image_url=image or f"https://cdn.example/{product_id}.jpg",
            price=sek(price),
            status=status,
            available=available,
            tags=tags,
            collections=collections,
        ),
    )


def order(
    order_id: str,
    product_ids: Sequence[str],
    *,
    kind: type[ev.Event] = ev.OrderPaid,
    who: ev.Customer | None = None,
    at: datetime = T0,
    test: bool = False,
) -> ev.Event:
    who = who or customer(f"buyer{order_id}@example.se", customer_id=f"b{order_id}")
    lines = tuple(ev.LineItem(f"Product {p}", 1, sek("199.00"), product_id=p) for p in product_ids)
    data = ev.Order(
        order_id=order_id,
        name=f"#{order_id}",
        customer=who,
        email=who.email,
        total=sek("199.00"),
        line_items=lines,
        placed_at=T0,
        updated_at=at,
        test=test,
    )
    return cast(Any, kind)(occurred_at=at, order=data)


class Shop(Harness):
    def catalogue(self, *events: ev.ProductCreated) -> None:
        for event in events:
            self.at(event.occurred_at, event)

    def related(self, product_ids: Sequence[str], **kw: Any) -> list[str]:
        with self.runtime.sessions() as session:
            found = recommendations.related(session, self.shop_id, product_ids, **kw)
            return [p.product_id for p in found]

    def pairs(self) -> dict[tuple[str, str], int]:
        with self.runtime.sessions() as session:
            rows = session.scalars(select(ProductPair).where(ProductPair.shop_id == self.shop_id))
            return {(r.product_id, r.other_id): r.count for r in rows}

    def sales(self) -> dict[str, int]:
        with self.runtime.sessions() as session:
            rows = session.scalars(select(ProductSale).where(ProductSale.shop_id == self.shop_id))
            return {r.product_id: r.orders for r in rows}


@pytest.fixture
def shop(runtime: Runtime) -> Shop:
    return Shop(runtime)


def test_products_bought_together_come_first_by_how_many_paid_orders_held_both(
    shop: Shop,
) -> None:
    shop.catalogue(*(product(p) for p in ("a", "b", "c", "d", "e")))
    shop.at(T0, order("1", ["a", "b"]))
    shop.at(T0, order("2", ["b", "a", "c"]))
    shop.at(T0, order("3", ["a", "c"]))
    shop.at(T0, order("4", ["a", "b"]))
    shop.at(T0, order("5", ["a", "d"], kind=ev.OrderPlaced))  # not paid: not counted
    shop.at(T0, order("6", ["a", "e"], test=True))  # a test order: never counted
    assert shop.related(["a"], limit=2) == ["b", "c"]
    assert shop.pairs()[("a", "b")] == 3
    assert shop.pairs()[("b", "a")] == 3
    assert ("a", "d") not in shop.pairs()
    assert ("a", "e") not in shop.pairs()
    assert shop.sales() == {"a": 4, "b": 3, "c": 2}
    # with several products, what goes with all of them most often leads
    assert shop.related(["b", "c"], limit=1) == ["a"]


def test_a_replayed_payment_is_counted_once_and_a_later_status_adds_nothing(shop: Shop) -> None:
    shop.catalogue(product("a"), product("b"))
    paid = order("1", ["a", "b"])
    shop.at(T0, paid)
    shop.at(T0 + timedelta(minutes=5), paid)  # the platform sent it again
    shop.at(T0 + timedelta(hours=1), order("1", ["a", "b"], kind=ev.OrderFulfilled))
    assert shop.pairs() == {("a", "b"): 1, ("b", "a"): 1}
    assert shop.sales() == {"a": 1, "b": 1}
    with shop.runtime.sessions() as session:
        (counted,) = session.scalars(select(CountedOrder)).all()
        assert counted.product_ids == ["a", "b"]


def test_a_cancelled_or_refunded_order_is_taken_back_once(shop: Shop) -> None:
    shop.catalogue(product("a"), product("b"), product("c"))
    shop.at(T0, order("1", ["a", "b"]))
    shop.at(T0, order("2", ["a", "c"]))
    shop.at(T0, order("3", ["a", "c"]))
    shop.at(T0 + timedelta(hours=1), order("1", ["a", "b"], kind=ev.OrderCancelled))
    shop.at(T0 + timedelta(hours=2), order("1", ["a", "b"], kind=ev.OrderRefunded))
    shop.at(T0 + timedelta(hours=3), order("1", ["a", "b"]))  # an old payment replayed
    shop.at(T0 + timedelta(hours=1), order("2", ["a", "c"], kind=ev.OrderRefunded))
    assert shop.pairs()[("a", "b")] == 0
    assert shop.pairs()[("a", "c")] == 1
    assert shop.sales() == {"a": 1, "b": 0, "c": 1}
    assert shop.related(["a"], limit=1) == ["c"]
    # b is no longer bought with a, nor a bestseller: nothing is left to offer
    assert shop.related(["a"], exclude=["c"], limit=3) == []


def test_without_orders_together_products_in_the_same_collection_then_tag_then_bestsellers(
    shop: Shop,
) -> None:
    shop.catalogue(
        product("hat", collections=("winter",), tags=("wool",)),
        product("scarf", collections=("winter",), tags=("wool",)),
        product("mitten", collections=("winter",)),
        product("sock", tags=("wool",)),
        product("shirt", collections=("summer",)),
        product("cap", collections=("summer",)),
    )
    shop.at(T0, order("1", ["shirt"]))
    shop.at(T0, order("2", ["shirt", "cap"]))
    # shares a collection and a tag, a collection, a tag; then what sells most
    assert shop.related(["hat"], limit=5) == ["scarf", "mitten", "sock", "shirt", "cap"]
    # nothing given (an email about no product): the bestsellers
    assert shop.related([], limit=5) == ["shirt", "cap"]
    # bought together beats alike
    shop.at(T0, order("3", ["hat", "cap"]))
    assert shop.related(["hat"], limit=2) == ["cap", "scarf"]


def test_what_was_bought_is_out_of_stock_is_not_on_sale_or_is_in_the_email_is_never_offered(
    shop: Shop,
) -> None:
    shop.catalogue(
        product("a"),
        product("bought"),
        product("gone", available=False),
        product("draft", status="draft"),
        product("archived", status="archived"),
        product("in_email"),
        product("unknown_stock", available=None, status=None),
        product("ok"),
    )
    everything = ["a", "bought", "gone", "draft", "archived", "in_email", "unknown_stock", "ok"]
    shop.at(T0, order("1", everything))
    shop.at(T0, order("2", ["a", "never_in_the_catalogue"]))
    assert shop.related(["a"], exclude=["in_email"], bought=["bought"], limit=10) == [
        "ok",
        "unknown_stock",
    ]
    # a product taken off sale later is no longer offered
    shop.at(T0 + timedelta(hours=1), product("ok", available=False, at=T0 + timedelta(hours=1)))
    assert shop.related(["a"], exclude=["in_email"], bought=["bought"], limit=10) == [
        "unknown_stock"
    ]


def test_the_same_data_gives_the_same_list_ties_by_product_id(shop: Shop) -> None:
    shop.catalogue(*(product(p) for p in ("m", "z", "b", "k", "a")))
    shop.at(T0, order("1", ["a", "z", "m", "b"]))
    shop.at(T0, order("2", ["k", "a"]))
    first = shop.related(["a"], limit=4)
    assert first == ["b", "k", "m", "z"]
    assert [shop.related(["a"], limit=4) for _ in range(3)] == [first] * 3


def test_product_updates_keep_stock_status_image_price_and_groups_current(shop: Shop) -> None:
    shop.catalogue(product("a", collections=("winter",), tags=("wool",)))
    later = T0 + timedelta(hours=2)
    shop.at(
        later,
        product(
            "a",
            collections=("sale",),
            available=False,
            status="archived",
            at=later,
            price="99.00",
            image="https://cdn.example/new.jpg",
        ),
    )
    stale = product("a", collections=("winter",), at=T0 + timedelta(hours=1))
    shop.at(later, stale)  # an older payload arriving late changes nothing
    with shop.runtime.sessions() as session:
        row = session.scalars(select(Product)).one()
        assert (row.available, row.status, row.image_url, str(row.price)) == (
            False,
            "archived",
            "https://cdn.example/new.jpg",
            "99.00",
        )
        groups = {(g.kind, g.name) for g in session.scalars(select(ProductGroup))}
        assert groups == {("collection", "sale")}


# --- in an email --------------------------------------------------------------------------


def _thanks_subject(event: ev.Event) -> str:
    assert isinstance(event, ev.OrderPaid)
    return f"thanks:{event.order.order_id}"


THANKS_WITH_MORE = Flow(
    name="test_thanks_with_more",
    title="Thanks, and more you may like (test)",
    category="test",
    kind=MessageKind.MARKETING,
    priority=5,
    trigger=Trigger(
        events=(ev.OrderPaid,),
        subject=_thanks_subject,
        anchor=lambda event: event.occurred_at,
    ),
    steps=(Send("thanks", "welcome_related"),),
    subject_kind=SubjectKind.CONTACT,
    recommend=Recommend(limit=2, basis=RecommendBasis.PURCHASES),
)


class Rendering(Shop, ComposingShop):
    """The recommendations' shop whose emails are really composed."""


def test_a_flow_that_recommends_shows_other_products_and_never_the_bought_one(
    runtime: Runtime,
) -> None:
    shop = Rendering(runtime)
    shop.catalogue(
        product("hat"),
        product("scarf"),
        product("gloves", available=False),
        product("socks"),
        product("belt"),
    )
    shop.at(T0, order("1", ["hat", "scarf"]))
    shop.at(T0, order("2", ["hat", "gloves"]))
    shop.at(T0, order("3", ["hat", "socks"]))
    shop.at(T0, order("4", ["belt"]))
    shop.at(T0, order("5", ["belt"]))
    anna = customer("anna@example.se", customer_id="anna")
    with extra_flow(THANKS_WITH_MORE):
        shop.at(T0 + timedelta(hours=1), order("10", ["hat"], who=anna, at=T0 + timedelta(hours=1)))
        shop.run(T0 + timedelta(days=1))
    mine = [e for e in shop.emails() if e.to == "anna@example.se"]
    assert len(mine) == 1
    text = mine[0].text
    assert "You may also like" in text
    assert "Product scarf" in text  # bought with the hat: first
    assert "Product socks" in text
    assert "Product hat" not in text  # what she bought
    assert "Product gloves" not in text  # out of stock
    assert "Product belt" not in text  # past the limit of two
    assert text.index("Product scarf") < text.index("Product socks")


def test_the_recommended_block_renders_in_html_and_nothing_when_there_are_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = (
        '[% extends "layout.mjml" %][% import "partials.mjml" as p with context %]'
        "[% block content %][[ p.product_grid() ]][[ p.recommended_grid() ]][% endblock %]"
    )
    mjml = rendering.STRUCTURE.from_string(source).render(rtl=False, align="left", c=str)
    template = rendering.EMAIL.from_string(mjml2html(mjml))
    monkeypatch.setattr(rendering, "compiled", lambda name, direction: template)
    brand = Brand(shop_name="Nordljus", storefront_url=HOME, sender_name="Nordljus")
    email = EmailContent(
        template="welcome_related",
        kind=MessageKind.MARKETING,
        brand=brand,
        products=(ProductBlock(title="Ullmössa", url=f"{HOME}/products/hat"),),
        recommended=(
            ProductBlock(title="Halsduk <ull>", url=f"{HOME}/products/scarf", price=sek("1.00")),
        ),
    )
    html = rendering.render(email).html
    assert "You may also like" in html
    assert "Halsduk &lt;ull&gt;" in html
    assert f"{HOME}/products/scarf" in html
    plain = rendering.render(EmailContent(**{**email.__dict__, "recommended": ()}))
    assert "You may also like" not in plain.html
    assert "You may also like" not in plain.text
    assert "Ullmössa" in plain.html


def test_orders_stored_before_the_counts_were_kept_are_counted_once_by_a_backfill(
    shop: Shop,
) -> None:
    shop.catalogue(product("a", collections=("winter",)), product("b", collections=("winter",)))
    shop.at(T0, order("1", ["a", "b"]))
    shop.at(T0, order("2", ["a", "b"]))
    shop.at(T0, order("3", ["a", "b"], kind=ev.OrderPlaced))
    with shop.runtime.sessions.begin() as session:
        for model in (ProductPair, ProductSale, CountedOrder, ProductGroup):
            session.execute(delete(model))
    with shop.runtime.sessions.begin() as session:
        assert recommendations.backfill(session, shop.shop_id, batch=1) == 2
    with shop.runtime.sessions.begin() as session:
        assert recommendations.backfill(session, shop.shop_id) == 0
    assert shop.pairs() == {("a", "b"): 2, ("b", "a"): 2}
    assert shop.related(["a"], limit=1) == ["b"]
