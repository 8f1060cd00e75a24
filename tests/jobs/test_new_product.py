"""The new product flow through the simulator with really composed emails: who hears
of a new product, how many products one email lists, and when nothing is sent."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from adapters import events as ev
from jobs.flows import new_product, registry
from jobs.flows.model import Audience
from jobs.runtime import Runtime
from jobs.store.models import Enrollment, NonEnrolment
from tests.jobs.engine_support import T0, customer, sek
from tests.jobs.test_flow_extensions import HOME, Rendering

FLOW = "new_product"
#: a Tuesday, 10:00 in Stockholm: the shop's launches happen then
LAUNCH = T0 + timedelta(days=1)
WINDOW = timedelta(hours=2)


def product(
    product_id: str,
    collections: tuple[str, ...] = ("hats",),
    *,
    status: str = "active",
    available: bool | None = True,
    tags: tuple[str, ...] = (),
    at: datetime = T0,
) -> ev.Product:
    return ev.Product(
        product_id=product_id,
        title=f"Produkt {product_id}",
        updated_at=at,
        url=f"{HOME}/products/{product_id}",
        image_url=f"https://cdn.example/{product_id}.jpg",
        price=sek("349.00"),
        status=status,
        available=available,
        tags=tags,
        collections=collections,
    )


def created(shop: Rendering, at: datetime, item: ev.Product) -> None:
    shop.at(at, ev.ProductCreated(at, dataclasses.replace(item, updated_at=at)))


def updated(shop: Rendering, at: datetime, item: ev.Product) -> None:
    shop.at(at, ev.ProductUpdated(at, dataclasses.replace(item, updated_at=at)))


def order(order_id: str, who: ev.Customer, product_id: str, *, test: bool = False) -> ev.Order:
    return ev.Order(
        order_id=order_id,
        name=f"#{order_id}",
        customer=who,
        email=who.email,
        total=sek("299.00"),
        line_items=(ev.LineItem("Något", 1, sek("299.00"), product_id=product_id),),
        placed_at=T0,
        updated_at=T0,
        test=test,
    )


def paid(shop: Rendering, order_id: str, who: ev.Customer, product_id: str, **kw: bool) -> None:
    shop.at(T0, ev.OrderPlaced(T0, order(order_id, who, product_id, **kw)))
    shop.at(T0, ev.OrderPaid(T0, order(order_id, who, product_id, **kw)))


def person(name: str, *, subscribed: bool = True) -> ev.Customer:
    return customer(f"{name}@example.se", customer_id=name, subscribed=subscribed)


@pytest.fixture
def shop(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Rendering:
    """A shop with hats, wool scarves and socks, and a buyer of each kind."""
    # every paid order here would also be thanked: that flow has its own tests
    # (tests/jobs/test_thank_you.py)
    monkeypatch.delitem(registry.flows(), "thank_you")
    shop = Rendering(runtime)
    created(shop, T0, product("p-hat", ("hats",)))
    created(shop, T0, product("p-scarf", ("scarves",), tags=("wool",)))
    created(shop, T0, product("p-sock", ("socks",)))
    paid(shop, "1", person("anna"), "p-hat")
    paid(shop, "2", person("bo"), "p-scarf")
    paid(shop, "3", person("cy"), "p-sock")
    return shop


def announcements(shop: Rendering) -> dict[str, list[list[str]]]:
    """Per address, the products each announcement links to (in the email's order)."""
    found: dict[str, list[list[str]]] = {}
    for email in shop.emails():
        pages = list(dict.fromkeys(shop.targets(email)))
        found.setdefault(email.to, []).append([p.rsplit("/", 1)[1] for p in pages])
    return found


def outcomes(shop: Rendering, contact: str | None = None, since: datetime = LAUNCH) -> list[str]:
    """The flow's decisions since the launch (of an email's step, or of the flow's own
    fan-out: an enrollment's end is also logged on its message, counted once)."""
    return [
        row["outcome"] + (f":{row['reason']}" if row["reason"] else "")
        for row in shop.log()
        if row["flow"] == FLOW
        and (contact is None or row["contact"] == contact)
        and (row["step"] is not None or row["contact"] is None or row["outcome"] == "enrolled")
        and datetime.fromisoformat(row["at"]) >= since
    ]


def test_buyers_of_a_collection_or_tag_hear_of_its_new_product_and_nobody_else(
    shop: Rendering,
) -> None:
    created(shop, LAUNCH, product("p-new", ("hats",), tags=("wool",)))
    shop.run(LAUNCH + timedelta(days=3))
    # anna bought a hat (same collection), bo a scarf tagged wool (same tag); cy socks
    assert announcements(shop) == {
        "anna@example.se": [["p-new"]],
        "bo@example.se": [["p-new"]],
    }
    for email in shop.emails():
        assert email.subject == "New at engine-test.myshopify.com"
        assert email.date == LAUNCH + WINDOW
        assert "Produkt p-new" in email.text
        assert shop.targets(email)[-1] == f"{HOME}/products/p-new"  # the button
    assert outcomes(shop, "cy@example.se") == []


def test_test_orders_cancelled_orders_and_unsubscribed_buyers_get_nothing(
    shop: Rendering,
) -> None:
    paid(shop, "4", person("dag"), "p-hat", test=True)
    paid(shop, "5", person("eva"), "p-hat")
    shop.at(T0, ev.OrderCancelled(T0, order("5", person("eva"), "p-hat")))
    paid(shop, "6", person("fia", subscribed=False), "p-hat")
    paid(shop, "7", person("gun"), "p-hat")
    unsubscribed = ev.Consent(ev.ConsentState.UNSUBSCRIBED, "test", T0)
    shop.at(T0, ev.MarketingConsentChanged(T0, "gun", "gun@example.se", unsubscribed))
    created(shop, LAUNCH, product("p-new", ("hats",)))
    shop.run(LAUNCH + timedelta(days=3))
    assert list(announcements(shop)) == ["anna@example.se"]
    # not buyers of the kind: a test order, a cancelled order (never selected)
    assert outcomes(shop, "dag@example.se") == outcomes(shop, "eva@example.se") == []
    # buyers without consent enroll, and the send says why it did not go
    assert outcomes(shop, "fia@example.se")[-1] == "skipped:no_consent"
    assert outcomes(shop, "gun@example.se")[-1] == "skipped:unsubscribed"


def test_a_merchant_publishing_several_products_sends_each_buyer_one_email_listing_them(
    shop: Rendering,
) -> None:
    for minutes, product_id in enumerate(("p-a", "p-b", "p-c", "p-d", "p-e")):
        created(shop, LAUNCH + timedelta(minutes=10 * minutes), product(product_id))
    later = LAUNCH + timedelta(days=3)
    created(shop, later, product("p-f"))
    created(shop, later + timedelta(days=1), product("p-g"))
    shop.run(LAUNCH + timedelta(days=12))
    first, second = shop.emails()
    assert announcements(shop) == {
        # at most four products in one email, the first that came; the one it had no
        # room for and those that came within the week wait for the week to pass
        "anna@example.se": [["p-a", "p-b", "p-c", "p-d"], ["p-e", "p-f", "p-g"]],
    }
    assert first.date == LAUNCH + WINDOW
    assert second.date == first.date + timedelta(days=7)
    anna = outcomes(shop, "anna@example.se")
    assert anna.count("sent") == 2
    assert anna.count("exited:announced_with_another") == 5
    assert "deferred:cap:flow_repeat" in anna


def test_a_dozen_products_at_once_make_two_emails_and_the_rest_are_not_announced(
    shop: Rendering,
) -> None:
    ids = [f"p-{n:02}" for n in range(12)]
    for product_id in ids:
        created(shop, LAUNCH, product(product_id))
    shop.run(LAUNCH + timedelta(days=20))
    assert announcements(shop) == {"anna@example.se": [ids[0:4], ids[4:8]]}
    anna = outcomes(shop, "anna@example.se")
    assert anna.count("exited:announced_with_another") == 6
    # deferred past the week after the second email: too late to be news
    assert anna.count("expired:cap:flow_repeat") == 4


def test_a_product_out_of_stock_before_the_send_is_not_announced_nor_listed(
    shop: Rendering,
) -> None:
    created(shop, LAUNCH, product("p-a"))
    created(shop, LAUNCH, product("p-b"))
    updated(shop, LAUNCH + timedelta(hours=1), product("p-b", available=False))
    created(shop, LAUNCH + timedelta(days=1), product("p-c"))
    updated(shop, LAUNCH + timedelta(days=1, hours=1), product("p-c", status="draft"))
    shop.run(LAUNCH + timedelta(days=12))
    assert announcements(shop) == {"anna@example.se": [["p-a"]]}
    anna = outcomes(shop, "anna@example.se")
    assert anna.count("exited:product_unavailable") == 2  # sold out, taken off the shop


def test_replays_and_later_updates_do_not_announce_a_product_again(shop: Rendering) -> None:
    new = product("p-new")
    created(shop, LAUNCH, new)
    shop.at(LAUNCH, ev.ProductCreated(LAUNCH, dataclasses.replace(new, updated_at=LAUNCH)))
    updated(shop, LAUNCH + timedelta(hours=1), dataclasses.replace(new, price=sek("299.00")))
    updated(shop, LAUNCH + timedelta(days=1), product("p-new", available=False))
    updated(shop, LAUNCH + timedelta(days=9), new)  # back in stock: not new
    shop.run(LAUNCH + timedelta(days=20))
    assert announcements(shop) == {"anna@example.se": [["p-new"]]}
    assert outcomes(shop).count("fan_out") == 1


def test_a_draft_is_announced_when_it_is_published_and_old_catalogue_never(
    shop: Rendering,
) -> None:
    created(shop, LAUNCH, product("p-draft", status="draft"))
    updated(shop, LAUNCH + timedelta(days=2), product("p-draft"))
    # first heard of through an update: a product from before the shop joined
    updated(shop, LAUNCH + timedelta(days=10), product("p-old"))
    shop.run(LAUNCH + timedelta(days=14))
    (email,) = shop.emails()
    assert announcements(shop) == {"anna@example.se": [["p-draft"]]}
    assert email.date == LAUNCH + timedelta(days=2) + WINDOW


def test_the_audience_is_enrolled_batch_after_batch_past_the_batch_size(
    shop: Rendering, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = dataclasses.replace(
        new_product.FLOW,
        trigger=dataclasses.replace(
            new_product.FLOW.trigger, audience=Audience(new_product.buyers_of_its_kind, batch=2)
        ),
    )
    monkeypatch.setitem(registry.flows(), FLOW, small)
    for n in range(5):
        paid(shop, f"1{n}", person(f"hatter{n}"), "p-hat")
    created(shop, LAUNCH, product("p-new"))
    shop.run(LAUNCH + timedelta(days=3))
    expected = {f"hatter{n}@example.se" for n in range(5)} | {"anna@example.se"}
    assert set(announcements(shop)) == expected
    with shop.runtime.sessions() as session:
        (fan_out,) = session.scalars(
            select(Enrollment).where(
                Enrollment.flow == FLOW,
                Enrollment.contact_id.is_(None),
                Enrollment.subject == "p-new",
            )
        ).all()
        assert fan_out.state == "completed"
        assert fan_out.context["audience"]["after"] > 0
        assert session.scalar(select(NonEnrolment.id).where(NonEnrolment.flow == FLOW)) is None


def test_the_flow_is_marketing_for_subscribers_at_its_priority() -> None:
    flow = registry.get(FLOW)
    assert flow is not None
    assert flow.priority == 10
    assert flow.defaults["consent"] == "subscribed"
    assert flow.defaults["window_hours"] == 2
    assert flow.defaults["most_products"] == 4
    assert flow.defaults["spacing_days"] == 7


def test_a_shop_may_switch_new_product_announcements_off(shop: Rendering) -> None:
    shop.settings(flows={FLOW: {"enabled": False}})
    created(shop, LAUNCH, product("p-new"))
    shop.run(LAUNCH + timedelta(days=3))
    assert shop.messages() == []
    assert outcomes(shop) == []  # not even a fan-out is claimed: turned on later, it may
