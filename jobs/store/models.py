"""SQLAlchemy models: the store is the source of truth (Redis only carries work).

Tables: shops, raw webhook deliveries, the event log, contacts, checkouts,
orders and products; what sells together, for recommendations (product pairs,
sales, groups and the orders counted). Flows, messages and suppressions arrive with the engine
and add their own tables by migration; the shapes here leave room for them
(contact consent with source and time, order stats, per-shop settings JSON).

Money columns use :class:`Amount`: NUMERIC on PostgreSQL (so analytics can sum
in SQL) and an exact decimal string on SQLite (whose NUMERIC is a float).

Text from outside fits its column on both databases (SQLite ignores a length,
PostgreSQL refuses what exceeds it): what a person wrote and what still means
the same with its end cut off (a name, a phone number, a title) is a
:class:`ClippedText` column and is cut to fit; identities and codes are not
cut, since a cut one names something else: ``jobs.intake.apply`` refuses or
drops those before they get here.
"""

from __future__ import annotations

import base64
import logging
import secrets
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    func,
    or_,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeEngine

log = logging.getLogger(__name__)

# Stable constraint names, so migrations read the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64 bits.
Id = BigInteger().with_variant(Integer(), "sqlite")


def now() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, whatever the database keeps.

    SQLite has no timezone type: values are stored as naive UTC and given their
    UTC tzinfo back on the way out. A naive value going in is a bug: refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Amount(TypeDecorator[Decimal]):
    """An exact decimal amount: unconstrained NUMERIC on PostgreSQL, text on SQLite."""

    impl = String(40)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(asdecimal=True))
        return dialect.type_descriptor(String(40))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"amounts are Decimal, not {type(value).__name__}")
        return value if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(value)


class ClippedText(TypeDecorator[str]):
    """VARCHAR(length) whose values are cut to ``length`` characters on the way in.

    Only for text that keeps its meaning when its end is cut off: the clipping
    is logged (lengths only, never the text, which is personal data).
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or len(value) <= self.length:
            return value
        log.warning("a text of %d characters was clipped to %d", len(value), self.length)
        return value[: self.length]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UtcDateTime(), Decimal: Amount(), dict[str, Any]: JSON()}


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)


# --- shops -------------------------------------------------------------------


class ShopStatus(StrEnum):
    ACTIVE = "active"
    UNINSTALLED = "uninstalled"


def new_storefront_key() -> str:
    """A shop's public storefront key: ``pk_`` and 26 lowercase base32 characters (128 bits).

    Public (it is in every storefront page), so only unguessable enough that a
    stranger cannot name a shop by chance: the origin check and the rate limits
    carry the rest (see connector.storefront).
    """
    return "pk_" + base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()


class Shop(Timestamps, Base):
    __tablename__ = "shops"
    __table_args__ = (
        UniqueConstraint("platform", "key"),
        Index("ix_shops_storefront_key", "storefront_key", unique=True),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    #: normalised identity: the myshopify domain, or a WooCommerce store's host + path
    key: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=ShopStatus.ACTIVE)
    #: the storefront's public URL, for links in emails
    base_url: Mapped[str] = mapped_column(String(512))
    currency: Mapped[str | None] = mapped_column(String(3))
    timezone: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(35))
    # Secrets are Fernet tokens (see jobs.store.secrets), never plain text.
    webhook_secret_enc: Mapped[str | None] = mapped_column(Text)
    access_token_enc: Mapped[str | None] = mapped_column(Text)
    refresh_token_enc: Mapped[str | None] = mapped_column(Text)
    access_token_expires_at: Mapped[datetime | None]
    refresh_token_expires_at: Mapped[datetime | None]
    #: the access scopes the platform actually granted (comma-separated)
    scopes: Mapped[str | None] = mapped_column(String(512))
    consumer_key_enc: Mapped[str | None] = mapped_column(Text)
    consumer_secret_enc: Mapped[str | None] = mapped_column(Text)
    #: the secret a reconnect replaced: the store's webhooks may still sign with
    #: it until they are confirmed re-pointed to the new one, then it is dropped
    previous_webhook_secret_enc: Mapped[str | None] = mapped_column(Text)
    #: per-shop settings (flows, delays, caps, branding), read through jobs.shop_settings
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: the last settings that validated, which a bad stored field falls back to
    #: (see jobs.shop_settings); None until some settings were checked
    settings_valid: Mapped[dict[str, Any] | None]
    installed_at: Mapped[datetime] = mapped_column(default=now)
    uninstalled_at: Mapped[datetime | None]
    #: the key storefront events name the shop by (``POST /events/<platform>/<key>``)
    storefront_key: Mapped[str] = mapped_column(String(29), default=new_storefront_key)
    #: origins besides the shop's own domains that may send storefront events (https only)
    storefront_origins: Mapped[list[str] | None] = mapped_column(JSON)
    #: the secret the shop's storefront plugin signs its requests with (a Fernet token)
    plugin_secret_enc: Mapped[str | None] = mapped_column(Text)


# --- intake ------------------------------------------------------------------


#: the deliveries that are storefront events (``storefront/<type>``), as SQL
STOREFRONT_DELIVERIES = "topic LIKE 'storefront/%'"


class DeliveryStatus(StrEnum):
    RECEIVED = "received"  # stored, not yet processed
    PROCESSED = "processed"
    FAILED = "failed"  # processing raised; RQ retries it (see jobs.intake.deliveries)


class Delivery(Base):
    """A raw webhook delivery exactly as received (body bytes as signed)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("shop_id", "delivery_key"),
        Index("ix_deliveries_shop_id_status_id", "shop_id", "status", "id"),
        Index("ix_deliveries_status_received_at", "status", "received_at"),
        # a shop's storefront events by time (a plugin's status: how many today), kept
        # apart from the webhooks, which never pay for it
        Index(
            "ix_deliveries_storefront_shop_id_received_at",
            "shop_id",
            "received_at",
            postgresql_where=text(STOREFRONT_DELIVERIES),
            sqlite_where=text(STOREFRONT_DELIVERIES),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))
    topic: Mapped[str] = mapped_column(String(128))
    #: the platform's delivery id, or a hash of topic and body when it sends none
    delivery_key: Mapped[str] = mapped_column(String(128))
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=now)
    triggered_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None]

    shop: Mapped[Shop] = relationship()


class StoredEvent(Base):
    """The event log: every event the adapters produced, in the common model."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_shop_id_contact_id_occurred_at", "shop_id", "contact_id", "occurred_at"),
        Index("ix_events_shop_id_type_occurred_at", "shop_id", "type", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    type: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime]
    #: what the event is about: a checkout token, an order id, a product id
    subject: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=now)


# --- people and what they bought -----------------------------------------------


class Contact(Timestamps, Base):
    """One person per shop, found by platform customer id or by email."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("shop_id", "email"),
        UniqueConstraint("shop_id", "customer_id"),
        # the daily scans find a day's matches through these (jobs.intake.scans)
        Index("ix_contacts_shop_id_birthday_md", "shop_id", "birthday_md"),
        Index("ix_contacts_shop_id_first_order_at", "shop_id", "first_order_at"),
        Index("ix_contacts_shop_id_last_order_at", "shop_id", "last_order_at"),
        Index(
            "ix_contacts_shop_id_consent_state_consent_at", "shop_id", "consent_state", "consent_at"
        ),
        # segments by number of orders (jobs.audience.segments)
        Index("ix_contacts_shop_id_orders_count", "shop_id", "orders_count"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    email: Mapped[str | None] = mapped_column(String(320))
    customer_id: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(ClippedText(255))
    last_name: Mapped[str | None] = mapped_column(ClippedText(255))
    phone: Mapped[str | None] = mapped_column(ClippedText(64))
    locale: Mapped[str | None] = mapped_column(String(35))
    country_code: Mapped[str | None] = mapped_column(String(2))
    timezone: Mapped[str | None] = mapped_column(String(64))
    birthday: Mapped[date | None] = mapped_column(Date)
    #: the birthday's month * 100 + day (0229 for 29 February), kept with it (see
    #: :meth:`_keep_birthday_md`): a day's birthdays are one indexed lookup, whatever the year
    birthday_md: Mapped[int | None] = mapped_column(SmallInteger)
    #: a ConsentState value; None until any source has told us
    consent_state: Mapped[str | None] = mapped_column(String(16))
    consent_source: Mapped[str | None] = mapped_column(String(128))
    consent_at: Mapped[datetime | None]
    orders_count: Mapped[int] = mapped_column(default=0)
    #: in the shop's currency, over placed orders that were not cancelled or refunded
    total_spent: Mapped[Decimal] = mapped_column(default=Decimal(0))
    first_order_at: Mapped[datetime | None]
    last_order_at: Mapped[datetime | None]
    platform_created_at: Mapped[datetime | None]
    #: the newest platform ``updated_at`` applied: older payloads do not overwrite
    source_updated_at: Mapped[datetime | None]
    redacted_at: Mapped[datetime | None]
    #: the platform's customer tags, each :func:`tag_key`, as ``"\nvip\nwholesale\n"``
    #: (None: none told): kept in the contact's own row, so a segment's check of her
    #: tags is part of the one lookup by her id (jobs.audience.segments)
    tags: Mapped[str | None] = mapped_column(Text)

    @validates("birthday")
    def _keep_birthday_md(self, _key: str, value: date | None) -> date | None:
        """Every write of the birthday through the model (intake, the contact import, an
        erasure) writes its month and day as well, so the two never disagree."""
        self.birthday_md = birthday_md(value)
        return value


def tag_key(tag: str) -> str:
    """A tag as segments compare it: trimmed, case folded, one line, at most 255 characters
    (platforms treat ``VIP`` and ``vip`` as the same tag)."""
    return " ".join(tag.split()).casefold()[:255]


#: the most tags kept of one customer (Shopify allows 250; more is no shop's real data)
MAX_CONTACT_TAGS = 250


def stored_tags(tags: tuple[str, ...] | list[str]) -> str | None:
    """The ``Contact.tags`` text of a customer's tags (None for none): at most
    :data:`MAX_CONTACT_TAGS` of them, so a hostile payload cannot bloat her row."""
    keys = dict.fromkeys(key for key in map(tag_key, tags[:MAX_CONTACT_TAGS]) if key)
    return "\n" + "\n".join(keys) + "\n" if keys else None


def birthday_md(value: date | None) -> int | None:
    """``month * 100 + day`` of a birthday (1231 for 31 December); None for none."""
    return None if value is None else value.month * 100 + value.day


# --- storefront visitors (jobs.intake.visitors) ------------------------------------


class Visitor(Base):
    """A storefront visitor (the first-party id its browser keeps) linked to the contact
    it last said it is: its later events are that contact's. A newer link replaces an
    older one; what was applied before stays with whom it was applied to."""

    __tablename__ = "visitors"
    __table_args__ = (UniqueConstraint("shop_id", "visitor_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    visitor_id: Mapped[str] = mapped_column(String(64))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True
    )
    #: when the visitor said who they are (the event's time): an older word links nothing
    linked_at: Mapped[datetime]


class VisitorEvent(Base):
    """An anonymous visitor's event, serialised, kept until the visitor says who they
    are (then applied again as theirs and deleted) or for 30 days at most, the last
    few hundred per visitor (``jobs.intake.visitors``)."""

    __tablename__ = "visitor_events"
    __table_args__ = (
        Index(
            "ix_visitor_events_shop_id_visitor_id_occurred_at",
            "shop_id",
            "visitor_id",
            "occurred_at",
        ),
        Index("ix_visitor_events_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    visitor_id: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    #: ``adapters.events.to_dict`` of the event
    event: Mapped[dict[str, Any]]


class CheckoutStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"


class Checkout(Timestamps, Base):
    __tablename__ = "checkouts"
    __table_args__ = (UniqueConstraint("shop_id", "token"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    token: Mapped[str] = mapped_column(String(255))
    cart_token: Mapped[str | None] = mapped_column(String(255), index=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True
    )
    email: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16), default=CheckoutStatus.OPEN)
    recovery_url: Mapped[str | None] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal]
    #: the checkout as the event model serialises it (line items, names) for emails
    data: Mapped[dict[str, Any]]
    locale: Mapped[str | None] = mapped_column(String(35))
    not_mailable_reason: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[str | None] = mapped_column(String(64))
    completed_at: Mapped[datetime | None]
    platform_created_at: Mapped[datetime | None]
    platform_updated_at: Mapped[datetime]


class OrderStatus(StrEnum):
    PLACED = "placed"
    PAID = "paid"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class Order(Timestamps, Base):
    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("shop_id", "order_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    order_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(ClippedText(64))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True
    )
    email: Mapped[str | None] = mapped_column(String(320))
    checkout_token: Mapped[str | None] = mapped_column(String(255), index=True)
    cart_token: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.PLACED)
    financial_status: Mapped[str | None] = mapped_column(String(32))
    fulfillment_status: Mapped[str | None] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal]
    shop_currency: Mapped[str | None] = mapped_column(String(3))
    shop_total: Mapped[Decimal | None]
    test: Mapped[bool] = mapped_column(Boolean, default=False)
    data: Mapped[dict[str, Any]]
    locale: Mapped[str | None] = mapped_column(String(35))
    placed_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    fulfilled_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    refunded_at: Mapped[datetime | None]
    platform_updated_at: Mapped[datetime]


class OrderProduct(Base):
    """A product an order holds (one row per order and product), so "bought from the
    Coffee collection" is an indexed lookup, not a read of every order's line items.
    Kept with the order's row by the intake (jobs.audience.purchases); whether the
    order counts (not cancelled, refunded or a test) is the order's own status."""

    __tablename__ = "order_products"
    __table_args__ = (
        UniqueConstraint("order_row_id", "product_id"),
        Index("ix_order_products_shop_id_product_id", "shop_id", "product_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    order_row_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[str] = mapped_column(String(64))


#: the platforms' statuses of a product on sale ("active" on one, "publish" on another):
#: any other (a draft, archived, private, pending review, trashed, scheduled) is not
SHOWN_PRODUCT_STATUSES = ("active", "publish")
#: the status of a product its platform deleted, or said it does not have. The row
#: stays, so a late or reordered update cannot bring it back as new and no email asks
#: the platform about it again (jobs.intake.apply.delete_product)
DELETED_PRODUCT_STATUS = "deleted"


def for_sale(status: str | None, available: bool | None) -> bool:
    """Whether an email may offer a product we hold: the one rule, wherever products
    are shown (a cart's items, recommendations, new product announcements).

    For sale when its stock does not say otherwise (``available`` true, or not
    stated) and its status is one of :data:`SHOWN_PRODUCT_STATUSES` or not
    stated (a payload without one). Never a deleted one
    (:data:`DELETED_PRODUCT_STATUS`, and not available). :data:`PRODUCT_FOR_SALE`
    is the same rule in SQL, for the queries.

    A product the store has no row for is not judged here: a cart's item of a
    product no webhook told us of still counts as for sale (we cannot know
    otherwise), while what the store picks to offer (recommendations, other new
    products) comes only from products it holds.
    """
    return available is not False and (status is None or status.lower() in SHOWN_PRODUCT_STATUSES)


class Product(Timestamps, Base):
    """A product as its platform last told us: by its webhooks, or by its API when an
    email was about to show a product no webhook had told us of."""

    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("shop_id", "product_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    product_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(ClippedText(512))
    handle: Mapped[str | None] = mapped_column(String(255))
    url: Mapped[str | None] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    status: Mapped[str | None] = mapped_column(String(32))
    available: Mapped[bool | None] = mapped_column(Boolean)
    data: Mapped[dict[str, Any]]
    platform_updated_at: Mapped[datetime]


#: :func:`for_sale` as a condition on the products table
PRODUCT_FOR_SALE = and_(
    Product.available.is_not(False),
    or_(Product.status.is_(None), func.lower(Product.status).in_(SHOWN_PRODUCT_STATUSES)),
)


# --- recommendations: what sells, and what sells together -----------------------


class ProductPair(Base):
    """How many paid orders held both products: "bought together".

    Kept both ways round (a, b) and (b, a), so the products bought with any
    given ones are one indexed range. Counted as orders are paid and taken back
    when they are cancelled or refunded (jobs.audience.recommendations).
    """

    __tablename__ = "product_pairs"
    __table_args__ = (UniqueConstraint("shop_id", "product_id", "other_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    product_id: Mapped[str] = mapped_column(String(64))
    other_id: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer, default=0)


class ProductSale(Base):
    """How many paid orders held the product: the shop's bestsellers."""

    __tablename__ = "product_sales"
    __table_args__ = (
        UniqueConstraint("shop_id", "product_id"),
        Index("ix_product_sales_shop_id_orders_product_id", "shop_id", "orders", "product_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    product_id: Mapped[str] = mapped_column(String(64))
    orders: Mapped[int] = mapped_column(Integer, default=0)


class ProductGroupKind(StrEnum):
    COLLECTION = "collection"  # a Shopify collection, a WooCommerce category
    TAG = "tag"


class ProductGroup(Base):
    """A collection or tag a product is in, so its neighbours are one indexed lookup."""

    __tablename__ = "product_groups"
    __table_args__ = (
        UniqueConstraint("shop_id", "product_id", "kind", "name"),
        Index("ix_product_groups_shop_id_kind_name", "shop_id", "kind", "name"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    product_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(ClippedText(255))


class CountedOrder(Base):
    """A paid order counted in product_pairs and product_sales, with the products
    counted: a replay counts nothing again, and a cancellation takes back exactly these."""

    __tablename__ = "counted_orders"
    __table_args__ = (UniqueConstraint("order_row_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    order_row_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_ids: Mapped[list[str]] = mapped_column(JSON)


class ProductView(Base):
    """How often a known contact looked at a product in the storefront, and when first
    and last: the browse abandonment's email shows the product she looked at most among
    those she looked at lately (``ix_product_views_contact_id_last_viewed_at``). Only
    views by a known contact are kept (an anonymous visitor's are not anyone's yet)."""

    __tablename__ = "product_views"
    __table_args__ = (
        UniqueConstraint("contact_id", "product_id"),
        Index("ix_product_views_contact_id_last_viewed_at", "contact_id", "last_viewed_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    product_id: Mapped[str] = mapped_column(String(64))
    views: Mapped[int] = mapped_column(Integer, default=0)
    first_viewed_at: Mapped[datetime]
    last_viewed_at: Mapped[datetime]


# --- the flow engine: enrollments, the message ledger, decisions ---------------


class EnrollmentState(StrEnum):
    ACTIVE = "active"  # steps remain
    COMPLETED = "completed"  # every step ran
    EXITED = "exited"  # an exit event ended it (the reason says which)
    CANCELLED = "cancelled"  # stopped by us: shop uninstalled, contact redacted


class Enrollment(Timestamps, Base):
    """One contact going through one flow about one subject (a checkout, an order).

    ``key`` applies the flow's re-entry rule: the same key can never enroll twice.
    """

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("shop_id", "flow", "key"),
        Index("ix_enrollments_shop_id_contact_id_state", "shop_id", "contact_id", "state"),
        Index("ix_enrollments_shop_id_subject", "shop_id", "subject"),
        Index("ix_enrollments_state_wake_at", "state", "wake_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    flow: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    #: what the enrollment is about: a checkout token, an order id, a contact id
    subject: Mapped[str] = mapped_column(String(255))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), default=EnrollmentState.ACTIVE)
    #: holdout enrollments run every step but every send is skipped:holdout
    holdout: Mapped[bool] = mapped_column(Boolean, default=False)
    trigger_event_id: Mapped[int | None] = mapped_column(
        ForeignKey("events.id", ondelete="SET NULL")
    )
    #: the time step delays count from (e.g. when the checkout was last updated)
    anchor_at: Mapped[datetime]
    entered_at: Mapped[datetime]
    #: the index of the next step to plan
    step_index: Mapped[int] = mapped_column(default=0)
    #: when a Branch or a WaitForEvent timeout is due to be decided (None: nothing waits)
    wake_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(String(128))
    #: what the trigger told us, for later steps and rendering (no secrets)
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)


class MessageState(StrEnum):
    PLANNED = "planned"  # waiting for its due time (RQ carries it, the sweeper backs it up)
    SENDING = "sending"  # claimed by one send job; rendering, not yet handed over
    HANDED = "handed"  # handed to the provider; outcome being recorded
    SENT = "sent"
    SKIPPED = "skipped"  # a guard said no; reason says which
    EXITED = "exited"  # the enrollment exited before the send
    FAILED = "failed"  # the provider refused it for good, or the outcome is unknown
    EXPIRED = "expired"  # deferred until its expiry and never found a slot
    CANCELLED = "cancelled"  # unsubscribed, shop uninstalled, contact redacted


#: states a message never leaves
FINAL_MESSAGE_STATES = frozenset(
    {
        MessageState.SENT,
        MessageState.SKIPPED,
        MessageState.EXITED,
        MessageState.FAILED,
        MessageState.EXPIRED,
        MessageState.CANCELLED,
    }
)


class Message(Timestamps, Base):
    """One planned email: the ledger row that makes every send exactly-once.

    ``dedupe_key`` is unique per shop: (flow, step, subject, contact). A send job
    claims the row with a conditional UPDATE (planned -> sending) and records the
    outcome after, so replays, racing workers and crashes cannot send twice.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("shop_id", "dedupe_key"),
        Index("ix_messages_state_due_at", "state", "due_at"),
        Index("ix_messages_shop_id_state_due_at", "shop_id", "state", "due_at"),
        Index("ix_messages_contact_id_state_sent_at", "contact_id", "state", "sent_at"),
        # a shop's emails sent over a range of days (jobs.reports.analytics)
        Index("ix_messages_shop_id_state_sent_at", "shop_id", "state", "sent_at"),
        Index("ix_messages_enrollment_id", "enrollment_id"),
        Index("ix_messages_shop_id_created_at", "shop_id", "created_at"),
        Index("ix_messages_provider_message_id", "provider_message_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    flow: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(64))
    template: Mapped[str] = mapped_column(String(64))
    #: "marketing" or "transactional" (emails.content.MessageKind)
    kind: Mapped[str] = mapped_column(String(16))
    #: higher wins when a frequency cap lets only one through
    priority: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(16), default=MessageState.PLANNED)
    #: the reason code of the last decision (e.g. "quiet_hours", "cap:weekly")
    reason: Mapped[str | None] = mapped_column(String(128))
    #: when it should go; moved on deferral
    due_at: Mapped[datetime]
    #: first planned due time, to tell how late a message went out
    planned_at: Mapped[datetime]
    #: after this it is expired instead of deferred again
    expires_at: Mapped[datetime]
    #: when a send drain took it to send (its hold keeps other drains off it for a while)
    enqueued_at: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    sent_at: Mapped[datetime | None]
    #: the address it went to and what it said, as sent (personal data: redacted with the contact)
    email_to: Mapped[str | None] = mapped_column(String(320))
    subject_line: Mapped[str | None] = mapped_column(Text)
    locale: Mapped[str | None] = mapped_column(String(35))
    #: the RFC 5322 Message-ID we gave it, and the provider's id once accepted
    message_id_header: Mapped[str | None] = mapped_column(String(255))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    discount_code: Mapped[str | None] = mapped_column(String(64))
    #: whatever the engine worked out for this send (step options, product ids)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: why it was allowed to go, recorded as it was handed over: the basis
    #: (subscribed, soft_opt_in, transactional) and the facts it stands on
    #: (jobs.engine.guards.LegalBasis); None for a message never handed over
    legal_basis: Mapped[dict[str, Any] | None]


class Decision(Base):
    """The decision log: every outcome of every message, in order (``why`` reads it)."""

    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_shop_id_contact_id_at", "shop_id", "contact_id", "at"),
        Index("ix_decisions_shop_id_at", "shop_id", "at"),
        Index("ix_decisions_message_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="CASCADE")
    )
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    flow: Mapped[str] = mapped_column(String(64))
    step: Mapped[str | None] = mapped_column(String(64))
    #: planned, sent, skipped, deferred, failed, exited, expired, cancelled, enrolled
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(128))
    #: for deferrals: the new due time
    until: Mapped[datetime | None]
    at: Mapped[datetime]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class NonEnrolment(Base):
    """Why a contact did not start a flow when an event of hers triggered it
    (the flow was off, its condition did not hold, she was in it already).

    One row per shop, contact and flow, holding the latest reason: a repeat
    updates it (and counts it), so the table grows with people and flows, not
    with events. Only events whose type triggers the flow write here.
    """

    __tablename__ = "non_enrolments"
    __table_args__ = (UniqueConstraint("shop_id", "contact_id", "flow"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    flow: Mapped[str] = mapped_column(String(64))
    #: a jobs.engine.enrolment.NotStarted value
    reason: Mapped[str] = mapped_column(String(32))
    #: what the reason names: the flow's condition, or the exit that held
    detail: Mapped[str | None] = mapped_column(String(128))
    #: the type of the event that last triggered the flow for her
    event: Mapped[str] = mapped_column(String(64))
    first_at: Mapped[datetime]
    at: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer, default=1)


# --- suppressions, engagement and attribution ------------------------------------


class SuppressionReason(StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"


#: suppression scope for every marketing email; other scopes name one kind
#: (e.g. "reviews"), and "all" blocks transactional mail too (bounces, complaints)
SCOPE_MARKETING = "marketing"
SCOPE_ALL = "all"


class Suppression(Base):
    """An address a shop must not email (in ``scope``); never deleted by the engine."""

    __tablename__ = "suppressions"
    __table_args__ = (
        UniqueConstraint("shop_id", "email", "scope"),
        # the unsubscribes and bounces an email brought (jobs.reports.analytics)
        Index("ix_suppressions_message_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    scope: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32))
    #: where it came from: "unsubscribe_link", "one_click", "postmark:bounce", ...
    source: Mapped[str] = mapped_column(String(128))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=now)


class EngagementKind(StrEnum):
    CLICK = "click"
    OPEN = "open"  # unreliable: privacy proxies fetch every pixel


class Engagement(Base):
    """A click or open of a message (tracking endpoints write these)."""

    __tablename__ = "engagements"
    __table_args__ = (
        Index("ix_engagements_shop_id_contact_id_at", "shop_id", "contact_id", "at"),
        Index("ix_engagements_message_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]


class Attribution(Base):
    """An order credited to the last message clicked within the attribution window."""

    __tablename__ = "attributions"
    __table_args__ = (
        UniqueConstraint("order_row_id"),
        Index("ix_attributions_shop_id_flow_attributed_at", "shop_id", "flow", "attributed_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    order_row_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    flow: Mapped[str] = mapped_column(String(64))
    #: in the shop's currency
    revenue: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    engagement_at: Mapped[datetime]
    attributed_at: Mapped[datetime]


# --- platform connections --------------------------------------------------------


class ConnectState(StrEnum):
    ISSUED = "issued"  # the merchant was sent to their store to approve
    VERIFYING = "verifying"  # the store posted keys; they are being tried against it
    CONNECTED = "connected"  # the keys worked: the shop has them
    REFUSED = "refused"  # the keys did not work; ``reason`` says why


class ConnectNonce(Base):
    """A single-use nonce handed to a platform during a connect (WooCommerce's
    key POST is unsigned, so it is accepted only for a live nonce). Only the
    SHA-256 of the nonce is stored. The keys a store posts wait here, sealed,
    until a call to that store with them has worked; only then does a shop get
    them, and they are wiped from here once settled."""

    __tablename__ = "connect_nonces"
    __table_args__ = (
        UniqueConstraint("nonce_hash"),
        Index("ix_connect_nonces_requested_by_created_at", "requested_by", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    nonce_hash: Mapped[str] = mapped_column(String(64))
    #: the normalised shop key the nonce was issued for
    shop_key: Mapped[str] = mapped_column(String(255))
    #: the address as the merchant gave it (scheme kept), for the shop's base URL
    address: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=now)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16), default=ConnectState.ISSUED)
    #: a digest of the address the connect came from (for the rate limit)
    requested_by: Mapped[str | None] = mapped_column(String(64))
    consumer_key_enc: Mapped[str | None] = mapped_column(Text)
    consumer_secret_enc: Mapped[str | None] = mapped_column(Text)
    #: the shop a verified connect made or reconnected
    shop_id: Mapped[int | None] = mapped_column(Id)
    #: why the keys were refused, in words for the merchant
    reason: Mapped[str | None] = mapped_column(Text)
    settled_at: Mapped[datetime | None]


class Subscription(Base):
    """A webhook subscription we created in a shop through its API."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("shop_id", "topic"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    topic: Mapped[str] = mapped_column(String(128))
    #: the platform's id for it (a GraphQL GID, a WooCommerce webhook id)
    remote_id: Mapped[str] = mapped_column(String(255))
    address: Mapped[str] = mapped_column(String(1024))
    #: as the platform last reported it (WooCommerce: active, paused, disabled)
    status: Mapped[str] = mapped_column(String(32), default="active")
    created_at: Mapped[datetime] = mapped_column(default=now)
    checked_at: Mapped[datetime | None]


class SyncCursor(Base):
    """How far a periodic reconciliation of one resource of a shop has read."""

    __tablename__ = "sync_cursors"
    __table_args__ = (UniqueConstraint("shop_id", "resource"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    resource: Mapped[str] = mapped_column(String(64))
    #: everything modified up to here has been seen (platform time, UTC)
    synced_until: Mapped[datetime]
    ran_at: Mapped[datetime]


#: the ``fact`` of a shop's row that says how far its daily scan as a whole ran
SCAN_DAY = "day"


class ScanState(Base):
    """How far a shop's daily scan has emitted one kind of fact (jobs.intake.scans).

    ``fact`` is a fact's type name (``BirthdayCame``), or :data:`SCAN_DAY` for the
    scan as a whole (what the sweeper reads to find the shops due). ``through`` is
    the last shop-local day fully scanned. A pass interrupted midway leaves the day it
    was scanning through in ``pass_until`` and its last contact done in ``after_id``,
    so a re-run finishes it for the contacts after that one instead of starting over.
    """

    __tablename__ = "scan_states"
    __table_args__ = (UniqueConstraint("shop_id", "fact"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    fact: Mapped[str] = mapped_column(String(64))
    through: Mapped[date]
    pass_until: Mapped[date | None]
    after_id: Mapped[int | None] = mapped_column(Id)
    scanned_at: Mapped[datetime]


class HistoryStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class HistoryImport(Base):
    """The import of a shop's past customers and orders (jobs.intake.history): one
    row per shop, saved with each page applied, so a crash resumes at ``cursor``
    and nothing is counted twice."""

    __tablename__ = "history_imports"
    __table_args__ = (UniqueConstraint("shop_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=HistoryStatus.RUNNING)
    #: orders placed from here on are imported
    since: Mapped[datetime]
    #: the platform's own mark of where to go on (opaque); None: from the start
    cursor: Mapped[str | None] = mapped_column(Text)
    #: customers and orders applied; items the platform listed (read) and its
    #: estimate of all of them; malformed items left out
    customers: Mapped[int] = mapped_column(Integer, default=0)
    orders: Mapped[int] = mapped_column(Integer, default=0)
    read: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now)
    finished_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class Notice(Base):
    """Something the merchant should know about their shop's connection
    (a disabled webhook, a failing API); shown on the settings page until cleared.
    One row per (shop, code): a repeat updates it instead of piling up."""

    __tablename__ = "notices"
    __table_args__ = (UniqueConstraint("shop_id", "code"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(default=now)
    last_seen_at: Mapped[datetime] = mapped_column(default=now)
    count: Mapped[int] = mapped_column(Integer, default=1)
    cleared_at: Mapped[datetime | None]


class PrivacyRequestKind(StrEnum):
    DATA_REQUEST = "data_request"
    CUSTOMER_REDACT = "customer_redact"
    SHOP_REDACT = "shop_redact"


class PrivacyRequest(Base):
    """A platform's privacy request and what we did about it.

    A data request keeps the export for the merchant in ``export``; a later
    redaction of the same customer erases that export too. ``detail`` holds
    counts only, never personal data.
    """

    __tablename__ = "privacy_requests"
    __table_args__ = (Index("ix_privacy_requests_shop_id_received_at", "shop_id", "received_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    #: the platform's reference (Shopify's data_request.id), if any
    reference: Mapped[str | None] = mapped_column(String(255))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    received_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    export: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


# --- merchant sign-in ------------------------------------------------------------


class MerchantSession(Base):
    """A merchant signed in for one shop, held here so it can be ended.

    The browser's cookie carries only a random id; only its SHA-256 is stored.
    See jobs.merchant.sessions for the lifetime and when sessions end.
    """

    __tablename__ = "merchant_sessions"
    __table_args__ = (
        UniqueConstraint("token_hash"),
        Index("ix_merchant_sessions_shop_id", "shop_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    #: the absolute end, whatever the use
    expires_at: Mapped[datetime]
    #: the last request seen (to a minute), for the idle bound
    last_seen_at: Mapped[datetime]
    #: logout, uninstall, or a new install or connect of the shop
    revoked_at: Mapped[datetime | None]


class LoginLink(Base):
    """A single-use link that signs a merchant in to one shop (jobs.merchant.login_links).

    Only the SHA-256 of the link's token is stored, so a copy of the table signs
    nobody in.
    """

    __tablename__ = "login_links"
    __table_args__ = (
        UniqueConstraint("token_hash"),
        Index("ix_login_links_shop_id", "shop_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    #: spent: the link signed someone in, and never will again
    used_at: Mapped[datetime | None]


class SpentInstallLink(Base):
    """A signed install link that was used: a platform's signed install query
    stays valid for minutes, so its digest is kept until then and a second use
    refused. Only the SHA-256 of the signed message is stored."""

    __tablename__ = "spent_install_links"
    __table_args__ = (UniqueConstraint("digest"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64))
    #: the normalised shop key the link was signed for
    shop_key: Mapped[str] = mapped_column(String(255))
    used_at: Mapped[datetime]
    #: after this the link is refused as stale anyway, and the row may go
    expires_at: Mapped[datetime]
