"""Handing due work from the ledger to RQ, and taking it back when Redis lost it.

Messages are sent by **send drains** (the ``jobs.tasks.send_due`` job), one RQ job
working through a shop's messages that have come due, not a job per email:
an email then costs its own work, not RQ's per-job bookkeeping as well. A
message due now asks for a drain of its shop (a flag in Redis, as intake
does: a burst of messages costs one round trip each, not an enqueue); a
message due later asks for the shop's **tick** at that second, a drain job
``sends-<shop>-<due epoch>`` scheduled with ``enqueue_at`` (run by
``triggerpost worker``'s scheduler). Messages due in the same second share
it (RQ's ``unique=True``), and it sends whatever of the shop is due when it
runs. A waiting enrollment becomes its own ``wake-<id>-<epoch>`` job.

Work that ends or moves before its time (an exit, a cancellation, a new
anchor) is handed over as withdrawn: its waiting job is taken out of Redis,
for a tick only when no planned message of the shop is left at that second,
so workers spend nothing on it and Redis does not keep it until its time.

The ledger is the truth: :func:`sweep` finds planned messages and wakes whose
time has passed by more than a grace period (their job was lost: Redis
flushed or restarted without persistence, a hand-off failed, a withdrawal
raced a new message of the same second) and hands them over again, so they
are late by at most one sweep interval.

Work is noted in the session of the transaction that plans it, and handed over
only once that transaction has committed (a job must never find its message not
yet written): :func:`unit_of_work` does both. The engine names the jobs it asks
for by their path in :mod:`jobs.tasks`; it never imports what they run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from jobs import queues
from jobs.engine import enrolment, ledger
from jobs.engine.enrolment import DueKind, DueWork
from jobs.engine.ledger import LEASE
from jobs.runtime import Runtime
from jobs.store.models import Enrollment, EnrollmentState, Message, MessageState, now

log = logging.getLogger(__name__)

#: overdue work younger than this is left to its own job
GRACE = timedelta(seconds=30)
#: a tick job that fails stays in RQ's failed registry this long
FAILURE_TTL = 86400
#: seconds a send drain or a wake may run before RQ stops it
JOB_TIMEOUT = 300

#: the jobs this module asks for (see jobs.tasks)
SEND_DUE = "jobs.tasks.send_due"
WAKE_ENROLLMENT = "jobs.tasks.wake_enrollment"


def run_at(work: DueWork) -> datetime:
    """The due time rounded up to RQ's whole seconds (its scheduler drops the fraction,
    so a job scheduled for 12:00:00.7 could otherwise run at 12:00:00.2, before it is due)."""
    return datetime.fromtimestamp(math.ceil(work.due_at.timestamp()), UTC)


def job_id(work: DueWork) -> str:
    """The job that carries this work: the shop's tick for a message, its own for a wake."""
    epoch = int(run_at(work).timestamp())
    if work.kind == DueKind.MESSAGE:
        return f"sends-{work.shop_id}-{epoch}"
    return f"wake-{work.id}-{epoch}"


def send_flag(shop_id: int) -> str:
    return f"triggerpost:sends:{shop_id}"


def notify_sends(runtime: Runtime, shop_id: int, *, force: bool = False) -> bool:
    """Make sure a send drain will look at the shop's due messages (see queues.enqueue_once)."""
    return queues.enqueue_once(
        runtime.queue(queues.MESSAGES), send_flag(shop_id), SEND_DUE, shop_id, force=force
    )


HandOff = Callable[[list[DueWork]], object]


@contextmanager
def unit_of_work(runtime: Runtime, *, via: HandOff | None = None) -> Iterator[Session]:
    """A transaction whose due work goes to RQ once it has committed.

    ``with unit_of_work(runtime) as session:`` begins, commits at the end of
    the block, and then hands over what the transaction noted (see
    :func:`hand_off_committed`); a block that raises is rolled back and hands
    over nothing. ``via`` replaces the hand-off to RQ (the simulator polls
    the ledger instead).
    """
    with runtime.sessions.begin() as session:
        yield session
    hand_off_committed(runtime, session, via=via)


def hand_off_committed(runtime: Runtime, session: Session, *, via: HandOff | None = None) -> None:
    """Hand over the due work a session noted, after its transaction committed.

    For a session committed by other means than :func:`unit_of_work` (a page
    that commits before it answers). A hand-off Redis does not take is logged
    and left to the sweeper (see :func:`hand_off`).
    """
    work = ledger.take_due_work(session)
    if not work:
        return
    if via is not None:
        via(work)
    else:
        hand_off(runtime, work)


def hand_off(runtime: Runtime, work: Iterable[DueWork]) -> int:
    """Queue each item for its time, and take withdrawn items' jobs out of Redis;
    returns how many jobs were asked for.

    A failure is logged: the sweeper re-queues what is due, and a withdrawn job
    that stays behind finds nothing to do when it runs.
    """
    # the last word about each item at each time wins: a message planned and
    # ended in one transaction is never queued, and one that moved asks for
    # its new time and gives up its old one
    final: dict[tuple[str, int, str], DueWork] = {}
    for item in work:
        key = (item.kind, item.id, job_id(item))
        final.pop(key, None)
        final[key] = item
    current = now()
    shops_due: set[int] = set()
    ticks: dict[str, DueWork] = {}
    wakes: dict[str, DueWork] = {}
    gone: dict[str, DueWork] = {}
    for (kind, _, id_), item in final.items():
        if item.withdraw:
            gone[id_] = item
        elif kind == DueKind.WAKE:
            wakes[id_] = item
        elif item.due_at <= current:
            shops_due.add(item.shop_id)
        else:
            ticks[id_] = item
    handed = 0
    try:
        withdrawn = [gone[id_] for id_ in gone if id_ not in ticks and id_ not in wakes]
        if withdrawn:
            withdraw(runtime, _unused(runtime, withdrawn))
        for shop_id in sorted(shops_due):
            notify_sends(runtime, shop_id)
            handed += 1
        for id_, item in [*ticks.items(), *wakes.items()]:
            handed += _schedule(runtime, id_, item, current)
    except RedisError as exc:
        log.warning("hand-off of %d items failed (%s); the sweeper will retry", len(final), exc)
    return handed


def _schedule(runtime: Runtime, id_: str, item: DueWork, current: datetime) -> int:
    """Queue a tick or a wake for its time (now if it is due); 0 if it was queued already.

    A tick that exists but no longer waits (it is running, or failed) may have
    read the shop's messages before this one was committed: this message then
    gets a tick of its own.
    """
    queue = runtime.queue(queues.MESSAGES)
    func = SEND_DUE if item.kind == DueKind.MESSAGE else WAKE_ENROLLMENT
    arg = item.shop_id if item.kind == DueKind.MESSAGE else item.id
    options = {"unique": True, "job_timeout": JOB_TIMEOUT, "failure_ttl": FAILURE_TTL}
    if item.kind == DueKind.MESSAGE:
        options["result_ttl"] = 0  # a finished tick leaves nothing behind to collide with
    for attempt in (id_, f"{id_}-{item.id}"):
        try:
            if item.due_at <= current:
                queue.enqueue(func, arg, job_id=attempt, **options)
            else:
                queue.enqueue_at(run_at(item), func, arg, job_id=attempt, **options)
            return 1
        except DuplicateJobError:
            if item.kind != DueKind.MESSAGE or _waiting(runtime, attempt):
                return 0
    return 0


def _waiting(runtime: Runtime, id_: str) -> bool:
    status = Job(id_, connection=runtime.redis).get_status(refresh=True)
    return status in (JobStatus.SCHEDULED, JobStatus.QUEUED)


def _unused(runtime: Runtime, items: list[DueWork]) -> list[str]:
    """The withdrawn items' job ids that nothing planned still needs: a wake's own
    job, a tick when the shop has no other planned message in that second."""
    ids: list[str] = []
    try:
        with runtime.reads() as session:
            ids = [job_id(item) for item in items if not _still_needed(session, item)]
    except SQLAlchemyError as exc:  # then the ticks stay, and find nothing when they run
        log.warning("withdrawing %d jobs skipped: %s", len(items), exc)
    return ids


def _still_needed(session: Session, item: DueWork) -> bool:
    if item.kind != DueKind.MESSAGE:
        return False
    end = run_at(item)
    other = session.scalar(
        select(Message.id)
        .where(
            Message.shop_id == item.shop_id,
            Message.state == MessageState.PLANNED,
            Message.due_at > end - timedelta(seconds=1),
            Message.due_at <= end,
        )
        .limit(1)
    )
    return other is not None


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
    script = runtime.withdraw_script
    if script is None:
        script = runtime.withdraw_script = runtime.redis.register_script(WITHDRAW_SCRIPT)
    scheduled = queue.scheduled_job_registry.key
    try:
        with runtime.redis.pipeline(transaction=False) as pipe:
            for id_ in ids:
                script(keys=[queue.key, scheduled, Job.key_for(id_)], args=[id_], client=pipe)
            return sum(int(n) for n in pipe.execute())
    except RedisError as exc:
        log.warning("withdrawing %d jobs failed (%s); they will find nothing to do", len(ids), exc)
        return 0


def wake_enrollment(runtime: Runtime, enrollment_id: int) -> bool:
    """A Branch or a WaitForEvent timeout that has come due (the ``wake_enrollment`` job)."""
    with unit_of_work(runtime) as session:
        return enrolment.wake(session, enrollment_id, now())


def overdue(runtime: Runtime, at: datetime, *, grace: timedelta = GRACE) -> list[DueWork]:
    cutoff = at - grace
    with runtime.reads() as session:
        messages = session.execute(
            select(Message.shop_id, Message.id, Message.due_at).where(
                Message.state == MessageState.PLANNED, Message.due_at <= cutoff
            )
        ).all()
        wakes = session.execute(
            select(Enrollment.shop_id, Enrollment.id, Enrollment.wake_at).where(
                Enrollment.state == EnrollmentState.ACTIVE, Enrollment.wake_at <= cutoff
            )
        ).all()
    work = [DueWork(DueKind.MESSAGE, shop_id, id_, due) for shop_id, id_, due in messages]
    work += [
        DueWork(DueKind.WAKE, shop_id, id_, due) for shop_id, id_, due in wakes if due is not None
    ]
    return work


ALIVE = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED)


def _queued(runtime: Runtime, id_: str, at: datetime) -> bool:
    """True if RQ still holds a live job for this id; a dead one is removed.

    A job "started" longer ago than the send lease belongs to a worker that
    died (RQ marks it abandoned only later): it no longer counts.
    """
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


def sweep(runtime: Runtime, at: datetime | None = None) -> int:
    """Re-hand overdue work Redis no longer holds; returns how many drains and wakes.

    A shop with overdue messages gets a send drain whatever Redis holds (a
    drain that finds them held by another, live one ends at once; holds of
    drains that died are lifted first); a wake is handed over again only if
    its job is gone. Claims of dead workers are the sending side's to resolve
    (see :mod:`jobs.workers.sweeper`).
    """
    at = at or now()
    with runtime.sessions.begin() as session:
        ledger.lapse_holds(session, at - GRACE, at)
    work = overdue(runtime, at)
    shops = sorted({item.shop_id for item in work if item.kind == DueKind.MESSAGE})
    lost = [
        item
        for item in work
        if item.kind == DueKind.WAKE and not _queued(runtime, job_id(item), at)
    ]
    handed = hand_off(runtime, lost)
    for shop_id in shops:
        try:
            handed += notify_sends(runtime, shop_id, force=True)
        except RedisError as exc:
            log.warning("sweeper: no send drain for shop %s (%s)", shop_id, exc)
    return handed
