"""The common event model: validation and a stable, versioned round trip."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from adapters import events as ev
from tests.support import sek

STOCKHOLM_SUMMER = timezone(timedelta(hours=2))
WHEN = datetime(2026, 9, 14, 19, 12, 40, tzinfo=STOCKHOLM_SUMMER)


CUSTOMER = ev.Customer(
    customer_id="7081234",
    email="åsa@example.se",
    first_name="Åsa",
    last_name="Lindström",
    locale="sv-SE",
    timezone="Europe/Stockholm",
    address=ev.Address(country_code="SE", city="Malmö"),
    birthday=date(1990, 2, 28),
    consent=ev.Consent(
        ev.ConsentState.SUBSCRIBED, "shopify:customers/create", WHEN, "single_opt_in"
    ),
    created_at=WHEN,
    updated_at=WHEN,
    tags=("vip",),
)
LINE = ev.LineItem(
    title="Ullsockor",
    quantity=2,
    unit_price=sek("149.50"),
    product_id="632910392",
    variant_id="808950810",
    variant_title="39-42",
    image_url="https://cdn.example/s.jpg",
)
CHECKOUT = ev.Checkout(
    token="b1946ac92492d2347c6235b4d2611184",
    customer=CUSTOMER,
    email=CUSTOMER.email,
    recovery_url="https://shop.example/checkouts/ac/c1/recover?key=k",
    total=sek("299.00"),
    line_items=(LINE,),
    updated_at=WHEN,
)
ORDER = ev.Order(
    order_id="450789469",
    name="#1042",
    customer=None,
    email="guest@example.com",
    total=ev.Money(Decimal("27.99"), "EUR"),
    shop_total=sek("310.00"),
    line_items=(LINE,),
    placed_at=WHEN,
    updated_at=WHEN,
    test=True,
)
PRODUCT = ev.Product(
    product_id="632910392", title="Ullsockor", updated_at=WHEN, price=sek("149.50")
)

ONE_OF_EACH: list[ev.Event] = [
    ev.CustomerCreated(WHEN, CUSTOMER),
    ev.CustomerUpdated(WHEN, CUSTOMER),
    ev.MarketingConsentChanged(
        WHEN, "7081234", "åsa@example.se", ev.Consent(ev.ConsentState.UNSUBSCRIBED, "shopify")
    ),
    ev.CheckoutStarted(WHEN, CHECKOUT),
    ev.CheckoutUpdated(WHEN, CHECKOUT),
    ev.CartUpdated(WHEN, "cart-1", (LINE,), sek("299.00")),
    ev.CartUpdated(WHEN, "cart-2", (LINE,), sek("299.00"), visitor_id="v_0123456789abcdef"),
    ev.OrderPlaced(WHEN, ORDER),
    ev.OrderPaid(WHEN, ORDER),
    ev.OrderCancelled(WHEN, ORDER, reason="customer"),
    ev.OrderRefunded(WHEN, ORDER, refunded=sek("310.00")),
    ev.OrderFulfilled(WHEN, ORDER),
    ev.ShipmentDelivered(WHEN, "450789469", "255858046", email="guest@example.com"),
    ev.ProductCreated(WHEN, PRODUCT),
    ev.ProductUpdated(WHEN, PRODUCT),
    ev.ProductDeleted(WHEN, "632910392"),
    ev.ProductViewed(WHEN, "632910392", CUSTOMER, "https://shop.example/products/socks"),
    ev.ProductViewed(WHEN, "632910392", None, None, visitor_id="v_0123456789abcdef"),
    ev.VisitorIdentified(WHEN, "v_0123456789abcdef", CUSTOMER, "checkout"),
    ev.AppUninstalled(WHEN),
    ev.CustomerDataRequested(WHEN, "7081234", "åsa@example.se", None, ("450789469",), "9999"),
    ev.CustomerRedactRequested(WHEN, "7081234", "åsa@example.se", None, ("450789469",)),
    ev.ShopRedactRequested(WHEN),
    ev.BirthdayCame(WHEN, ev.ContactRef("7081234", "åsa@example.se"), date(2026, 2, 28)),
    ev.OrderAnniversaryCame(WHEN, ev.ContactRef(None, "guest@example.com"), 2, WHEN),
    ev.CustomerLapsed(WHEN, ev.ContactRef("7081234", None), WHEN, 3, 180),
    ev.SubscriberWentQuiet(WHEN, ev.ContactRef("7081234", None), 120, WHEN),
]


def test_events_stored_before_visitors_existed_still_read_as_anonymous_of_nobody() -> None:
    """A ProductViewed or CartUpdated written before they had a visitor id reads back
    with none: the version did not change, old forms stay readable."""
    old_view = {
        "type": "ProductViewed",
        "version": 1,
        "data": {"occurred_at": WHEN.isoformat(), "product_id": "1", "customer": None, "url": None},
    }
    old_cart = {
        "type": "CartUpdated",
        "version": 1,
        "data": {"occurred_at": WHEN.isoformat(), "cart_token": "c", "line_items": []},
    }
    view = ev.from_dict(old_view)
    cart = ev.from_dict(old_cart)
    assert isinstance(view, ev.ProductViewed)
    assert view.visitor_id is None
    assert isinstance(cart, ev.CartUpdated)
    assert cart.visitor_id is None


def test_every_event_type_has_a_sample() -> None:
    assert {type(e).__name__ for e in ONE_OF_EACH} == set(ev.event_types())


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda e: type(e).__name__)
def test_round_trip(event: ev.Event) -> None:
    data = ev.to_dict(event)
    assert data["type"] == type(event).__name__
    assert data["version"] == 1
    assert ev.from_dict(data) == event


def test_many_events_serialised_at_once_read_as_each_alone() -> None:
    # an order's story: one order in three events, made JSON-ready once for them all
    order = next(e for e in ONE_OF_EACH if isinstance(e, ev.OrderPaid)).order
    story = [ev.OrderPlaced(WHEN, order), ev.OrderPaid(WHEN, order), ev.OrderFulfilled(WHEN, order)]
    events = ONE_OF_EACH + story
    together = ev.to_dicts(events)
    assert together == [ev.to_dict(e) for e in events]
    assert [ev.from_dict(d) for d in together] == events


def test_serialised_form_is_plain_and_utc() -> None:
    data = ev.to_dict(ev.CheckoutUpdated(WHEN, CHECKOUT))["data"]
    assert data["occurred_at"] == "2026-09-14T17:12:40+00:00"
    assert data["checkout"]["total"] == {"amount": "299.00", "currency": "SEK"}
    assert data["checkout"]["line_items"][0]["unit_price"]["amount"] == "149.50"
    assert data["checkout"]["customer"]["birthday"] == "1990-02-28"
    assert data["checkout"]["customer"]["consent"]["state"] == "subscribed"


def test_times_are_normalised_to_utc() -> None:
    event = ev.OrderPlaced(WHEN, ORDER)
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.order.placed_at == datetime(2026, 9, 14, 17, 12, 40, tzinfo=UTC)


def test_naive_times_are_refused() -> None:
    naive = datetime(2026, 9, 14, 19, 12, 40)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ev.EventError, match="naive"):
        ev.AppUninstalled(naive)
    with pytest.raises(ev.EventError, match="naive"):
        ev.Product(product_id="1", title="x", updated_at=naive)


def test_money_is_exact() -> None:
    with pytest.raises(ev.EventError, match="Decimal"):
        ev.Money(0.1, "SEK")  # type: ignore[arg-type]
    with pytest.raises(ev.EventError, match="ISO 4217"):
        ev.Money(Decimal("1"), "kronor")
    with pytest.raises(ev.EventError, match="finite"):
        ev.Money(Decimal("NaN"), "SEK")
    assert ev.Money(Decimal("133.0357145"), "eur") == ev.Money(Decimal("133.0357145"), "EUR")


def test_unknown_type_and_future_version_are_errors() -> None:
    data = ev.to_dict(ev.AppUninstalled(WHEN))
    with pytest.raises(ev.EventError, match="unknown event type"):
        ev.from_dict({**data, "type": "CartExploded"})
    with pytest.raises(ev.EventError, match="version 2"):
        ev.from_dict({**data, "version": 2})
    with pytest.raises(ev.EventError, match="missing"):
        ev.from_dict({"data": {}})


def test_events_are_immutable() -> None:
    event = ev.AppUninstalled(WHEN)
    with pytest.raises(AttributeError):
        event.occurred_at = WHEN  # type: ignore[misc]


def test_a_fact_names_its_contact_and_refuses_naive_times() -> None:
    with pytest.raises(ev.EventError, match="customer id or an email"):
        ev.ContactRef(None, None)
    with pytest.raises(ev.EventError, match="naive"):
        ev.CustomerLapsed(WHEN, ev.ContactRef("1", None), datetime(2025, 1, 1), 2, 180)  # noqa: DTZ001
    assert all(issubclass(fact, ev.Event) for fact in ev.FACTS)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("anna@example.se", "anna@example.se"),
        ("  Anna.Lind@Example.SE\n", "anna.lind@example.se"),
        ("\u00a0anna@example.se\u3000", "anna@example.se"),  # unicode spaces too
        ("ÅSA@EXÄMPLE.SE", "åsa@exämple.se"),  # lower case beyond ASCII
        ("Straße@Bücher.example", "straße@bücher.example"),  # lower(), not casefold(): ß stays
        ("anna@xn--exmple-cua.se", "anna@xn--exmple-cua.se"),  # no IDNA either way
        ("not an address", "not an address"),  # refusing it is the caller's business
    ],
)
def test_an_address_is_stored_and_looked_up_trimmed_and_in_lower_case(
    given: str, stored: str
) -> None:
    assert ev.normalise_email(given) == stored
