"""The daily scans: the facts triggerpost makes from the dates it holds.

Once per shop-local day (from :data:`SCAN_TIME` on), a shop's scan finds the
contacts a date-based fact is about and applies each fact through
:func:`jobs.intake.apply.apply`, the path webhooks' events take, so the flows
triggered by them start and plan their emails as after a webhook. A fact type is
scanned only when an enabled flow of the shop triggers on it (the flows are
found in :mod:`jobs.flows.registry`, their options through the shop's settings).

=========================  ==========================================================
fact                       emitted on the shop-local day ``D`` for
=========================  ==========================================================
``BirthdayCame``           a birthday (month and day; year 1904 is "year unknown")
                           on ``D + 1``: ``on`` is that date. A day's lead, so every
                           timezone's morning of ``on`` is still ahead (the flow waits
                           for the contact's own). 29 February is 28 February in a
                           year without it.
``OrderAnniversaryCame``   a first order (``first_order_at``, its date in the shop's
                           zone) whole ``years`` before ``D + 1``; ``on`` is ``D + 1``.
``CustomerLapsed``         a last order (its date in the shop's zone) exactly ``days``
                           before ``D``, by a contact with at least ``min_orders``
                           orders: the options ``lapsed_days`` and ``min_orders`` of
                           each enabled flow it triggers (each distinct pair once).
``SubscriberWentQuiet``    a contact subscribed now, who never ordered, whose consent
                           is dated exactly ``days`` before ``D`` (option
                           ``quiet_days``); ``last_engaged_at`` is their latest open
                           or click, or None.
=========================  ==========================================================

Every fact's ``occurred_at`` is the moment of the scan.

**Once, and catching up.** A shop's :class:`~jobs.store.models.ScanState` row per
fact type holds the last day scanned through, written in the transaction of the
facts it emitted: a second run the same day finds nothing to do. A scan after a
down time covers every day missed in one pass (at most :data:`CATCH_UP_DAYS`
before today): each contact gets one fact per date, whatever the number of days
missed; a birthday or anniversary more than :data:`LATE_DAYS` past is not
emitted (its flow would not greet so late). The facts are applied in batches of
:data:`BATCH` contacts in contact id order, one transaction each, which also
notes the last contact done: a scan that crashed midway and runs again goes on
after that contact instead of emitting again (and a fact emitted twice anyway
would find its enrollment made: their keys are unique per subject).

**Cost follows the matches.** Each lookup is an indexed range of the contacts
table (``birthday_md``, ``first_order_at`` as one range per past year,
``last_order_at``, ``consent_state`` + ``consent_at``), ``LIMIT``-ed to a batch:
a shop's scan runs the same statements whether it holds a thousand contacts or
a million (``bench/scans.py`` measures it).

**Who runs it.** The sweeper asks :func:`schedule_due` for the shops whose day
changed since their last scan and enqueues ``jobs.tasks.scan_shop`` for each
(job id ``scan-<shop>-<local date>``: one job per shop and day however often it
asks); the simulator runs :func:`scan_shop_at_once` on its virtual clock (the same
passes in one transaction).
"""

from __future__ import annotations

import logging
from calendar import isleap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from rq.job import JobStatus
from sqlalchemy import Select, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from adapters import events as ev
from jobs import queues
from jobs.engine import localtime
from jobs.engine.policy import flow_options
from jobs.engine.schedule import HandOff, unit_of_work
from jobs.flows import registry
from jobs.intake import apply
from jobs.runtime import Runtime
from jobs.store.db import plain
from jobs.store.models import (
    SCAN_DAY,
    Contact,
    Engagement,
    EngagementKind,
    ScanState,
    Shop,
    ShopStatus,
    now,
)

log = logging.getLogger(__name__)

#: a shop's day is scanned from this shop-local time on
SCAN_TIME = time(0, 0)
#: a scan after a down time covers at most this many days before today
CATCH_UP_DAYS = 7
#: a birthday or an anniversary at most this many days past is still emitted
LATE_DAYS = 1
#: contacts whose facts are applied in one transaction
BATCH = 200
#: an anniversary is looked for at most this many years back
MAX_YEARS = 100
#: the job a due shop gets (see jobs.tasks)
SCAN_SHOP = "jobs.tasks.scan_shop"
#: seconds a scan may run before RQ stops it (a re-run goes on where it stopped)
JOB_TIMEOUT = 1800

#: the flow options the lookups of lapses and quiet subscribers are tuned by (a flow
#: without ``min_orders`` counts a customer with one order)
LAPSED_DAYS = "lapsed_days"
MIN_ORDERS = "min_orders"
QUIET_DAYS = "quiet_days"

#: fact types in the order a scan emits them
SCANNED: tuple[type[ev.Event], ...] = (
    ev.BirthdayCame,
    ev.OrderAnniversaryCame,
    ev.CustomerLapsed,
    ev.SubscriberWentQuiet,
)


class ScanError(RuntimeError):
    """A scan cannot run (the shop is gone)."""


# --- what a shop scans for -------------------------------------------------------------


Params = tuple[int, ...]


def wanted(shop: Shop) -> dict[type[ev.Event], frozenset[Params]]:
    """The fact types an enabled flow of the shop triggers on, each with the distinct
    option values its flows are scanned by (``(lapsed_days, min_orders)`` for a lapse,
    ``(quiet_days,)`` for a quiet subscriber, ``()`` for dates)."""
    found: dict[type[ev.Event], set[Params]] = {}
    for flow in registry.flows().values():
        facts = [fact for fact in SCANNED if issubclass(fact, flow.trigger.events)]
        if not facts:
            continue
        options = flow_options(shop, flow)
        if not options.get("enabled", True):
            continue
        for fact in facts:
            params = _params(fact, options)
            if params is None:
                log.warning(
                    "shop %s: flow %s triggers on %s but has no option for its days: not scanned",
                    shop.id,
                    flow.name,
                    fact.__name__,
                )
                continue
            found.setdefault(fact, set()).add(params)
    return {fact: frozenset(params) for fact, params in found.items()}


def _params(fact: type[ev.Event], options: Mapping[str, Any]) -> Params | None:
    if fact is ev.CustomerLapsed:
        days = options.get(LAPSED_DAYS)
        return None if days is None else (int(days), int(options.get(MIN_ORDERS, 1)))
    if fact is ev.SubscriberWentQuiet:
        days = options.get(QUIET_DAYS)
        return None if days is None else (int(days),)
    return ()


def shop_zone(timezone: str | None) -> ZoneInfo:
    """The zone a shop's days are counted in (UTC for a shop that named none we know)."""
    return localtime.zone(timezone) or ZoneInfo("UTC")


def local_day(at: datetime, zone: ZoneInfo) -> date:
    """The shop-local day whose scan is due at ``at`` (the day before until SCAN_TIME)."""
    local = at.astimezone(zone)
    return local.date() if local.time() >= SCAN_TIME else local.date() - timedelta(days=1)


def midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant the shop-local ``day`` begins, in UTC."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def next_scan_at(after: datetime, timezone: str | None) -> datetime:
    """The first scan moment (the shop-local SCAN_TIME) strictly after ``after``."""
    return localtime.next_local_time(after + timedelta(seconds=1), SCAN_TIME, shop_zone(timezone))


# --- the lookups ----------------------------------------------------------------------


@dataclass(frozen=True)
class Days:
    """The shop-local days a pass covers, and the contact it goes on after."""

    first: date
    last: date
    after_id: int


@dataclass(frozen=True)
class Match:
    contact_id: int
    event: ev.Event


Lookup = Callable[[Session, int, ZoneInfo, Days, Params, datetime, int], list[Match]]

_S = TypeVar("_S", bound=Select)
_WHO = (Contact.id, Contact.customer_id, Contact.email)
_SOMEONE = or_(Contact.customer_id.is_not(None), Contact.email.is_not(None))


def _ref(row: Any) -> ev.ContactRef:
    return ev.ContactRef(customer_id=row.customer_id, email=row.email)


def _page(statement: _S) -> _S:
    """Contacts after the last one done, in id order, one batch and one more at most.

    Ordered by ``id + 0``, an expression no index gives: otherwise a planner that
    expects many rows may walk the whole table in id order to skip the sort and
    stop at the limit (SQLite does at a million contacts), where the date's own
    index finds the day's few matches and sorts just those.
    """
    return (
        statement.where(
            Contact.shop_id == bindparam("shop_id"),
            Contact.id > bindparam("after_id"),
            _SOMEONE,
        )
        .order_by(Contact.id + 0)
        .limit(bindparam("limit"))
    )


BIRTHDAYS = _page(
    select(*_WHO, Contact.birthday_md).where(
        Contact.birthday_md.in_(bindparam("month_days", expanding=True))
    )
)
LAPSED = _page(
    select(*_WHO, Contact.last_order_at, Contact.orders_count).where(
        Contact.last_order_at >= bindparam("since"),
        Contact.last_order_at < bindparam("until"),
        Contact.orders_count >= bindparam("min_orders"),
    )
)
QUIET = _page(
    select(*_WHO).where(
        Contact.consent_state == ev.ConsentState.SUBSCRIBED.value,
        Contact.consent_at >= bindparam("since"),
        Contact.consent_at < bindparam("until"),
        Contact.orders_count == 0,
        # never ordered; as an expression, so no planner takes the first orders' index
        # for it (where every subscriber who never bought is one long run of NULLs)
        func.coalesce(Contact.first_order_at, Contact.last_order_at).is_(None),
    )
)
FIRST_ORDER_OF_SHOP = select(func.min(Contact.first_order_at)).where(
    Contact.shop_id == bindparam("shop_id")
)
ENGAGEMENTS = (
    select(Engagement.contact_id, func.max(Engagement.at))
    .where(
        Engagement.shop_id == bindparam("shop_id"),
        Engagement.contact_id.in_(bindparam("contact_ids", expanding=True)),
        Engagement.kind.in_([EngagementKind.OPEN.value, EngagementKind.CLICK.value]),
    )
    .group_by(Engagement.contact_id)
)


@lru_cache(maxsize=64)
def _anniversaries(ranges: int) -> Any:
    """First orders in any of ``ranges`` day ranges (one per past year and date): each an
    indexed range of ``(shop_id, first_order_at)``, built once per number of ranges."""
    return _page(
        select(*_WHO, Contact.first_order_at).where(
            or_(
                *(
                    and_(
                        Contact.first_order_at >= bindparam(f"since_{i}"),
                        Contact.first_order_at < bindparam(f"until_{i}"),
                    )
                    for i in range(ranges)
                )
            )
        )
    )


def _dated(days: Days, today: date) -> list[date]:
    """The dates (``D + 1``) a birthday or anniversary pass covers, none too late."""
    first = max(days.first, today - timedelta(days=LATE_DAYS + 1))
    return [first + timedelta(days=n + 1) for n in range((days.last - first).days + 1)]


def _birthdays(
    session: Session,
    shop_id: int,
    zone: ZoneInfo,
    days: Days,
    params: Params,
    at: datetime,
    limit: int,
) -> list[Match]:
    targets: dict[int, date] = {}
    for on in _dated(days, local_day(at, zone)):
        targets[on.month * 100 + on.day] = on
        if (on.month, on.day) == (2, 28) and not isleap(on.year):
            targets[229] = on
    if not targets:
        return []
    rows = plain(session).execute(
        BIRTHDAYS,
        {
            "shop_id": shop_id,
            "after_id": days.after_id,
            "limit": limit,
            "month_days": sorted(targets),
        },
    )
    return [
        Match(
            row.id, ev.BirthdayCame(occurred_at=at, contact=_ref(row), on=targets[row.birthday_md])
        )
        for row in rows
    ]


def _first_orders(
    session: Session,
    shop_id: int,
    zone: ZoneInfo,
    days: Days,
    params: Params,
    at: datetime,
    limit: int,
) -> list[Match]:
    dates = _dated(days, local_day(at, zone))
    if not dates:
        return []
    connection = plain(session)
    earliest = connection.execute(FIRST_ORDER_OF_SHOP, {"shop_id": shop_id}).scalar()
    if earliest is None:
        return []
    first_year = max(earliest.astimezone(zone).year, dates[-1].year - MAX_YEARS)
    # the shop-local day of each past year whose first orders have their anniversary
    wanted_days: dict[date, date] = {}
    for on in dates:
        for year in range(first_year, on.year):
            if (on.month, on.day) != (2, 29) or isleap(year):
                wanted_days[date(year, on.month, on.day)] = on
            if (on.month, on.day) == (2, 28) and isleap(year) and not isleap(on.year):
                wanted_days[date(year, 2, 29)] = on  # 29 February's, in a year without it
    if not wanted_days:
        return []
    values: dict[str, Any] = {"shop_id": shop_id, "after_id": days.after_id, "limit": limit}
    for i, day in enumerate(sorted(wanted_days)):
        values[f"since_{i}"] = midnight(day, zone)
        values[f"until_{i}"] = midnight(day + timedelta(days=1), zone)
    rows = connection.execute(_anniversaries(len(wanted_days)), values)
    matches = []
    for row in rows:
        first = row.first_order_at.astimezone(zone).date()
        on = wanted_days[first]
        event = ev.OrderAnniversaryCame(
            occurred_at=at,
            contact=_ref(row),
            years=on.year - first.year,
            first_order_at=row.first_order_at,
            on=on,
        )
        matches.append(Match(row.id, event))
    return matches


def _lapsed(
    session: Session,
    shop_id: int,
    zone: ZoneInfo,
    days: Days,
    params: Params,
    at: datetime,
    limit: int,
) -> list[Match]:
    lapse, min_orders = params
    rows = plain(session).execute(
        LAPSED,
        {
            "shop_id": shop_id,
            "after_id": days.after_id,
            "limit": limit,
            "since": midnight(days.first - timedelta(days=lapse), zone),
            "until": midnight(days.last - timedelta(days=lapse - 1), zone),
            "min_orders": min_orders,
        },
    )
    return [
        Match(
            row.id,
            ev.CustomerLapsed(
                occurred_at=at,
                contact=_ref(row),
                last_order_at=row.last_order_at,
                orders_count=row.orders_count,
                days=lapse,
            ),
        )
        for row in rows
    ]


def _quiet(
    session: Session,
    shop_id: int,
    zone: ZoneInfo,
    days: Days,
    params: Params,
    at: datetime,
    limit: int,
) -> list[Match]:
    (quiet,) = params
    connection = plain(session)
    rows = connection.execute(
        QUIET,
        {
            "shop_id": shop_id,
            "after_id": days.after_id,
            "limit": limit,
            "since": midnight(days.first - timedelta(days=quiet), zone),
            "until": midnight(days.last - timedelta(days=quiet - 1), zone),
        },
    ).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    engaged: dict[int | None, datetime] = dict(
        connection.execute(ENGAGEMENTS, {"shop_id": shop_id, "contact_ids": ids}).all()
    )
    return [
        Match(
            row.id,
            ev.SubscriberWentQuiet(
                occurred_at=at, contact=_ref(row), days=quiet, last_engaged_at=engaged.get(row.id)
            ),
        )
        for row in rows
    ]


LOOKUPS: dict[type[ev.Event], Lookup] = {
    ev.BirthdayCame: _birthdays,
    ev.OrderAnniversaryCame: _first_orders,
    ev.CustomerLapsed: _lapsed,
    ev.SubscriberWentQuiet: _quiet,
}


def find(
    session: Session,
    shop_id: int,
    zone: ZoneInfo,
    fact: type[ev.Event],
    days: Days,
    params: Iterable[Params],
    at: datetime,
) -> tuple[list[Match], bool]:
    """The next batch's facts (the first BATCH contacts after ``days.after_id``, each
    with every fact it is due), and whether more contacts follow."""
    lookup = LOOKUPS[fact]
    found: dict[tuple[int, ev.Event], Match] = {}
    for one in sorted(params):
        for match in lookup(session, shop_id, zone, days, one, at, BATCH + 1):
            found.setdefault((match.contact_id, match.event), match)
    ids = sorted({contact_id for contact_id, _ in found})
    if len(ids) <= BATCH:
        return list(found.values()), False
    cut = ids[BATCH - 1]
    return [m for (contact_id, _), m in found.items() if contact_id <= cut], True


# --- a shop's scan ---------------------------------------------------------------------


def _state(session: Session, shop_id: int, fact: str) -> ScanState | None:
    return session.scalar(
        select(ScanState)
        .where(ScanState.shop_id == shop_id, ScanState.fact == fact)
        .with_for_update()
    )


def next_days(state: ScanState | None, today: date) -> Days | None:
    """The days the next pass covers: an interrupted pass first, then the days since the
    last one (at most CATCH_UP_DAYS back); None when the scan is through today."""
    oldest = today - timedelta(days=CATCH_UP_DAYS)
    if state is None:
        return Days(today, today, 0)  # a first scan starts today: no history replayed
    if state.pass_until is not None:
        first = max(state.through + timedelta(days=1), oldest)
        return Days(first, state.pass_until, state.after_id or 0)
    if state.through >= today:
        return None
    return Days(max(state.through + timedelta(days=1), oldest), today, 0)


def _scan_fact(
    runtime: Runtime,
    shop_id: int,
    fact: type[ev.Event],
    params: frozenset[Params],
    at: datetime,
    today: date,
    via: HandOff | None,
) -> int:
    """Every pass this fact type is due, a batch per transaction; how many facts."""
    emitted = 0
    while True:
        with unit_of_work(runtime, via=via) as session:
            shop = session.get(Shop, shop_id)
            if shop is None or shop.status != ShopStatus.ACTIVE:
                return emitted
            state = _state(session, shop_id, fact.__name__)
            done = _pass(session, shop, state, fact, params, at, today)
            if done is None:
                return emitted
            emitted += done[0]


def _pass(
    session: Session,
    shop: Shop,
    state: ScanState | None,
    fact: type[ev.Event],
    params: frozenset[Params],
    at: datetime,
    today: date,
) -> tuple[int, ScanState] | None:
    """One batch of the fact type's next pass, applied and noted in ``state`` (made if
    None): how many facts it emitted and the state, or None when the scan is through
    today."""
    days = next_days(state, today)
    if days is None:
        return None
    if state is None:
        state = ScanState(
            shop_id=shop.id,
            fact=fact.__name__,
            through=days.first - timedelta(days=1),
            scanned_at=at,
        )
        session.add(state)
    zone = shop_zone(shop.timezone)
    matches, more = (
        find(session, shop.id, zone, fact, days, params, at)
        if days.first <= days.last
        else ([], False)
    )
    for match in matches:
        apply.apply(session, shop, match.event, delivery_id=None, at=at)
    if more:
        state.pass_until = days.last
        state.after_id = max(m.contact_id for m in matches)
    else:
        state.through = days.last
        state.pass_until = None
        state.after_id = None
    state.scanned_at = at
    return len(matches), state


def scan_shop(
    runtime: Runtime,
    shop_id: int,
    at: datetime | None = None,
    *,
    via: HandOff | None = None,
) -> dict[str, int]:
    """The shop's daily scan (the ``scan_shop`` job): every fact due, then the day marked.

    Returns how many facts of each type it emitted. ``via`` replaces the hand-off
    of due work to RQ (the simulator's). A shop no longer active is not scanned.
    """
    at = at or now()
    with runtime.reads() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise ScanError(f"shop {shop_id} does not exist")
        if shop.status != ShopStatus.ACTIVE:
            return {}
        due = wanted(shop)
        today = local_day(at, shop_zone(shop.timezone))
    emitted = {
        fact.__name__: _scan_fact(runtime, shop_id, fact, due[fact], at, today, via)
        for fact in SCANNED
        if fact in due
    }
    with runtime.sessions.begin() as session:
        _mark_day(session, _state(session, shop_id, SCAN_DAY), shop_id, today, at)
    if any(emitted.values()):
        log.info("shop %s: daily scan of %s emitted %s", shop_id, today, emitted)
    return emitted


def _mark_day(
    session: Session, day: ScanState | None, shop_id: int, today: date, at: datetime
) -> None:
    """The shop's scan of ``today`` is done (what the sweeper asks of :func:`due_shops`)."""
    if day is None:
        session.add(ScanState(shop_id=shop_id, fact=SCAN_DAY, through=today, scanned_at=at))
    elif day.through < today:
        day.through = today
        day.scanned_at = at


def scan_shop_at_once(session: Session, shop: Shop, at: datetime) -> dict[str, int]:
    """The shop's daily scan in the caller's one transaction (the simulator's: no
    crash to resume from, no other worker to share the shop with).

    It emits what :func:`scan_shop` emits, in the same order, and leaves the same
    scan states: the passes are the same, without a transaction and a re-read of
    the shop and its state per batch. With no enabled flow triggered by a fact,
    only the day is marked.
    """
    if shop.status != ShopStatus.ACTIVE:
        return {}
    due = wanted(shop)
    today = local_day(at, shop_zone(shop.timezone))
    states = {
        state.fact: state
        for state in session.scalars(
            select(ScanState).where(ScanState.shop_id == shop.id).with_for_update()
        )
    }
    emitted: dict[str, int] = {}
    for fact in SCANNED:
        if fact not in due:
            continue
        emitted[fact.__name__] = 0
        while True:
            done = _pass(session, shop, states.get(fact.__name__), fact, due[fact], at, today)
            if done is None:
                break
            found, states[fact.__name__] = done
            if found:
                # what the facts changed through statements of their own is read afresh,
                # as the next batch's transaction would
                session.flush()
                session.expire_all()
            emitted[fact.__name__] += found
    _mark_day(session, states.get(SCAN_DAY), shop.id, today, at)
    if any(emitted.values()):
        log.info("shop %s: daily scan of %s emitted %s", shop.id, today, emitted)
    return emitted


# --- the sweeper's part ---------------------------------------------------------------


def due_shops(session: Session, at: datetime) -> list[tuple[int, date]]:
    """Active shops whose local day changed since their last scan, with that day."""
    rows = session.execute(
        select(Shop.id, Shop.timezone, ScanState.through)
        .outerjoin(ScanState, and_(ScanState.shop_id == Shop.id, ScanState.fact == SCAN_DAY))
        .where(Shop.status == ShopStatus.ACTIVE)
        .order_by(Shop.id)
    ).all()
    due = []
    for shop_id, timezone, through in rows:
        today = local_day(at, shop_zone(timezone))
        if through is None or through < today:
            due.append((shop_id, today))
    return due


def job_id(shop_id: int, day: date) -> str:
    return f"scan-{shop_id}-{day.isoformat()}"


def schedule_due(runtime: Runtime, at: datetime | None = None) -> int:
    """Enqueue the scan of every shop due (one job per shop and day, however often
    asked); a failed one is enqueued again. Returns how many it enqueued."""
    with runtime.sessions() as session:
        due = due_shops(session, at or now())
    return sum(
        queues.enqueue_as(
            runtime.queue(queues.DEFAULT),
            job_id(shop_id, day),
            SCAN_SHOP,
            shop_id,
            # a waiting, running or finished one is left (the day is marked as it ends)
            replace=(JobStatus.FAILED, JobStatus.STOPPED),
            job_timeout=JOB_TIMEOUT,
            result_ttl=86400,
            failure_ttl=86400,
        )
        for shop_id, day in due
    )
