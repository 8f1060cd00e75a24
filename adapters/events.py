"""The common event model: what happened in a shop, whatever the platform.

Platform adapters translate webhook payloads into these events; the engine
only ever sees events. They are plain frozen dataclasses named as past-tense
facts. Times are timezone-aware UTC, money is ``Decimal`` with its currency.

Serialisation is explicit and versioned: ``to_dict(event)`` gives
``{"type": "CheckoutUpdated", "version": 1, "data": {...}}`` with money as
strings and times as ISO 8601 UTC, and ``from_dict`` reads it back. Changing a
class's fields in a way old stored dicts cannot satisfy means bumping its
``VERSION`` and teaching ``from_dict`` the old shape.

Most events are translated from a platform's webhooks. *Facts* (``FACTS``) are
made by triggerpost itself from the dates it holds (a birthday came, a
customer lapsed); they name the person through a :class:`ContactRef` and go
through the same path as every other event, so a date-based flow is a trigger
like any other.

This module imports nothing from Flask, RQ, Redis or SQLAlchemy.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

__all__ = [
    "FACTS",
    "SCHEMA_VERSION",
    "Address",
    "AppUninstalled",
    "BirthdayCame",
    "CartUpdated",
    "Checkout",
    "CheckoutStarted",
    "CheckoutUpdated",
    "Consent",
    "ConsentState",
    "ContactRef",
    "Customer",
    "CustomerCreated",
    "CustomerDataRequested",
    "CustomerLapsed",
    "CustomerRedactRequested",
    "CustomerUpdated",
    "Event",
    "EventError",
    "LineItem",
    "MarketingConsentChanged",
    "Money",
    "Order",
    "OrderAnniversaryCame",
    "OrderCancelled",
    "OrderFulfilled",
    "OrderPaid",
    "OrderPlaced",
    "OrderRefunded",
    "Product",
    "ProductCreated",
    "ProductDeleted",
    "ProductUpdated",
    "ProductViewed",
    "ShipmentDelivered",
    "ShopRedactRequested",
    "SubscriberWentQuiet",
    "VisitorIdentified",
    "event_types",
    "from_dict",
    "normalise_email",
    "to_dict",
    "to_dicts",
    "utc",
]

SCHEMA_VERSION = 1


class EventError(ValueError):
    """An event could not be built or read back."""


def utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; naive datetimes are refused, never guessed."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise EventError(f"naive datetime {value.isoformat()} has no timezone")
    return value.astimezone(UTC)


def normalise_email(address: str) -> str:
    """The form an address is stored and looked up in: no surrounding whitespace,
    lower case (``str.lower``, unicode included).

    Not ``casefold`` (``ß`` would become ``ss``) and no IDNA for the domain:
    contacts, suppressions and the hashes kept of erased addresses are stored in
    this form, and a lookup in any other would miss them.
    """
    return address.strip().lower()


# --- value objects -----------------------------------------------------------


class _UtcTimes:
    """Every datetime field must be tz-aware; it is stored normalised to UTC."""

    def __post_init__(self) -> None:
        _check_times(self)


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str  # ISO 4217, upper case

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise EventError(f"money amount must be Decimal, got {type(self.amount).__name__}")
        if not self.amount.is_finite():
            raise EventError(f"money amount {self.amount} is not finite")
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise EventError(f"currency {self.currency!r} is not an ISO 4217 code")
        object.__setattr__(self, "currency", self.currency.upper())


class ConsentState(StrEnum):
    """Email marketing consent, in Shopify's vocabulary (the richest of the two)."""

    SUBSCRIBED = "subscribed"
    NOT_SUBSCRIBED = "not_subscribed"
    UNSUBSCRIBED = "unsubscribed"
    PENDING = "pending"
    REDACTED = "redacted"
    INVALID = "invalid"


@dataclass(frozen=True)
class Consent(_UtcTimes):
    state: ConsentState
    # where the platform told us: e.g. "shopify:customers_email_marketing_consent/update"
    source: str
    updated_at: datetime | None = None
    opt_in_level: str | None = None
    #: a shop's assumption, not a statement: it never replaces consent we hold
    assumed: bool = False


@dataclass(frozen=True)
class Address:
    country_code: str | None = None  # ISO 3166-1 alpha-2
    province_code: str | None = None
    city: str | None = None
    zip: str | None = None


@dataclass(frozen=True)
class Customer(_UtcTimes):
    """Who the event is about, as far as the platform told us."""

    customer_id: str | None  # platform customer id; None for guests
    email: str | None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    locale: str | None = None  # BCP 47, e.g. "sv-SE"
    timezone: str | None = None  # IANA name
    address: Address | None = None
    birthday: date | None = None
    consent: Consent | None = None  # None: this payload says nothing about consent
    created_at: datetime | None = None
    updated_at: datetime | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class LineItem:
    title: str
    quantity: int
    unit_price: Money
    product_id: str | None = None  # None for custom items
    variant_id: str | None = None
    variant_title: str | None = None
    sku: str | None = None
    image_url: str | None = None
    product_url: str | None = None


@dataclass(frozen=True)
class Checkout(_UtcTimes):
    token: str  # the platform's stable checkout key (Shopify token, WooCommerce order id)
    customer: Customer | None
    email: str | None
    recovery_url: str | None
    total: Money
    line_items: tuple[LineItem, ...]
    updated_at: datetime
    created_at: datetime | None = None
    completed_at: datetime | None = None
    cart_token: str | None = None
    subtotal: Money | None = None
    locale: str | None = None
    accepts_marketing: bool | None = None
    # why nobody can be emailed about it (e.g. "no_email"); None when mailable
    not_mailable_reason: str | None = None


@dataclass(frozen=True)
class Order(_UtcTimes):
    order_id: str
    name: str  # what the shop shows the customer, e.g. "#1042"
    customer: Customer | None
    email: str | None
    total: Money  # what the customer paid, in their currency
    line_items: tuple[LineItem, ...]
    placed_at: datetime
    updated_at: datetime
    shop_total: Money | None = None  # the same in the shop's currency, for revenue
    checkout_token: str | None = None
    cart_token: str | None = None
    financial_status: str | None = None
    fulfillment_status: str | None = None
    status_url: str | None = None
    locale: str | None = None
    test: bool = False
    cancelled_at: datetime | None = None
    accepts_marketing: bool | None = None
    discount_codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Product(_UtcTimes):
    product_id: str
    title: str
    updated_at: datetime
    handle: str | None = None
    url: str | None = None
    image_url: str | None = None
    price: Money | None = None
    status: str | None = None  # "active", "draft", "archived" / "publish", ...
    available: bool | None = None
    tags: tuple[str, ...] = ()
    collections: tuple[str, ...] = ()


# --- events ------------------------------------------------------------------


@dataclass(frozen=True)
class Event(_UtcTimes):
    """Base of every event. ``occurred_at`` is when it happened in the shop."""

    VERSION: ClassVar[int] = 1

    occurred_at: datetime


@dataclass(frozen=True)
class CustomerCreated(Event):
    customer: Customer


@dataclass(frozen=True)
class CustomerUpdated(Event):
    customer: Customer


@dataclass(frozen=True)
class MarketingConsentChanged(Event):
    customer_id: str | None
    email: str | None
    consent: Consent


@dataclass(frozen=True)
class CheckoutStarted(Event):
    checkout: Checkout


@dataclass(frozen=True)
class CheckoutUpdated(Event):
    checkout: Checkout


@dataclass(frozen=True)
class CartUpdated(Event):
    """A cart changed. Shopify carts carry no email: linked only through their token.

    ``visitor_id``: the storefront visitor whose browser told of it (a first-party
    id), None for a platform's own word of a cart.
    """

    cart_token: str
    line_items: tuple[LineItem, ...]
    total: Money | None = None
    customer: Customer | None = None
    visitor_id: str | None = None


@dataclass(frozen=True)
class OrderPlaced(Event):
    order: Order


@dataclass(frozen=True)
class OrderPaid(Event):
    order: Order


@dataclass(frozen=True)
class OrderCancelled(Event):
    order: Order
    reason: str | None = None


@dataclass(frozen=True)
class OrderRefunded(Event):
    order: Order
    refunded: Money | None = None


@dataclass(frozen=True)
class OrderFulfilled(Event):
    order: Order


@dataclass(frozen=True)
class ShipmentDelivered(Event):
    order_id: str
    fulfillment_id: str | None = None
    email: str | None = None
    customer_id: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    line_items: tuple[LineItem, ...] = ()


@dataclass(frozen=True)
class ProductCreated(Event):
    product: Product


@dataclass(frozen=True)
class ProductUpdated(Event):
    product: Product


@dataclass(frozen=True)
class ProductDeleted(Event):
    """The shop deleted the product (on WooCommerce: moved it to the trash, from where
    it may be restored). The platforms tell only its id; ``occurred_at`` is when we
    received the news."""

    product_id: str


@dataclass(frozen=True)
class ProductViewed(Event):
    """A product page was seen on the storefront: by ``customer`` when we know who
    (told with the view, or the visitor linked to a contact), else by ``visitor_id``
    alone (an anonymous visitor, whose views are kept until they say who they are)."""

    product_id: str
    customer: Customer | None = None
    url: str | None = None
    visitor_id: str | None = None


@dataclass(frozen=True)
class VisitorIdentified(Event):
    """A storefront visitor said who they are: logged in (``source`` "customer"),
    typed an email at the checkout ("checkout") or in a form ("form").

    Told by a browser, so it names a person but never grants consent: anyone can
    send one for any address. Their earlier anonymous views become theirs.
    """

    visitor_id: str
    customer: Customer
    source: str


@dataclass(frozen=True)
class AppUninstalled(Event):
    pass


@dataclass(frozen=True)
class CustomerDataRequested(Event):
    customer_id: str | None
    email: str | None
    phone: str | None = None
    orders_requested: tuple[str, ...] = ()
    request_id: str | None = None


@dataclass(frozen=True)
class CustomerRedactRequested(Event):
    customer_id: str | None
    email: str | None
    phone: str | None = None
    orders_to_redact: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShopRedactRequested(Event):
    pass


# --- facts (made by triggerpost from the dates it holds) ----------------------------


@dataclass(frozen=True)
class ContactRef:
    """Whom a fact is about, as a webhook would name them: customer id, else address."""

    customer_id: str | None
    email: str | None

    def __post_init__(self) -> None:
        if not self.customer_id and not self.email:
            raise EventError("a contact reference needs a customer id or an email address")


@dataclass(frozen=True)
class BirthdayCame(Event):
    """The contact's birthday is today in the shop's calendar; ``on`` is this year's date."""

    contact: ContactRef
    on: date


@dataclass(frozen=True)
class OrderAnniversaryCame(Event):
    """Whole ``years`` have passed since the contact's first order; ``on`` is the
    anniversary's date in the shop's calendar (None: the day the fact was made)."""

    contact: ContactRef
    years: int
    first_order_at: datetime
    on: date | None = None


@dataclass(frozen=True)
class CustomerLapsed(Event):
    """A past customer has not ordered for ``days`` days (the shop's lapse threshold)."""

    contact: ContactRef
    last_order_at: datetime
    orders_count: int
    days: int


@dataclass(frozen=True)
class SubscriberWentQuiet(Event):
    """A subscriber has neither opened nor clicked for ``days`` days (None: never)."""

    contact: ContactRef
    days: int
    last_engaged_at: datetime | None = None


#: the facts, each with a ``contact: ContactRef``
FACTS: tuple[type[Event], ...] = (
    BirthdayCame,
    OrderAnniversaryCame,
    CustomerLapsed,
    SubscriberWentQuiet,
)


def event_types() -> dict[str, type[Event]]:
    """Every concrete event class by its serialised type name."""
    found: dict[str, type[Event]] = {}
    pending = list(Event.__subclasses__())
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


# --- serialisation -----------------------------------------------------------

E = TypeVar("E", bound=Event)


def to_dict(event: Event) -> dict[str, Any]:
    """Stable JSON-ready form of an event (see the module docstring)."""
    return {
        "type": type(event).__name__,
        "version": type(event).VERSION,
        "data": _dump(event),
    }


def to_dicts(events: Iterable[Event]) -> list[dict[str, Any]]:
    """``to_dict`` of each event; a value several of them hold (the one order of
    an order's placed, paid and fulfilled events) is made JSON-ready once and
    shared by their forms: read them, never change them."""
    shared: dict[int, Any] = {}
    return [
        {"type": type(event).__name__, "version": type(event).VERSION, "data": _dump(event, shared)}
        for event in events
    ]


def from_dict(payload: dict[str, Any]) -> Event:
    """Read back what ``to_dict`` wrote; unknown types and versions are errors."""
    try:
        name = payload["type"]
        version = payload["version"]
        data = payload["data"]
    except (KeyError, TypeError) as exc:
        raise EventError(f"not a serialised event: missing {exc}") from exc
    cls = event_types().get(name)
    if cls is None:
        raise EventError(f"unknown event type {name!r}")
    if version != cls.VERSION:
        raise EventError(f"{name} version {version} is not readable (current {cls.VERSION})")
    value = _load(cls, data)
    assert isinstance(value, cls)
    return value


#: each event dataclass's field names, in order (looked up once per class)
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_AS_IS = (str, int, float, bool, type(None))


def _dump(value: Any, shared: dict[int, Any] | None = None) -> Any:
    """``value`` JSON-ready; with ``shared``, a dataclass value dumped before (by
    identity: frozen, and alive as long as the events holding it) is not again."""
    kind = type(value)
    if kind in _AS_IS:  # the exact types: a StrEnum member is a str, but not this
        return value
    names = _FIELD_NAMES.get(kind)
    if names is None and dataclasses.is_dataclass(kind):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(kind))
    if names is not None:
        if shared is None:
            return {name: _dump(getattr(value, name)) for name in names}
        dumped = shared.get(id(value))
        if dumped is None:
            dumped = shared[id(value)] = {
                name: _dump(getattr(value, name), shared) for name in names
            }
        return dumped
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, datetime):
        return utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return [_dump(item, shared) for item in value]
    return value


#: each dataclass's resolved type hints (resolving them is most of a read's cost)
_HINTS: dict[type, dict[str, Any]] = {}


def _load(hint: Any, raw: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw is None:
            return None
        if len(args) != 1:
            raise EventError(f"ambiguous union {hint}")
        return _load(args[0], raw)
    if origin is tuple:
        (item_hint, _ellipsis) = typing.get_args(hint)
        return tuple(_load(item_hint, item) for item in raw)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = _HINTS.get(hint)
        if hints is None:
            hints = _HINTS[hint] = typing.get_type_hints(hint)
        kwargs = {}
        for f in dataclasses.fields(hint):
            if f.name in raw:
                kwargs[f.name] = _load(hints[f.name], raw[f.name])
        try:
            return hint(**kwargs)
        except TypeError as exc:
            raise EventError(f"{hint.__name__}: {exc}") from exc
    if hint is datetime:
        return utc(datetime.fromisoformat(raw))
    if hint is date:
        return date.fromisoformat(raw)
    if hint is Decimal:
        return Decimal(raw)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return hint(raw)
    if hint in (str, int, bool) and not isinstance(raw, hint):
        raise EventError(f"expected {hint.__name__}, got {raw!r}")
    return raw


def _check_times(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, datetime):
            object.__setattr__(obj, f.name, utc(value))
