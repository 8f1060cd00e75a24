"""Orders and customers read through the GraphQL Admin API -> common events.

Webhooks carry Shopify's REST JSON; what we read ourselves (the catch-up that
recovers missed webhooks, the history import's bulk operations) comes as
GraphQL nodes: camelCase, money bags of ``shopMoney``/``presentmentMoney``,
enums in upper case, GIDs. This module holds the fields we ask for (one
fragment per resource, so both readers ask for the same) and the translation
of those nodes into the same events the webhooks give. ``legacyResourceId`` is
the numeric id the webhooks use, so an order read here and one delivered by a
webhook are the same order.

A node read by the catch-up travels as a delivery of its own, body the node
exactly as Shopify answered, under one of :data:`NODE_TOPICS` (``graphql/``
and the webhook topic it stands for): the drain picks the node translator by
topic, as for any delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from adapters.events import (
    Consent,
    ConsentState,
    Customer,
    CustomerCreated,
    CustomerUpdated,
    Event,
    LineItem,
    Money,
    Order,
)
from adapters.payload import Fields, clean_text
from adapters.platform import BirthdayRule, ShopContext, Translator, birth_date
from adapters.shopify.translate import order_state_events

__all__ = [
    "NODE_TOPICS",
    "customer_fields",
    "customer_node_events",
    "order_fields",
    "order_node_events",
]

log = logging.getLogger(__name__)

#: the prefix of a node's delivery topic: what follows is the webhook topic it stands for
TOPIC_PREFIX = "graphql/"
ORDER_TOPIC = "graphql/orders/updated"
CUSTOMER_CREATED_TOPIC = "graphql/customers/create"
CUSTOMER_UPDATED_TOPIC = "graphql/customers/update"

SOURCE = "shopify:graphql"

# --- what we ask for --------------------------------------------------------------

_MONEY_BAG = "{ shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }"

_CUSTOMER_CORE = """id legacyResourceId firstName lastName phone locale createdAt updatedAt tags
  defaultEmailAddress { emailAddress marketingState marketingOptInLevel marketingUpdatedAt }
  defaultAddress { countryCodeV2 provinceCode city zip }"""

LINE_ITEM_FIELDS = f"""title quantity sku variantTitle
  originalUnitPriceSet {_MONEY_BAG}
  product {{ legacyResourceId }} variant {{ legacyResourceId }} image {{ url }}"""

#: line items per order in a plain query (the bulk query takes them all): a line item
#: costs about 7 points (itself, its price bag and the objects it links)
LINE_ITEMS_PER_ORDER = 50


def customer_fields(rule: BirthdayRule) -> str:
    """A Customer's fields, with the shop's birthday metafield under the alias ``birthday``.

    The namespace and key are inlined (bulk queries take no variables); the
    rule's pattern admits only letters, digits, ``_`` and ``-``, nothing that
    could end the string.
    """
    return (
        f"{_CUSTOMER_CORE}\n  birthday: metafield("
        f'namespace: "{rule.metafield_namespace}", key: "{rule.metafield_key}") {{ value }}'
    )


def order_fields(*, bulk: bool = False) -> str:
    """An Order's fields and its line items: ``nodes`` of the first
    :data:`LINE_ITEMS_PER_ORDER` in a plain query; every one, as ``edges`` (the
    bulk operation writes each on a line of its own) in a bulk query."""
    items = (
        f"lineItems {{ edges {{ node {{ id {LINE_ITEM_FIELDS} }} }} }}"
        if bulk
        else f"lineItems(first: {LINE_ITEMS_PER_ORDER}) {{ nodes {{ {LINE_ITEM_FIELDS} }} }}"
    )
    return f"""id legacyResourceId name email createdAt updatedAt cancelledAt cancelReason test
  customerLocale displayFinancialStatus displayFulfillmentStatus statusPageUrl
  customerAcceptsMarketing discountCodes currencyCode presentmentCurrencyCode
  totalPriceSet {_MONEY_BAG}
  customer {{ {_CUSTOMER_CORE} }}
  {items}"""


# --- reading nodes ----------------------------------------------------------------


def _id(f: Fields) -> str:
    """The numeric id the webhooks use: ``legacyResourceId``, else the GID's tail."""
    legacy = f.text("legacyResourceId")
    if legacy is not None:
        return legacy
    gid = f.require(f.text("id"), "legacyResourceId")
    return gid.rsplit("/", 1)[-1]


def _linked_id(f: Fields, key: str) -> str | None:
    linked = f.child(key)
    return linked.text("legacyResourceId") if linked else None


def _money(f: Fields, key: str, side: str) -> Money | None:
    bag = f.child(key)
    chosen = bag.child(side) if bag else None
    return chosen.money("amount", chosen.text("currencyCode")) if chosen else None


def _lower(value: str | None) -> str | None:
    return value.lower() if value else None


def _tags(f: Fields) -> tuple[str, ...]:
    value = f.data.get("tags")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise f.error("tags", "must be a JSON array")
    return tuple(tag for tag in map(clean_text, value) if tag)


def _consent(f: Fields) -> Consent | None:
    """``defaultEmailAddress``'s marketing state (the webhooks' email_marketing_consent)."""
    address = f.child("defaultEmailAddress")
    state = address.text("marketingState") if address else None
    if address is None or state is None:
        return None
    try:
        known = ConsentState(state.lower())
    except ValueError:
        # a state added after this code: the customer still counts, their consent unsaid
        log.warning("%s.marketingState %r is not a known consent state", address.path, state)
        return None
    return Consent(
        state=known,
        source=SOURCE,
        updated_at=address.time("marketingUpdatedAt"),
        opt_in_level=_lower(address.text("marketingOptInLevel")),
    )


def _birthday(f: Fields, shop: ShopContext) -> date | None:
    metafield = f.child("birthday")
    if metafield is None:
        return None
    return birth_date(metafield.data.get("value"), shop.today, metafield.path)


def _customer(f: Fields, shop: ShopContext) -> Customer:
    address = f.child("defaultAddress")
    email = f.child("defaultEmailAddress")
    return Customer(
        customer_id=_id(f),
        email=email.email("emailAddress") if email else None,
        first_name=f.text("firstName"),
        last_name=f.text("lastName"),
        phone=f.text("phone"),
        locale=f.text("locale"),
        address=address.address(
            country="countryCodeV2", province="provinceCode", city="city", zip_code="zip"
        )
        if address
        else None,
        birthday=_birthday(f, shop),
        consent=_consent(f),
        created_at=f.time("createdAt"),
        updated_at=f.time("updatedAt"),
        tags=_tags(f),
    )


def _line_item(f: Fields) -> LineItem:
    image = f.child("image")
    return LineItem(
        title=f.require(f.text("title"), "title"),
        quantity=f.require(f.integer("quantity"), "quantity"),
        unit_price=f.require(
            _money(f, "originalUnitPriceSet", "presentmentMoney"), "originalUnitPriceSet"
        ),
        product_id=_linked_id(f, "product"),
        variant_id=_linked_id(f, "variant"),
        variant_title=f.text("variantTitle"),
        sku=f.text("sku"),
        image_url=image.text("url") if image else None,
    )


def _line_items(f: Fields) -> list[Fields]:
    """``lineItems`` as ``nodes`` (a plain query), or ``edges`` of ``node`` (bulk, regrouped)."""
    connection = f.child("lineItems")
    if connection is None:
        return []
    if connection.has("nodes"):
        return connection.children("nodes")
    return [
        node for edge in connection.children("edges") if (node := edge.child("node")) is not None
    ]


#: displayFulfillmentStatus -> the webhooks' fulfillment_status (null while unfulfilled)
_FULFILLMENT = {"FULFILLED": "fulfilled", "PARTIALLY_FULFILLED": "partial", "UNFULFILLED": None}


def _order(f: Fields, shop: ShopContext) -> Order:
    customer_node = f.child("customer")
    customer = _customer(customer_node, shop) if customer_node else None
    placed_at = f.require(f.time("createdAt"), "createdAt")
    fulfillment = f.text("displayFulfillmentStatus")
    codes = f.data.get("discountCodes") or []
    if not isinstance(codes, list):
        raise f.error("discountCodes", "must be a JSON array")
    return Order(
        order_id=_id(f),
        name=f.require(f.text("name"), "name"),
        customer=customer,
        email=f.email("email") or (customer.email if customer else None),
        total=f.require(_money(f, "totalPriceSet", "presentmentMoney"), "totalPriceSet"),
        line_items=tuple(_line_item(item) for item in _line_items(f)),
        placed_at=placed_at,
        updated_at=f.time("updatedAt") or placed_at,
        shop_total=_money(f, "totalPriceSet", "shopMoney"),
        financial_status=_lower(f.text("displayFinancialStatus")),
        fulfillment_status=_FULFILLMENT.get(fulfillment, _lower(fulfillment))
        if fulfillment
        else None,
        status_url=f.text("statusPageUrl"),
        locale=f.text("customerLocale"),
        test=bool(f.flag("test")),
        cancelled_at=f.time("cancelledAt"),
        accepts_marketing=f.flag("customerAcceptsMarketing"),
        discount_codes=tuple(code for code in map(clean_text, codes) if code),
    )


def order_node_events(node: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    """An Order node: the events of its present state, as orders/updated gives them."""
    f = Fields.root(node, "order")
    return order_state_events(_order(f, shop), _lower(f.text("cancelReason")))


def _customer_events(created: bool) -> Translator:
    def translate(node: Mapping[str, Any], shop: ShopContext) -> list[Event]:
        f = Fields.root(node, "customer")
        customer = _customer(f, shop)
        if created:
            at = f.require(customer.created_at or customer.updated_at, "createdAt")
            return [CustomerCreated(occurred_at=at, customer=customer)]
        at = f.require(customer.updated_at or customer.created_at, "updatedAt")
        return [CustomerUpdated(occurred_at=at, customer=customer)]

    translate.__name__ = "customer_created_node" if created else "customer_updated_node"
    return translate


customer_created_node = _customer_events(created=True)
customer_updated_node = _customer_events(created=False)


def customer_node_events(node: Mapping[str, Any], shop: ShopContext) -> list[Event]:
    """A Customer node read as the shop's past (the history import): its creation."""
    return customer_created_node(node, shop)


#: delivery topic -> node translator (topics no webhook carries: ``graphql/`` + the
#: webhook topic the node stands for)
NODE_TOPICS: dict[str, Callable[[Mapping[str, Any], ShopContext], list[Event]]] = {
    ORDER_TOPIC: order_node_events,
    CUSTOMER_CREATED_TOPIC: customer_created_node,
    CUSTOMER_UPDATED_TOPIC: customer_updated_node,
}


# --- the catch-up's queries -----------------------------------------------------------

#: ids per page of the catch-up's listing: only ids and times, so 100 cost about 100 points
LIST_PAGE = 100
#: full orders per ``nodes`` query: an order with its 50 line items costs about 360
#: points, and no query may cost more than 1,000
ORDERS_PER_QUERY = 2
#: full customers per ``nodes`` query (about 5 points each)
CUSTOMERS_PER_QUERY = 50


def search_since(field: str, at: datetime) -> str:
    """``updated_at:>="2026-09-14T17:12:41+00:00"`` in Shopify's search syntax (dates quoted)."""
    return f'{field}:>="{at.astimezone(UTC).isoformat()}"'


def listing_query(connection: str) -> str:
    """A page of ``orders`` or ``customers`` changed since a time, oldest change first:
    ids and times only (the missed ones are then read whole, :func:`nodes_query`)."""
    return f"""
query CatchUp($query: String!, $after: String) {{
  {connection}(first: {LIST_PAGE}, after: $after, sortKey: UPDATED_AT, query: $query) {{
    nodes {{ id legacyResourceId createdAt updatedAt }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}"""


def nodes_query(kind: str, fields: str) -> str:
    """Whole ``Order`` or ``Customer`` nodes by GID."""
    return f"""
query Nodes($ids: [ID!]!) {{
  nodes(ids: $ids) {{ ... on {kind} {{ {fields} }} }}
}}"""
