"""Storefront events -> common events, whatever the platform.

The storefront (a Shopify web pixel, the WooCommerce plugin's script) posts what
a visitor does; the web edge stores each event as a delivery of topic
``storefront/<type>`` whose body is ``{"visitor", "id", "type", "at",
"received_at", "data"}`` (docs: the storefront contract). Dispatch is the
``TYPE_HANDLERS`` table; every translator is a pure function of the body, the
shop and its platform.

A browser is no platform: anyone can post anything for any address. So what it
says is read with care:

- it never says anything about consent (no event here carries one);
- it names people by email; a customer id it sends is kept only when it sends
  no email (a browser-sent id together with an address must never tie that
  address to another customer's record);
- ``at`` is the browser's clock: clamped to ``[received_at - 24 h, received_at]``;
- links are kept only on the shop's own storefront, images only over https
  (they end up in emails the shop sends); anything else is left out;
- a malformed body is a ``WebhookError(400)`` naming the path, as a webhook's is.

What differs between platforms is asked of the :class:`Platform`: a cart whose
owner we know is a checkout to recover only where the platform has a link that
restores it (``storefront_cart_link``; WooCommerce, whose checkouts nothing else
tells of), named ``cart-<cart token>``; elsewhere it stays a ``CartUpdated``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from adapters.events import (
    CartUpdated,
    Checkout,
    CheckoutUpdated,
    Customer,
    Event,
    LineItem,
    Money,
    ProductViewed,
    VisitorIdentified,
)
from adapters.payload import Fields
from adapters.platform import Platform, ShopContext, WebhookError

__all__ = [
    "CART_TOKEN",
    "MAX_ITEMS",
    "TOPIC_PREFIX",
    "TYPE_HANDLERS",
    "IdentifySource",
    "StorefrontEventType",
    "cart_checkout",
    "cart_checkout_token",
    "is_storefront_topic",
    "translate",
]

#: the topic of a stored storefront event: ``storefront/<type>``
TOPIC_PREFIX = "storefront/"
#: how far back a browser's clock is believed
MAX_AGE = timedelta(hours=24)
#: the most items a cart may list
MAX_ITEMS = 100
#: the longest id any platform gives (as jobs.intake.apply accepts for an identity)
MAX_ID_LENGTH = 64

VISITOR_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
CART_TOKEN = re.compile(r"[A-Za-z0-9_-]{8,64}")


class StorefrontEventType(StrEnum):
    PRODUCT_VIEWED = "product_viewed"
    PRODUCT_ADDED_TO_CART = "product_added_to_cart"
    CART_VIEWED = "cart_viewed"
    CHECKOUT_STARTED = "checkout_started"
    IDENTIFY = "identify"


class IdentifySource(StrEnum):
    """Where a visitor said who they are."""

    CUSTOMER = "customer"  # logged in to the shop
    CHECKOUT = "checkout"  # typed an email at the checkout
    FORM = "form"  # a sign-up or contact form


def is_storefront_topic(topic: str) -> bool:
    return topic.startswith(TOPIC_PREFIX)


def cart_checkout_token(cart_token: str) -> str:
    """The checkout a storefront cart is, and the order it becomes completes."""
    return f"cart-{cart_token}"


class _Told:
    """One stored storefront event: who, when (clamped), and where its data is."""

    def __init__(self, root: Fields, shop: ShopContext) -> None:
        visitor = root.require(root.text("visitor"), "visitor")
        if not VISITOR_ID.fullmatch(visitor):
            raise root.error("visitor", "is not a visitor id (16-64 letters, digits, - or _)")
        received_at = root.require(root.time("received_at"), "received_at")
        at = root.require(root.time("at"), "at")
        self.visitor = visitor
        self.occurred_at = min(max(at, received_at - MAX_AGE), received_at)
        self.data = root.child("data") or Fields({}, f"{root.path}.data")
        self.shop = shop


# --- reading the pieces ---------------------------------------------------------


def _id(f: Fields, key: str) -> str | None:
    value = f.text(key)
    if value is not None and len(value) > MAX_ID_LENGTH:
        raise f.error(key, f"is longer than any id ({MAX_ID_LENGTH} characters)")
    return value


def _email(f: Fields, key: str) -> str | None:
    value = f.email(key)
    if value is not None and ("@" not in value or len(value) > 320):
        raise f.error(key, "is not an email address")
    return value


def _shop_hosts(shop: ShopContext) -> set[str]:
    hosts = {shop.domain.split("/", 1)[0].lower()}
    if shop.base_url:
        host = urlsplit(shop.base_url).netloc.lower()
        if host:
            hosts.add(host)
    return hosts


def _link(f: Fields, key: str, shop: ShopContext) -> str | None:
    """A link on the shop's own storefront; any other is left out (it would be in an
    email the shop sends, and the browser that told it may be anyone's)."""
    value = f.text(key)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or parts.netloc.lower() not in _shop_hosts(shop):
        return None
    return value


def _image(f: Fields, key: str) -> str | None:
    """An image over https (storefronts serve theirs from CDNs); anything else left out."""
    value = f.text(key)
    return value if value is not None and value.startswith("https://") else None


def _customer(f: Fields | None) -> Customer | None:
    """``CUSTOMER``: a browser-sent customer id is kept only without an email (see the
    module docstring); never a consent."""
    if f is None:
        return None
    email = _email(f, "email")
    customer_id = _id(f, "customer_id")
    if email is None and customer_id is None:
        return None
    return Customer(
        customer_id=None if email else customer_id,
        email=email,
        first_name=f.text("first_name"),
        last_name=f.text("last_name"),
    )


def _money(f: Fields, key: str, currency: str) -> Money:
    amount = f.require(f.money(key, currency), key)
    if amount.amount < 0:
        raise f.error(key, "must not be negative")
    return amount


def _item(f: Fields, currency: str, shop: ShopContext) -> LineItem:
    quantity = f.require(f.integer("quantity"), "quantity")
    if quantity <= 0:
        raise f.error("quantity", "must be positive")
    return LineItem(
        title=f.require(f.text("title"), "title"),
        quantity=quantity,
        unit_price=_money(f, "price", currency),
        product_id=f.require(_id(f, "product_id"), "product_id"),
        variant_id=_id(f, "variant_id"),
        image_url=_image(f, "image_url"),
        product_url=_link(f, "url", shop),
    )


def _cart(told: _Told, customer: Customer | None) -> CartUpdated:
    """``CART`` as the cart it is, of this visitor."""
    f = told.data.child("cart")
    if f is None:
        raise told.data.error("cart", "is missing")
    token = f.require(f.text("token"), "token")
    if not CART_TOKEN.fullmatch(token):
        raise f.error("token", "is not a cart id (8-64 letters, digits, - or _)")
    currency = f.require(f.text("currency"), "currency")
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        raise f.error("currency", f"{currency[:20]!r} is not an ISO 4217 code")
    raw_items = f.data.get("items")
    if isinstance(raw_items, list) and len(raw_items) > MAX_ITEMS:
        raise f.error("items", f"lists more than {MAX_ITEMS} items")
    return CartUpdated(
        occurred_at=told.occurred_at,
        cart_token=token,
        line_items=tuple(_item(item, currency, told.shop) for item in f.children("items")),
        total=_money(f, "total", currency),
        customer=customer,
        visitor_id=told.visitor,
    )


def cart_checkout(
    platform: Platform, shop: ShopContext, cart: CartUpdated, customer: Customer
) -> CheckoutUpdated | None:
    """The checkout ``cart`` is once we know its owner's email, where the platform's
    storefront carts are checkouts (it has a link that restores them); else None.

    Its lines keep only what they are (product, variant, quantity, price): a title,
    image or link a browser wrote would be shown to a customer in the shop's name by
    anyone who types her address, so emails take those from the shop's catalogue."""
    if customer.email is None or cart.total is None:
        return None
    link = platform.storefront_cart_link(shop, cart.cart_token)
    if link is None:
        return None
    owner = Customer(
        customer_id=None,
        email=customer.email,
        first_name=customer.first_name,
        last_name=customer.last_name,
    )
    checkout = Checkout(
        token=cart_checkout_token(cart.cart_token),
        customer=owner,
        email=customer.email,
        recovery_url=link,
        total=cart.total,
        line_items=tuple(
            replace(item, title="", image_url=None, product_url=None) for item in cart.line_items
        ),
        updated_at=cart.occurred_at,
        cart_token=cart.cart_token,
    )
    return CheckoutUpdated(occurred_at=cart.occurred_at, checkout=checkout)


def _cart_events(
    platform: Platform, told: _Told, customer: Customer | None, source: IdentifySource
) -> list[Event]:
    """A cart: the checkout it is when it names its owner's email and the platform's
    carts are checkouts (the visitor, now known, said so first); otherwise the cart."""
    cart = _cart(told, customer)
    if customer is not None and customer.email is not None:
        checkout = cart_checkout(platform, told.shop, cart, customer)
        if checkout is not None:
            identified = VisitorIdentified(
                occurred_at=told.occurred_at,
                visitor_id=told.visitor,
                customer=customer,
                source=source.value,
            )
            return [identified, checkout]
    return [cart]


# --- one translator per type ------------------------------------------------------


def product_viewed(platform: Platform, told: _Told) -> list[Event]:
    product = told.data.child("product")
    if product is None:
        raise told.data.error("product", "is missing")
    return [
        ProductViewed(
            occurred_at=told.occurred_at,
            product_id=product.require(_id(product, "id"), "id"),
            customer=_customer(told.data.child("customer")),
            url=_link(product, "url", told.shop),
            visitor_id=told.visitor,
        )
    ]


def product_added_to_cart(platform: Platform, told: _Told) -> list[Event]:
    """The cart it went into; without one there is no cart to tell of (and adding a
    product to a cart is no view to follow up)."""
    if told.data.child("cart") is None:
        return []
    customer = _customer(told.data.child("customer"))
    return _cart_events(platform, told, customer, IdentifySource.CUSTOMER)


def cart_viewed(platform: Platform, told: _Told) -> list[Event]:
    customer = _customer(told.data.child("customer"))
    return _cart_events(platform, told, customer, IdentifySource.CUSTOMER)


def checkout_started(platform: Platform, told: _Told) -> list[Event]:
    """The cart at the checkout; the email typed there names its owner (WooCommerce's
    plugin sends it again whenever the email or the cart changes)."""
    told_customer = told.data.child("customer")
    customer = _customer(told_customer)
    email = _email(told.data, "email")
    if email is not None:
        names = told_customer or Fields({}, f"{told.data.path}.customer")
        customer = Customer(
            customer_id=None,
            email=email,
            first_name=names.text("first_name"),
            last_name=names.text("last_name"),
        )
    return _cart_events(platform, told, customer, IdentifySource.CHECKOUT)


def identify(platform: Platform, told: _Told) -> list[Event]:
    f = told.data
    email = f.require(_email(f, "email"), "email")
    source = f.require(f.text("source"), "source")
    try:
        known = IdentifySource(source)
    except ValueError:
        raise f.error("source", f"{source!r} is not customer, checkout or form") from None
    _id(f, "customer_id")  # checked; an id next to an email is not kept (see above)
    customer = Customer(
        customer_id=None,
        email=email,
        first_name=f.text("first_name"),
        last_name=f.text("last_name"),
    )
    return [
        VisitorIdentified(
            occurred_at=told.occurred_at,
            visitor_id=told.visitor,
            customer=customer,
            source=known.value,
        )
    ]


StorefrontTranslator = Callable[[Platform, _Told], list[Event]]

TYPE_HANDLERS: dict[str, StorefrontTranslator] = {
    StorefrontEventType.PRODUCT_VIEWED: product_viewed,
    StorefrontEventType.PRODUCT_ADDED_TO_CART: product_added_to_cart,
    StorefrontEventType.CART_VIEWED: cart_viewed,
    StorefrontEventType.CHECKOUT_STARTED: checkout_started,
    StorefrontEventType.IDENTIFY: identify,
}


def translate(platform: Platform, topic: str, payload: Any, shop: ShopContext) -> list[Event]:
    """Events for one stored storefront event; an unknown type yields none (as an
    unknown webhook topic does)."""
    kind = topic.removeprefix(TOPIC_PREFIX)
    handler = TYPE_HANDLERS.get(kind)
    if handler is None:
        return []
    if not isinstance(payload, Mapping):
        raise WebhookError(400, f"{topic} payload must be a JSON object")
    root = Fields.root(payload, "storefront")
    told_type = root.text("type")
    if told_type != kind:
        raise root.error("type", f"is {told_type!r}, not the topic's {kind!r}")
    return handler(platform, _Told(root, shop))
