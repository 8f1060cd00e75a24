"""Deliveries: stored durably by the web edge, processed by workers.

The hand-off from the web edge to the workers costs one Redis round trip per
commit and shop, not an RQ enqueue per request (several round trips and a
pickle). After deliveries are committed (a batch of them, see
:mod:`jobs.intake.writer`), the writer's notifier sets the shop's "drain
pending" flag with ``SET NX``; only when it actually set it does it enqueue
the ``jobs.tasks.drain_shop`` job (:func:`drain_shop`). The drain job clears
the flag *before* it reads the database, so a delivery committed while it runs
either is seen by that read or sets the flag again and gets a job of its own.

A drain applies the shop's deliveries a few at a time: one transaction
starts by flipping up to :data:`DRAIN_BATCH` of the oldest waiting ones to
``processed`` with a conditional UPDATE, then applies them and commits once
(a commit, the claim and the shop's row are the costly part of a small
delivery); only a batch in which one raises is applied again with each
delivery in a savepoint of its own. Two workers racing on the same delivery
cannot both apply it, and a worker killed mid-way leaves its deliveries
``received`` for the next drain or the sweeper. A delivery whose processing
raises is rolled back alone, marked ``failed`` and handed to
:func:`process_delivery` (the ``jobs.tasks.process_delivery`` job) with retries that raises until it
succeeds, so failures end up visible in RQ's failed job registry and on the
delivery row, never swallowed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from rq import Retry
from rq.job import Job
from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from adapters import storefront
from adapters.platform import ShopContext, WebhookHeaders, translate
from adapters.registry import PLATFORMS
from jobs import logs, queues, shop_settings
from jobs.engine import ledger, schedule
from jobs.intake import apply, privacy
from jobs.queues import INTAKE
from jobs.runtime import Runtime
from jobs.store import queries
from jobs.store.db import picked
from jobs.store.models import Delivery, DeliveryStatus, Shop, now

log = logging.getLogger(__name__)

#: seconds before each new attempt at a delivery whose processing raised; after
#: the last one the job stays in RQ's failed registry
RETRY_INTERVALS = [10, 60, 300, 1800]
MAX_ATTEMPTS = 1 + len(RETRY_INTERVALS)
#: deliveries a drain claims and applies per transaction
DRAIN_BATCH = 32
#: seconds a drain takes new batches before it leaves the rest to a new job
DRAIN_SECONDS = 60.0

#: the jobs this module asks for (see jobs.tasks)
DRAIN_SHOP = "jobs.tasks.drain_shop"
PROCESS_DELIVERY = "jobs.tasks.process_delivery"


def delivery_key(headers: WebhookHeaders, body: bytes) -> str:
    """What a replay of this delivery shares with it and no other delivery does.

    The platform's delivery id when it is unique; when it may repeat across
    deliveries, that id joined by a digest of topic and body; when it sends
    none, the digest alone.
    """
    if headers.delivery_id and headers.delivery_id_unique:
        return headers.delivery_id[:128]
    digest = hashlib.sha256(headers.topic.encode() + b"\x00" + body).hexdigest()
    if headers.delivery_id:
        return f"{headers.delivery_id[:63]}:{digest}"
    return f"sha256:{digest}"


def delivery_row(
    *,
    shop_id: int,
    platform: str,
    headers: WebhookHeaders,
    raw_headers: Mapping[str, str],
    body: bytes,
) -> dict[str, Any]:
    return {
        "shop_id": shop_id,
        "platform": platform,
        "topic": headers.topic,
        "delivery_key": delivery_key(headers, body),
        "headers": dict(raw_headers),
        "body": body,
        "received_at": now(),
        "triggered_at": headers.triggered_at,
        "status": DeliveryStatus.RECEIVED,
        "attempts": 0,
    }


def insert_deliveries(
    connection: Connection, rows: list[dict[str, Any]]
) -> dict[tuple[int, str], int]:
    """Insert rows in one statement; returns the ids of those not stored before."""
    result = connection.execute(queries.INSERT_NEW_DELIVERIES[connection.dialect.name], rows)
    return {(shop_id, key): id_ for id_, shop_id, key in result}


def drain_flag(shop_id: int) -> str:
    return f"triggerpost:drain:{shop_id}"


def notify(runtime: Runtime, shop_id: int, *, force: bool = False) -> bool:
    """Make sure a drain job will see the shop's stored deliveries.

    Returns False when Redis cannot be reached: the delivery is safe in the
    database and the sweeper hands it over once Redis is back.
    """
    try:
        queues.enqueue_once(runtime.queue(INTAKE), drain_flag(shop_id), DRAIN_SHOP, shop_id,
                            force=force)  # fmt: skip
    except RedisError as exc:
        log.warning("redis unavailable, delivery for shop %s left to the sweeper: %s", shop_id, exc)
        return False
    return True


def drain_shop(runtime: Runtime, shop_id: int) -> int:
    """The ``drain_shop`` job's work: the shop's stored, unprocessed deliveries, oldest
    first; a delivery stored from here on asks for a new job."""
    queues.clear(runtime.redis, drain_flag(shop_id))
    with logs.ids(shop=shop_id):
        return drain(runtime, shop_id)


def drain(
    runtime: Runtime,
    shop_id: int,
    *,
    budget: float = DRAIN_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Apply the shop's waiting deliveries a batch at a time; returns how many.

    Each turn claims a few of the oldest deliveries nobody else holds (``SKIP
    LOCKED`` on PostgreSQL, see :func:`process_batch`), so a second drain of
    the shop (a delivery that came in while this one ran gets a job of its
    own) shares the backlog instead of queueing behind row locks. No helper
    drains are asked for: side by side, two drains of one shop take its
    contacts' rows in different orders and deadlock now and then, which costs
    more than the second worker gives (measured the same throughput). After
    ``budget`` seconds the rest is left to a new drain job, so other shops'
    deliveries are not held up and the job stays within its timeout.
    """
    started = clock()
    done = 0
    while True:
        applied = process_batch(runtime, shop_id)
        done += applied
        if not applied:
            return done
        if clock() - started > budget:
            notify(runtime, shop_id, force=True)
            return done


def retry_job_id(delivery_id: int) -> str:
    return f"process_delivery-{delivery_id}"


def schedule_retry(runtime: Runtime, delivery_id: int) -> Job:
    """A job of the delivery's own, first run after a back-off, retried by RQ after that."""
    return runtime.queue(INTAKE).enqueue_in(
        timedelta(seconds=RETRY_INTERVALS[0]),
        PROCESS_DELIVERY,
        delivery_id,
        job_id=retry_job_id(delivery_id),
        retry=Retry(max=len(RETRY_INTERVALS) - 1, interval=RETRY_INTERVALS[1:]),
        result_ttl=0,
        failure_ttl=30 * 86400,
    )


def process_delivery(runtime: Runtime, delivery_id: int) -> bool:
    """The ``process_delivery`` job's work: one delivery; raises on failure so RQ retries it."""
    with logs.ids(delivery=delivery_id):
        try:
            return process_one(runtime, delivery_id, retrying=True)
        except Exception as exc:
            record_failure(runtime, delivery_id, exc)
            raise


def process_one(runtime: Runtime, delivery_id: int, *, retrying: bool = False) -> bool:
    """Apply one delivery in one transaction; False if someone else already did.

    The claim (flip to processed) is undone with everything else if applying
    raises, so a crash leaves the delivery to be claimed again.
    """
    claimable = [DeliveryStatus.RECEIVED] + ([DeliveryStatus.FAILED] if retrying else [])
    # due work goes to RQ only after the commit: a job must never find its message not yet written
    with schedule.unit_of_work(runtime) as session:
        delivery = session.scalars(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status.in_(claimable))
            .values(status=DeliveryStatus.PROCESSED, processed_at=now(), error=None)
            .returning(Delivery)
            .execution_options(populate_existing=True)
        ).one_or_none()
        if delivery is None:
            return False
        shop = session.get_one(Shop, delivery.shop_id)
        apply_delivery(session, shop, delivery)
    privacy.scrub_erased(runtime, session)  # and the files keep nothing it erased
    return True


def process_batch(runtime: Runtime, shop_id: int, limit: int = DRAIN_BATCH) -> int:
    """Claim up to ``limit`` of the shop's oldest waiting deliveries and apply them in
    one transaction; returns how many were claimed.

    The batch is first applied as it comes. If one of its deliveries raises,
    nothing of that transaction is kept, and the batch is claimed and applied
    again with each delivery in a savepoint of its own: the one that raises is
    rolled back alone (with the due work and decisions it noted), marked
    failed in the same transaction and, once that commits, given a retrying
    job of its own. One bad delivery never holds up the shop's others, and the
    common case pays for no savepoints.
    """
    try:
        return _apply_batch(runtime, shop_id, limit, isolated=False)
    except Exception:
        log.info("shop %s: a delivery of a batch raised; applying it one by one", shop_id)
        return _apply_batch(runtime, shop_id, limit, isolated=True)


def _apply_batch(runtime: Runtime, shop_id: int, limit: int, *, isolated: bool) -> int:
    oldest = (
        select(Delivery.id)
        .where(Delivery.shop_id == shop_id, Delivery.status == DeliveryStatus.RECEIVED)
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )
    failed: list[int] = []
    # due work goes to RQ only after the commit: a job must never find its message not yet written
    with schedule.unit_of_work(runtime) as session:
        claimed = session.scalars(
            update(Delivery)
            .where(Delivery.id.in_(picked(oldest)), Delivery.status == DeliveryStatus.RECEIVED)
            .values(status=DeliveryStatus.PROCESSED, processed_at=now(), error=None)
            .returning(Delivery)
            .execution_options(populate_existing=True)
        ).all()
        if not claimed:
            return 0
        shop = session.get_one(Shop, shop_id)
        for delivery in sorted(claimed, key=lambda d: d.id):
            if not isolated:
                erased = apply_delivery(session, shop, delivery)
            else:
                noted = ledger.mark(session)
                try:
                    with session.begin_nested():
                        erased = apply_delivery(session, shop, delivery)
                except Exception as exc:
                    ledger.undo_to(session, noted)
                    _mark_failed(session, delivery.id, exc)
                    failed.append(delivery.id)
                    continue
            if erased:
                break  # the shop and all it had, the rest of this batch too, are gone
    privacy.scrub_erased(runtime, session)  # and the files keep nothing it erased
    for delivery_id in failed:
        schedule_retry(runtime, delivery_id)
    return len(claimed)


#: the deepest nesting of objects and arrays a delivery may have (serde_json's
#: default). Real payloads nest under ten levels; Python's parser, and code that
#: walks a payload, recurse once per level and fail near a thousand levels, sooner
#: on a deep stack, with a RecursionError that says nothing about the delivery.
MAX_DEPTH = 128


class PayloadError(ValueError):
    """A body that is not a JSON document we can process (as received or as stored)."""


def parse_body(body: bytes) -> Any:
    """The JSON document in ``body``; raises :class:`PayloadError` for anything else.

    The web edge calls it before storing a delivery and the drain again on what
    was stored (reconciliation stores bodies too), so no body deeper than
    :data:`MAX_DEPTH` gets past either.
    """
    try:
        document = json.loads(body)
    except RecursionError:
        raise PayloadError(f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"not valid JSON: {exc}") from exc
    # a document cannot nest deeper than it has brackets: most never need the walk
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _deeper_than(document, MAX_DEPTH):
        raise PayloadError(f"nested deeper than {MAX_DEPTH} levels")
    return document


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than ``limit`` levels (a loop, no recursion)."""
    stack: list[tuple[Any, int]] = [(document, 1)] if isinstance(document, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def shop_context(session: Session, shop: Shop, received_at: datetime) -> ShopContext:
    """What translation knows of the shop (its consent and birthday rules), the same
    for a webhook's delivery and for what a platform's API answered (a history import)."""
    settings = shop_settings.check(session, shop)
    return ShopContext(
        domain=shop.key,
        currency=shop.currency,
        base_url=shop.base_url,
        received_at=received_at,
        consent=settings.consent,
        birthday=settings.birthday,
    )


def apply_delivery(session: Session, shop: Shop, delivery: Delivery) -> bool:
    """Apply the delivery's events; True if one of them erased the shop."""
    with logs.ids(shop=shop.id, delivery=delivery.id):
        platform = PLATFORMS[delivery.platform]
        payload = parse_body(delivery.body)
        context = shop_context(session, shop, delivery.received_at)
        if storefront.is_storefront_topic(delivery.topic):
            # what the shop's storefront told (our script in a browser), not its platform
            events = storefront.translate(platform, delivery.topic, payload, context)
        else:
            events = translate(platform, delivery.topic, payload, context)
        erased = False
        for event in events:
            if apply.apply(session, shop, event, delivery_id=delivery.id).shop_erased:
                erased = True
                break
        log.info(
            "processed delivery %s (%s %s): %s",
            delivery.id,
            delivery.platform,
            delivery.topic,
            ", ".join(type(e).__name__ for e in events) or "no events",
        )
    return erased


def record_failure(runtime: Runtime, delivery_id: int, exc: BaseException) -> None:
    with runtime.sessions.begin() as session:
        _mark_failed(session, delivery_id, exc, unless=DeliveryStatus.PROCESSED)


def _mark_failed(
    session: Session,
    delivery_id: int,
    exc: BaseException,
    *,
    unless: DeliveryStatus | None = None,
) -> None:
    log.error("delivery %s failed: %r", delivery_id, exc, exc_info=exc)
    which = [Delivery.id == delivery_id]
    if unless is not None:
        which.append(Delivery.status != unless)
    session.execute(
        update(Delivery)
        .where(*which)
        .values(
            status=DeliveryStatus.FAILED,
            attempts=Delivery.attempts + 1,
            error=f"{type(exc).__name__}: {exc}"[:2000],
        )
        .execution_options(synchronize_session=False)
    )


def retry_job_exists(runtime: Runtime, delivery_id: int) -> bool:
    return Job.exists(retry_job_id(delivery_id), connection=runtime.redis)


def stale_received(session: Session, older_than: datetime) -> list[int]:
    """Shops with deliveries stored before ``older_than`` and still unprocessed."""
    return list(
        session.scalars(
            select(Delivery.shop_id)
            .where(
                Delivery.status == DeliveryStatus.RECEIVED,
                Delivery.received_at < older_than,
            )
            .distinct()
        )
    )
