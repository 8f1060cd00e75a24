"""The history import: a shop's past customers and orders, so triggerpost knows them.

A shop that installs triggerpost has years of customers and orders; without
them a regular's order count is wrong, loyalty milestones and soft opt-in
miscount and a lapsed regular is invisible. The import reads the last
:data:`DAYS` of them from the platform when a shop installs or connects (and on
demand: ``triggerpost history import``).

The platform side is a history source (``jobs.platforms.server.HistorySource``):
it yields pages of the events its webhooks would have produced, each with an
opaque cursor saying where to go on after it. This module applies each page in
ONE transaction through :func:`jobs.intake.apply.apply_history` (the rows of
:func:`jobs.intake.apply.apply` with ``historical=True`` for each event in turn,
in about a third of the statements: contacts, orders and products are updated
and the events logged; no flow acts on them, no email is credited with them),
and saves the cursor and the counts in that same transaction (one
``history_imports`` row per shop). So:

- a crash (a killed worker, an API failure) loses at most the page in hand: the
  next run starts at the saved cursor and nothing is counted twice;
- webhooks arriving meanwhile are no problem: applying is stale-proof (the
  newer version of a customer or an order wins) and idempotent (a contact's
  order count and spend are recomputed from the orders table, an order's
  products are counted once per order), whichever comes first;
- an item the store answers but we cannot apply (an id longer than any
  platform's) is logged and skipped, counted as skipped; it never fails the
  import. Items a source cannot read at all it skips and counts itself.

One import of a shop runs at a time: the job's id is per shop
(``history-<shop>``), and every run (job or command) holds a lease in Redis
(``triggerpost:history:<shop>``) renewed with each page.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from rq import Retry
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters import events as ev
from adapters.platform import WebhookError
from jobs.intake import apply
from jobs.queues import DEFAULT, enqueue_as
from jobs.runtime import Runtime
from jobs.store.models import HistoryImport, HistoryStatus, Shop, ShopStatus, now

if TYPE_CHECKING:  # the sources are the platforms' (jobs.platforms imports this module)
    from jobs.platforms.server import HistoryPage, HistorySource

log = logging.getLogger(__name__)

#: how far back an import reads (two years of customers' orders)
DAYS = 730
#: the job this module asks for (see jobs.tasks)
IMPORT_HISTORY = "jobs.tasks.import_history"
#: retries of an import whose platform failed (seconds); each resumes at the cursor
RETRIES = (60, 300, 1800, 7200)
#: a large shop's import takes hours at a platform's pace; it resumes if cut short
JOB_TIMEOUT = 24 * 3600
#: seconds a run's lease lasts without a page applied (a killed run frees it then)
LEASE_SECONDS = 600

ORDER_EVENTS = (
    ev.OrderPlaced,
    ev.OrderPaid,
    ev.OrderCancelled,
    ev.OrderRefunded,
    ev.OrderFulfilled,
)
CUSTOMER_EVENTS = (ev.CustomerCreated, ev.CustomerUpdated)


class HistoryError(RuntimeError):
    """An import that cannot run: no such shop, no source, or one is running already."""


class HistoryBusyError(HistoryError):
    """Another run holds the shop's import."""


@dataclass(frozen=True)
class HistoryState:
    """Where a shop's import stands (the ``history_imports`` row, detached)."""

    shop_id: int
    status: HistoryStatus
    since: datetime
    customers: int
    orders: int
    read: int
    total: int | None
    skipped: int
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    last_error: str | None
    resumable: bool

    @classmethod
    def of(cls, row: HistoryImport) -> HistoryState:
        return cls(
            shop_id=row.shop_id,
            status=HistoryStatus(row.status),
            since=row.since,
            customers=row.customers,
            orders=row.orders,
            read=row.read,
            total=row.total,
            skipped=row.skipped,
            started_at=row.started_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            last_error=row.last_error,
            resumable=row.cursor is not None,
        )

    def as_dict(self) -> dict[str, object]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "status": self.status.value,
            "since": iso(self.since),
            "customers": self.customers,
            "orders": self.orders,
            "read": self.read,
            "total": self.total,
            "skipped": self.skipped,
            "started_at": iso(self.started_at),
            "updated_at": iso(self.updated_at),
            "finished_at": iso(self.finished_at),
            "last_error": self.last_error,
        }


def state(session: Session, shop_id: int) -> HistoryState | None:
    row = _row(session, shop_id)
    return HistoryState.of(row) if row is not None else None


def _row(session: Session, shop_id: int) -> HistoryImport | None:
    return session.scalars(
        select(HistoryImport).where(HistoryImport.shop_id == shop_id)
    ).one_or_none()


# --- what the merchant reads ------------------------------------------------------


def progress_line(found: HistoryState | None) -> str | None:
    """One line for the merchant's page; None when no import ever started."""
    if found is None:
        return None
    if found.status == HistoryStatus.DONE:
        years = _period(found.since, found.finished_at or found.updated_at)
        return (
            f"History imported: {_many(found.customers, 'customer')}, "
            f"{_many(found.orders, 'order')} from the last {years}"
        )
    if found.total:
        share = min(100, found.read * 100 // found.total)
        of = f"{found.read:,} of {found.total:,} customers and orders ({share} %)"
    else:
        of = f"{found.read:,} customers and orders so far"
    if found.status == HistoryStatus.FAILED:
        return f"Importing your history paused after {of}; triggerpost tries again."
    return f"Importing your history: {of}"


def _many(count: int, what: str) -> str:
    return f"{count:,} {what}" + ("" if count == 1 else "s")


def _period(since: datetime, until: datetime) -> str:
    days = max(0, (until - since).days)
    if days >= 365 and days % 365 <= 1:
        years = days // 365
        return "year" if years == 1 else f"{years} years"
    return f"{days} days"


# --- starting it ------------------------------------------------------------------


def job_id(shop_id: int) -> str:
    return f"history-{shop_id}"


def enqueue(runtime: Runtime, shop_id: int, *, days: int = DAYS, again: bool = False) -> bool:
    """Ask a worker to import the shop's history (one job per shop at a time).

    A shop whose import is done is not imported again unless ``again``; one that
    failed or was cut short resumes where it stood. True if a job was enqueued.
    """
    if not again:
        with runtime.sessions() as session:
            found = state(session, shop_id)
        if found is not None and found.status == HistoryStatus.DONE:
            return False
    return enqueue_as(
        runtime.queue(DEFAULT),
        job_id(shop_id),
        IMPORT_HISTORY,
        shop_id,
        days,
        retry=Retry(max=len(RETRIES), interval=list(RETRIES)),
        job_timeout=JOB_TIMEOUT,
        result_ttl=86400,
        failure_ttl=30 * 86400,
    )


#: a failed import (its job's retries spent: the platform down for hours) is tried
#: again this long after its last attempt, by the sweeper
RESUME_FAILED_AFTER = timedelta(hours=6)


def resume_stalled(runtime: Runtime, at: datetime | None = None) -> int:
    """Enqueue again the imports nothing is carrying on (the sweeper's duty); how many.

    An import stalls when its run was killed and RQ does not retry it (a worker
    lost with the job, Redis flushed): still ``running`` in the store, its lease
    long expired. One that failed after all its retries is tried again every
    :data:`RESUME_FAILED_AFTER`. Each resumes at its cursor; an import whose lease
    is held or whose job is queued is left alone (``enqueue`` checks the job).
    """
    at = at or now()
    with runtime.sessions() as session:
        found = session.execute(
            select(HistoryImport.shop_id, HistoryImport.status)
            .join(Shop, Shop.id == HistoryImport.shop_id)
            .where(
                Shop.status == ShopStatus.ACTIVE,
                (
                    (HistoryImport.status == HistoryStatus.RUNNING)
                    & (HistoryImport.updated_at < at - timedelta(seconds=LEASE_SECONDS))
                )
                | (
                    (HistoryImport.status == HistoryStatus.FAILED)
                    & (HistoryImport.updated_at < at - RESUME_FAILED_AFTER)
                ),
            )
        ).all()
    resumed = 0
    for shop_id, status in found:
        if _Lease(runtime, shop_id).held():
            continue
        if enqueue(runtime, shop_id):
            log.info("shop %s: history import %s, resumed at its cursor", shop_id, status)
            resumed += 1
    return resumed


# --- running it -------------------------------------------------------------------

Progress = Callable[[HistoryState], None]


def run(
    runtime: Runtime,
    shop_id: int,
    sources: Callable[[str], HistorySource | None],
    *,
    days: int = DAYS,
    again: bool = False,
    progress: Progress | None = None,
) -> HistoryState:
    """Import the shop's history from its platform's source; the final state.

    Resumes a run that was cut short (at its cursor, with its ``since``); a
    finished import starts over only with ``again`` (applying again changes
    nothing but the counts, which start from zero). ``sources`` finds a
    platform's history source by name. Raises what the source raises, after
    recording it as the import's last error (the job is retried and resumes).
    """
    lease = _Lease(runtime, shop_id)
    if not lease.take():
        raise HistoryBusyError(f"shop {shop_id}: its history is being imported already")
    try:
        return _run(
            runtime, shop_id, sources, days=days, again=again, progress=progress, lease=lease
        )
    finally:
        lease.release()


def _run(
    runtime: Runtime,
    shop_id: int,
    sources: Callable[[str], HistorySource | None],
    *,
    days: int,
    again: bool,
    progress: Progress | None,
    lease: _Lease,
) -> HistoryState:
    with runtime.sessions.begin() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or shop.status != ShopStatus.ACTIVE:
            raise HistoryError(f"shop {shop_id} is not installed")
        source = sources(shop.platform)
        if source is None:
            raise HistoryError(f"{shop.platform} offers no history import")
        row = _row(session, shop_id)
        if row is None:
            row = HistoryImport(shop_id=shop_id, since=now() - timedelta(days=days))
            session.add(row)
        elif row.status == HistoryStatus.DONE and again:
            _restart(row, now() - timedelta(days=days))
        elif row.status == HistoryStatus.DONE:
            return HistoryState.of(row)
        row.status = HistoryStatus.RUNNING
        row.updated_at = now()
        session.flush()
        since, cursor = row.since, row.cursor
        session.expunge(shop)
    log.info("shop %s: importing history since %s (%s)", shop_id, since, cursor or "from the start")
    try:
        for page in source(runtime, shop, since, cursor):
            found = _save_page(runtime, shop_id, page)
            lease.renew()
            if progress is not None:
                progress(found)
    except Exception as exc:
        _fail(runtime, shop_id, exc)
        raise
    with runtime.sessions.begin() as session:
        row = _row(session, shop_id)
        if row is None:  # the shop was erased meanwhile
            raise HistoryError(f"shop {shop_id} is gone")
        at = now()
        row.status = HistoryStatus.DONE
        row.cursor = None
        row.finished_at = row.updated_at = at
        row.last_error = None
        if row.total is not None:
            row.total = max(row.total, row.read)
        done = HistoryState.of(row)
    log.info(
        "shop %s: history imported: %s customers, %s orders, %s skipped",
        shop_id,
        done.customers,
        done.orders,
        done.skipped,
    )
    if progress is not None:
        progress(done)
    return done


def _restart(row: HistoryImport, since: datetime) -> None:
    row.since = since
    row.cursor = None
    row.customers = row.orders = row.read = row.skipped = 0
    row.total = None
    row.started_at = now()
    row.finished_at = None
    row.last_error = None


def _fail(runtime: Runtime, shop_id: int, exc: BaseException) -> None:
    log.warning("shop %s: history import stopped: %r", shop_id, exc)
    with runtime.sessions.begin() as session:
        row = _row(session, shop_id)
        if row is not None:
            row.status = HistoryStatus.FAILED
            row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            row.updated_at = now()


def _save_page(runtime: Runtime, shop_id: int, page: HistoryPage) -> HistoryState:
    """Apply the page and save the cursor and counts with it, in one transaction.

    The page is applied whole first; only when an item in it is malformed is it
    applied again, each event in a savepoint of its own, leaving out those that fail.
    """
    try:
        return _apply_page(runtime, shop_id, page, careful=False)
    except WebhookError:
        return _apply_page(runtime, shop_id, page, careful=True)


def _apply_page(
    runtime: Runtime, shop_id: int, page: HistoryPage, *, careful: bool
) -> HistoryState:
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, shop_id)
        row = _row(session, shop_id)
        if row is None:
            raise HistoryError(f"shop {shop_id} is gone")
        customers: set[str] = set()
        orders: set[str] = set()
        skipped = page.skipped
        for item in _items(page.events) if careful else [list(page.events)]:
            try:
                with session.begin_nested() if careful else nullcontext():
                    done = zip(item, apply.apply_history(session, shop, item), strict=True)
            except WebhookError as exc:
                if not careful:
                    raise  # the page again, item by item
                log.warning(
                    "shop %s: an item of its history skipped (%s): %s",
                    shop_id,
                    ", ".join(type(e).__name__ for e in item),
                    exc.message,
                )
                skipped += 1
                continue
            for event, applied in done:
                if isinstance(event, CUSTOMER_EVENTS) and applied.subject is not None:
                    customers.add(applied.subject)
                elif isinstance(event, ORDER_EVENTS) and applied.subject is not None:
                    orders.add(applied.subject)
        row.customers += len(customers)
        row.orders += len(orders)
        row.skipped += skipped
        row.read = max(row.read, page.read)
        row.total = page.total if page.total is not None else row.total
        row.cursor = page.cursor
        row.updated_at = now()
        row.last_error = None
        return HistoryState.of(row)


def _items(events: Sequence[ev.Event]) -> list[list[ev.Event]]:
    """The events grouped by the item they came from (an order's placed, paid and
    fulfilled events are one item: applied or skipped together)."""
    items: list[list[ev.Event]] = []
    last: object = None
    for event in events:
        key: object
        if isinstance(event, ORDER_EVENTS):
            key = ("order", event.order.order_id)
        elif isinstance(event, CUSTOMER_EVENTS):
            key = ("customer", event.customer.customer_id)
        else:
            key = object()
        if items and key == last:
            items[-1].append(event)
        else:
            items.append([event])
        last = key
    return items


class _Lease:
    """The shop's import lease in Redis: one run at a time, freed by a killed run's expiry."""

    def __init__(self, runtime: Runtime, shop_id: int) -> None:
        self.redis = runtime.redis
        self.key = f"triggerpost:history:{shop_id}"
        self.token = secrets.token_hex(16)

    def take(self) -> bool:
        return bool(self.redis.set(self.key, self.token, nx=True, ex=LEASE_SECONDS))

    def held(self) -> bool:
        """Is a run (any) holding the import now?"""
        return bool(self.redis.exists(self.key))

    def renew(self) -> None:
        held = self.redis.get(self.key)
        if held is not None and _text(held) != self.token:
            raise HistoryBusyError(f"{self.key}: another run took over the import")
        self.redis.set(self.key, self.token, ex=LEASE_SECONDS)

    def release(self) -> None:
        held = self.redis.get(self.key)
        if held is not None and _text(held) == self.token:
            self.redis.delete(self.key)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
