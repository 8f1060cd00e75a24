"""Product recommendations from the shop's own sales: bought together, alike, bestsellers.

What is counted is kept as orders arrive (``on_order``, called by
jobs.intake.apply), so choosing products at send time reads a few indexed rows
and never scans the orders:

- ``product_pairs``: for two products, how many paid orders held both (kept
  both ways round, so "bought with these" is one range of the unique key);
- ``product_sales``: for a product, how many paid orders held it (bestsellers);
- ``counted_orders``: each counted order and the products it counted, so a
  replayed payment counts nothing twice and a cancellation or refund takes
  back exactly what was counted;
- ``product_groups``: a product's collections and tags (``on_product``), so
  products alike are one indexed join.

``related`` ranks products bought together with the given ones (most orders
first), then products sharing their collections, then their tags, then the
shop's bestsellers; ties go by product id, so the same data gives the same
list. It never offers a product that is out of stock, not on sale (a draft,
archived) or unknown to the store, nor the ones the caller leaves out (those
the email already shows, those the contact bought).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from jobs.store import queries
from jobs.store.db import plain
from jobs.store.models import (
    DELETED_PRODUCT_STATUS,
    Order,
    OrderStatus,
    Product,
    ProductGroupKind,
)

#: an order with more distinct products counts only its first ones in pairs and
#: sales: the pairs grow as the square of the products, and an order of hundreds
#: of products says little about which go together
MAX_COUNTED_PRODUCTS = 40


# --- keeping the counts ----------------------------------------------------------


def order_products(order_data: dict[str, Any]) -> list[str]:
    """The distinct product ids of a stored order's line items, in the order's order."""
    seen: dict[str, None] = {}
    for item in order_data.get("line_items") or []:
        product_id = item.get("product_id")
        if product_id:
            seen.setdefault(str(product_id), None)
    return list(seen)


def on_order(session: Session, order: Order, status: OrderStatus | None = None) -> None:
    """Count a paid order once; take it back once it is cancelled or refunded.

    Run after the order's row holds its new status (or with ``status``, one it
    reached on the way there: the history import writes an order's row once and
    then counts it for each status it went through). A test order is never counted.
    """
    status = OrderStatus(order.status) if status is None else status
    if status == OrderStatus.PAID and not order.test:
        count_order(session, order)
    elif status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED):
        take_back_order(session, order)


def counted_products(order: Order) -> list[str]:
    """The products a paid order adds to the pairs and sales (at most MAX_COUNTED_PRODUCTS)."""
    return sorted(order_products(order.data)[:MAX_COUNTED_PRODUCTS])


def count_order(session: Session, order: Order) -> bool:
    """Add the order's products to the pairs and sales unless it was counted: True if now."""
    ids = counted_products(order)
    connection = plain(session)
    dialect = connection.dialect.name
    noted = connection.execute(
        queries.INSERT_COUNTED_ORDER[dialect],
        {"shop_id": order.shop_id, "order_row_id": order.id, "product_ids": ids},
    ).first()
    if noted is None or not ids:
        return noted is not None
    shop_id = order.shop_id
    # in one order of keys, so two transactions counting the same pairs never deadlock
    pairs = [
        {"shop_id": shop_id, "product_id": a, "other_id": b, "count": 1}
        for a in ids
        for b in ids
        if a != b
    ]
    if pairs:
        connection.execute(queries.UPSERT_PRODUCT_PAIRS[dialect], pairs)
    sales = [{"shop_id": shop_id, "product_id": a, "orders": 1} for a in ids]
    connection.execute(queries.UPSERT_PRODUCT_SALES[dialect], sales)
    return True


def count_orders(session: Session, shop_id: int, orders: dict[int, list[str]]) -> int:
    """``count_order`` for many paid orders of a shop at once (the history import's
    page): ``orders`` maps an order's row id to its ``counted_products``, as they
    were when it was paid. Three statements in all; how many were counted now."""
    if not orders:
        return 0
    connection = plain(session)
    dialect = connection.dialect.name
    noted = connection.execute(
        queries.COUNT_ORDERS[dialect],
        [
            {"shop_id": shop_id, "order_row_id": row_id, "product_ids": ids}
            for row_id, ids in orders.items()
        ],
    ).scalars()
    pairs: Counter[tuple[str, str]] = Counter()
    sales: Counter[str] = Counter()
    counted = 0
    for row_id in set(noted):
        counted += 1
        ids = orders[row_id]
        sales.update(ids)
        pairs.update((a, b) for a in ids for b in ids if a != b)
    # in one order of keys, as count_order, so that no two transactions deadlock
    if pairs:
        connection.execute(
            queries.UPSERT_PRODUCT_PAIRS[dialect],
            [
                {"shop_id": shop_id, "product_id": a, "other_id": b, "count": n}
                for (a, b), n in sorted(pairs.items())
            ],
        )
    if sales:
        connection.execute(
            queries.UPSERT_PRODUCT_SALES[dialect],
            [{"shop_id": shop_id, "product_id": a, "orders": n} for a, n in sorted(sales.items())],
        )
    return counted


def take_back_order(session: Session, order: Order) -> bool:
    """Take back what a counted order added; True if it had been counted."""
    connection = plain(session)
    counted = connection.execute(
        queries.DELETE_COUNTED_ORDER, {"order_row_id": order.id}
    ).scalar_one_or_none()
    if counted is None:
        return False
    if counted:
        params = {"shop": order.shop_id, "ids": list(counted)}
        connection.execute(queries.TAKE_BACK_PRODUCT_PAIRS, params)
        connection.execute(queries.TAKE_BACK_PRODUCT_SALES, params)
    return True


def on_product(session: Session, product: Product) -> None:
    """Replace the product's collections and tags with those it now has; a deleted
    product is in none (so it makes nobody a buyer of a new product's kind)."""
    connection = plain(session)
    key = {"shop_id": product.shop_id, "product_id": product.product_id}
    connection.execute(queries.DELETE_PRODUCT_GROUPS, key)
    if product.status == DELETED_PRODUCT_STATUS:
        return
    groups = {
        (kind, name[:255])
        for kind, field in (
            (ProductGroupKind.COLLECTION, "collections"),
            (ProductGroupKind.TAG, "tags"),
        )
        for name in product.data.get(field) or ()
        if isinstance(name, str) and name.strip()
    }
    if groups:
        connection.execute(
            queries.INSERT_PRODUCT_GROUPS,
            [{**key, "kind": kind, "name": name} for kind, name in sorted(groups)],
        )


def backfill(session: Session, shop_id: int, *, batch: int = 500) -> int:
    """Count the shop's paid orders not counted yet, and group its products: for
    data stored before the counts were kept. Safe to run again; the orders counted now."""
    counted = 0
    after = 0
    while True:
        orders = session.scalars(
            queries.UNCOUNTED_PAID_ORDERS, {"shop_id": shop_id, "after": after, "limit": batch}
        ).all()
        for order in orders:
            counted += count_order(session, order)
        if len(orders) < batch:
            break
        after = orders[-1].id
    for product in session.scalars(queries.PRODUCTS_OF_SHOP, {"shop_id": shop_id}):
        on_product(session, product)
    return counted


# --- choosing ----------------------------------------------------------------------


def bought_by(session: Session, shop_id: int, contact_id: int | None) -> frozenset[str]:
    """Every product the contact's orders held (cancelled ones too: they know it)."""
    if contact_id is None:
        return frozenset()
    rows = plain(session).execute(
        queries.ORDER_DATA_OF_CONTACT, {"shop_id": shop_id, "contact_id": contact_id}
    )
    return frozenset(product for (data,) in rows for product in order_products(data or {}))


def related(
    session: Session,
    shop_id: int,
    product_ids: Sequence[str],
    *,
    exclude: Iterable[str] = (),
    bought: Iterable[str] = (),
    limit: int = 3,
) -> list[Product]:
    """Up to ``limit`` products to offer beside ``product_ids``, best first.

    Bought together with them, then in their collections, then sharing their
    tags, then the shop's bestsellers. Never one of ``product_ids``, ``exclude``
    (already in the email) or ``bought`` (the contact has it), nor one out of
    stock or not on sale.
    """
    if limit <= 0:
        return []
    seeds = sorted({str(p) for p in product_ids})
    excluded = set(seeds) | {str(p) for p in exclude} | {str(p) for p in bought}
    chosen: list[Product] = []
    steps = (queries.BOUGHT_TOGETHER, queries.SAME_GROUPS) if seeds else ()
    for statement in (*steps, queries.BESTSELLERS):
        wanted = limit - len(chosen)
        if wanted <= 0:
            break
        found = session.scalars(
            statement,
            {"shop_id": shop_id, "seeds": seeds, "excluded": sorted(excluded), "limit": wanted},
        ).all()
        for product in found:
            excluded.add(product.product_id)
            chosen.append(product)
    return chosen
