"""SQLAlchemy models: the store is the source of truth (Redis only carries work).

Tables: shops, raw webhook deliveries, the event log, contacts, checkouts,
orders and products. Flows, messages and suppressions arrive with the engine
and add their own tables by migration; the shapes here leave room for them
(contact consent with source and time, order stats, per-shop settings JSON).

Money columns use :class:`Amount`: NUMERIC on PostgreSQL (so analytics can sum
in SQL) and an exact decimal string on SQLite (whose NUMERIC is a float).
"""

from __future__ import annotations

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
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

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


class Shop(Timestamps, Base):
    __tablename__ = "shops"
    __table_args__ = (UniqueConstraint("platform", "key"),)

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
    consumer_key_enc: Mapped[str | None] = mapped_column(Text)
    consumer_secret_enc: Mapped[str | None] = mapped_column(Text)
    #: per-shop settings (flows, delays, caps, branding), validated by the settings page
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    installed_at: Mapped[datetime] = mapped_column(default=now)
    uninstalled_at: Mapped[datetime | None]


# --- intake ------------------------------------------------------------------


class DeliveryStatus(StrEnum):
    RECEIVED = "received"  # stored, not yet processed
    PROCESSED = "processed"
    FAILED = "failed"  # processing raised; RQ retries it (see jobs.intake)


class Delivery(Base):
    """A raw webhook delivery exactly as received (body bytes as signed)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("shop_id", "delivery_key"),
        Index("ix_deliveries_shop_id_status_id", "shop_id", "status", "id"),
        Index("ix_deliveries_status_received_at", "status", "received_at"),
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
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    email: Mapped[str | None] = mapped_column(String(320))
    customer_id: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(35))
    country_code: Mapped[str | None] = mapped_column(String(2))
    timezone: Mapped[str | None] = mapped_column(String(64))
    birthday: Mapped[date | None] = mapped_column(Date)
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
    name: Mapped[str] = mapped_column(String(64))
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


class Product(Timestamps, Base):
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("shop_id", "product_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    product_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(512))
    handle: Mapped[str | None] = mapped_column(String(255))
    url: Mapped[str | None] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    status: Mapped[str | None] = mapped_column(String(32))
    available: Mapped[bool | None] = mapped_column(Boolean)
    data: Mapped[dict[str, Any]]
    platform_updated_at: Mapped[datetime]
