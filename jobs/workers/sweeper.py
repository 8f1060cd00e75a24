"""The sweeper: hands stored work to RQ again when Redis lost it.

The database is the source of truth and Redis only the conveyor belt, so a
flushed or restarted Redis, or a hand-off that failed because Redis was down,
must not lose anything. Every ``interval`` seconds one sweeper in the whole
deployment (a Redis lock elects it) looks for:

- deliveries stored more than ``GRACE`` seconds ago and still unprocessed:
  their shop gets a drain job;
- failed deliveries with retries left whose retry job no longer exists in
  Redis: the retry job is enqueued again;
- planned messages and waiting enrollments past their time whose RQ job is
  gone, and sends whose worker died mid-way (see :mod:`jobs.engine.schedule` and
  :mod:`jobs.sending.pipeline`);
- shops due for reconciliation, on platforms that need it (see
  :attr:`jobs.platforms.server.PlatformServer.reconcile_due`);
- active shops whose local day changed since their daily scan: each gets one
  ``scan_shop`` job for that day (see :mod:`jobs.intake.scans`). One sweeper in the
  deployment asks, and the job's id is the shop's and the day's, so a shop is
  scanned once a day;
- history imports nothing carries on (a run killed with its job, or one whose
  retries were spent hours ago): enqueued again, to resume at their cursor
  (see :func:`jobs.intake.history.resume_stalled`);
- anonymous storefront visitors' events past their 30 days (visitors who never
  said who they are): deleted (see :mod:`jobs.intake.visitors`).

Each ``triggerpost worker`` runs a sweeper process beside it (:func:`run_beside`),
so any number of worker machines give the deployment a sweeper as long as
one is alive; it ends with its worker, however the worker ends.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime, timedelta
from types import FrameType

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from jobs import logs
from jobs.engine import schedule
from jobs.intake import deliveries, history, scans, storefront, visitors
from jobs.platforms.registry import SERVERS
from jobs.runtime import Runtime
from jobs.sending import courier, pipeline
from jobs.settings import Settings
from jobs.store.models import Delivery, DeliveryStatus, now
from jobs.workers import lifeline

log = logging.getLogger(__name__)

#: a delivery younger than this is left to its own hand-off
GRACE = 30.0
LOCK = "triggerpost:sweeper"


def sweep_once(runtime: Runtime, *, grace: float = GRACE) -> dict[str, int]:
    """One pass; returns what it handed over. Raises RedisError if Redis is down."""
    cutoff = now() - timedelta(seconds=grace)
    with runtime.sessions() as session:
        shops = deliveries.stale_received(session, cutoff)
        failed = session.scalars(
            select(Delivery.id).where(
                Delivery.status == DeliveryStatus.FAILED,
                Delivery.attempts < deliveries.MAX_ATTEMPTS,
                Delivery.received_at < cutoff,
            )
        ).all()
    for shop_id in shops:
        deliveries.notify(runtime, shop_id, force=True)
    requeued = 0
    for delivery_id in failed:
        if deliveries.retry_job_exists(runtime, delivery_id):
            continue
        deliveries.schedule_retry(runtime, delivery_id)
        requeued += 1
    if shops or requeued:
        log.info(
            "sweeper: drained %d shops, re-enqueued %d failed deliveries", len(shops), requeued
        )
    return {"shops": len(shops), "failed": requeued}


def sweep_sends(
    runtime: Runtime, at: datetime | None = None, *, sender: pipeline.Sender | None = None
) -> dict[str, int]:
    """Planned messages and wakes whose job Redis lost (:func:`jobs.engine.schedule.sweep`),
    then the sends whose worker died (:func:`jobs.sending.pipeline.resolve_stale_claims`)."""
    at = at or now()
    handed = schedule.sweep(runtime, at)
    claims = pipeline.resolve_stale_claims(sender or courier.build_sender(runtime), at)
    if handed or any(claims.values()):
        log.info("sweeper: re-queued %d drains/wakes; stale claims %s", handed, claims)
    return {"requeued": handed, **claims}


def sweep_scans(runtime: Runtime, at: datetime | None = None) -> int:
    """Enqueue the daily scans of the shops whose local day changed since their last
    (:func:`jobs.intake.scans.schedule_due`); returns how many."""
    queued = scans.schedule_due(runtime, at)
    if queued:
        log.info("sweeper: %d shops' daily scans enqueued", queued)
    return queued


def sweep_history(runtime: Runtime, at: datetime | None = None) -> int:
    """Enqueue again the history imports nothing carries on
    (:func:`jobs.intake.history.resume_stalled`); returns how many."""
    resumed = history.resume_stalled(runtime, at)
    if resumed:
        log.info("sweeper: %d shops' history imports resumed", resumed)
    return resumed


def sweep_visitors(runtime: Runtime, at: datetime | None = None) -> int:
    """Delete anonymous visitors' events past their keeping
    (:func:`jobs.intake.visitors.prune_all`); returns how many."""
    pruned = visitors.prune_all(runtime.sessions, at or now())
    if pruned:
        log.info("sweeper: %d anonymous visitor events past their keeping deleted", pruned)
    return pruned


def sweep_storefront(runtime: Runtime, at: datetime | None = None) -> int:
    """Delete processed storefront deliveries past their keeping
    (:func:`jobs.intake.storefront.prune_all`); returns how many."""
    pruned = storefront.prune_all(runtime.sessions, at or now())
    if pruned:
        log.info("sweeper: %d processed storefront deliveries past their keeping deleted", pruned)
    return pruned


def run_forever(settings: Settings, stop: threading.Event | None = None) -> None:
    """Sweep every ``settings.sweep_interval`` seconds until stopped (SIGTERM/SIGINT)."""
    stop = stop or threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    runtime = Runtime.create(settings)
    interval = settings.sweep_interval
    try:
        while not stop.is_set():
            try:
                # the lock expires just before the next round, so if this
                # sweeper dies another one takes over within one interval
                if runtime.redis.set(LOCK, "1", nx=True, ex=max(1, int(interval * 0.9))):
                    sweep_once(runtime)
                    sweep_sends(runtime)
                    for server in SERVERS.values():
                        if server.reconcile_due is not None:
                            server.reconcile_due(runtime)
                    sweep_scans(runtime)
                    sweep_history(runtime)
                    sweep_visitors(runtime)
                    sweep_storefront(runtime)
            except (RedisError, SQLAlchemyError) as exc:
                log.warning("sweeper: %s; trying again in %.0f s", exc, interval)
            stop.wait(interval)
    finally:
        runtime.close()


def run_beside(worker: int, settings: Settings) -> None:
    """A worker's sweeper process: :func:`run_forever` until it or the worker stops."""
    lifeline.die_with(worker)
    logs.configure(settings)  # spawned: nothing of the worker's logging came along
    run_forever(settings)
