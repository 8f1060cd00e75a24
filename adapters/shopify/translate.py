"""Shopify webhook payloads -> common events.

Dispatch is the ``TOPIC_HANDLERS`` table; ``IGNORED_TOPICS`` lists what we may
receive and deliberately drop. Every translator is a pure function of
``(payload, shop)``.

Money: what the customer sees comes from ``*_set.presentment_money``. Without
a ``*_set`` the plain string is used in the currency Shopify documents for that
resource: orders' plain amounts are in the shop currency (``currency``), while
checkouts' plain amounts are already in the buyer's (``presentment_currency``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, TypedDict

from adapters.events import (
    AppUninstalled,
    Checkout,
    CheckoutStarted,
    CheckoutUpdated,
    Consent,
    ConsentState,
    Customer,
    CustomerCreated,
    CustomerDataRequested,
    CustomerRedactRequested,
    CustomerUpdated,
    Event,
    LineItem,
    MarketingConsentChanged,
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
    ShipmentDelivered,
    ShopRedactRequested,
)
from adapters.payload import Fields, storefront_url
from adapters.platform import ShopContext, Translator, WebhookError, birth_date

__all__ = ["IGNORED_TOPICS", "TOPIC_HANDLERS"]


# --- pieces shared by several topics -------------------------------------------


# the two sides of a Shopify money bag (``total_price_set`` etc.)
BUYER_CURRENCY = "presentment_money"
SHOP_CURRENCY = "shop_money"


def _source(topic: str) -> str:
    return f"shopify:{topic}"


def _money(f: Fields, key: str, side: str, plain_currency: str | None) -> Money | None:
    """``key`` from ``{key}_set.{side}`` when sent, else the plain string in ``plain_currency``."""
    money_set = f.child(f"{key}_set")
    chosen = money_set.child(side) if money_set else None
    if chosen is not None:
        return chosen.money("amount", chosen.text("currency_code"))
    return f.money(key, plain_currency)


def _tags(value: str | None) -> tuple[str, ...]:
    """Shopify sends tags as one comma-separated string."""
    if value is None:
        return ()
    return tuple(tag.strip() for tag in value.split(",") if tag.strip())


def _absolute_url(url: str | None) -> str | None:
    # checkout line item images are protocol-relative ("//cdn.shopify.com/...")
    return "https:" + url if url is not None and url.startswith("//") else url


def _consent(f: Fields, source: str, *, legacy_flag: bool) -> Consent | None:
    """Inline consent, sent in customer payloads up to API 2024-10; None when absent.

    ``accepts_marketing`` (removed in 2024-01) is read only from customers/*
    payloads: inside checkouts and orders it kept arriving long after, stale.
    """
    inline = f.child("email_marketing_consent")
    if inline is not None:
        state = inline.require(inline.text("state"), "state")
        try:
            known_state = ConsentState(state)
        except ValueError:
            raise inline.error("state", f"{state!r} is not a known consent state") from None
        return Consent(
            state=known_state,
            source=source,
            updated_at=inline.time("consent_updated_at"),
            opt_in_level=inline.text("opt_in_level"),
        )
    accepts = f.flag("accepts_marketing") if legacy_flag else None
    if accepts is None:
        return None
    return Consent(
        state=ConsentState.SUBSCRIBED if accepts else ConsentState.NOT_SUBSCRIBED,
        source=f"{source} accepts_marketing",
        updated_at=f.time("accepts_marketing_updated_at"),
        opt_in_level=f.text("marketing_opt_in_level"),
    )


def _embedded_customer(f: Fields, topic: str) -> Customer | None:
    """The ``customer`` inside a checkout or order; missing or null for guests."""
    customer = f.child("customer")
    return _customer(customer, topic, legacy_flag=False) if customer else None


def _customer(f: Fields, topic: str, *, legacy_flag: bool) -> Customer:
    default_address = f.child("default_address")
    address = (
        default_address.address(
            country="country_code", province="province_code", city="city", zip_code="zip"
        )
        if default_address
        else None
    )
    return Customer(
        customer_id=f.text("id"),
        email=f.email("email"),
        first_name=f.text("first_name"),
        last_name=f.text("last_name"),
        phone=f.text("phone"),
        address=address,
        consent=_consent(f, _source(topic), legacy_flag=legacy_flag),
        created_at=f.time("created_at"),
        updated_at=f.time("updated_at"),
        tags=_tags(f.text("tags")),
    )


def _line_item(f: Fields, plain_currency: str | None) -> LineItem:
    # presentment_* titles are in the buyer's language, which is what an email shows
    return LineItem(
        title=f.require(f.text("presentment_title") or f.text("title"), "title"),
        quantity=f.require(f.integer("quantity"), "quantity"),
        unit_price=f.require(_money(f, "price", BUYER_CURRENCY, plain_currency), "price"),
        product_id=f.text("product_id"),
        variant_id=f.text("variant_id"),
        variant_title=f.text("presentment_variant_title") or f.text("variant_title"),
        sku=f.text("sku"),
        image_url=_absolute_url(f.text("image_url")),
    )


def _updated_at(f: Fields) -> datetime:
    return f.require(f.time("updated_at") or f.time("created_at"), "updated_at")


def _time_of_receipt(f: Fields, shop: ShopContext) -> datetime:
    """For payloads that state no event time (uninstall, privacy requests).

    Our receipt time comes first: a Shop resource's ``updated_at`` is its last
    settings change, not the uninstall. The payload's own stamps are the fallback.
    """
    when = shop.received_at or f.time("updated_at") or f.time("created_at")
    if when is None:
        raise WebhookError(400, f"{f.path} states no time and no received_at was given")
    return when


# --- checkouts -----------------------------------------------------------------


def _checkout(f: Fields, topic: str) -> Checkout:
    # the top-level id was removed in 2026: the token is the checkout's identity
    token = f.require(f.text("token"), "token")
    currency = f.text("presentment_currency") or f.text("currency")
    customer = _embedded_customer(f, topic)
    email = f.email("email") or (customer.email if customer else None)
    return Checkout(
        token=token,
        customer=customer,
        email=email,
        recovery_url=f.text("abandoned_checkout_url"),
        total=f.require(_money(f, "total_price", BUYER_CURRENCY, currency), "total_price"),
        line_items=tuple(_line_item(item, currency) for item in f.children("line_items")),
        updated_at=_updated_at(f),
        created_at=f.time("created_at"),
        completed_at=f.time("completed_at"),
        cart_token=f.text("cart_token"),
        subtotal=_money(f, "subtotal_price", BUYER_CURRENCY, currency),
        locale=f.text("customer_locale"),
        accepts_marketing=f.flag("buyer_accepts_marketing"),
        not_mailable_reason=None if email else "no_email",
    )


def checkout_started(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    checkout = _checkout(Fields.root(payload, "checkout"), "checkouts/create")
    return [
        CheckoutStarted(occurred_at=checkout.created_at or checkout.updated_at, checkout=checkout)
    ]


def checkout_updated(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    checkout = _checkout(Fields.root(payload, "checkout"), "checkouts/update")
    return [CheckoutUpdated(occurred_at=checkout.updated_at, checkout=checkout)]


# --- orders and fulfillments ---------------------------------------------------


def _order(f: Fields, topic: str) -> Order:
    shop_currency = f.text("currency")
    customer = _embedded_customer(f, topic)
    placed_at = f.require(f.time("created_at"), "created_at")
    return Order(
        order_id=f.require(f.text("id"), "id"),
        name=f.require(f.text("name"), "name"),
        customer=customer,
        email=f.email("email")
        or f.email("contact_email")
        or (customer.email if customer else None),
        total=f.require(_money(f, "total_price", BUYER_CURRENCY, shop_currency), "total_price"),
        line_items=tuple(_line_item(item, shop_currency) for item in f.children("line_items")),
        placed_at=placed_at,
        updated_at=f.time("updated_at") or placed_at,
        shop_total=_money(f, "total_price", SHOP_CURRENCY, shop_currency),
        checkout_token=f.text("checkout_token"),
        cart_token=f.text("cart_token"),
        financial_status=f.text("financial_status"),
        fulfillment_status=f.text("fulfillment_status"),
        status_url=f.text("order_status_url"),
        locale=f.text("customer_locale"),
        test=bool(f.flag("test")),
        cancelled_at=f.time("cancelled_at"),
        accepts_marketing=f.flag("buyer_accepts_marketing"),
        discount_codes=tuple(
            code for d in f.children("discount_codes") if (code := d.text("code")) is not None
        ),
    )


def _order_event(build: Callable[[Order, Fields], Event], topic: str) -> Translator:
    def translate(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
        f = Fields.root(payload, "order")
        return [build(_order(f, topic), f)]

    translate.__name__ = f"translate_{topic.replace('/', '_')}"
    return translate


#: financial statuses of an order the customer has paid (in part refunded or not)
PAID_FINANCIAL = frozenset({"paid", "partially_refunded", "refunded"})


def order_updated(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    """orders/updated: the order as it is now, as the events that describe that state.

    Shopify has no refund or late-payment topic of its own that carries the
    order, so this is where a refund, a payment captured later, or a
    cancellation made by editing shows up. Handlers are idempotent per order
    and ignore stale payloads, so a replay or an edit changes nothing.
    """
    f = Fields.root(payload, "order")
    return order_state_events(_order(f, "orders/updated"), f.text("cancel_reason"))


def order_state_events(order: Order, cancel_reason: str | None) -> list[Event]:
    """The events that describe an order's present state: placed, and paid, fulfilled,
    cancelled or refunded as it now is. Shared by orders/updated and the orders read
    through the Admin API (:mod:`adapters.shopify.graphql`)."""
    events: list[Event] = [OrderPlaced(occurred_at=order.placed_at, order=order)]
    if order.financial_status in PAID_FINANCIAL:
        events.append(OrderPaid(occurred_at=order.updated_at, order=order))
    if order.fulfillment_status == "fulfilled":
        events.append(OrderFulfilled(occurred_at=order.updated_at, order=order))
    if order.cancelled_at is not None:
        events.append(
            OrderCancelled(occurred_at=order.cancelled_at, order=order, reason=cancel_reason)
        )
    if order.financial_status == "refunded":
        events.append(OrderRefunded(occurred_at=order.updated_at, order=order))
    return events


def shipment_delivered(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    """Only a delivered shipment is an event; label and transit updates are not."""
    f = Fields.root(payload, "fulfillment")
    if f.text("shipment_status") != "delivered":
        return []
    return [
        ShipmentDelivered(
            occurred_at=_updated_at(f),
            order_id=f.require(f.text("order_id"), "order_id"),
            fulfillment_id=f.text("id"),
            email=f.email("email"),
            tracking_number=f.text("tracking_number"),
            tracking_url=f.text("tracking_url"),
            # fulfillments carry no currency of their own; line items bring price_set
            line_items=tuple(_line_item(item, shop.currency) for item in f.children("line_items")),
        )
    ]


# --- customers and consent -----------------------------------------------------


def _birthday(f: Fields, shop: ShopContext) -> date | None:
    """The shop's birthday metafield among the ``metafields`` the subscription asked
    for (its namespace, see ``metafield_namespaces``). A payload without it says
    nothing about the birthday, so one we hold is kept."""
    rule = shop.birthday
    for metafield in f.children("metafields"):
        if (metafield.text("namespace"), metafield.text("key")) == (
            rule.metafield_namespace,
            rule.metafield_key,
        ):
            return birth_date(metafield.data.get("value"), shop.today, metafield.path)
    return None


def _customer_event(
    event_type: type[CustomerCreated | CustomerUpdated], topic: str, *time_keys: str
) -> Translator:
    """customers/create and customers/update: the whole payload is the customer."""

    def translate(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
        f = Fields.root(payload, "customer")
        f.require(f.text("id"), "id")
        times = (f.time(key) for key in time_keys)
        occurred_at = f.require(next((t for t in times if t is not None), None), time_keys[0])
        customer = _customer(f, topic, legacy_flag=True)
        born = _birthday(f, shop)
        if born is not None:
            customer = dataclasses.replace(customer, birthday=born)
        return [event_type(occurred_at=occurred_at, customer=customer)]

    translate.__name__ = f"translate_{topic.replace('/', '_')}"
    return translate


def marketing_consent_changed(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    f = Fields.root(payload, "consent")
    topic = "customers_email_marketing_consent/update"
    consent = f.require(_consent(f, _source(topic), legacy_flag=False), "email_marketing_consent")
    # consent_updated_at is null for customers who never gave or refused consent
    occurred_at = consent.updated_at or shop.received_at
    if occurred_at is None:
        raise f.error("email_marketing_consent.consent_updated_at", "is null and no received_at")
    return [
        MarketingConsentChanged(
            occurred_at=occurred_at,
            customer_id=f.text("customer_id"),
            email=f.email("email_address"),
            consent=consent,
        )
    ]


# --- products ------------------------------------------------------------------


def _variant_sellable(variant: Fields) -> bool | None:
    """True/False when the variant says; None when it carries no inventory fields."""
    if variant.has("inventory_management") and variant.text("inventory_management") is None:
        return True  # inventory not tracked: always sellable
    if variant.text("inventory_policy") == "continue":
        return True  # overselling allowed
    quantity = variant.integer("inventory_quantity")
    return None if quantity is None else quantity > 0


def _available(variants: list[Fields]) -> bool | None:
    """Available when any variant can be sold; unknown when no variant says."""
    verdicts = [_variant_sellable(v) for v in variants]
    if any(verdicts):
        return True
    if verdicts and all(v is False for v in verdicts):
        return False
    return None


def _product(f: Fields, shop: ShopContext) -> Product:
    handle = f.text("handle")
    image = f.child("image")
    images = f.children("images")
    image_url = (image.text("src") if image else None) or (
        images[0].text("src") if images else None
    )
    variants = f.children("variants")
    # variant prices are plain strings in the shop currency; skip when we don't know it
    price = variants[0].money("price", shop.currency) if variants and shop.currency else None
    return Product(
        product_id=f.require(f.text("id"), "id"),
        title=f.require(f.text("title"), "title"),
        updated_at=_updated_at(f),
        handle=handle,
        url=storefront_url(shop, f"/products/{handle}") if handle else None,
        image_url=image_url,
        price=price,
        status=f.text("status"),
        available=_available(variants),
        tags=_tags(f.text("tags")),
    )


def product_created(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    f = Fields.root(payload, "product")
    product = _product(f, shop)
    return [ProductCreated(occurred_at=f.time("created_at") or product.updated_at, product=product)]


def product_updated(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    product = _product(Fields.root(payload, "product"), shop)
    return [ProductUpdated(occurred_at=product.updated_at, product=product)]


def product_deleted(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    """products/delete: the body is the deleted product's id and nothing else."""
    f = Fields.root(payload, "product")
    product_id = f.require(f.text("id"), "id")
    return [ProductDeleted(occurred_at=_time_of_receipt(f, shop), product_id=product_id)]


# --- app lifecycle and privacy (compliance) topics -----------------------------


def app_uninstalled(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    return [AppUninstalled(occurred_at=_time_of_receipt(Fields.root(payload, "shop"), shop))]


def _order_ids(f: Fields, key: str) -> tuple[str, ...]:
    value = f.data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in value
    ):
        raise f.error(key, "must be a list of order ids")
    return tuple(str(i) for i in value)


class _PrivacySubject(TypedDict):
    occurred_at: datetime
    customer_id: str | None
    email: str | None
    phone: str | None


def _privacy_subject(f: Fields, shop: ShopContext) -> _PrivacySubject:
    """Whom a privacy request is about; the customer object may hold only an email."""
    customer = f.require(f.child("customer"), "customer")
    return _PrivacySubject(
        occurred_at=_time_of_receipt(f, shop),
        customer_id=customer.text("id"),
        email=customer.email("email"),
        phone=customer.text("phone"),
    )


def customer_data_requested(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    f = Fields.root(payload, "data_request")
    request = f.child("data_request")
    return [
        CustomerDataRequested(
            **_privacy_subject(f, shop),
            orders_requested=_order_ids(f, "orders_requested"),
            request_id=request.text("id") if request else None,
        )
    ]


def customer_redact_requested(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    f = Fields.root(payload, "redact")
    return [
        CustomerRedactRequested(
            **_privacy_subject(f, shop), orders_to_redact=_order_ids(f, "orders_to_redact")
        )
    ]


def shop_redact_requested(payload: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    return [ShopRedactRequested(occurred_at=_time_of_receipt(Fields.root(payload, "shop"), shop))]


TOPIC_HANDLERS: dict[str, Translator] = {
    "checkouts/create": checkout_started,
    "checkouts/update": checkout_updated,
    "orders/create": _order_event(
        lambda order, f: OrderPlaced(occurred_at=order.placed_at, order=order), "orders/create"
    ),
    "orders/paid": _order_event(
        lambda order, f: OrderPaid(occurred_at=order.updated_at, order=order), "orders/paid"
    ),
    "orders/cancelled": _order_event(
        lambda order, f: OrderCancelled(
            occurred_at=order.cancelled_at or order.updated_at,
            order=order,
            reason=f.text("cancel_reason"),
        ),
        "orders/cancelled",
    ),
    "orders/updated": order_updated,
    "orders/fulfilled": _order_event(
        lambda order, f: OrderFulfilled(occurred_at=order.updated_at, order=order),
        "orders/fulfilled",
    ),
    "fulfillments/create": shipment_delivered,
    "fulfillments/update": shipment_delivered,
    "customers/create": _customer_event(
        CustomerCreated, "customers/create", "created_at", "updated_at"
    ),
    "customers/update": _customer_event(
        CustomerUpdated, "customers/update", "updated_at", "created_at"
    ),
    "customers_email_marketing_consent/update": marketing_consent_changed,
    "products/create": product_created,
    "products/update": product_updated,
    "products/delete": product_deleted,
    "app/uninstalled": app_uninstalled,
    "customers/data_request": customer_data_requested,
    "customers/redact": customer_redact_requested,
    "shop/redact": shop_redact_requested,
}

IGNORED_TOPICS: frozenset[str] = frozenset(
    {
        # carts carry no email or customer: nobody to write to
        "carts/create",
        "carts/update",
        "checkouts/delete",
        # line edits; the resulting state arrives as orders/updated
        "orders/edited",
        "orders/partially_fulfilled",
        "orders/delete",
        # a refund payload lacks the order; the engine re-checks the order at send time
        "refunds/create",
        "customers/delete",
        "customers/enable",
        "customers/disable",
        # SMS consent: we only send email
        "customers_marketing_consent/update",
    }
)
