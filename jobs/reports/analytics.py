"""Analytics: what a shop's flows sent and earned, per flow and per shop-local day.

Figures (each counted from the ledger only: a test send is never a message, so it
is never counted):

============  ====================================================================
sent          messages sent (state ``sent``), on the local day they were sent
bounced       of those, the ones a hard bounce came back for (a suppression that
              names the message)
delivered     sent minus bounced
clicked       of those, the ones clicked at least once (unique messages)
unsubscribed  of those, the ones whose unsubscribe link, one-click header or
              preferences page ended a subscription (a suppression naming it)
orders        orders credited to the flow (jobs.reports.attribution), on the local
              day the order was placed
revenue       what those orders came to, in the shop's currency (Decimal)
============  ====================================================================

An email's figures are counted on the day it was sent (a click two days later
still counts for the day of its email), so clicked, bounced and unsubscribed
never exceed sent on a day; an order counts on the day it was placed.

Each query is one SQL aggregate grouped by flow and local day, so a shop's
millions of messages never come into Python. Local days are made in SQL from
the epoch seconds plus the shop's UTC offset, which changes within the range
only at its zone's transitions: the offset is a small CASE over those instants,
worked out here with ``zoneinfo`` (DST days of 23 and 25 hours come out right on
both SQLite and PostgreSQL, and zones of half and quarter hours too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Float,
    Integer,
    and_,
    case,
    cast,
    distinct,
    exists,
    func,
    select,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from jobs.engine import localtime
from jobs.flows import registry
from jobs.flows.model import AUDIENCE_KEY_PREFIX
from jobs.reports.attribution import Lift, lift
from jobs.store.models import (
    Attribution,
    Engagement,
    EngagementKind,
    Enrollment,
    Message,
    MessageState,
    Order,
    Shop,
    Suppression,
    SuppressionReason,
)

#: the longest range one report covers (a leap year)
MAX_DAYS = 366
#: the Overview's period
SUMMARY_DAYS = 30

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY = 86400
#: SQLite keeps amounts as text: it sums them as whole millionths (exact for any
#: amount below a billion with up to six decimals), PostgreSQL sums its NUMERIC
_SQLITE_SCALE = 1_000_000
_CENTS = Decimal("0.01")
_ZERO = Decimal("0.00")


class RangeError(ValueError):
    """A report over days that cannot be one; the message says why."""


@dataclass(frozen=True)
class Figures:
    sent: int = 0
    bounced: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    orders: int = 0
    #: in the shop's currency
    revenue: Decimal = Decimal("0.00")
    #: revenue of orders credited in another currency (no shop amount was known)
    other_revenue: Mapping[str, Decimal] = field(default_factory=dict)

    @property
    def delivered(self) -> int:
        return self.sent - self.bounced

    def __add__(self, other: Figures) -> Figures:
        others = dict(self.other_revenue)
        for currency, amount in other.other_revenue.items():
            others[currency] = others.get(currency, Decimal(0)) + amount
        return Figures(
            sent=self.sent + other.sent,
            bounced=self.bounced + other.bounced,
            clicked=self.clicked + other.clicked,
            unsubscribed=self.unsubscribed + other.unsubscribed,
            orders=self.orders + other.orders,
            revenue=self.revenue + other.revenue,
            other_revenue=others,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "delivered": self.delivered,
            "bounced": self.bounced,
            "clicked": self.clicked,
            "unsubscribed": self.unsubscribed,
            "orders": self.orders,
            "revenue": self.revenue,
            "other_revenue": dict(self.other_revenue),
        }


NONE = Figures()


@dataclass(frozen=True)
class Report:
    """A shop's figures over ``first`` .. ``last`` (local days, both included)."""

    first: date
    last: date
    zone: str
    #: the shop's currency (None when the shop never said; revenue is then in the
    #: currency its orders were credited in, if only one)
    currency: str | None
    #: (flow, local day) -> figures; only days with something in them
    cells: Mapping[tuple[str, date], Figures]
    #: the holdout's measure per flow, for flows with a holdout in the range
    lifts: Mapping[str, Lift] = field(default_factory=dict)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    def by_day(self) -> list[tuple[date, Figures]]:
        """Every day of the range (none left out), all flows together."""
        totals: dict[date, Figures] = {}
        for (_flow, day), figures in self.cells.items():
            totals[day] = totals.get(day, NONE) + figures
        return [(day, totals.get(day, NONE)) for day in self.days]

    def by_flow(self) -> dict[str, Figures]:
        totals: dict[str, Figures] = {}
        for (flow, _day), figures in self.cells.items():
            totals[flow] = totals.get(flow, NONE) + figures
        return totals

    def total(self) -> Figures:
        return sum(self.by_flow().values(), NONE)


def shop_zone(shop: Shop) -> ZoneInfo:
    return localtime.zone(shop.timezone) or ZoneInfo("UTC")


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant a local day starts (a day starting in a DST gap starts at its end)."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    return start.astimezone(UTC).astimezone(zone).astimezone(UTC)


def bounds(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants the local days ``first`` .. ``last`` span: [start, end)."""
    return local_midnight(first, zone), local_midnight(last + timedelta(days=1), zone)


def _offset(at: datetime, zone: ZoneInfo) -> int:
    found = at.astimezone(zone).utcoffset()
    return int(found.total_seconds()) if found is not None else 0


def offsets(start: datetime, end: datetime, zone: ZoneInfo) -> list[tuple[datetime, int]]:
    """The zone's UTC offset (seconds) over [start, end): ``[(from, offset), ...]``, the
    first from ``start``, one more at each transition inside (found to the second)."""
    found = [(start, _offset(start, zone))]
    step = timedelta(hours=6)  # no zone changes its offset twice within six hours
    left = start
    while left < end:
        right = min(left + step, end)
        if _offset(right, zone) != found[-1][1]:
            low, high = left, right  # the offset changes after low, by high
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if _offset(middle, zone) == found[-1][1]:
                    low = middle
                else:
                    high = middle
            high = high.replace(microsecond=0)
            found.append((high, _offset(high, zone)))
        left = right
    return found


def _epoch(column: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.floor(func.extract("epoch", column))
    return cast(func.strftime("%s", column), Integer)


def local_day(column: Any, segments: list[tuple[datetime, int]], dialect: str) -> Any:
    """SQL for the local day of ``column`` as a day number (days since 1970-01-01)."""
    offset: Any
    if len(segments) == 1:
        offset = segments[0][1]
    else:
        whens = [
            (column < begins, offset_before)
            for (begins, _), (_, offset_before) in zip(segments[1:], segments, strict=False)
        ]
        offset = case(*whens, else_=segments[-1][1])
    seconds = _epoch(column, dialect) + offset
    if dialect == "postgresql":
        return cast(func.floor(seconds / _DAY), Integer)
    return cast(seconds / _DAY, Integer)  # integers: SQLite divides whole, and >= 0


def _day_of(number: int) -> date:
    return date.fromordinal(_EPOCH_ORDINAL + int(number))


def _revenue_sum(amount: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return func.sum(amount)
    scaled = func.round(cast(amount, Float()) * _SQLITE_SCALE)
    return func.sum(cast(scaled, Integer))


def _revenue_value(total: Any, dialect: str) -> Decimal:
    """The sum as the same Decimal on both databases: at least cents' places, more when
    the amounts had them (SQLite's scaled sum comes back as a whole number)."""
    if total is None:
        return _ZERO
    found = Decimal(total) if dialect == "postgresql" else Decimal(int(total)) / _SQLITE_SCALE
    found = found.normalize()
    exponent = found.as_tuple().exponent
    return found.quantize(_CENTS) if isinstance(exponent, int) and exponent > -2 else found


def report(
    session: Session,
    shop: Shop,
    first: date,
    last: date,
    flow: str | None = None,
    *,
    with_lift: bool = True,
) -> Report:
    """The shop's figures for the local days ``first`` .. ``last`` (one flow, or all).

    Three aggregate statements: sent and clicked from the messages; bounced and
    unsubscribed from the suppressions naming them; orders and revenue from the
    attributions. With ``with_lift``, the holdout measure of each flow that had a
    holdout group in the range (jobs.reports.attribution.lift).
    """
    if last < first:
        raise RangeError("the range ends before it starts")
    if (last - first).days + 1 > MAX_DAYS:
        raise RangeError(f"a range covers at most {MAX_DAYS} days")
    zone = shop_zone(shop)
    start, end = bounds(first, last, zone)
    segments = offsets(start, end, zone)
    dialect = session.get_bind().dialect.name
    cells: dict[tuple[str, date], dict[str, Any]] = {}

    def cell(flow_name: str, number: int) -> dict[str, Any]:
        return cells.setdefault((flow_name, _day_of(number)), {})

    sent = and_(
        Message.shop_id == shop.id,
        Message.state == MessageState.SENT,
        Message.sent_at >= start,
        Message.sent_at < end,
        *([Message.flow == flow] if flow is not None else []),
    )
    clicked = exists().where(
        Engagement.message_id == Message.id, Engagement.kind == EngagementKind.CLICK
    )
    each = (
        select(
            Message.flow.label("flow"),
            local_day(Message.sent_at, segments, dialect).label("day"),
            case((clicked, 1), else_=0).label("clicked"),
        )
        .where(sent)
        .subquery()
    )
    for flow_name, number, count, clicks in session.execute(
        select(each.c.flow, each.c.day, func.count(), func.sum(each.c.clicked)).group_by(
            each.c.flow, each.c.day
        )
    ):
        found = cell(flow_name, number)
        found["sent"] = int(count)
        found["clicked"] = int(clicks or 0)

    reasons = {
        SuppressionReason.HARD_BOUNCE: "bounced",
        SuppressionReason.UNSUBSCRIBED: "unsubscribed",
    }
    stopped = (
        select(
            Message.flow.label("flow"),
            local_day(Message.sent_at, segments, dialect).label("day"),
            Suppression.reason.label("reason"),
            Message.id.label("message"),
        )
        .join(Message, Message.id == Suppression.message_id)
        .where(Suppression.shop_id == shop.id, Suppression.reason.in_(list(reasons)), sent)
        .subquery()
    )
    for flow_name, number, reason, count in session.execute(
        select(
            stopped.c.flow, stopped.c.day, stopped.c.reason, func.count(distinct(stopped.c.message))
        ).group_by(stopped.c.flow, stopped.c.day, stopped.c.reason)
    ):
        cell(flow_name, number)[reasons[SuppressionReason(reason)]] = int(count)

    credited = (
        select(
            Attribution.flow.label("flow"),
            local_day(Order.placed_at, segments, dialect).label("day"),
            Attribution.currency.label("currency"),
            Attribution.revenue.label("revenue"),
        )
        .join(Order, Order.id == Attribution.order_row_id)
        .where(
            Attribution.shop_id == shop.id,
            Order.placed_at >= start,
            Order.placed_at < end,
            *([Attribution.flow == flow] if flow is not None else []),
        )
        .subquery()
    )
    currencies: set[str] = set()
    for flow_name, number, currency, count, total in session.execute(
        select(
            credited.c.flow,
            credited.c.day,
            credited.c.currency,
            func.count(),
            _revenue_sum(credited.c.revenue, dialect),
        ).group_by(credited.c.flow, credited.c.day, credited.c.currency)
    ):
        found = cell(flow_name, number)
        found["orders"] = found.get("orders", 0) + int(count)
        found.setdefault("revenue", {})[currency] = _revenue_value(total, dialect)
        currencies.add(currency)

    currency = shop.currency or (next(iter(currencies)) if len(currencies) == 1 else None)
    figures = {key: _figures(values, currency) for key, values in cells.items()}
    lifts = _lifts(session, shop, start, end, flow) if with_lift else {}
    return Report(first, last, zone.key, currency, figures, lifts)


def _figures(values: Mapping[str, Any], currency: str | None) -> Figures:
    revenue: dict[str, Decimal] = dict(values.get("revenue", {}))
    ours = revenue.pop(currency, _ZERO) if currency else _ZERO
    return Figures(
        sent=values.get("sent", 0),
        bounced=values.get("bounced", 0),
        clicked=values.get("clicked", 0),
        unsubscribed=values.get("unsubscribed", 0),
        orders=values.get("orders", 0),
        revenue=ours,
        other_revenue=revenue,
    )


def holdout_flows(
    session: Session, shop: Shop, start: datetime, end: datetime, flow: str | None = None
) -> list[str]:
    """The flows that held some enrollments out in [start, end), in registry order."""
    found = set(
        session.scalars(
            select(Enrollment.flow)
            .distinct()
            .where(
                Enrollment.shop_id == shop.id,
                Enrollment.holdout.is_(True),
                Enrollment.entered_at >= start,
                Enrollment.entered_at < end,
                ~Enrollment.key.startswith(AUDIENCE_KEY_PREFIX, autoescape=True),
                *([Enrollment.flow == flow] if flow is not None else []),
            )
        )
    )
    order = list(registry.flows())
    return sorted(
        found, key=lambda name: (order.index(name) if name in order else len(order), name)
    )


def _lifts(
    session: Session, shop: Shop, start: datetime, end: datetime, flow: str | None
) -> dict[str, Lift]:
    return {
        name: lift(session, shop, name, start, until=end)
        for name in holdout_flows(session, shop, start, end, flow)
    }


@dataclass(frozen=True)
class FlowSummary:
    """A flow's line on the Overview: its last days' figures and its holdout's verdict."""

    flow: str
    figures: Figures
    lift: Lift | None


def last_days(at: datetime, zone: ZoneInfo, days: int) -> tuple[date, date]:
    """The ``days`` local days up to and including the one of ``at``."""
    today = at.astimezone(zone).date()
    return today - timedelta(days=days - 1), today


def flow_summaries(
    session: Session, shop: Shop, days: int = SUMMARY_DAYS, at: datetime | None = None
) -> dict[str, FlowSummary]:
    """Every registered flow's figures over the last ``days`` local days (zeros for a
    flow that did nothing), with the lift of those that held a group out."""
    first, last = last_days(at or datetime.now(UTC), shop_zone(shop), days)
    found = report(session, shop, first, last)
    totals = found.by_flow()
    names: Iterable[str] = [*registry.flows(), *(n for n in totals if n not in registry.flows())]
    return {
        name: FlowSummary(name, totals.get(name, NONE), found.lifts.get(name)) for name in names
    }
