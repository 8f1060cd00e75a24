"""Migration 0014: shops that existed before storefront events get their key too."""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from sqlalchemy import text

from jobs.store.db import alembic_config, make_engine, migrate


def test_shops_registered_before_the_upgrade_each_get_their_own_storefront_key(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(url, "0013")
    engine = make_engine(url)
    with engine.begin() as connection:
        for n in range(3):
            connection.execute(
                text(
                    "INSERT INTO shops (platform, key, name, status, base_url, settings,"
                    " installed_at, created_at, updated_at) VALUES ('shopify', :key, :key,"
                    " 'active', 'https://x', '{}', :t, :t, :t)"
                ),
                {"key": f"shop-{n}.myshopify.com", "t": "2026-12-01 10:00:00.000000"},
            )
    migrate(url)
    with engine.connect() as connection:
        keys = connection.scalars(text("SELECT storefront_key FROM shops")).all()
    engine.dispose()
    assert len(set(keys)) == 3
    assert all(re.fullmatch(r"pk_[a-z2-7]{26}", key) for key in keys)


def test_the_upgrade_and_its_downgrade_keep_everything_that_belongs_to_a_shop(
    database_url: str,
) -> None:
    """On SQLite a rebuilt ``shops`` table would take every row that refers to a shop
    with it (ON DELETE CASCADE): the migration only adds columns and indexes."""
    command.downgrade(alembic_config(database_url), "0013")
    engine = make_engine(database_url)
    stamp = "2026-12-01 10:00:00"
    with engine.begin() as connection:
        shop_id = connection.execute(
            text(
                "INSERT INTO shops (platform, key, name, status, base_url, settings,"
                " installed_at, created_at, updated_at) VALUES ('shopify', 'kept.myshopify.com',"
                " 'Kept', 'active', 'https://x', '{}', :t, :t, :t) RETURNING id"
            ),
            {"t": stamp},
        ).scalar_one()
        connection.execute(
            text(
                "INSERT INTO contacts (shop_id, email, orders_count, total_spent, created_at,"
                " updated_at) VALUES (:shop, 'anna@example.se', 0, '0', :t, :t)"
            ),
            {"shop": shop_id, "t": stamp},
        )
    try:
        migrate(database_url)
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM contacts")) == 1
        command.downgrade(alembic_config(database_url), "0013")
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM contacts")) == 1
            assert connection.scalar(text("SELECT count(*) FROM shops")) == 1
    finally:
        engine.dispose()
        migrate(database_url)
