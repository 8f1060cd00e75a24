"""A flow about a contact or a product, triggered by a date or fanned out to an audience,
is one declaration: no engine, sending or rendering change. Two such flows live here."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import pytest
from sqlalchemy import Select, and_, func, select, true
from sqlalchemy.orm import Session

from adapters import events as ev
from emails.content import Brand, EmailContent
from emails.delivery import Backend
from emails.outgoing import OutgoingEmail
from emails.render import TEMPLATES, render
from jobs.flows import registry
from jobs.flows.model import (
    Audience,
    AudienceQuery,
    Days,
    Flow,
    Hours,
    MessageKind,
    Option,
    Send,
    SubjectKind,
    SubjectView,
    Trigger,
    Wait,
    WaitUnit,
    common,
)
from jobs.runtime import Runtime
from jobs.sending import content, links
from jobs.sending.courier import EmailCourier
from jobs.sending.pipeline import Sender
from jobs.simulator import Scenario, SimulatedCourier, Simulator
from jobs.store.models import Enrollment, MessageState, Order, Product, Shop
from tests.jobs.engine_support import SHOP, T0, Harness, customer, extra_flow, sek

HOME = f"https://{SHOP}"

# --- a birthday flow: a contact is the subject, a fact is the trigger ---------------------


def _birthday_subject(event: ev.Event) -> str:
    assert isinstance(event, ev.BirthdayCame)
    return f"birthday:{event.on.isoformat()}"  # one greeting a year


def _birthday_values(event: ev.Event) -> dict[str, str | int]:
    assert isinstance(event, ev.BirthdayCame)
    return {"birthday": event.on.isoformat()}


BIRTHDAY = Flow(
    name="test_birthday",
    title="Birthday greeting (test)",
    category="birthday",
    kind=MessageKind.MARKETING,
    priority=15,
    trigger=Trigger(
        events=(ev.BirthdayCame,),
        subject=_birthday_subject,
        anchor=lambda event: event.occurred_at,
        values=_birthday_values,
    ),
    steps=(Wait(option="delay_hours"), Send("greeting", "birthday")),
    subject_kind=SubjectKind.CONTACT,
    link=lambda view: f"{view.shop_url}/collections/gifts",
    options=(
        Option(
            "delay_hours", Hours(2), label="Greeting after (hours)", help="After the day began."
        ),
        *common(expires_hours=24),
    ),
)

# --- new products for those who bought their kind: one event, an audience ------------------


def _items(dialect: str, column: Any, key: str) -> Any:
    """The elements of a JSON array in a row, as a table joined to it."""
    if dialect == "postgresql":
        return func.json_array_elements(column[key]).table_valued("value").lateral()
    return func.json_each(column, f"$.{key}").table_valued("value")


def _texts(dialect: str, column: Any, key: str) -> Any:
    if dialect == "postgresql":
        return func.json_array_elements_text(column[key]).table_valued("value").lateral()
    return func.json_each(column, f"$.{key}").table_valued("value")


def _field(dialect: str, element: Any, name: str) -> Any:
    if dialect == "postgresql":
        return element.c.value.op("->>")(name)
    return func.json_extract(element.c.value, f"$.{name}")


def bought_same_kind(query: AudienceQuery) -> Select[tuple[int]]:
    """Contacts with a real order of a product in one of the new product's collections."""
    event = query.event
    assert isinstance(event, ev.ProductCreated)
    items = _items(query.dialect, Order.data, "line_items")
    kinds = _texts(query.dialect, Product.data, "collections")
    return (
        select(Order.contact_id)
        .select_from(Order)
        .join(items, true())
        .join(
            Product,
            and_(
                Product.shop_id == Order.shop_id,
                Product.product_id == _field(query.dialect, items, "product_id"),
            ),
        )
        .join(kinds, true())
        .where(
            Order.shop_id == query.shop_id,
            Order.contact_id.is_not(None),
            Order.test.is_(False),
            Product.product_id != event.product.product_id,
            kinds.c.value.in_(event.product.collections),
        )
    )


def _product_subject(event: ev.Event) -> str:
    assert isinstance(event, ev.ProductCreated)
    return event.product.product_id


NEW_IN_KIND = Flow(
    name="test_new_in_kind",
    title="New in what you bought (test)",
    category="new_products",
    kind=MessageKind.MARKETING,
    priority=10,
    trigger=Trigger(
        events=(ev.ProductCreated,),
        subject=_product_subject,
        anchor=lambda event: event.occurred_at,
        audience=Audience(bought_same_kind, batch=2),  # small batches: continuation is tested
    ),
    steps=(Wait(option="delay_days", unit=WaitUnit.DAYS), Send("announcement", "new_product")),
    subject_kind=SubjectKind.PRODUCT,
    options=(
        Option("delay_days", Days(1), label="Announce after (days)", help="After it was added."),
        *common(expires_hours=24),
    ),
)

# --- a shop whose emails are really composed ---------------------------------------------


class Rendering(Harness):
    """The harness with the real courier's composing: the outbox holds real emails."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        courier = EmailCourier(runtime, cast(Backend, None))  # composing needs no backend
        self.sender = Sender(
            runtime,
            SimulatedCourier(self.outbox, courier.compose),
            discounts=self.discounts,
            hand_off=lambda work: None,
        )
        self.sim = Simulator(self.sender, self.shop_id, T0)

    def emails(self) -> list[OutgoingEmail]:
        return [cast(OutgoingEmail, c.payload) for c in self.outbox.sent]

    def targets(self, email: OutgoingEmail) -> list[str]:
        """Where the email's tracked links lead, without our UTM parameters."""
        tokens = re.findall(rf"/t/c/{self.shop_id}/([^\s\"<]+)", email.text)
        urls = [links.read_click(self.runtime.settings, self.shop_id, t).url for t in tokens]
        return [url.split("?")[0] for url in urls]


@pytest.fixture
def shop(runtime: Runtime) -> Rendering:
    return Rendering(runtime)


def created(email: str, customer_id: str, *, subscribed: bool = True) -> dict[str, Any]:
    who = customer(email, customer_id=customer_id, subscribed=subscribed)
    return ev.to_dict(ev.CustomerCreated(occurred_at=T0, customer=who))


def scenario(until: datetime, *timed: tuple[datetime, dict[str, Any]]) -> Scenario:
    return Scenario.from_dict(
        {
            "until": until.isoformat(),
            "events": [{"at": at.isoformat(), "event": event} for at, event in timed],
        }
    )


def test_a_birthday_fact_sends_a_greeting_to_that_contact_once(shop: Rendering) -> None:
    birthday = T0 + timedelta(days=3)
    fact = {
        "type": "BirthdayCame",
        "version": 1,
        "data": {
            "occurred_at": birthday.isoformat(),
            "contact": {"customer_id": "c1", "email": None},
            "on": "2026-03-05",
        },
    }
    stranger = {**fact, "data": {**fact["data"], "contact": {"customer_id": "x9", "email": None}}}
    # only this test's greeting here (the built-in birthday flow has its own tests)
    shop.settings(flows={"welcome": {"enabled": False}, "birthday": {"enabled": False}})
    with extra_flow(BIRTHDAY):
        shop.sim.play(
            scenario(
                birthday + timedelta(days=2),
                (T0, created("anna@example.se", "c1")),
                (T0, created("bo@example.se", "c2")),
                (birthday, fact),
                (birthday + timedelta(hours=1), fact),  # the scan ran twice
                (birthday, stranger),  # nobody we hold: no one enrolls
            )
        )
    (email,) = shop.emails()
    assert email.to == "anna@example.se"
    assert email.subject == "Happy birthday from engine-test.myshopify.com!"
    assert email.date == birthday + timedelta(hours=2)
    assert shop.targets(email) == [f"{HOME}/collections/gifts"]  # the flow's own link
    assert "Happy birthday!" in email.text
    (message,) = shop.messages()
    assert (message.flow, message.step, message.state) == ("test_birthday", "greeting", "sent")
    with shop.runtime.sessions() as session:
        enrollment = session.get_one(Enrollment, message.enrollment_id)
        assert enrollment.subject == "birthday:2026-03-05"
        assert enrollment.context["values"] == {"birthday": "2026-03-05"}


def _product(product_id: str, title: str, collections: tuple[str, ...]) -> ev.Product:
    return ev.Product(
        product_id=product_id,
        title=title,
        updated_at=T0,
        url=f"{HOME}/products/{product_id}",
        image_url=f"https://cdn.example/{product_id}.jpg",
        price=sek("349.00"),
        status="active",
        collections=collections,
    )


def _bought(order_id: str, who: ev.Customer, product_id: str, *, test: bool = False) -> ev.Event:
    line = ev.LineItem("Something", 1, sek("299.00"), product_id=product_id)
    return ev.OrderPlaced(
        occurred_at=T0,
        order=ev.Order(
            order_id=order_id,
            name=f"#{order_id}",
            customer=who,
            email=who.email,
            total=sek("299.00"),
            line_items=(line,),
            placed_at=T0,
            updated_at=T0,
            test=test,
        ),
    )


def test_a_new_product_goes_to_everyone_who_bought_its_kind_in_batches_and_only_once(
    shop: Rendering,
) -> None:
    people = {
        name: customer(f"{name}@example.se", customer_id=name)
        for name in ("anna", "bo", "cy", "dag", "eva")
    }
    launch = T0 + timedelta(hours=5)
    new_hat = ev.ProductCreated(launch, _product("p-new", "Ny mössa", ("hats", "wool")))
    timed: list[tuple[datetime, dict[str, Any]]] = [
        (T0, ev.to_dict(ev.ProductCreated(T0, _product("p-hat", "Mössa", ("hats",))))),
        (T0, ev.to_dict(ev.ProductCreated(T0, _product("p-scarf", "Halsduk", ("wool",))))),
        (T0, ev.to_dict(ev.ProductCreated(T0, _product("p-sock", "Sockor", ("socks",))))),
        (T0, ev.to_dict(_bought("1", people["anna"], "p-hat"))),
        (T0, ev.to_dict(_bought("2", people["bo"], "p-scarf"))),
        (T0, ev.to_dict(_bought("3", people["cy"], "p-hat"))),
        (T0, ev.to_dict(_bought("4", people["cy"], "p-scarf"))),  # twice in the kind: once
        (T0, ev.to_dict(_bought("5", people["dag"], "p-sock"))),  # another kind
        (T0, ev.to_dict(_bought("6", people["eva"], "p-hat", test=True))),  # a test order
        (launch, ev.to_dict(new_hat)),
        (launch + timedelta(hours=1), ev.to_dict(new_hat)),  # replayed
    ]
    with extra_flow(NEW_IN_KIND):
        shop.sim.play(scenario(launch + timedelta(days=3), *timed))
    emails = shop.emails()
    assert sorted(e.to for e in emails) == [
        "anna@example.se",
        "bo@example.se",
        "cy@example.se",
    ]
    for email in emails:
        assert email.subject == "New at engine-test.myshopify.com"
        assert email.date == launch + timedelta(days=1)  # Wait in days
        assert "Ny mössa" in email.text
        assert set(shop.targets(email)) == {f"{HOME}/products/p-new"}
    with shop.runtime.sessions() as session:
        enrollments = session.scalars(
            select(Enrollment).where(Enrollment.flow == "test_new_in_kind")
        ).all()
    # one per contact, and per product the fan-out that carried its batches, completed
    fan_outs = {e.key for e in enrollments if e.contact_id is None}
    assert fan_outs == {f"audience:{p}" for p in ("p-hat", "p-scarf", "p-sock", "p-new")}
    assert len(enrollments) == len(fan_outs) + 3
    assert {e.state for e in enrollments} == {"completed"}
    # (the built-in new product flow fans these products out too: only this flow's count)
    outcomes = [row["outcome"] for row in shop.log() if row["flow"] == "test_new_in_kind"]
    assert outcomes.count("fan_out") == 4  # the replay claimed nothing
    assert outcomes.count("fanned_out") == 4


def test_an_audience_flow_switched_off_enrolls_nobody(shop: Rendering) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    shop.settings(flows={"test_new_in_kind": {"enabled": False}})
    with extra_flow(NEW_IN_KIND):
        shop.at(T0, ev.ProductCreated(T0, _product("p-hat", "Mössa", ("hats",))))
        shop.at(T0, _bought("1", anna, "p-hat"))
        shop.at(T0, ev.ProductCreated(T0, _product("p-new", "Ny mössa", ("hats",))))
        shop.run(T0 + timedelta(days=3))
    assert shop.messages() == []


# --- the pieces, one by one ------------------------------------------------------------


def test_a_wait_counts_hours_or_days_and_the_shop_may_change_either() -> None:
    assert Wait(option="delay").length({"delay": 3}) == timedelta(hours=3)
    assert Wait(option="delay", unit=WaitUnit.DAYS).length({"delay": 3}) == timedelta(days=3)
    assert Wait(option="delay", unit=WaitUnit.DAYS).length({"delay": 0.5}) == timedelta(hours=12)
    assert Wait(duration=timedelta(days=2)).length({}) == timedelta(days=2)
    assert Wait().length({}) == timedelta(0)


def test_a_shop_setting_in_days_moves_the_email(shop: Rendering) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    shop.settings(flows={"test_new_in_kind": {"delay_days": 3}})
    with extra_flow(NEW_IN_KIND):
        shop.at(T0, ev.ProductCreated(T0, _product("p-hat", "Mössa", ("hats",))))
        shop.at(T0, _bought("1", anna, "p-hat"))
        shop.at(T0, ev.ProductCreated(T0, _product("p-new", "Ny mössa", ("hats",))))
    (message,) = shop.messages()
    assert message.due_at == T0 + timedelta(days=3)
    assert message.state == MessageState.PLANNED


def test_built_in_flows_come_from_the_registry_and_cannot_be_unregistered() -> None:
    assert "cart_recovery" in registry.built_in()
    with pytest.raises(ValueError, match="built in"):
        registry.unregister("cart_recovery")
    registry.register(BIRTHDAY)
    registry.unregister("test_birthday")
    assert registry.get("test_birthday") is None
    assert "test_birthday" not in registry.built_in()


def _view(
    session: Session, shop_id: int, flow: Flow | None, subject: str, **context: Any
) -> SubjectView:
    shop = session.get_one(Shop, shop_id)
    return content.resolve(session, shop, flow, Enrollment(subject=subject, context=context))


def _flow(kind: SubjectKind, **extra: Any) -> Flow:
    return Flow(
        name=f"test_{kind}",
        title=str(kind),
        category="test",
        kind=MessageKind.MARKETING,
        priority=1,
        trigger=Trigger(events=(), subject=lambda e: None, anchor=lambda e: e.occurred_at),
        steps=(),
        subject_kind=kind,
        **extra,
    )


def test_every_subject_kind_has_a_resolver() -> None:
    assert set(content.RESOLVERS) == set(SubjectKind)


def test_each_kind_finds_its_products_link_and_values(shop: Rendering, runtime: Runtime) -> None:
    anna = customer("anna@example.se", customer_id="anna")
    shop.at(T0, ev.ProductCreated(T0, _product("p-hat", "Mössa", ("hats",))))
    shop.at(T0, _bought("1042", anna, "p-hat"))
    checkout = ev.CheckoutUpdated(
        occurred_at=T0,
        checkout=ev.Checkout(
            token="tok",
            customer=anna,
            email=anna.email,
            recovery_url=f"{HOME}/checkouts/tok/recover",
            total=sek("349.00"),
            line_items=(ev.LineItem("Mössa", 2, sek("349.00"), product_id="p-hat"),),
            updated_at=T0,
        ),
    )
    shop.at(T0, checkout)
    with runtime.sessions() as session:
        cart = _view(session, shop.shop_id, _flow(SubjectKind.CHECKOUT), "tok")
        assert cart.link == f"{HOME}/checkouts/tok/recover"
        (line,) = cart.products
        assert (line.title, line.quantity, line.price) == ("Mössa", 2, sek("349.00"))
        assert line.image_url == "https://cdn.example/p-hat.jpg"  # from the catalogue

        order = _view(session, shop.shop_id, _flow(SubjectKind.ORDER), "1042")
        assert order.values["order_name"] == "#1042"
        assert order.values["order_total"] == ev.Money(Decimal("299.00"), "SEK")
        assert [p.product_id for p in order.products] == ["p-hat"]

        person = _view(
            session, shop.shop_id, _flow(SubjectKind.CONTACT), "anna", values={"years": 2}
        )
        assert (person.products, person.link, person.values) == ((), HOME, {"years": 2})

        product = _view(session, shop.shop_id, _flow(SubjectKind.PRODUCT), "p-hat")
        assert product.link == f"{HOME}/products/p-hat"
        (hat,) = product.products
        assert hat.price == ev.Money(Decimal("349.00"), "SEK")
        assert isinstance(hat.price.amount, Decimal)

        gone = _view(session, shop.shop_id, _flow(SubjectKind.PRODUCT), "p-gone")
        assert (gone.products, gone.link) == ((), None)  # the courier then links home

        def review_page(view: SubjectView) -> str | None:
            return f"{view.products[0].url}#reviews" if view.products else None

        reviewed = _view(session, shop.shop_id, _flow(SubjectKind.ORDER, link=review_page), "1042")
        assert reviewed.link == f"{HOME}/products/p-hat#reviews"


def test_any_value_reaches_the_copy_escaped_and_written_for_the_language() -> None:
    email = EmailContent(
        template="new_product",
        kind=MessageKind.MARKETING,
        brand=Brand(shop_name="Butik", storefront_url="https://butik.example", sender_name="B"),
        locale="sv",
        values={
            "product_title": "Ullmössa <b>röd</b>",
            "price": ev.Money(Decimal("349.00"), "SEK"),
            "since": date(2026, 3, 5),
        },
        copy_overrides={"sv": {"heading": "Nyhet: {{ product_title }}, {{ price }} ({{ since }})"}},
    )
    rendered = render(email)
    assert "Nyhet: Ullmössa &lt;b&gt;röd&lt;/b&gt;, 349,00\xa0kr (5 mars 2026)" in rendered.html
    assert "<b>röd</b>" not in rendered.html
    assert "Nyhet: Ullmössa <b>röd</b>, 349,00\xa0kr (5 mars 2026)" in rendered.text


def test_a_new_templates_file_is_a_template_without_a_list_to_edit() -> None:
    assert {"birthday", "new_product", "cart_recovery_1"} <= set(TEMPLATES)
    assert not {"layout", "partials"} & set(TEMPLATES)


def test_the_fan_out_row_does_not_count_in_a_flows_lift(shop: Rendering, runtime: Runtime) -> None:
    from jobs.reports import attribution

    anna = customer("anna@example.se", customer_id="anna")
    with extra_flow(NEW_IN_KIND):
        shop.at(T0, ev.ProductCreated(T0, _product("p-hat", "Mössa", ("hats",))))
        shop.at(T0, _bought("1", anna, "p-hat"))
        shop.at(T0, ev.ProductCreated(T0, _product("p-new", "Ny mössa", ("hats",))))
        with runtime.sessions() as session:
            shop_row = session.get_one(Shop, shop.shop_id)
            lift = attribution.lift(session, shop_row, "test_new_in_kind", T0 - timedelta(days=1))
    assert (lift.treated, lift.holdout) == (1, 0)
