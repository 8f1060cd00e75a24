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

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

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


#: the normal quantile of a two-sided 95 % interval
Z95 = 1.959964
#: fewer contacts than this in either group: "not enough data yet", whatever the interval
MIN_GROUP = 30


class Verdict(StrEnum):
    """What a holdout's measure says, for a merchant (:attr:`Lift.verdict`)."""

    NOT_ENOUGH_DATA = "not_enough_data"  # small groups, or an interval that spans 0
    MORE_ORDERS = "more_orders"  # the emailed group ordered more, surely
    FEWER_ORDERS = "fewer_orders"  # the emailed group ordered less, surely


def wilson(converted: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion (sound for small counts and 0 or 1)."""
    if not total:
        return 0.0, 1.0
    p = converted / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Lift:
    """Conversion of a flow's emailed contacts against its held-out ones."""

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

    @property
    def difference(self) -> float:
        """Emailed minus held-out conversion rate (0.02: two more orders per 100 contacts)."""
        return self.treated_rate - self.holdout_rate

    def interval(self, z: float = Z95) -> tuple[float, float] | None:
        """Newcombe's hybrid score interval of :attr:`difference` (his method 10: the
        Wilson interval of each rate, combined), 95 % by default; None when a group is
        empty. Unlike Wald's, it stays inside [-1, 1] and keeps its coverage at the
        small counts and rates near 0 that a shop's holdout has."""
        if not self.treated or not self.holdout:
            return None
        p1, p2 = self.treated_rate, self.holdout_rate
        l1, u1 = wilson(self.treated_converted, self.treated, z)
        l2, u2 = wilson(self.holdout_converted, self.holdout, z)
        low = p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        high = p1 - p2 + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
        return low, high

    @property
    def verdict(self) -> Verdict:
        found = self.interval()
        if found is None or min(self.treated, self.holdout) < MIN_GROUP:
            return Verdict.NOT_ENOUGH_DATA
        low, high = found
        if low > 0:
            return Verdict.MORE_ORDERS
        if high < 0:
            return Verdict.FEWER_ORDERS
        return Verdict.NOT_ENOUGH_DATA

    @property
    def percent(self) -> int | None:
        """The relative lift in whole per cent (None without a baseline)."""
        return None if self.lift is None else round(self.lift * 100)

    @property
    def words(self) -> str:
        """The verdict in plain words (English; the merchant UI translates them)."""
        verdict = self.verdict
        if verdict == Verdict.NOT_ENOUGH_DATA:
            return "Not enough data yet"
        more = verdict == Verdict.MORE_ORDERS
        if self.percent is None:  # nobody held out ordered: no ratio to give
            return f"{'More' if more else 'Fewer'} orders than without the emails"
        how = "more" if more else "fewer"
        return f"About {abs(self.percent)} % {how} orders than without the emails"


def lift(
    session: Session, shop: Shop, flow: str, since: datetime, until: datetime | None = None
) -> Lift:
    """Conversion within the attribution window after enrolling, emailed vs holdout,
    of the enrollments that entered from ``since`` (and before ``until``).

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
            *([Enrollment.entered_at < until] if until is not None else []),
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
