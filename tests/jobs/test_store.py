"""The store: migrations match the models, times stay UTC, money stays exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from jobs.runtime import Runtime
from jobs.shops import add_shop
from jobs.store.db import make_engine, migrate
from jobs.store.models import Base, Order, Shop
from jobs.store.secrets import SecretBox, SecretError


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    migrate(database_url)  # a second run changes nothing
    engine = make_engine(database_url)
    with engine.connect() as connection:
        diff = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == []


def test_times_come_back_aware_and_utc(runtime: Runtime) -> None:
    oslo = timezone(timedelta(hours=1))
    with runtime.sessions.begin() as session:
        shop = add_shop(session, runtime.secrets, "shopify", "a.myshopify.com")
        session.add(
            Order(
                shop_id=shop.id,
                order_id="1",
                name="#1",
                currency="NOK",
                total=Decimal("133.0357145"),
                data={},
                placed_at=datetime(2026, 3, 29, 2, 30, tzinfo=oslo),
                platform_updated_at=datetime(2026, 3, 29, 2, 30, tzinfo=oslo),
            )
        )
    with runtime.sessions() as session:
        order = session.scalars(select(Order)).one()
    assert order.placed_at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert order.placed_at.tzinfo is UTC
    assert order.total == Decimal("133.0357145")


def test_naive_times_and_float_money_are_refused(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        shop = add_shop(session, runtime.secrets, "shopify", "a.myshopify.com")
        session.add(
            Order(
                shop_id=shop.id, order_id="1", name="#1", currency="SEK", total=Decimal(1),
                data={}, placed_at=datetime(2026, 1, 1),  # noqa: DTZ001
                platform_updated_at=datetime.now(UTC),
            )
        )  # fmt: skip
        with pytest.raises(Exception, match="naive datetime"):
            session.flush()
        session.rollback()
        shop = add_shop(session, runtime.secrets, "shopify", "a.myshopify.com")
        session.add(
            Order(
                shop_id=shop.id, order_id="1", name="#1", currency="SEK", total=0.1,  # type: ignore[arg-type]
                data={}, placed_at=datetime.now(UTC), platform_updated_at=datetime.now(UTC),
            )
        )  # fmt: skip
        with pytest.raises(Exception, match="Decimal"):
            session.flush()


def test_secrets_are_sealed_and_need_the_key(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        add_shop(session, runtime.secrets, "shopify", "a.myshopify.com", access_token="shpat_abc")
    with runtime.sessions() as session:
        sealed = session.scalars(select(Shop.access_token_enc)).one()
    assert sealed is not None
    assert "shpat_abc" not in sealed
    assert runtime.secrets.open(sealed) == "shpat_abc"
    with pytest.raises(SecretError, match="TRIGGERPOST_SECRET_KEY"):
        SecretBox("another-key-entirely-" + "y" * 20).open(sealed)
    # during a key rotation the old key still opens what it sealed
    rotated = SecretBox("new-key-" + "z" * 32, previous=runtime.settings.secret_key)
    assert rotated.open(sealed) == "shpat_abc"
