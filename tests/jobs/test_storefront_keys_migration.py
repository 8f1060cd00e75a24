"""Migration 0014: shops that existed before storefront events get their key too."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import text

from jobs.store.db import make_engine, migrate


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
