"""Checkouts and orders found by their platform key, remembered for the transaction.

One event or one send asks for the same checkout several times (the handler,
each enrollment's exit check, the trigger, the email's products). The ORM's
identity map hands back the same object each time but still asks the
database; this asks it once per transaction. Only rows that exist are
remembered (but for ``prefetch``, which also remembers which are absent), and
the memory ends with the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy.orm import Session, SessionTransaction

from jobs.store import queries
from jobs.store.db import SessionListener
from jobs.store.models import Checkout, Order

ROWS = "triggerpost.rows"
Found = TypeVar("Found", Checkout, Order)

#: the lookups by model (jobs.store.queries builds them once)
_LOOKUPS: dict[type, Any] = {
    Checkout: queries.CHECKOUT_BY_TOKEN,
    Order: queries.ORDER_BY_ORDER_ID,
}
#: many at once, and the column they are found by (``prefetch``)
_MANY: dict[type, tuple[Any, str]] = {
    Checkout: (queries.CHECKOUTS_BY_TOKENS, "token"),
    Order: (queries.ORDERS_BY_ORDER_IDS, "order_id"),
}


def _remembered(session: Session) -> dict[tuple[Any, ...], Any]:
    found: dict[tuple[Any, ...], Any] = session.info.setdefault(ROWS, {})
    return found


def checkout(session: Session, shop_id: int, token: str) -> Checkout | None:
    return _find(session, Checkout, shop_id, token)


def order(session: Session, shop_id: int, order_id: str) -> Order | None:
    return _find(session, Order, shop_id, order_id)


def _find(session: Session, model: type[Found], shop_id: int, value: str) -> Found | None:
    key = (model, shop_id, value)
    remembered = _remembered(session)
    if key in remembered:
        found: Found | None = remembered[key]  # None: absent when prefetched
        return found
    row: Found | None = session.scalar(_LOOKUPS[model], {"shop_id": shop_id, "value": value})
    if row is not None:
        remembered[key] = row
    return row


def prefetch(session: Session, model: type[Found], shop_id: int, values: Iterable[str]) -> None:
    """Find these rows in one query, and remember them, and that the others are
    absent, for the rest of the transaction (the history import: its page's orders
    and checkouts, instead of a query for each).

    A row another transaction adds meanwhile is taken as absent: an order's then
    fails this transaction on its unique key (as it would between a lookup and
    the insert), a checkout's stays open (as a checkout arriving after its order
    does until its own event looks for the order)."""
    wanted = {v for v in values if (model, shop_id, v) not in _remembered(session)}
    if not wanted:
        return
    lookup, column = _MANY[model]
    remembered = _remembered(session)
    remembered.update({(model, shop_id, v): None for v in wanted})
    for row in session.scalars(lookup, {"shop_id": shop_id, "values": sorted(wanted)}):
        remembered[(model, shop_id, getattr(row, column))] = row


def remember(session: Session, row: Checkout | Order) -> None:
    """A row this transaction just added (found by the lookups above from now on)."""
    if isinstance(row, Checkout):
        _remembered(session)[(Checkout, row.shop_id, row.token)] = row
    else:
        _remembered(session)[(Order, row.shop_id, row.order_id)] = row


def _forget_at_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(ROWS, None)


def _forget_on_rollback(session: Session, previous: SessionTransaction) -> None:
    # a savepoint rolled back takes the rows it added with it
    session.info.pop(ROWS, None)


#: what the store's session factories attach (see jobs.runtime): the memory ends
#: with the transaction
SESSION_LISTENERS: tuple[SessionListener, ...] = (
    ("after_transaction_end", _forget_at_end),
    ("after_soft_rollback", _forget_on_rollback),
)
