"""Storefront events -> common events: one test per fixture in tests/fixtures/storefront,
then what a browser may get wrong or forge.

Fixtures are stored deliveries' bodies as the storefront endpoint writes them
(``{"visitor", "id", "type", "at", "received_at", "data"}``), from a Swedish
WooCommerce store (SEK) at butik.example.se.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters import storefront
from adapters.events import (
    CartUpdated,
    CheckoutUpdated,
    Customer,
    Event,
    LineItem,
    ProductViewed,
    VisitorIdentified,
    from_dict,
    to_dict,
)
from adapters.platform import Platform, ShopContext, WebhookError
from adapters.registry import PLATFORMS
from tests.support import FIXTURES, sek, utc

DIR = FIXTURES / "storefront"
WOO = PLATFORMS["woocommerce"]
SHOPIFY = PLATFORMS["shopify"]
SHOP = ShopContext(domain="butik.example.se", currency="SEK", base_url="https://butik.example.se")
VISITOR = "v1_Kx8hQ2mZpR4tW7yB"
CART = "Z3kq8PmW2xN7cR5tJ9bV4hL6sD1fG0aY"
SOCKS = LineItem(
    title="Raggsockor",
    quantity=2,
    unit_price=sek("133.04"),
    product_id="1186",
    image_url="https://butik.example.se/wp-content/uploads/2026/08/raggsockor.jpg",
    product_url="https://butik.example.se/produkt/raggsockor/",
)
HAT = LineItem(
    title="Ullmössa - Grå",
    quantity=1,
    unit_price=sek("159.36"),
    product_id="1190",
    variant_id="1193",
    product_url="https://butik.example.se/produkt/ullmossa/?attribute_pa_farg=gra",
)


def body(name: str) -> dict[str, Any]:
    data = json.loads((DIR / f"{name}.json").read_bytes())
    assert isinstance(data, dict)
    return data


def translate(
    name: str, platform: Platform = WOO, payload: dict[str, Any] | None = None
) -> list[Event]:
    payload = body(name) if payload is None else payload
    return storefront.translate(platform, f"storefront/{payload['type']}", payload, SHOP)


def refused(payload: dict[str, Any], platform: Platform = WOO) -> str:
    with pytest.raises(WebhookError) as caught:
        storefront.translate(platform, f"storefront/{payload['type']}", payload, SHOP)
    assert caught.value.status == 400
    return caught.value.message


# --- every fixture -------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(DIR.glob("*.json")), ids=lambda p: p.stem)
@pytest.mark.parametrize("platform", [WOO, SHOPIFY], ids=lambda p: p.name)
def test_fixture_events_are_utc_and_survive_serialisation(path: Path, platform: Platform) -> None:
    for event in translate(path.stem, platform):
        assert event.occurred_at.tzinfo is UTC
        assert from_dict(to_dict(event)) == event


def test_every_fixture_has_its_own_test() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    assert [p.stem for p in DIR.glob("*.json") if f'"{p.stem}"' not in source] == []


def test_every_storefront_type_has_a_translator() -> None:
    assert set(storefront.TYPE_HANDLERS) == set(storefront.StorefrontEventType)


def test_product_viewed__anonymous() -> None:
    [event] = translate("product_viewed__anonymous")
    assert event == ProductViewed(
        occurred_at=utc(2026, 12, 7, 10),
        product_id="1186",
        customer=None,
        url="https://butik.example.se/produkt/raggsockor/",
        visitor_id=VISITOR,
    )


def test_product_viewed__logged_in_customer() -> None:
    """The customer is named by email; the browser's customer id beside it is not kept
    (it could tie that address to someone else's record), nor is any consent."""
    [event] = translate("product_viewed__logged_in_customer")
    assert isinstance(event, ProductViewed)
    assert event.occurred_at == datetime(2026, 12, 7, 10, 2, 13, 120000, tzinfo=UTC)
    assert event.customer == Customer(
        customer_id=None,
        email="elias.nyberg@example.com",
        first_name="Elias",
        last_name="Nyberg",
    )
    assert event.visitor_id == VISITOR


def test_product_added_to_cart__with_cart() -> None:
    [event] = translate("product_added_to_cart__with_cart")
    assert event == CartUpdated(
        occurred_at=utc(2026, 12, 7, 10, 3),
        cart_token=CART,
        line_items=(SOCKS,),
        total=sek("266.08"),
        customer=None,
        visitor_id=VISITOR,
    )


def test_a_product_added_with_no_cart_tells_of_nothing() -> None:
    payload = body("product_added_to_cart__with_cart")
    del payload["data"]["cart"]
    assert translate("", payload=payload) == []


def test_cart_viewed__anonymous() -> None:
    """An anonymous cart is a cart on every platform: nobody to remind yet."""
    for platform in (WOO, SHOPIFY):
        [event] = translate("cart_viewed__anonymous", platform)
        assert isinstance(event, CartUpdated)
        assert event.line_items == (SOCKS, HAT)
        assert event.total == sek("425.44")
        assert event.visitor_id == VISITOR


def test_checkout_started__no_email_yet() -> None:
    [event] = translate("checkout_started__no_email_yet")
    assert isinstance(event, CartUpdated)
    assert event.customer is None


def test_checkout_started__email_typed() -> None:
    """On WooCommerce the cart at the checkout with an email is the checkout
    ``cart-<token>``, recovered by the plugin's cart link; the visitor is known now."""
    identified, checkout_event = translate("checkout_started__email_typed")
    assert identified == VisitorIdentified(
        occurred_at=utc(2026, 12, 7, 10, 6, 30),
        visitor_id=VISITOR,
        customer=Customer(
            customer_id=None,
            email="elias.nyberg@example.com",
            first_name="Elias",
            last_name="Nyberg",
        ),
        source="checkout",
    )
    assert isinstance(checkout_event, CheckoutUpdated)
    checkout = checkout_event.checkout
    assert checkout.token == f"cart-{CART}"
    assert checkout.cart_token == CART
    assert checkout.email == "elias.nyberg@example.com"
    assert checkout.recovery_url == f"https://butik.example.se/?triggerpost_cart={CART}"
    # what each line is, not how a browser described it: titles, images and links
    # come from the shop's catalogue when the email is made
    told = tuple(
        dataclasses.replace(item, title="", image_url=None, product_url=None)
        for item in (SOCKS, HAT)
    )
    assert checkout.line_items == told
    assert checkout.total == sek("425.44")
    assert checkout.updated_at == utc(2026, 12, 7, 10, 6, 30)
    assert checkout.customer is not None
    assert checkout.customer.consent is None
    assert checkout.accepts_marketing is None
    assert checkout.not_mailable_reason is None


def test_on_shopify_a_storefront_checkout_stays_a_cart() -> None:
    """Shopify's checkouts come by webhook with their own recovery link: a storefront
    cart there is a cart, even with an email."""
    [event] = translate("checkout_started__email_typed", SHOPIFY)
    assert isinstance(event, CartUpdated)
    assert event.customer is not None
    assert event.customer.email == "elias.nyberg@example.com"
    assert event.visitor_id == VISITOR


def test_identify__newsletter_form() -> None:
    [event] = translate("identify__newsletter_form")
    assert event == VisitorIdentified(
        occurred_at=utc(2026, 12, 7, 10, 8),
        visitor_id=VISITOR,
        customer=Customer(customer_id=None, email="elias.nyberg@example.com", first_name="Elias"),
        source="form",
    )


# --- the browser's clock -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "occurred"),
    [
        ("2026-12-07T09:59:00Z", utc(2026, 12, 7, 9, 59)),  # a moment before: as told
        ("2026-12-07T11:00:00Z", utc(2026, 12, 7, 10, 0, 0)),  # ahead: when received
        ("2026-12-01T08:00:00Z", utc(2026, 12, 6, 10, 0, 0)),  # a week back: a day back
        ("2036-01-01T00:00:00+14:00", utc(2026, 12, 7, 10, 0, 0)),
    ],
)
def test_a_browsers_time_is_clamped_to_the_day_before_receipt(
    sent: str, occurred: datetime
) -> None:
    payload = body("product_viewed__anonymous")
    payload["at"] = sent
    payload["received_at"] = "2026-12-07T10:00:00+00:00"
    [event] = translate("", payload=payload)
    assert event.occurred_at == occurred
    assert utc(2026, 12, 7, 10) - timedelta(hours=24) <= event.occurred_at


# --- malformed: refused with the path, as a webhook's payload is ------------------------


def _set(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(payload)
    node: Any = changed
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return changed


VIEW, SEEN, CART_ = (
    "product_viewed__anonymous",
    "product_viewed__logged_in_customer",
    "cart_viewed__anonymous",
)
CHECKOUT, IDENTIFY = "checkout_started__email_typed", "identify__newsletter_form"


@pytest.mark.parametrize(
    ("fixture", "path", "value", "expected"),
    [
        (VIEW, "visitor", "short", "visitor is not a visitor"),
        (VIEW, "visitor", KeyError, "visitor is missing"),
        (VIEW, "at", "2026-12-07T10:00:00", "at is not usable"),
        (VIEW, "at", "yesterday", "at is not usable"),
        (VIEW, "at", 1765101600, "at is not usable"),
        (VIEW, "received_at", KeyError, "received_at is missing"),
        (VIEW, "data.product", KeyError, "data.product is missing"),
        (VIEW, "data.product", [], "data.product must be"),
        (VIEW, "data.product.id", KeyError, "data.product.id is missing"),
        (VIEW, "data.product.id", "9" * 65, "data.product.id is longer"),
        (VIEW, "data.product.id", {"gid": 1}, "data.product.id is not usable"),
        (SEEN, "data.customer.email", "nobody", "data.customer.email is not an email"),
        (CART_, "data.cart", KeyError, "data.cart is missing"),
        (CART_, "data.cart.token", "a b", "data.cart.token is not a cart id"),
        (CART_, "data.cart.currency", KeyError, "data.cart.currency is missing"),
        (CART_, "data.cart.currency", "kronor", "data.cart.currency 'kronor' is not"),
        (CART_, "data.cart.total", "lots", "data.cart.total is not usable"),
        (CART_, "data.cart.total", "-1.00", "data.cart.total must not be negative"),
        (CART_, "data.cart.items", {}, "data.cart.items must be a JSON array"),
        (CART_, "data.cart.items.1", "hat", "data.cart.items[1] must be a JSON object"),
        (CART_, "data.cart.items.1.quantity", 0, "data.cart.items[1].quantity must be positive"),
        (
            CART_,
            "data.cart.items.1.quantity",
            "1",
            "data.cart.items[1].quantity must be a whole number",
        ),
        (
            CART_,
            "data.cart.items.1.quantity",
            True,
            "data.cart.items[1].quantity must be a whole number",
        ),
        (CART_, "data.cart.items.1.price", KeyError, "data.cart.items[1].price is missing"),
        (CART_, "data.cart.items.1.price", "NaN", "data.cart.items[1].price is not usable"),
        (CART_, "data.cart.items.0.title", "  ", "data.cart.items[0].title is missing"),
        (
            CART_,
            "data.cart.items.0.product_id",
            KeyError,
            "data.cart.items[0].product_id is missing",
        ),
        (CHECKOUT, "data.email", "elias", "data.email is not an email"),
        (IDENTIFY, "data.email", KeyError, "data.email is missing"),
        (IDENTIFY, "data.source", "guess", "data.source 'guess' is not"),
        (IDENTIFY, "data.source", KeyError, "data.source is missing"),
    ],
)
def test_a_malformed_event_is_refused_naming_where(
    fixture: str, path: str, value: Any, expected: str
) -> None:
    message = refused(_set(body(fixture), path, value))
    assert message.startswith(f"storefront.{expected}"), message


def test_a_body_whose_type_is_not_its_topics_is_refused() -> None:
    payload = body("product_viewed__anonymous")
    with pytest.raises(
        WebhookError, match=r"storefront.type is 'product_viewed', not the topic's 'identify'"
    ):
        storefront.translate(WOO, "storefront/identify", payload, SHOP)


def test_a_cart_of_more_than_a_hundred_items_is_refused() -> None:
    payload = body("cart_viewed__anonymous")
    item = payload["data"]["cart"]["items"][0]
    payload["data"]["cart"]["items"] = [item] * (storefront.MAX_ITEMS + 1)
    assert "more than 100 items" in refused(payload)


def test_a_body_that_is_no_object_is_refused() -> None:
    with pytest.raises(WebhookError):
        storefront.translate(WOO, "storefront/product_viewed", ["not", "an", "object"], SHOP)


def test_an_unknown_type_tells_of_nothing() -> None:
    assert storefront.translate(WOO, "storefront/page_scrolled", {"type": "x"}, SHOP) == []


# --- what a browser must not be able to do ------------------------------------------


def test_links_off_the_shop_and_images_not_over_https_are_left_out() -> None:
    """They would be in the emails the shop sends; the browser may be anyone's."""
    payload = body("checkout_started__email_typed")
    items = payload["data"]["cart"]["items"]
    items[0]["url"] = "https://phish.example.net/butik.example.se/produkt/"
    items[0]["image_url"] = "http://butik.example.se/bild.jpg"
    items[1]["url"] = "javascript:alert(1)"
    items[1]["image_url"] = "data:image/png;base64,AAAA"
    _, checkout_event = translate("", payload=payload)
    assert isinstance(checkout_event, CheckoutUpdated)
    for line in checkout_event.checkout.line_items:
        assert line.product_url is None
        assert line.image_url is None


def test_no_storefront_event_ever_carries_consent() -> None:
    for path in DIR.glob("*.json"):
        payload = body(path.stem)
        payload["data"]["accepts_marketing"] = True
        payload["data"].setdefault("customer", {})["email_marketing_consent"] = {
            "state": "subscribed"
        }
        payload["data"]["customer"].setdefault("email", "someone@example.se")
        for event in translate("", payload=payload):
            customer = getattr(event, "customer", None) or getattr(
                getattr(event, "checkout", None), "customer", None
            )
            assert customer is None or customer.consent is None
