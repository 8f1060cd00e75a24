"""Products kept current: one rule for what is for sale, and deletions that stay deleted."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from sqlalchemy import select

from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.store.models import (
    DELETED_PRODUCT_STATUS,
    PRODUCT_FOR_SALE,
    Product,
    for_sale,
)

WHEN = datetime(2026, 9, 14, 12, 0, tzinfo=UTC)
STATUSES = (None, "active", "ACTIVE", "publish", "draft", "archived", "unlisted")
STATUSES += ("private", "pending", "trash", "future", DELETED_PRODUCT_STATUS)


def test_the_rule_reads_the_same_in_python_and_in_sql(runtime: Runtime) -> None:
    cases = list(itertools.product(STATUSES, (True, False, None)))
    with runtime.sessions.begin() as session:
        shop = add_shop(session, runtime.secrets, "shopify", "a.myshopify.com")
        for n, (status, available) in enumerate(cases):
            session.add(
                Product(
                    shop_id=shop.id,
                    product_id=str(n),
                    title=f"{status} {available}",
                    status=status,
                    available=available,
                    data={},
                    platform_updated_at=WHEN,
                )
            )
    with runtime.sessions() as session:
        in_sql = set(session.scalars(select(Product.product_id).where(PRODUCT_FOR_SALE)))
    in_python = {str(n) for n, case in enumerate(cases) if for_sale(*case)}
    assert in_sql == in_python
    on_sale = {cases[int(n)] for n in in_python}
    assert on_sale == {
        (status, available)
        for status in (None, "active", "ACTIVE", "publish")
        for available in (True, None)
    }
