"""What each order holds, product by product (``order_products``), for segments.

"Bought from the Coffee collection within 90 days" asks which orders hold a
product of the collection: an indexed lookup in ``order_products`` joined to
the order's row (whose status and time say whether and when it counts), never
a read of the orders' line items. The intake keeps the rows with the order's
row: :func:`keep` after an order is written (a webhook, or a history page),
so an edited order's products follow it, and a replay writes nothing new.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, insert, select, tuple_
from sqlalchemy.orm import Session

from jobs.audience.recommendations import order_products
from jobs.store.db import plain
from jobs.store.models import Order, OrderProduct

#: the most products of one order kept (an order of thousands of lines is a wholesale
#: import: its first products say enough of what was bought)
MAX_ORDER_PRODUCTS = 500


def keep(session: Session, orders: Iterable[Order]) -> None:
    """Make ``order_products`` hold each order's products as its row says now: one
    SELECT of what is held, then the missing inserted and the gone deleted.
    The orders' rows must have their ids (flushed)."""
    orders = list(orders)
    wanted: dict[tuple[int, str], int] = {}
    for order in orders:
        for product_id in order_products(order.data or {})[:MAX_ORDER_PRODUCTS]:
            if len(product_id) <= 64:  # longer is no platform's id: nothing to match
                wanted[(order.id, product_id)] = order.shop_id
    ids = sorted({order_id for order_id, _ in wanted} | {o.id for o in orders})
    if not ids:
        return
    connection = plain(session)
    held = {
        (row.order_row_id, row.product_id)
        for row in connection.execute(
            select(OrderProduct.order_row_id, OrderProduct.product_id).where(
                OrderProduct.order_row_id.in_(ids)
            )
        )
    }
    new = [
        {"shop_id": shop_id, "order_row_id": order_id, "product_id": product_id}
        for (order_id, product_id), shop_id in wanted.items()
        if (order_id, product_id) not in held
    ]
    if new:
        connection.execute(insert(OrderProduct), new)
    gone = held - set(wanted)
    if gone:
        connection.execute(
            delete(OrderProduct).where(
                tuple_(OrderProduct.order_row_id, OrderProduct.product_id).in_(sorted(gone))
            )
        )
