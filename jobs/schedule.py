"""Handing due work from the ledger to RQ, and taking it back when Redis lost it.

A planned message becomes an RQ job ``send-<id>-<due epoch>`` scheduled for its
due time (``enqueue_at``, run by ``triggerpost worker``'s scheduler); a waiting
enrollment becomes ``wake-<id>-<epoch>``. Job ids are unique in Redis (RQ's
``unique=True``), so handing the same work over twice queues it once, and a
deferral (a new due time) is a new job while the old one finds nothing to do.
Work that ends before its time (an exit, a cancellation, a new anchor) is
handed over as withdrawn: its waiting job is taken out of Redis, so workers
spend nothing on it and Redis does not keep it until its time.

The ledger is the truth: :func:`sweep` finds planned messages and wakes whose
time has passed by more than a grace period and whose job Redis no longer
has (flushed, restarted without persistence, a hand-off that failed), and
hands them over again, so they are late by at most one sweep interval.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select

from jobs import queues
from jobs.engine import DueWork
from jobs.runtime import Runtime

if TYPE_CHECKING:
    from jobs.send import Engine
from jobs.store.models import Enrollment, EnrollmentState, Message, MessageState, now

log = logging.getLogger(__name__)

#: overdue work younger than this is left to its own job
GRACE = timedelta(seconds=30)


def run_at(work: DueWork) -> datetime:
    """The due time rounded up to RQ's whole seconds (its scheduler drops the fraction,
    so a job scheduled for 12:00:00.7 could otherwise run at 12:00:00.2, before it is due)."""
    return datetime.fromtimestamp(math.ceil(work.due_at.timestamp()), UTC)


def job_id(work: DueWork) -> str:
    prefix = "send" if work.kind == "message" else "wake"
    return f"{prefix}-{work.id}-{int(run_at(work).timestamp())}"


def hand_off(runtime: Runtime, work: Iterable[DueWork]) -> int:
    """Queue each item for its time, and take withdrawn items' jobs out of Redis.

    A failure is logged: the sweeper re-queues what is due, and a withdrawn job
    that stays behind finds its message no longer planned when it runs.
    """
    from jobs.send import JOB_TIMEOUT, send_message

    # what each job id ends up as in this batch: the last word about it wins (a
    # message planned and ended in one transaction is never queued; one moved
    # within the same second keeps its job, which runs after both times)
    final: dict[str, DueWork] = {}
    for item in work:
        final.pop(job_id(item), None)
        final[job_id(item)] = item
    withdrawn = [id_ for id_, item in final.items() if item.withdraw]
    if withdrawn:
        withdraw(runtime, withdrawn)
    queue = runtime.queue(queues.MESSAGES)
    current = now()
    handed = 0
    for id_, item in final.items():
        if item.withdraw:
            continue
        func = send_message if item.kind == "message" else wake_enrollment
        options = {"job_id": id_, "unique": True, "job_timeout": JOB_TIMEOUT}
        try:
            if item.due_at <= current:
                queue.enqueue(func, item.id, **options)
            else:
                queue.enqueue_at(run_at(item), func, item.id, **options)
            handed += 1
        except DuplicateJobError:
            continue
        except RedisError as exc:
            log.warning("hand-off of %s failed (%s); the sweeper will retry", id_, exc)
    return handed


#: remove a job that waits in the queue or the scheduled registry, and only then
#: its hash: a job a worker already took is left alone (it will find nothing to do)
WITHDRAW_SCRIPT = """
local removed = redis.call('LREM', KEYS[1], 1, ARGV[1]) + redis.call('ZREM', KEYS[2], ARGV[1])
if removed > 0 then
    redis.call('DEL', KEYS[3])
end
return removed
"""


def withdraw(runtime: Runtime, ids: Collection[str]) -> int:
    """Take waiting jobs out of Redis in one round trip; returns how many were removed."""
    queue = runtime.queue(queues.MESSAGES)
    script = runtime.extensions.get("withdraw_script")
    if script is None:
        script = runtime.extensions["withdraw_script"] = runtime.redis.register_script(
            WITHDRAW_SCRIPT
        )
    scheduled = queue.scheduled_job_registry.key
    try:
        with runtime.redis.pipeline(transaction=False) as pipe:
            for id_ in ids:
                script(keys=[queue.key, scheduled, Job.key_for(id_)], args=[id_], client=pipe)
            return sum(int(n) for n in pipe.execute())
    except RedisError as exc:
        log.warning("withdrawing %d jobs failed (%s); they will find nothing to do", len(ids), exc)
        return 0


def forget(runtime: Runtime, work: Iterable[DueWork]) -> None:
    """Drop RQ's jobs for this work (a dead worker's job still looks started to RQ)."""
    for item in work:
        try:
            Job.fetch(job_id(item), connection=runtime.redis).delete()
        except NoSuchJobError:
            continue


def wake_enrollment(enrollment_id: int) -> bool:
    """The RQ job for a Branch or a WaitForEvent timeout that has come due."""
    from jobs import engine
    from jobs import runtime as runtimes

    runtime = runtimes.current()
    with runtime.sessions.begin() as session:
        woke = engine.wake(session, enrollment_id, now())
        due = engine.take_due_work(session)
    hand_off(runtime, due)
    return woke


def overdue(runtime: Runtime, at: datetime, *, grace: timedelta = GRACE) -> list[DueWork]:
    cutoff = at - grace
    with runtime.sessions() as session:
        messages = session.execute(
            select(Message.id, Message.due_at).where(
                Message.state == MessageState.PLANNED, Message.due_at <= cutoff
            )
        ).all()
        wakes = session.execute(
            select(Enrollment.id, Enrollment.wake_at).where(
                Enrollment.state == EnrollmentState.ACTIVE, Enrollment.wake_at <= cutoff
            )
        ).all()
    work = [DueWork("message", id_, due) for id_, due in messages]
    work += [DueWork("wake", id_, due) for id_, due in wakes if due is not None]
    return work


ALIVE = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED)


def _queued(runtime: Runtime, id_: str, at: datetime) -> bool:
    """True if RQ still holds a live job for this id; a dead one is removed.

    A job "started" longer ago than the send lease belongs to a worker that
    died (RQ marks it abandoned only later): it no longer counts.
    """
    from jobs.send import LEASE

    try:
        job = Job.fetch(id_, connection=runtime.redis)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    started = job.started_at.replace(tzinfo=UTC) if job.started_at else None
    stale = status == JobStatus.STARTED and started is not None and started < at - LEASE
    if status in ALIVE and not stale:
        return True
    job.delete()  # finished or failed but the work is still due: make room for a new job
    return False


def sweep(
    runtime: Runtime, at: datetime | None = None, *, engine_: Engine | None = None
) -> dict[str, int]:
    """Re-hand overdue work Redis no longer holds, and resolve claims of dead workers."""
    from jobs.send import engine_for, resolve_stale_claims

    at = at or now()
    engine_ = engine_ or engine_for(runtime)
    lost = [work for work in overdue(runtime, at) if not _queued(runtime, job_id(work), at)]
    handed = hand_off(runtime, lost)
    claims = resolve_stale_claims(engine_, at)
    if handed or any(claims.values()):
        log.info("sweeper: re-queued %d due messages/wakes; stale claims %s", handed, claims)
    return {"requeued": handed, **claims}
