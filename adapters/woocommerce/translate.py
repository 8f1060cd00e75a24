"""WooCommerce webhook payloads -> common events.

Dispatch is the ``TOPIC_HANDLERS`` table; ``IGNORED_TOPICS`` lists what we may
receive and deliberately drop. Every translator is a pure function of
``(payload, shop)``.

WooCommerce has no checkout resource and no cart webhook, so an unpaid order
stands in for a checkout: ``pending`` (Place Order clicked, not paid),
``failed`` (payment refused) and ``checkout-draft`` (block checkout page open)
become checkout events keyed on the order id. Paid orders carry the same id as
``checkout_token``, so paying closes the recovery of that very order.

A payload is built when it is sent, not when the change happened, so it shows
the order's current state: events follow the ``status``, not the topic.

Carts before "Place order" are seen only by the storefront (our plugin's events,
``adapters.storefront``): a cart whose owner we know is the checkout
``cart-<cart token>``, recovered by :func:`cart_link`. The plugin writes that
cart's token on the order it becomes (meta ``_triggerpost_cart_token``), so the
unpaid order is the same checkout and its payment closes it: one checkout, one
reminder series. An order without the meta (a store without the plugin's cart
tracking) stays the checkout named by its order id.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from adapters.events import (
    Checkout,
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
    Order,
    OrderCancelled,
    OrderFulfilled,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    Product,
    ProductCreated,
    ProductDeleted,
    ProductUpdated,
)
from adapters.payload import Fields, storefront_url
from adapters.platform import ShopContext, Translator, WebhookError, birth_date
from adapters.storefront import CART_TOKEN, cart_checkout_token

__all__ = ["CART_TOKEN_META_KEY", "IGNORED_TOPICS", "TOPIC_HANDLERS", "cart_link", "read_product"]

CHECKOUT_STATUSES = frozenset({"pending", "failed", "checkout-draft"})
# order-pay links only work for these; a draft must be recovered from the cart
PAYABLE_STATUSES = frozenset({"pending", "failed"})
# "onbackorder" can still be bought
STOCK_AVAILABLE = {"instock": True, "onbackorder": True, "outofstock": False}


def _gmt(f: Fields, name: str) -> datetime | None:
    """``date_created`` -> the ``date_created_gmt`` field: UTC written without an offset."""
    return f.time(f"{name}_gmt", naive_is_utc=True)


def _id(f: Fields, key: str) -> str | None:
    """WooCommerce writes 0 for "none" (guest customer, deleted product, no variation)."""
    value = f.text(key)
    return None if value == "0" else value


def _term_names(f: Fields, key: str) -> tuple[str, ...]:
    """Tag and category names; WordPress stores them HTML-escaped ("Ull &amp; lin")."""
    return tuple(
        html.unescape(name) for item in f.children(key) if (name := item.text("name")) is not None
    )


# --- carts ---------------------------------------------------------------------

#: the order meta the plugin writes when "Place order" turns its cart into an order
CART_TOKEN_META_KEY = "_triggerpost_cart_token"  # noqa: S105 (a meta key, no secret)
#: the query parameter the plugin restores a cart from
CART_PARAMETER = "triggerpost_cart"


def cart_link(shop: ShopContext, cart_token: str) -> str:
    """The shop's home with the cart's token: the plugin restores that cart and goes
    on to the checkout page."""
    return storefront_url(shop, f"/?{CART_PARAMETER}={cart_token}")


def _cart_token(f: Fields) -> str | None:
    """The plugin's cart token on an order; one that is not a token is none."""
    for meta in f.children("meta_data"):
        if meta.text("key") == CART_TOKEN_META_KEY:
            value = meta.data.get("value")
            if isinstance(value, str) and CART_TOKEN.fullmatch(value):
                return value
            return None
    return None


# --- orders --------------------------------------------------------------------


TRUE_VALUES = frozenset({"1", "yes", "true", "on", "subscribed", "checked"})
FALSE_VALUES = frozenset({"0", "no", "false", "off", "", "not_subscribed"})


def _meta_consent(
    f: Fields, shop: ShopContext, resource: str, at: datetime | None
) -> Consent | None:
    """Consent from the shop's meta key (WooCommerce itself has no consent field)."""
    rule = shop.consent
    if rule.read_from not in (resource, "both"):
        return None
    source = f"woocommerce:{resource}_meta:{rule.meta_key}"
    for meta in f.children("meta_data"):
        if meta.text("key") != rule.meta_key:
            continue
        raw = meta.data.get("value")
        value = str(raw).strip().lower() if raw is not None and not isinstance(raw, bool) else ""
        if isinstance(raw, bool):
            value = "1" if raw else "0"
        if value in TRUE_VALUES:
            return Consent(ConsentState.SUBSCRIBED, source, at)
        if value == "unsubscribed":
            return Consent(ConsentState.UNSUBSCRIBED, source, at)
        if value in FALSE_VALUES:
            return Consent(ConsentState.NOT_SUBSCRIBED, source, at)
        return None  # a value we cannot read claims nothing
    if rule.when_absent == ConsentState.SUBSCRIBED:
        return Consent(ConsentState.SUBSCRIBED, "woocommerce:assumed", at, assumed=True)
    return None


def _meta_birthday(f: Fields, shop: ShopContext) -> date | None:
    """The birthday under the shop's meta key (a birthday plugin's), when it set one."""
    key = shop.birthday.meta_key
    if not key:
        return None
    for meta in f.children("meta_data"):
        if meta.text("key") == key:
            return birth_date(meta.data.get("value"), shop.today, meta.path)
    return None


def _order_customer(f: Fields, shop: ShopContext) -> Customer | None:
    """The buyer from ``billing``: guests (``customer_id`` 0) get no customer id."""
    customer_id = _id(f, "customer_id")
    billing = f.child("billing") or Fields({}, f"{f.path}.billing")
    customer = Customer(
        customer_id=customer_id,
        email=billing.email("email"),
        first_name=billing.text("first_name"),
        last_name=billing.text("last_name"),
        phone=billing.text("phone"),
        address=billing.address(
            country="country", province="state", city="city", zip_code="postcode"
        ),
    )
    if customer == Customer(customer_id=None, email=None):
        return None
    consent = _meta_consent(f, shop, "order", _gmt(f, "date_created"))
    return dataclasses.replace(customer, consent=consent, birthday=_meta_birthday(f, shop))


def _variant_title(item: Fields) -> str | None:
    """Variation attributes ("Färg: Blå"); keys starting with _ are internal meta."""
    parts = []
    for meta in item.children("meta_data"):
        key = meta.text("key")
        label, value = meta.text("display_key"), meta.text("display_value")
        if key is not None and not key.startswith("_") and label and value:
            parts.append(f"{label}: {value}")
    return ", ".join(parts) or None


def _unit_price(item: Fields, currency: str) -> Money:
    """``price``: the line total after discounts, before tax, divided by quantity.

    WooCommerce computes it (so it may be ``133.0357145``); we keep it exact and
    leave rounding to rendering. Older payloads without it: ``total / quantity``.
    """
    price = item.money("price", currency)
    if price is not None:
        return price
    total = item.require(item.decimal("total"), "price")
    quantity = item.require(item.integer("quantity"), "quantity")
    if quantity <= 0:
        raise item.error("quantity", "must be positive to derive a unit price")
    return Money(total / Decimal(quantity), currency)


def _line_item(item: Fields, currency: str) -> LineItem:
    image = item.child("image")
    return LineItem(
        title=item.require(item.text("name"), "name"),
        quantity=item.require(item.integer("quantity"), "quantity"),
        unit_price=_unit_price(item, currency),
        product_id=_id(item, "product_id"),
        variant_id=_id(item, "variation_id"),
        variant_title=_variant_title(item),
        sku=item.text("sku"),
        image_url=image.text("src") if image else None,
        product_url=item.text("permalink"),
    )


def _placed_at(f: Fields) -> datetime:
    return f.require(_gmt(f, "date_created"), "date_created_gmt")


def _modified_at(f: Fields) -> datetime:
    return _gmt(f, "date_modified") or _placed_at(f)


def _checkout(f: Fields, status: str, shop: ShopContext) -> Checkout:
    currency = f.require(f.text("currency"), "currency")
    customer = _order_customer(f, shop)
    email = customer.email if customer else None
    payment_url = f.text("payment_url") if status in PAYABLE_STATUSES else None
    order_id = f.require(f.text("id"), "id")
    cart_token = _cart_token(f)
    fallback = cart_link(shop, cart_token) if cart_token else storefront_url(shop, "/cart/")
    return Checkout(
        token=cart_checkout_token(cart_token) if cart_token else order_id,
        customer=customer,
        email=email,
        recovery_url=payment_url or fallback,
        total=f.require(f.money("total", currency), "total"),
        line_items=tuple(_line_item(item, currency) for item in f.children("line_items")),
        updated_at=_modified_at(f),
        created_at=_placed_at(f),
        cart_token=cart_token,
        not_mailable_reason=None if email else "no_email",
    )


def _order(f: Fields, status: str, shop: ShopContext) -> Order:
    order_id = f.require(f.text("id"), "id")
    currency = f.require(f.text("currency"), "currency")
    customer = _order_customer(f, shop)
    total = f.require(f.money("total", currency), "total")
    cart_token = _cart_token(f)
    return Order(
        order_id=order_id,
        name="#" + (f.text("number") or order_id),
        customer=customer,
        email=customer.email if customer else None,
        total=total,
        line_items=tuple(_line_item(item, currency) for item in f.children("line_items")),
        placed_at=_placed_at(f),
        updated_at=_modified_at(f),
        # a currency plugin may sell in another currency at a rate we never see
        shop_total=total if shop.currency in (None, total.currency) else None,
        # the checkout it completes: its cart's when the plugin named it, else itself
        checkout_token=cart_checkout_token(cart_token) if cart_token else order_id,
        cart_token=cart_token,
        cancelled_at=_modified_at(f) if status == "cancelled" else None,
        discount_codes=tuple(
            code for line in f.children("coupon_lines") if (code := line.text("code")) is not None
        ),
    )


def _refunded(f: Fields, currency: str) -> Money | None:
    """Sum of the refunds listed (WooCommerce writes them negative)."""
    amounts = [f.require(r.decimal("total"), "refunds.total") for r in f.children("refunds")]
    return Money(sum((abs(a) for a in amounts), Decimal(0)), currency) if amounts else None


def _order_events(f: Fields, shop: ShopContext, *, first_seen: bool) -> list[Event]:
    status = f.require(f.text("status"), "status")
    if status in CHECKOUT_STATUSES:
        checkout = _checkout(f, status, shop)
        if first_seen:
            return [CheckoutStarted(occurred_at=_placed_at(f), checkout=checkout)]
        return [CheckoutUpdated(occurred_at=checkout.updated_at, checkout=checkout)]
    order = _order(f, status, shop)
    placed = OrderPlaced(occurred_at=order.placed_at, order=order)
    paid_at = _gmt(f, "date_paid")
    if status in ("processing", "on-hold"):
        # on-hold is usually an awaited bank transfer: placed, not yet paid
        return [placed, OrderPaid(occurred_at=paid_at, order=order)] if paid_at else [placed]
    if status == "completed":
        completed_at = _gmt(f, "date_completed") or order.updated_at
        return [
            placed,
            OrderPaid(occurred_at=paid_at or completed_at, order=order),
            OrderFulfilled(occurred_at=completed_at, order=order),
        ]
    if status == "cancelled":
        return [OrderCancelled(occurred_at=order.updated_at, order=order)]
    if status == "refunded":
        refunded = _refunded(f, order.total.currency)
        return [OrderRefunded(occurred_at=order.updated_at, order=order, refunded=refunded)]
    # statuses added by plugins ("shipped", "ready-for-pickup"): nothing we can read
    return []


def order_created(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    return _order_events(Fields.root(payload, "order"), shop, first_seen=True)


def order_updated(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    return _order_events(Fields.root(payload, "order"), shop, first_seen=False)


# --- customers -----------------------------------------------------------------


def _customer(f: Fields, shop: ShopContext) -> Customer:
    """WooCommerce has no consent field: the shop's meta key rule decides (see ConsentRule)."""
    billing = f.child("billing") or Fields({}, f"{f.path}.billing")
    changed = _gmt(f, "date_modified") or _gmt(f, "date_created")
    return Customer(
        customer_id=f.require(_id(f, "id"), "id"),
        email=f.email("email") or billing.email("email"),
        first_name=f.text("first_name") or billing.text("first_name"),
        last_name=f.text("last_name") or billing.text("last_name"),
        phone=billing.text("phone"),
        address=billing.address(
            country="country", province="state", city="city", zip_code="postcode"
        ),
        created_at=_gmt(f, "date_created"),
        updated_at=_gmt(f, "date_modified"),
        consent=_meta_consent(f, shop, "customer", changed),
        birthday=_meta_birthday(f, shop),
    )


def customer_created(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    f = Fields.root(payload, "customer")
    customer = _customer(f, shop)
    occurred_at = f.require(customer.created_at or customer.updated_at, "date_created_gmt")
    return [CustomerCreated(occurred_at=occurred_at, customer=customer)]


def customer_updated(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    f = Fields.root(payload, "customer")
    customer = _customer(f, shop)
    # date_modified_gmt stays null until the account is first edited
    occurred_at = f.require(customer.updated_at or customer.created_at, "date_modified_gmt")
    return [CustomerUpdated(occurred_at=occurred_at, customer=customer)]


# --- products ------------------------------------------------------------------


def _product(f: Fields, shop: ShopContext) -> Product:
    images = f.children("images")
    # price is a plain string in the shop currency; skip it when we don't know that
    price = f.money("price", shop.currency) if shop.currency else None
    stock_status = f.text("stock_status")
    return Product(
        product_id=f.require(f.text("id"), "id"),
        title=f.require(f.text("name"), "name"),
        updated_at=_modified_at(f),
        handle=f.text("slug"),
        url=f.text("permalink"),
        image_url=images[0].text("src") if images else None,
        price=price,
        status=f.text("status"),
        available=STOCK_AVAILABLE.get(stock_status) if stock_status else None,
        tags=_term_names(f, "tags"),
        collections=_term_names(f, "categories"),
    )


def read_product(payload: Mapping[str, Any], shop: ShopContext) -> Product:
    """A product as the REST API answers it: the same shape as the webhooks' bodies."""
    return _product(Fields.root(payload, "product"), shop)


def product_created(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    f = Fields.root(payload, "product")
    return [ProductCreated(occurred_at=_placed_at(f), product=_product(f, shop))]


def product_updated(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    product = _product(Fields.root(payload, "product"), shop)
    return [ProductUpdated(occurred_at=product.updated_at, product=product)]


def product_deleted(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    """product.deleted: sent when a product is moved to the trash (WordPress's
    ``wp_trash_post``), with a body of only ``{"id": N}``; product.restored brings it
    back. Emptying the trash sends nothing."""
    f = Fields.root(payload, "product")
    product_id = f.require(_id(f, "id"), "id")
    if shop.received_at is None:
        raise WebhookError(400, "product.deleted states no time and no received_at was given")
    return [ProductDeleted(occurred_at=shop.received_at, product_id=product_id)]


TOPIC_HANDLERS: dict[str, Translator] = {
    "order.created": order_created,
    "order.updated": order_updated,
    # untrashing brings the order back in its current state: read it like an update
    "order.restored": order_updated,
    "customer.created": customer_created,
    "customer.updated": customer_updated,
    "product.created": product_created,
    "product.updated": product_updated,
    "product.deleted": product_deleted,
    # untrashing: the product as it is now, modified at the restore
    "product.restored": product_updated,
}

IGNORED_TOPICS: frozenset[str] = frozenset(
    {
        # a deletion payload is only {"id": N}; planned emails re-check the store at send time
        "order.deleted",
        "customer.deleted",
        # carries only a cart item key: no email, no products, nothing to link
        "action.woocommerce_add_to_cart",
        "coupon.created",
        "coupon.updated",
        "coupon.deleted",
        "coupon.restored",
    }
)
