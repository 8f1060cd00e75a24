"""Attribution: which orders our emails earned, and the lift holdouts measure.

An order is credited to the last message the contact clicked within the
shop's attribution window before the order (default 5 days). Opens count only
when the shop turns them on: privacy proxies (Apple Mail) fetch every pixel,
so an "open" often means nothing. Each order is credited at most once, in the
shop's currency, whatever replays or updates of it arrive.

A click is evidence, not proof: a holdout group (a deterministic share of a
flow's enrollments that get no email, ``holdout_percent``) shows what would
have happened anyway; :func:`lift` compares the two groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters import events as ev
from jobs.engine.policy import Policy
from jobs.flows.model import AUDIENCE_KEY_PREFIX
from jobs.store import queries, rows
from jobs.store.db import plain
from jobs.store.models import (
    Attribution,
    EngagementKind,
    Enrollment,
    Order,
    OrderStatus,
    Shop,
)


def credit(session: Session, shop: Shop, order: Order, at: datetime) -> Attribution | None:
    """Credit ``order`` to the last engagement in the window; None if nothing earned it."""
    if order.contact_id is None or order.test:
        return None
    if order.status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED):
        return None
    connection = plain(session)
    if connection.scalar(queries.ATTRIBUTION_OF_ORDER, {"order_row_id": order.id}):
        return None
    policy = Policy.of(shop)
    kinds = [EngagementKind.CLICK] + ([EngagementKind.OPEN] if policy.attribute_opens else [])
    params = {
        "shop_id": shop.id,
        "contact_id": order.contact_id,
        "kinds": kinds,
        "until": order.placed_at,
        "since": order.placed_at - policy.attribution_window,
    }
    last = connection.execute(queries.LAST_ENGAGEMENT_IN_WINDOW, params).first()
    if last is None:
        return None
    message_id, engaged_at, flow = last
    revenue, currency = (
        (order.shop_total, order.shop_currency)
        if order.shop_total is not None and order.shop_currency
        else (order.total, order.currency)
    )
    row = Attribution(
        shop_id=shop.id,
        order_row_id=order.id,
        message_id=message_id,
        flow=flow,
        revenue=revenue,
        currency=currency,
        engagement_at=engaged_at,
        attributed_at=at,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return None  # credited a moment ago by a replay
    return row


#: the events that credit an order (placed, paid) or take its credit back
ORDER_EVENTS = (ev.OrderPlaced, ev.OrderPaid, ev.OrderCancelled, ev.OrderRefunded)


def on_order_event(
    session: Session, shop: Shop, event: ev.Event, order_id: str, at: datetime
) -> None:
    """An applied order event: credit the order, or withdraw its credit."""
    order = rows.order(session, shop.id, order_id)
    if order is None:
        return
    if isinstance(event, (ev.OrderCancelled, ev.OrderRefunded)):
        withdraw(session, order)
    else:
        credit(session, shop, order, at)


def withdraw(session: Session, order: Order) -> None:
    """A cancelled or refunded order earned nothing after all."""
    session.execute(delete(Attribution).where(Attribution.order_row_id == order.id))


@dataclass(frozen=True)
class Lift:
    flow: str
    treated: int
    treated_converted: int
    holdout: int
    holdout_converted: int

    @property
    def treated_rate(self) -> float:
        return self.treated_converted / self.treated if self.treated else 0.0

    @property
    def holdout_rate(self) -> float:
        return self.holdout_converted / self.holdout if self.holdout else 0.0

    @property
    def lift(self) -> float | None:
        """Relative lift of the emailed group over the holdout (None without a baseline)."""
        if not self.treated or not self.holdout or not self.holdout_rate:
            return None
        return self.treated_rate / self.holdout_rate - 1


def lift(session: Session, shop: Shop, flow: str, since: datetime) -> Lift:
    """Conversion within the attribution window after enrolling, emailed vs holdout.

    Worked out in Python from two indexed queries: interval arithmetic in SQL
    differs between SQLite and PostgreSQL, and a shop's enrollments in a report
    period are thousands, not millions.
    """
    window = Policy.of(shop).attribution_window
    enrollments = session.execute(
        select(Enrollment.holdout, Enrollment.contact_id, Enrollment.entered_at).where(
            Enrollment.shop_id == shop.id,
            Enrollment.flow == flow,
            Enrollment.entered_at >= since,
            # an audience's fan-out carries its progress, nobody who could buy
            ~Enrollment.key.startswith(AUDIENCE_KEY_PREFIX, autoescape=True),
        )
    ).all()
    contacts = {contact for _, contact, _ in enrollments if contact is not None}
    placed: dict[int | None, list[datetime]] = {}
    if contacts:
        for contact_id, at in session.execute(
            select(Order.contact_id, Order.placed_at).where(
                Order.shop_id == shop.id,
                Order.contact_id.in_(contacts),
                Order.test.is_(False),
                Order.status.not_in([OrderStatus.CANCELLED, OrderStatus.REFUNDED]),
                Order.placed_at >= since,
            )
        ):
            placed.setdefault(contact_id, []).append(at)
    counts = {True: [0, 0], False: [0, 0]}
    for holdout, contact_id, entered in enrollments:
        group = counts[bool(holdout)]
        group[0] += 1
        if any(entered <= t <= entered + window for t in placed.get(contact_id, [])):
            group[1] += 1
    return Lift(flow, counts[False][0], counts[False][1], counts[True][0], counts[True][1])


def revenue(session: Session, shop_id: int, since: datetime) -> dict[str, tuple[Decimal, str]]:
    """Attributed revenue per flow since ``since`` (in the shop's currency)."""
    rows = session.execute(
        select(Attribution.flow, Attribution.currency, Attribution.revenue).where(
            Attribution.shop_id == shop_id, Attribution.attributed_at >= since
        )
    ).all()
    totals: dict[str, tuple[Decimal, str]] = {}
    for flow, currency, amount in rows:
        total, _ = totals.get(flow, (Decimal(0), currency))
        totals[flow] = (total + amount, currency)
    return totals
