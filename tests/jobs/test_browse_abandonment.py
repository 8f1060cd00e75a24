"""Browse abandonment: a known customer who looked at a product and left it gets one
reminder of it, four hours on, unless she put something in a cart, started a checkout
or ordered meanwhile; at most once a week; never for what she bought.

Views come as the storefront's events become them (``ProductViewed`` naming the
customer, with no word on consent: a browser's word grants none).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters import events as ev
from jobs.flows import registry
from jobs.flows.model import PRIORITIES
from jobs.intake import privacy
from jobs.runtime import Runtime
from jobs.simulator import Scenario, simulate
from jobs.store.models import Contact, Enrollment, MessageState, NonEnrolment, ProductView
from tests.jobs.engine_support import SHOP, T0, checkout, customer, sek
from tests.jobs.test_dated_flows import emails_of, not_started
from tests.jobs.test_recommendations import Rendering, product
from tests.jobs.test_welcome import buy

FLOW = "browse_abandonment"


@pytest.fixture
def shop(runtime: Runtime) -> Rendering:
    shop = Rendering(runtime)
    # only what this flow and cart recovery do is looked at here
    shop.settings(flows={"welcome": {"enabled": False}})
    shop.catalogue(product("hat"), product("scarf"), product("mug"), product("lamp"))
    # what other customers bought: the scarf goes with the hat; the mug sells best
    buy(
        shop,
        "x1",
        customer("x@example.se", customer_id="x"),
        T0 - timedelta(days=9),
        "hat",
        "scarf",
    )
    buy(shop, "y1", customer("y@example.se", customer_id="y"), T0 - timedelta(days=9), "mug")
    return shop


def anna(*, subscribed: bool = True) -> ev.Customer:
    return customer("anna@example.se", customer_id="anna", subscribed=subscribed)


def known(shop: Rendering, *, subscribed: bool = True) -> None:
    """Anna as the shop's customer webhook tells of her, a while before."""
    at = T0 - timedelta(days=10)
    shop.at(at, ev.CustomerCreated(at, anna(subscribed=subscribed)))


def look(shop: Rendering, at: datetime, product_id: str, *, who: str = "anna") -> None:
    """A storefront view by a signed-in customer: her id and address, nothing on consent."""
    viewer = ev.Customer(customer_id=who, email=f"{who}@example.se")
    url = f"https://{SHOP}/products/{product_id}"
    shop.at(at, ev.ProductViewed(at, product_id, customer=viewer, url=url))


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def enrollments(shop: Rendering) -> list[tuple[str, str | None]]:
    with shop.runtime.sessions() as session:
        rows = session.scalars(
            select(Enrollment).where(Enrollment.flow == FLOW).order_by(Enrollment.id)
        )
        return [(row.state, row.reason) for row in rows]


def views(shop: Rendering) -> dict[str, int]:
    with shop.runtime.sessions() as session:
        return {row.product_id: row.views for row in session.scalars(select(ProductView))}


def main_product(text: str) -> str:
    """The product the email is about: the one before the recommendations."""
    shown = text.split("You may also like")[0]
    found = [p for p in ("hat", "scarf", "mug", "lamp") if f"Product {p}" in shown]
    assert len(found) == 1, found
    return found[0]


def test_a_customer_who_looked_and_left_gets_one_reminder_of_it_four_hours_on(
    shop: Rendering,
) -> None:
    known(shop)
    look(shop, T0, "hat")
    look(shop, hours(0.2), "hat")
    shop.run(hours(30))
    (email,) = emails_of(shop, FLOW)
    assert email.to == "anna@example.se"
    assert email.date == hours(4)
    assert email.subject == "Something caught your eye"
    assert main_product(email.text) == "hat"
    assert "You had a look at this at" in email.text
    assert "Product scarf" in email.text  # bought together with the hat: offered
    assert "unsubscribe" in email.text.lower()
    assert views(shop) == {"hat": 2}


def test_the_email_shows_the_product_she_looked_at_most(shop: Rendering) -> None:
    known(shop)
    look(shop, T0, "hat")
    for n in (0.5, 1, 1.5):
        look(shop, hours(n), "lamp")
    look(shop, hours(2), "mug")
    shop.run(hours(30))
    (email,) = emails_of(shop, FLOW)
    assert main_product(email.text) == "lamp"
    assert views(shop) == {"hat": 1, "lamp": 3, "mug": 1}


def test_views_then_a_checkout_bring_the_cart_reminder_only(shop: Rendering) -> None:
    known(shop)
    look(shop, T0, "hat")
    shop.at(hours(1), checkout("tok1", hours(1), anna()))
    shop.run(hours(30))
    assert emails_of(shop, FLOW) == []
    assert len(emails_of(shop, "cart_recovery")) == 2  # at 1 h and at 24 h after the cart
    assert enrollments(shop) == [("exited", "checkout_started")]


def test_a_cart_that_came_before_the_views_has_its_reminder_and_no_browse_email(
    shop: Rendering,
) -> None:
    known(shop)
    shop.at(T0, checkout("tok1", T0, anna()))
    look(shop, hours(0.5), "hat")
    shop.run(hours(30))
    assert emails_of(shop, FLOW) == []
    assert len(emails_of(shop, "cart_recovery")) == 2
    assert not_started(shop, "anna@example.se", FLOW) == [
        "not started: it was already over (cart_reminder) (on ProductViewed)"
    ]


def test_views_then_a_storefront_cart_end_it(shop: Rendering) -> None:
    known(shop)
    look(shop, T0, "hat")
    viewer = ev.Customer(customer_id="anna", email="anna@example.se")
    line = ev.LineItem("Product hat", 1, sek("199.00"), product_id="hat")
    cart = ev.CartUpdated(hours(2), "cart-abc12345", (line,), customer=viewer)
    shop.at(hours(2), cart)
    shop.run(hours(30))
    assert emails_of(shop, FLOW) == []
    assert enrollments(shop) == [("exited", "added_to_cart")]


def test_views_then_an_order_send_nothing(shop: Rendering) -> None:
    known(shop)
    look(shop, T0, "hat")
    buy(shop, "o1", anna(), hours(2), "mug")
    shop.run(hours(30))
    assert emails_of(shop, FLOW) == []
    assert enrollments(shop) == [("exited", "ordered")]


def test_browsing_twice_in_a_week_brings_one_reminder_and_again_the_week_after(
    shop: Rendering,
) -> None:
    known(shop)
    look(shop, T0, "hat")
    look(shop, T0 + timedelta(days=3), "lamp")
    shop.run(T0 + timedelta(days=6))
    assert [main_product(e.text) for e in emails_of(shop, FLOW)] == ["hat"]
    assert not_started(shop, "anna@example.se", FLOW) == [
        (
            "not started: she had started it lately, about another time (it starts again only "
            "after 7 days) (on ProductViewed)"
        )
    ]
    look(shop, T0 + timedelta(days=8), "lamp")
    shop.run(T0 + timedelta(days=10))
    assert [main_product(e.text) for e in emails_of(shop, FLOW)] == ["hat", "lamp"]


def test_a_product_she_bought_is_never_the_reminder(shop: Rendering) -> None:
    known(shop)
    buy(shop, "o1", anna(), T0 - timedelta(days=5), "hat")
    look(shop, T0, "hat")
    shop.run(hours(30))
    assert emails_of(shop, FLOW) == []
    assert not_started(shop, "anna@example.se", FLOW) == [
        (
            "not started: the flow's condition did not hold (she had not looked at a product "
            "lately as often as it asks, or had bought it already) (on ProductViewed)"
        )
    ]


def test_an_order_told_late_of_the_product_she_looked_at_ends_it_at_send_time(
    shop: Rendering,
) -> None:
    known(shop)
    look(shop, T0, "hat")
    # placed before the view, its webhook came after: no order since the view, but she has it
    buy(shop, "o1", anna(), T0 - timedelta(hours=1), "hat")
    shop.run(hours(30))
    assert emails_of(shop, FLOW) == []
    assert enrollments(shop) == [("exited", "product_bought")]


def test_of_two_products_she_gets_the_one_she_did_not_buy(shop: Rendering) -> None:
    known(shop)
    look(shop, T0, "hat")
    look(shop, hours(0.1), "hat")
    look(shop, hours(0.2), "lamp")
    buy(shop, "o1", anna(), T0 - timedelta(hours=1), "hat")  # told late, placed before
    shop.run(hours(30))
    (email,) = emails_of(shop, FLOW)
    assert main_product(email.text) == "lamp"
    assert "Product hat" not in email.text  # neither shown nor offered


def test_an_unsubscribed_customer_gets_nothing_and_the_reason_is_kept(shop: Rendering) -> None:
    known(shop, subscribed=False)
    look(shop, T0, "hat")
    shop.run(hours(30))
    assert emails_of(shop, FLOW) == []
    (message,) = [m for m in shop.messages() if m.flow == FLOW]
    assert (message.state, message.reason) == (MessageState.SKIPPED, "no_consent")


def test_a_storefront_view_never_subscribes_anybody(shop: Rendering) -> None:
    # a view naming an address we never heard of, claiming consent: the contact is
    # made (she may be identified later), her consent is not
    claimed = ev.Customer(
        customer_id=None,
        email="bea@example.se",
        consent=ev.Consent(ev.ConsentState.SUBSCRIBED, "storefront", T0),
    )
    shop.at(T0, ev.ProductViewed(T0, "hat", customer=claimed))
    shop.run(hours(30))
    with shop.runtime.sessions() as session:
        bea = session.scalars(select(Contact).where(Contact.email == "bea@example.se")).one()
        assert bea.consent_state is None
    assert emails_of(shop, FLOW) == []
    (message,) = [m for m in shop.messages() if m.flow == FLOW]
    assert (message.state, message.reason) == (MessageState.SKIPPED, "no_consent")


def test_replayed_views_add_nothing(shop: Rendering) -> None:
    known(shop)
    for _ in range(3):
        look(shop, T0, "hat")
        look(shop, hours(0.5), "hat")
    shop.run(hours(30))
    assert len(emails_of(shop, FLOW)) == 1
    assert views(shop) == {"hat": 2}
    assert enrollments(shop) == [("completed", None)]


def test_an_anonymous_view_is_only_logged(shop: Rendering) -> None:
    known(shop)
    shop.at(T0, ev.ProductViewed(T0, "hat"))
    shop.run(hours(30))
    assert emails_of(shop, FLOW) == []
    assert views(shop) == {}


def test_a_shop_may_ask_for_more_views_first(shop: Rendering) -> None:
    shop.settings(flows={"welcome": {"enabled": False}, FLOW: {"min_views": 2}})
    known(shop)
    look(shop, T0, "hat")
    look(shop, hours(1), "lamp")
    shop.run(hours(5.5))
    assert emails_of(shop, FLOW) == []  # one look at each: not enough
    look(shop, hours(6), "lamp")
    shop.run(hours(30))
    (email,) = emails_of(shop, FLOW)
    assert email.date == hours(10)  # four hours after the second look
    assert main_product(email.text) == "lamp"


def test_a_shop_may_offer_no_other_products(shop: Rendering) -> None:
    shop.settings(flows={"welcome": {"enabled": False}, FLOW: {"recommendations": 0}})
    known(shop)
    look(shop, T0, "hat")
    shop.run(hours(30))
    (email,) = emails_of(shop, FLOW)
    assert "You may also like" not in email.text
    assert "Product hat" in email.text


def test_a_cart_ranks_above_a_browsed_product() -> None:
    flow = registry.get(FLOW)
    assert flow is not None
    assert flow.priority == PRIORITIES[FLOW] < PRIORITIES["cart_recovery"]
    assert flow.category == "browse"


def test_her_views_are_in_her_export_and_gone_with_her_erasure(
    shop: Rendering, runtime: Runtime
) -> None:
    known(shop)
    look(shop, T0, "hat")
    with runtime.sessions.begin() as session:
        anna_row = session.scalars(select(Contact).where(Contact.email == "anna@example.se")).one()
        exported = privacy.export_contact(session, anna_row)
        assert [(v["product_id"], v["views"]) for v in exported["product_views"]] == [("hat", 1)]
    at = hours(1)
    shop.at(at, ev.CustomerRedactRequested(at, customer_id="anna", email="anna@example.se"))
    assert views(shop) == {}


def test_the_example_scenario_tells_the_story_it_says(runtime: Runtime) -> None:
    """examples/browse_abandonment.json: Anna looked and left, Erik looked and put it in a
    cart, Anna browsed again two days on."""
    scenario = Scenario.load(Path(__file__).parents[2] / "examples" / "browse_abandonment.json")
    result = simulate(scenario, runtime=runtime)
    sent = [
        (row["contact"], row["flow"], row["at"])
        for row in result.timeline
        if row["outcome"] == "sent"
    ]
    assert sent == [
        ("erik@example.se", "cart_recovery", "2026-03-02T11:20:00+00:00"),
        ("anna@example.se", FLOW, "2026-03-02T13:00:00+00:00"),  # 4 h after her first look
        ("erik@example.se", "cart_recovery", "2026-03-03T10:20:00+00:00"),
        ("erik@example.se", "cart_recovery", "2026-03-05T10:20:00+00:00"),
    ]
    with runtime.sessions() as session:
        reasons = session.execute(
            select(NonEnrolment.reason, Contact.email)
            .join(Contact, Contact.id == NonEnrolment.contact_id)
            .where(NonEnrolment.flow == FLOW)
        ).all()
    assert [tuple(r) for r in reasons] == [("too_soon", "anna@example.se")]


def test_a_view_told_after_her_checkout_starts_nothing(shop: Rendering) -> None:
    known(shop)
    shop.at(hours(1), checkout("tok1", hours(1), anna()))
    # the view came before the checkout, but reached us after it (identified late)
    viewer = ev.Customer(customer_id="anna", email="anna@example.se")
    shop.at(hours(1.5), ev.ProductViewed(T0, "hat", customer=viewer))
    shop.run(hours(30))
    assert emails_of(shop, FLOW) == []
    assert not_started(shop, "anna@example.se", FLOW) == [
        "not started: it was already over (checkout_started) (on ProductViewed)"
    ]


def test_a_view_naming_her_customer_id_with_another_address_changes_nothing_of_hers(
    shop: Rendering,
) -> None:
    known(shop)
    shop.at(T0, ev.CustomerCreated(T0, customer("eve@example.se", customer_id="eve")))
    forged = ev.Customer(customer_id="anna", email="eve@example.se", first_name="Eve")
    shop.at(hours(1), ev.ProductViewed(hours(1), "hat", customer=forged))
    with shop.runtime.sessions() as session:
        people = {(c.customer_id, c.email, c.first_name) for c in session.scalars(select(Contact))}
    assert ("anna", "anna@example.se", "Anna") in people
    assert ("eve", "eve@example.se", "Anna") in people  # the helper names everyone Anna
    assert views(shop) == {"hat": 1}  # counted as the customer id's, the one it names first


def test_a_past_buyer_who_never_subscribed_gets_it_only_if_the_shop_chose_soft_opt_in(
    shop: Rendering,
) -> None:
    known(shop, subscribed=False)
    buy(shop, "o1", anna(subscribed=False), T0 - timedelta(days=5), "mug")
    look(shop, T0, "hat")
    shop.run(hours(30))
    assert emails_of(shop, FLOW) == []  # by default: subscribers only
    shop.settings(
        flows={"welcome": {"enabled": False}, FLOW: {"consent": "subscribed_or_customer"}}
    )
    look(shop, T0 + timedelta(days=8), "lamp")
    shop.run(T0 + timedelta(days=9))
    (email,) = emails_of(shop, FLOW)
    assert main_product(email.text) == "lamp"
    (sent,) = [m for m in shop.messages() if m.flow == FLOW and m.state == MessageState.SENT]
    assert sent.legal_basis is not None
    assert sent.legal_basis["basis"] == "soft_opt_in"
