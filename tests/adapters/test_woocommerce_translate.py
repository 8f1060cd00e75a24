"""WooCommerce payloads -> events: one test per fixture in tests/fixtures/woocommerce.

Fixtures are the raw bytes WooCommerce sends (PHP json_encode: compact, ``\\/``,
every non-ASCII character as ``\\uXXXX``); the store is Swedish (SEK).
"""

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.events import (
    Address,
    CheckoutStarted,
    CheckoutUpdated,
    Consent,
    ConsentState,
    Customer,
    CustomerCreated,
    CustomerUpdated,
    Event,
    LineItem,
    Money,
    OrderCancelled,
    OrderFulfilled,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    ProductCreated,
    ProductDeleted,
    ProductUpdated,
)
from adapters.platform import BirthdayRule, ConsentRule, ShopContext, WebhookError
from adapters.woocommerce.translate import IGNORED_TOPICS, TOPIC_HANDLERS
from tests.support import FixtureSet, sek, utc

FIXTURES = FixtureSet("woocommerce")
RECEIVED = datetime(2026, 9, 20, 7, 0, 5, tzinfo=UTC)
SHOP = ShopContext(
    domain="ullboden.se",
    currency="SEK",
    base_url="https://ullboden.se",
    received_at=RECEIVED,
)
SOCKS = LineItem(
    title="Raggsockor",
    quantity=2,
    unit_price=Money(Decimal("133.0357145"), "SEK"),
    product_id="1186",
    sku="UB-RS-01",
    image_url="https://ullboden.se/wp-content/uploads/2026/08/raggsockor.jpg",
)
HAT = LineItem(
    title="Ullmössa - Grå",
    quantity=1,
    unit_price=Money(Decimal("159.36"), "SEK"),
    product_id="1190",
    variant_id="1193",
    variant_title="Färg: Grå",
    sku="UB-UM-GRA",
    image_url="https://ullboden.se/wp-content/uploads/2026/08/ullmossa-gra.jpg",
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


# --- unpaid orders stand in for checkouts --------------------------------------


def test_order_updated__checkout_draft_guest() -> None:
    [event] = translate("order_updated__checkout_draft_guest")
    assert isinstance(event, CheckoutUpdated)
    checkout = event.checkout
    assert checkout.token == "4811"
    assert checkout.email == "sofia.ek@example.se"
    assert checkout.customer == Customer(
        customer_id=None,
        email="sofia.ek@example.se",
        first_name="Sofia",
        last_name="Ek",
        phone="+46705551234",
        address=Address(country_code="SE", city="Uppsala", zip="753 20"),
    )
    # a draft cannot be paid through order-pay: the cart is where it can be resumed
    assert checkout.recovery_url == "https://ullboden.se/cart/"
    assert checkout.total == sek("381.59")
    assert checkout.line_items == (SOCKS,)
    assert (checkout.created_at, checkout.updated_at) == (
        utc(2026, 9, 14, 19, 1, 7),
        utc(2026, 9, 14, 19, 3, 52),
    )
    assert event.occurred_at == utc(2026, 9, 14, 19, 3, 52)


def test_order_updated__checkout_draft_no_email() -> None:
    [event] = translate("order_updated__checkout_draft_no_email")
    assert isinstance(event, CheckoutUpdated)
    assert event.checkout.email is None
    assert event.checkout.customer is None
    assert event.checkout.not_mailable_reason == "no_email"


def test_order_created__pending_guest() -> None:
    [event] = translate("order_created__pending_guest")
    assert isinstance(event, CheckoutStarted)
    checkout = event.checkout
    assert event.occurred_at == utc(2026, 9, 14, 19, 10, 22)
    assert checkout.email == "elias.nyberg@example.com"
    assert checkout.recovery_url == (
        "https://ullboden.se/kassan/order-pay/4812/?pay_for_order=true&key=wc_order_4812Xr4TqP9sLk"
    )
    assert checkout.line_items == (SOCKS, HAT)
    assert checkout.not_mailable_reason is None


def test_order_updated__failed_customer() -> None:
    [event] = translate("order_updated__failed_customer")
    assert isinstance(event, CheckoutUpdated)
    customer = event.checkout.customer
    assert customer is not None
    assert (customer.customer_id, customer.first_name, customer.last_name) == (
        "17",
        "سارا",
        "احمدی",
    )
    assert event.checkout.recovery_url is not None
    assert "/order-pay/4813/" in event.checkout.recovery_url


def test_recovery_url_falls_back_to_the_cart_of_the_shop_domain() -> None:
    body = payload("order_created__pending_guest")
    del body["payment_url"]
    [event] = translate("order_created__pending_guest", ShopContext(domain="ullboden.se"), body)
    assert isinstance(event, CheckoutStarted)
    assert event.checkout.recovery_url == "https://ullboden.se/cart/"


def test_order_without_creation_date_is_a_400() -> None:
    body = payload("order_created__pending_guest")
    body["date_created_gmt"] = None
    with pytest.raises(WebhookError, match=r"order\.date_created_gmt is missing"):
        translate("order_created__pending_guest", body=body)


# --- orders --------------------------------------------------------------------


def test_order_created__processing_paid() -> None:
    placed, paid = translate("order_created__processing_paid")
    assert isinstance(placed, OrderPlaced)
    assert isinstance(paid, OrderPaid)
    order = placed.order
    assert paid.order == order
    assert (placed.occurred_at, paid.occurred_at) == (
        utc(2026, 9, 14, 19, 10, 22),
        utc(2026, 9, 14, 19, 12, 39),
    )
    assert (order.order_id, order.name, order.checkout_token) == ("4814", "#4814", "4814")
    assert order.customer is not None
    assert order.customer.customer_id is None
    assert order.email == "elias.nyberg@example.com"
    assert order.total == order.shop_total == sek("540.95")
    # 133.0357145 arrives as a JSON float and stays exactly that decimal
    assert order.line_items == (SOCKS, HAT)


def test_order_created__on_hold_bank_transfer() -> None:
    [event] = translate("order_created__on_hold_bank_transfer")
    assert isinstance(event, OrderPlaced)
    assert event.order.customer is not None
    assert event.order.customer.customer_id == "17"


def test_order_updated__completed_emoji_name() -> None:
    placed, paid, fulfilled = translate("order_updated__completed_emoji_name")
    assert isinstance(placed, OrderPlaced)
    assert isinstance(paid, OrderPaid)
    assert isinstance(fulfilled, OrderFulfilled)
    assert paid.occurred_at == utc(2026, 9, 10, 8, 15, 2)
    assert fulfilled.occurred_at == utc(2026, 9, 12, 13, 5, 9)
    customer = placed.order.customer
    assert customer is not None
    assert (customer.first_name, customer.last_name) == ("Lina 🌸", "Ødegård")
    assert customer.address == Address(country_code="NO", city="Oslo", zip="0262")
    assert placed.order.discount_codes == ("valkommen10",)


def test_order_updated__cancelled() -> None:
    [event] = translate("order_updated__cancelled")
    assert isinstance(event, OrderCancelled)
    assert event.occurred_at == utc(2026, 9, 14, 16, 5, 0)
    assert event.order.cancelled_at == utc(2026, 9, 14, 16, 5, 0)
    assert event.reason is None


def test_order_updated__refunded() -> None:
    [event] = translate("order_updated__refunded")
    assert isinstance(event, OrderRefunded)
    assert event.refunded == sek("381.59")
    assert event.occurred_at == utc(2026, 9, 16, 9, 21, 44)


def test_order_with_a_status_from_a_plugin_gives_no_events() -> None:
    body = payload("order_updated__cancelled")
    body["status"] = "shipped"
    assert translate("order_updated__cancelled", body=body) == []


def test_order_in_another_currency_has_no_shop_total() -> None:
    body = payload("order_created__on_hold_bank_transfer")
    body["currency"] = "EUR"
    [event] = translate("order_created__on_hold_bank_transfer", body=body)
    assert isinstance(event, OrderPlaced)
    assert event.order.total == Money(Decimal("381.59"), "EUR")
    assert event.order.shop_total is None


def test_order_deleted__trashed() -> None:
    assert FIXTURES.topic("order_deleted__trashed") == "order.deleted"
    assert "order.deleted" in IGNORED_TOPICS


# --- customers -----------------------------------------------------------------


def test_customer_created__persian_name() -> None:
    assert translate("customer_created__persian_name") == [
        CustomerCreated(
            occurred_at=utc(2026, 9, 13, 9, 12, 44),
            customer=Customer(
                customer_id="31",
                email="neda.karimi@example.se",
                first_name="ندا",
                last_name="کریمی",
                phone="+46765554321",
                address=Address(country_code="SE", city="Kista", zip="164 33"),
                created_at=utc(2026, 9, 13, 9, 12, 44),
            ),
        )
    ]


def test_customer_updated__russian_name() -> None:
    [event] = translate("customer_updated__russian_name")
    assert isinstance(event, CustomerUpdated)
    customer = event.customer
    assert (customer.email, customer.first_name, customer.last_name) == (
        "olga.ivanova@example.com",
        "Ольга",
        "Иванова",
    )
    assert customer.consent is None
    assert event.occurred_at == utc(2026, 9, 15, 12, 30, 5)


# --- birthdays from the shop's meta key -------------------------------------------

BIRTHDAY_KEY = dataclasses.replace(SHOP, birthday=BirthdayRule(meta_key="billing_birth_date"))


def test_customer_updated__birthday_meta() -> None:
    [event] = translate("customer_updated__birthday_meta", shop=BIRTHDAY_KEY)
    assert isinstance(event, CustomerUpdated)
    assert event.customer.birthday == date(1979, 11, 3)


def test_without_a_birthday_key_setting_no_birthday_is_read() -> None:
    """WooCommerce has no birthday field: nothing is guessed until the shop names its key."""
    [event] = translate("customer_updated__birthday_meta")
    assert event.customer.birthday is None


@pytest.mark.parametrize(
    ("value", "born"),
    [
        ("03/11/1979", date(1979, 11, 3)),
        (" 1979-11-03 ", date(1979, 11, 3)),
        ("11/31/1979", None),
        ("1979-11-3", None),
        ("2026-09-21", None),  # the day after the delivery came
        ("", None),
        (["1979-11-03"], None),
    ],
    ids=["dd-mm-yyyy", "spaces", "mm-dd-yyyy", "one-digit-day", "future", "empty", "list"],
)
def test_birthday_meta_values(value: Any, born: date | None) -> None:
    body = payload("customer_updated__birthday_meta")
    body["meta_data"][-1]["value"] = value
    [event] = translate("customer_updated__birthday_meta", shop=BIRTHDAY_KEY, body=body)
    assert event.customer.birthday == born
    assert event.customer.email == "olga.ivanova@example.com"


def test_a_guest_orders_birthday_meta_is_hers() -> None:
    body = payload("order_created__pending_guest")
    body["meta_data"].append({"id": 9001, "key": "billing_birth_date", "value": "24/12/1995"})
    [event] = translate("order_created__pending_guest", shop=BIRTHDAY_KEY, body=body)
    assert isinstance(event, CheckoutStarted)
    assert event.checkout.customer is not None
    assert event.checkout.customer.birthday == date(1995, 12, 24)


# --- consent from the shop's meta key --------------------------------------------


def test_order_created__processing_opted_in() -> None:
    """The store's checkout checkbox wrote the default meta key: she subscribed then."""
    placed, _paid = translate("order_created__processing_opted_in")
    assert placed.order.customer is not None
    assert placed.order.customer.consent == Consent(
        ConsentState.SUBSCRIBED,
        "woocommerce:order_meta:_triggerpost_marketing_consent",
        utc(2026, 9, 14, 19, 10, 22),
    )
    # the same payload read by a shop that keys consent on customers only claims nothing
    only_customers = dataclasses.replace(SHOP, consent=ConsentRule(read_from="customer"))
    placed, _paid = translate("order_created__processing_opted_in", shop=only_customers)
    assert placed.order.customer is not None
    assert placed.order.customer.consent is None


def test_customer_updated__opted_out() -> None:
    [event] = translate("customer_updated__opted_out")
    assert event.customer.consent == Consent(
        ConsentState.NOT_SUBSCRIBED,
        "woocommerce:customer_meta:_triggerpost_marketing_consent",
        utc(2026, 9, 20, 8, 0, 0),
    )


@pytest.mark.parametrize(
    ("value", "state"),
    [
        ("1", ConsentState.SUBSCRIBED),
        (True, ConsentState.SUBSCRIBED),
        ("on", ConsentState.SUBSCRIBED),
        ("no", ConsentState.NOT_SUBSCRIBED),
        (0, ConsentState.NOT_SUBSCRIBED),
        ("unsubscribed", ConsentState.UNSUBSCRIBED),
        ("perhaps", None),
    ],
)
def test_a_custom_meta_key_and_its_values(value: Any, state: ConsentState | None) -> None:
    body = payload("customer_updated__russian_name")
    body["meta_data"] = [{"id": 1, "key": "newsletter", "value": value}]
    shop = dataclasses.replace(SHOP, consent=ConsentRule(meta_key="newsletter"))
    [event] = translate("customer_updated__russian_name", shop=shop, body=body)
    assert (event.customer.consent.state if event.customer.consent else None) == state


def test_absent_consent_claims_nothing_unless_the_shop_assumes_it() -> None:
    [event] = translate("customer_updated__russian_name")
    assert event.customer.consent is None
    assumes = dataclasses.replace(SHOP, consent=ConsentRule(when_absent="subscribed"))
    [event] = translate("customer_updated__russian_name", shop=assumes)
    assert event.customer.consent is not None
    assert (event.customer.consent.state, event.customer.consent.assumed) == (
        ConsentState.SUBSCRIBED,
        True,
    )


def test_consent_rule_settings_are_validated() -> None:
    assert ConsentRule.from_settings(None) == ConsentRule()
    assert ConsentRule.from_settings({"meta_key": "optin", "other": 1}).meta_key == "optin"
    with pytest.raises(ValueError, match="when_absent"):
        ConsentRule.from_settings({"when_absent": "maybe"})


# --- products ------------------------------------------------------------------


def test_product_created__simple() -> None:
    [event] = translate("product_created__simple")
    assert isinstance(event, ProductCreated)
    product = event.product
    assert (product.product_id, product.title, product.handle) == (
        "1186",
        "Raggsockor 🧦",
        "raggsockor",
    )
    assert product.url == "https://ullboden.se/produkt/raggsockor/"
    assert product.image_url == "https://ullboden.se/wp-content/uploads/2026/08/raggsockor.jpg"
    assert product.price == sek("166.29")
    assert (product.status, product.available) == ("publish", True)
    assert product.tags == ("ull", "vinter")
    assert product.collections == ("Strumpor", "Ull & lin")
    assert event.occurred_at == utc(2026, 8, 30, 10, 2, 11)


def test_product_deleted__trashed() -> None:
    # moved to the trash: the body is the id alone, dated by its receipt
    assert translate("product_deleted__trashed") == [
        ProductDeleted(occurred_at=RECEIVED, product_id="1186")
    ]
    assert "product.restored" in TOPIC_HANDLERS  # and back from the trash


@pytest.mark.parametrize("body", [{}, {"id": 0}, {"id": None}])
def test_a_delete_without_the_products_id_names_the_field(body: dict[str, Any]) -> None:
    with pytest.raises(WebhookError, match=r"product\.id"):
        translate("product_deleted__trashed", body=body)


def test_product_updated__out_of_stock_variable() -> None:
    [event] = translate("product_updated__out_of_stock_variable")
    assert isinstance(event, ProductUpdated)
    product = event.product
    assert product.title == "Ullmössa «Fjäll»"
    assert (product.available, product.image_url, product.tags) == (False, None, ())
    assert product.price == sek("199.20")
    assert event.occurred_at == utc(2026, 9, 15, 14, 8, 31)
    no_currency = ShopContext(domain="ullboden.se")
    [bare] = translate("product_updated__out_of_stock_variable", shop=no_currency)
    assert isinstance(bare, ProductUpdated)
    assert bare.product.price is None


# --- an order the plugin made from a cart it tracked ---------------------------------

CART_TOKEN = "Z3kq8PmW2xN7cR5tJ9bV4hL6sD1fG0aY"


def test_order_created__pending_cart_token() -> None:
    """The unpaid order is the checkout its cart already was (``cart-<token>``): one
    checkout for the cart before "Place order" and the order after it."""
    [event] = translate("order_created__pending_cart_token")
    assert isinstance(event, CheckoutStarted)
    assert event.checkout.token == f"cart-{CART_TOKEN}"
    assert event.checkout.cart_token == CART_TOKEN
    assert event.checkout.email == "elias.nyberg@example.com"
    # payable: the order-pay link still recovers it best
    assert event.checkout.recovery_url is not None
    assert "/order-pay/4812/" in event.checkout.recovery_url


def test_order_updated__processing_cart_token() -> None:
    """Paying the order completes that same checkout."""
    placed, paid = translate("order_updated__processing_cart_token")
    assert isinstance(placed, OrderPlaced)
    assert isinstance(paid, OrderPaid)
    assert paid.order.order_id == "4812"
    assert paid.order.checkout_token == f"cart-{CART_TOKEN}"
    assert paid.order.cart_token == CART_TOKEN


def test_a_draft_order_of_a_tracked_cart_is_recovered_by_the_plugins_cart_link() -> None:
    body = payload("order_created__pending_cart_token")
    body["status"] = "checkout-draft"
    [event] = translate("order_created__pending_cart_token", body=body)
    assert isinstance(event, CheckoutStarted)
    assert event.checkout.recovery_url == f"https://ullboden.se/?triggerpost_cart={CART_TOKEN}"


@pytest.mark.parametrize("value", ["", "short", "not a token!", 12345678, None, "x" * 65])
def test_an_order_whose_cart_token_is_no_token_stays_its_own_checkout(value: Any) -> None:
    body = payload("order_created__pending_cart_token")
    body["meta_data"][-1]["value"] = value
    [event] = translate("order_created__pending_cart_token", body=body)
    assert isinstance(event, CheckoutStarted)
    assert event.checkout.token == "4812"
    assert event.checkout.cart_token is None


def test_an_order_without_the_plugins_cart_token_is_the_checkout_named_by_its_id() -> None:
    [event] = translate("order_created__pending_guest")
    assert isinstance(event, CheckoutStarted)
    assert event.checkout.token == "4812"
    [_placed, paid] = translate("order_created__processing_paid")[:2]
    assert isinstance(paid, OrderPaid)
    assert paid.order.checkout_token == paid.order.order_id
