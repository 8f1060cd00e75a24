"""Shopify payloads -> events: one test per fixture in tests/fixtures/shopify.

Fixtures are the raw bytes Shopify sends (compact JSON, ``\\/``, ``\\u003c``,
raw UTF-8); the shop is a Swedish store (SEK, Europe/Stockholm offsets).
"""

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.events import (
    Address,
    AppUninstalled,
    Checkout,
    CheckoutStarted,
    CheckoutUpdated,
    Consent,
    ConsentState,
    CustomerCreated,
    CustomerDataRequested,
    CustomerRedactRequested,
    CustomerUpdated,
    Event,
    LineItem,
    MarketingConsentChanged,
    Money,
    OrderCancelled,
    OrderFulfilled,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    ProductCreated,
    ProductDeleted,
    ProductUpdated,
    ShipmentDelivered,
    ShopRedactRequested,
)
from adapters.platform import BirthdayRule, ShopContext, WebhookError
from adapters.shopify.translate import TOPIC_HANDLERS
from tests.support import FixtureSet, sek, utc

FIXTURES = FixtureSet("shopify")
RECEIVED = datetime(2026, 9, 20, 7, 0, 5, tzinfo=UTC)
SHOP = ShopContext(
    domain="nordljus-test.myshopify.com",
    currency="SEK",
    base_url="https://nordljus.se",
    received_at=RECEIVED,
)


def translate(
    name: str, shop: ShopContext = SHOP, body: dict[str, Any] | None = None
) -> list[Event]:
    return FIXTURES.translate(name, shop, body)


def payload(name: str) -> dict[str, Any]:
    return FIXTURES.payload(name)


# --- every fixture -------------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURES.paths(), ids=lambda p: p.stem)
def test_fixture_events_round_trip(path: Path) -> None:
    FIXTURES.check_round_trip(path.stem, SHOP)


def test_every_fixture_has_its_own_test() -> None:
    assert FIXTURES.untested(Path(__file__)) == []


# --- checkouts -----------------------------------------------------------------


def test_checkouts_create__customer() -> None:
    [event] = translate("checkouts_create__customer")
    assert isinstance(event, CheckoutStarted)
    checkout = event.checkout
    assert event.occurred_at == utc(2026, 9, 14, 17, 2, 11)
    assert checkout.token == "4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a"
    assert checkout.email == "astrid.lindqvist@example.se"
    assert checkout.customer is not None
    assert checkout.customer.customer_id == "8012345678901"
    assert checkout.customer.address == Address(country_code="SE", city="Stockholm", zip="118 46")
    # customer payloads from 2025 on say nothing about consent
    assert checkout.customer.consent is None
    assert checkout.total == sek("548.00")
    assert [(i.title, i.variant_title, i.quantity, i.unit_price) for i in checkout.line_items] == [
        ("Ullmössa Fjäll", "Grå", 1, sek("249.00")),
        ("Yllesockor", "39\N{EN DASH}42", 2, sek("149.50")),
    ]
    assert checkout.not_mailable_reason is None


def test_checkouts_update__guest() -> None:
    cart = "Z2NwLXVzLWNlbnRyYWwxOjAxSzU4MEE5TjJXNlkzS0ZKVFFCN0hSRDRN"
    assert translate("checkouts_update__guest") == [
        CheckoutUpdated(
            occurred_at=utc(2026, 9, 14, 17, 12, 40),
            checkout=Checkout(
                token="a83d0f5e2c9b47d1e6f8a0b2c4d6e8f1",
                customer=None,
                email="jonas.berg@example.com",
                recovery_url=(
                    f"https://nordljus-test.myshopify.com/71234567890/checkouts/ac/{cart}"
                    "/recover?key=0385163be3875d3a2117e982d9cc3517&locale=en-SE"
                ),
                total=sek("249.00"),
                line_items=(
                    LineItem(
                        title="Ullmössa Fjäll",
                        quantity=1,
                        unit_price=sek("249.00"),
                        product_id="8123456789012",
                        variant_id="44012345678901",
                        variant_title="Grå",
                        sku="NL-UM-GRA",
                    ),
                ),
                updated_at=utc(2026, 9, 14, 17, 12, 40),
                created_at=utc(2026, 9, 14, 15, 40, 2),
                cart_token=cart,
                subtotal=sek("249.00"),
                locale="en-SE",
                accepts_marketing=True,
            ),
        )
    ]


def test_checkouts_update__null_email() -> None:
    [event] = translate("checkouts_update__null_email")
    assert isinstance(event, CheckoutUpdated)
    assert event.checkout.email is None
    assert event.checkout.customer is None
    assert event.checkout.not_mailable_reason == "no_email"
    assert event.checkout.locale is None
    assert event.checkout.line_items[0].sku == "NL-YS-3942"


def test_checkouts_update__completed() -> None:
    [event] = translate("checkouts_update__completed")
    assert isinstance(event, CheckoutUpdated)
    assert event.checkout.completed_at == utc(2026, 9, 14, 17, 20, 3)
    assert event.checkout.token == "4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a"


def test_checkouts_update__presentment_currency() -> None:
    [event] = translate("checkouts_update__presentment_currency")
    assert isinstance(event, CheckoutUpdated)
    # checkout amounts are already in the buyer's currency, not the shop's SEK
    assert event.checkout.total == Money(Decimal("21.90"), "EUR")
    assert event.checkout.line_items[0].unit_price == Money(Decimal("21.90"), "EUR")
    assert event.occurred_at == utc(2026, 9, 15, 6, 1, 27)
    assert event.checkout.locale == "fi-FI"


def test_checkout_without_token_is_a_400() -> None:
    body = payload("checkouts_update__guest")
    del body["token"]
    with pytest.raises(WebhookError) as caught:
        translate("checkouts_update__guest", body=body)
    assert caught.value.status == 400
    assert caught.value.message == "checkout.token is missing"


def test_checkout_with_unreadable_price_names_the_line() -> None:
    body = payload("checkouts_create__customer")
    body["line_items"][1]["price"] = "149,50"
    with pytest.raises(WebhookError, match=r"checkout\.line_items\[1\]\.price"):
        translate("checkouts_create__customer", body=body)


def test_checkout_time_without_offset_is_a_400() -> None:
    body = payload("checkouts_update__guest")
    body["updated_at"] = "2026-09-14T19:12:40"
    with pytest.raises(WebhookError, match="has no UTC offset"):
        translate("checkouts_update__guest", body=body)


def test_payload_that_is_not_an_object_is_a_400() -> None:
    with pytest.raises(WebhookError, match="must be a JSON object"):
        TOPIC_HANDLERS["checkouts/update"]([], SHOP)  # type: ignore[arg-type]


# --- orders --------------------------------------------------------------------


def test_orders_create__customer() -> None:
    [event] = translate("orders_create__customer")
    assert isinstance(event, OrderPlaced)
    order = event.order
    assert event.occurred_at == utc(2026, 9, 14, 17, 20, 3)
    assert (order.order_id, order.name, order.email) == (
        "6123456789012",
        "#1042",
        "astrid.lindqvist@example.se",
    )
    assert order.total == sek("542.20")
    assert order.shop_total == sek("542.20")
    assert order.checkout_token == "4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a"
    assert order.cart_token == "Z2NwLXVzLWNlbnRyYWwxOjAxSzU3WlEzTThUNFg5Q0RSUEhWMkZHUThX"
    assert (order.financial_status, order.fulfillment_status) == ("paid", None)
    assert order.status_url == (
        "https://nordljus.se/71234567890/orders/1f3e5a7c9b2d4f6e8a0c2e4a6b8d0f1e"
        "/authenticate?key=9c2b7e4d1a"
    )
    assert (order.locale, order.test, order.accepts_marketing) == ("sv-SE", False, True)
    assert order.discount_codes == ("HOST10",)
    assert [i.unit_price for i in order.line_items] == [sek("249.00"), sek("149.50")]


def test_orders_create__presentment_currency() -> None:
    [event] = translate("orders_create__presentment_currency")
    assert isinstance(event, OrderPlaced)
    order = event.order
    assert order.total == Money(Decimal("48.10"), "EUR")
    assert order.shop_total == sek("547.00")
    assert order.line_items[0].unit_price == Money(Decimal("21.90"), "EUR")
    assert order.customer is not None
    assert (order.customer.first_name, order.customer.last_name) == ("Анна", "Смирнова")
    assert order.customer.address == Address(country_code="FI", city="Helsinki", zip="00100")
    assert order.locale == "ru-FI"


def test_orders_create__custom_item() -> None:
    [event] = translate("orders_create__custom_item")
    assert isinstance(event, OrderPlaced)
    order = event.order
    assert order.customer is None
    assert order.email == "bestallning@foretaget.example"
    assert order.checkout_token is None
    assert order.line_items[1] == LineItem(
        title="Presentinslagning", quantity=1, unit_price=sek("35.00")
    )
    assert order.financial_status == "pending"


def test_orders_create__test_order() -> None:
    [event] = translate("orders_create__test_order")
    assert isinstance(event, OrderPlaced)
    assert event.order.test is True
    assert event.order.name == "#1045"


def test_orders_paid__customer() -> None:
    [event] = translate("orders_paid__customer")
    assert isinstance(event, OrderPaid)
    assert event.occurred_at == utc(2026, 9, 14, 17, 20, 6)
    assert event.order.order_id == "6123456789012"


def test_orders_cancelled__customer_request() -> None:
    [event] = translate("orders_cancelled__customer_request")
    assert isinstance(event, OrderCancelled)
    assert event.reason == "customer"
    assert event.occurred_at == utc(2026, 9, 15, 7, 41, 27)
    assert event.order.cancelled_at == utc(2026, 9, 15, 7, 41, 27)
    assert event.order.financial_status == "refunded"


def test_orders_fulfilled__shipped() -> None:
    [event] = translate("orders_fulfilled__shipped")
    assert isinstance(event, OrderFulfilled)
    assert event.order.fulfillment_status == "fulfilled"
    assert event.occurred_at == utc(2026, 9, 16, 9, 2, 41)


def test_orders_updated__note_added() -> None:
    """An edit of a paid order restates it as placed and paid (idempotent downstream)."""
    placed, paid = translate("orders_updated__note_added")
    assert isinstance(placed, OrderPlaced)
    assert isinstance(paid, OrderPaid)
    assert placed.occurred_at == utc(2026, 9, 14, 17, 20, 3)  # when it was placed, not edited
    assert paid.occurred_at == utc(2026, 9, 14, 18, 3, 10)
    assert placed.order.checkout_token == "4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a"


def test_orders_updated__refunded() -> None:
    """Shopify has no refund topic carrying the order: the refund arrives as an update."""
    events = translate("orders_updated__refunded")
    assert [type(e) for e in events] == [OrderPlaced, OrderPaid, OrderRefunded]
    assert events[-1].occurred_at == utc(2026, 9, 21, 8, 15, 44)
    assert events[-1].order.financial_status == "refunded"


def test_fulfillments_update__delivered() -> None:
    [event] = translate("fulfillments_update__delivered")
    assert isinstance(event, ShipmentDelivered)
    assert event.occurred_at == utc(2026, 9, 18, 12, 26, 3)
    assert (event.order_id, event.fulfillment_id, event.email) == (
        "6123456789012",
        "5512345678901",
        "astrid.lindqvist@example.se",
    )
    assert event.tracking_number == "00370712345678901234"
    assert event.tracking_url == "https://tracking.postnord.com/se/?id=00370712345678901234"
    assert [i.title for i in event.line_items] == ["Ullmössa Fjäll", "Yllesockor"]


def test_fulfillments_create__no_shipment_status() -> None:
    assert translate("fulfillments_create__no_shipment_status") == []


# --- customers and consent -----------------------------------------------------


def test_customers_create__api_2024_10_consent() -> None:
    [event] = translate("customers_create__api_2024_10_consent")
    assert isinstance(event, CustomerCreated)
    customer = event.customer
    assert (customer.first_name, customer.last_name) == ("مریم", "رضایی")
    assert customer.consent == Consent(
        state=ConsentState.SUBSCRIBED,
        source="shopify:customers/create",
        updated_at=utc(2024, 10, 21, 10, 3, 44),
        opt_in_level="single_opt_in",
    )
    assert customer.tags == ("VIP", "nyhetsbrev")
    assert customer.address == Address(country_code="SE", city="Spånga", zip="163 74")
    assert event.occurred_at == utc(2024, 10, 21, 10, 3, 44)


def test_customers_update__api_2026_07() -> None:
    [event] = translate("customers_update__api_2026_07")
    assert isinstance(event, CustomerUpdated)
    customer = event.customer
    assert customer.email == "d.sokolov@example.com"
    assert (customer.first_name, customer.last_name) == ("Дмитрий", "Соколов")
    assert customer.consent is None
    assert customer.tags == ()
    assert event.occurred_at == utc(2026, 9, 15, 8, 5, 33)


def test_customers_create__legacy_accepts_marketing() -> None:
    [event] = translate("customers_create__legacy_accepts_marketing")
    assert isinstance(event, CustomerCreated)
    assert event.customer.consent == Consent(
        state=ConsentState.SUBSCRIBED,
        source="shopify:customers/create accepts_marketing",
        updated_at=utc(2021, 3, 4, 8, 15, 27),
        opt_in_level="single_opt_in",
    )
    assert event.customer.address is None


# --- birthdays from a customer metafield ------------------------------------------


def test_customers_create__birth_date_metafield() -> None:
    """Shopify's standard Birth date definition (facts.birth_date, a date) is read
    by default; the customer's other metafields are not birthdays."""
    [event] = translate("customers_create__birth_date_metafield")
    assert isinstance(event, CustomerCreated)
    assert event.customer.birthday == date(1988, 4, 17)


def test_the_birthday_metafield_is_the_shops_setting() -> None:
    body = payload("customers_create__birth_date_metafield")
    body["metafields"][0].update(namespace="custom", key="fodelsedag", value="2001-12-24")
    [standard] = translate("customers_create__birth_date_metafield", body=body)
    assert standard.customer.birthday is None  # no facts.birth_date in this one
    custom = dataclasses.replace(SHOP, birthday=BirthdayRule(metafield="custom.fodelsedag"))
    [event] = translate("customers_create__birth_date_metafield", shop=custom, body=body)
    assert event.customer.birthday == date(2001, 12, 24)


@pytest.mark.parametrize(
    "value",
    ["17 april 1988", "1988-02-30", "1988-13-01", "2027-01-01", "1904-04-17", "", None, 19880417],
    ids=["words", "feb-30", "month-13", "future", "before-1905", "empty", "null", "number"],
)
def test_a_birthday_that_is_no_date_is_left_out_and_the_customer_kept(
    value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    body = payload("customers_create__birth_date_metafield")
    body["metafields"][0]["value"] = value
    [event] = translate("customers_create__birth_date_metafield", body=body)
    assert isinstance(event, CustomerCreated)
    assert event.customer.birthday is None
    assert event.customer.email == "maryam.rezaei@example.se"
    if value not in ("", None):
        assert "left out" in caplog.text


def test_a_customer_without_metafields_says_nothing_about_the_birthday() -> None:
    [event] = translate("customers_update__api_2026_07")
    assert event.customer.birthday is None


def test_unknown_consent_state_is_a_400() -> None:
    body = payload("customers_create__api_2024_10_consent")
    body["email_marketing_consent"]["state"] = "maybe"
    with pytest.raises(WebhookError, match="'maybe' is not a known consent state"):
        translate("customers_create__api_2024_10_consent", body=body)


def test_customers_email_marketing_consent_update__unsubscribed() -> None:
    assert translate("customers_email_marketing_consent_update__unsubscribed") == [
        MarketingConsentChanged(
            occurred_at=utc(2026, 9, 20, 6, 30, 12),
            customer_id="8012345678901",
            email="astrid.lindqvist@example.se",
            consent=Consent(
                state=ConsentState.UNSUBSCRIBED,
                source="shopify:customers_email_marketing_consent/update",
                updated_at=utc(2026, 9, 20, 6, 30, 12),
                opt_in_level="single_opt_in",
            ),
        )
    ]


def test_customers_email_marketing_consent_update__never_asked() -> None:
    [event] = translate("customers_email_marketing_consent_update__never_asked")
    assert isinstance(event, MarketingConsentChanged)
    assert event.consent.state is ConsentState.NOT_SUBSCRIBED
    # no consent_updated_at: the time we received it is the best we know
    assert event.occurred_at == RECEIVED


# --- products ------------------------------------------------------------------


def test_products_create__active() -> None:
    [event] = translate("products_create__active")
    assert isinstance(event, ProductCreated)
    product = event.product
    assert (product.product_id, product.title, product.handle) == (
        "8123456789012",
        "Ullmössa Fjäll",
        "ullmossa-fjall",
    )
    assert product.url == "https://nordljus.se/products/ullmossa-fjall"
    assert product.image_url == (
        "https://cdn.shopify.com/s/files/1/0712/3456/7890/files/ullmossa-gra.jpg?v=1756713602"
    )
    assert product.price == sek("249.00")
    # the grey one is sold out, the green one is not
    assert product.available is True
    assert (product.status, product.tags) == ("active", ("merino", "vinter"))
    assert event.occurred_at == utc(2026, 9, 1, 8, 0, 0)


def test_products_update__draft_sold_out() -> None:
    [event] = translate("products_update__draft_sold_out")
    assert isinstance(event, ProductUpdated)
    product = event.product
    assert product.title == "Julkalender 🎄 2026"
    assert (product.status, product.available, product.image_url) == ("draft", False, None)
    assert event.occurred_at == utc(2026, 9, 15, 9, 45, 19)


def test_products_delete__product() -> None:
    # the body is the id alone: the deletion is dated by its receipt
    assert translate("products_delete__product") == [
        ProductDeleted(occurred_at=RECEIVED, product_id="8123456789055")
    ]


@pytest.mark.parametrize("body", [{}, {"id": None}, {"admin_graphql_api_id": "gid://x/1"}])
def test_a_delete_without_the_products_id_names_the_field(body: dict[str, Any]) -> None:
    with pytest.raises(WebhookError, match=r"product\.id"):
        translate("products_delete__product", body=body)


def test_product_without_known_shop_currency_or_storefront() -> None:
    bare = ShopContext(domain="nordljus-test.myshopify.com")
    [event] = translate("products_create__active", shop=bare)
    assert isinstance(event, ProductCreated)
    assert event.product.price is None
    assert event.product.url == "https://nordljus-test.myshopify.com/products/ullmossa-fjall"


# --- app lifecycle and privacy -------------------------------------------------


def test_app_uninstalled__shop() -> None:
    assert translate("app_uninstalled__shop") == [AppUninstalled(occurred_at=RECEIVED)]
    # without a receipt time, the shop resource's own updated_at is the fallback
    no_receipt = ShopContext(domain="nordljus-test.myshopify.com")
    assert translate("app_uninstalled__shop", shop=no_receipt) == [
        AppUninstalled(occurred_at=utc(2026, 9, 10, 7, 0, 0))
    ]


def test_customers_data_request__customer() -> None:
    assert translate("customers_data_request__customer") == [
        CustomerDataRequested(
            occurred_at=RECEIVED,
            customer_id="8012345678901",
            email="astrid.lindqvist@example.se",
            phone="+46701234567",
            orders_requested=("6123456789012", "6123456789101"),
            request_id="9912345",
        )
    ]


def test_customers_redact__email_only() -> None:
    assert translate("customers_redact__email_only") == [
        CustomerRedactRequested(
            occurred_at=RECEIVED, customer_id=None, email="karin.holm@example.se"
        )
    ]


def test_customers_redact__customer() -> None:
    assert translate("customers_redact__customer") == [
        CustomerRedactRequested(
            occurred_at=RECEIVED,
            customer_id="8012345678901",
            email="astrid.lindqvist@example.se",
            phone="+46701234567",
            orders_to_redact=("6123456789012", "6123456789101"),
        )
    ]


def test_shop_redact__shop() -> None:
    assert translate("shop_redact__shop") == [ShopRedactRequested(occurred_at=RECEIVED)]
    with pytest.raises(WebhookError, match="no received_at"):
        translate("shop_redact__shop", shop=ShopContext(domain="nordljus-test.myshopify.com"))
