"""Redis connection and the RQ queues.

Queues, highest priority first: ``intake`` (turning deliveries into events),
``messages`` (sending, used by the flow engine), ``default`` (everything else).
Workers listen on all three in that order.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from jobs.settings import Settings

INTAKE = "intake"
MESSAGES = "messages"
DEFAULT = "default"
ALL_QUEUES = (INTAKE, MESSAGES, DEFAULT)

#: Redis socket timeouts (seconds): an intake request must not hang on a dead Redis
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0
#: how long a "job waiting" flag lives if its job is lost (the sweeper covers that case)
FLAG_TTL = 120


def connect(settings: Settings) -> Redis:
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
    )


def queue(name: str, connection: Redis) -> Queue:
    return Queue(name, connection=connection)


def enqueue_once(queue: Queue, flag: str, func: str, *args: Any, force: bool = False) -> bool:
    """Enqueue the job ``func`` (its path in jobs.tasks) with ``args`` unless one is
    already waiting; True if it enqueued.

    The caller that sets ``flag`` (``SET NX``) enqueues; the job deletes the
    flag before it reads anything (:func:`clear`). So whatever was committed
    before this call is read either by the waiting job or by one enqueued now,
    and a burst of callers costs one Redis round trip each, not an enqueue.
    ``force`` enqueues even when the flag is set (the sweeper: a flag can
    outlive its job). Raises RedisError when Redis cannot be reached.
    """
    if queue.connection.set(flag, "1", nx=True, ex=FLAG_TTL) or force:
        queue.enqueue(func, *args, result_ttl=0, failure_ttl=86400)
        return True
    return False


#: a job of these states is over: a job of its id may be enqueued again
DONE_OR_FAILED = frozenset({JobStatus.FINISHED, JobStatus.FAILED})


def enqueue_as(
    queue: Queue,
    job_id: str,
    func: str,
    *args: Any,
    replace: Collection[JobStatus] = DONE_OR_FAILED,
    **options: Any,
) -> bool:
    """Enqueue the job ``func`` (its path in jobs.tasks) as ``job_id`` unless a job of
    that id is there in a state not in ``replace`` (waiting, scheduled, running);
    one in ``replace`` is deleted and enqueued afresh. True if it enqueued.

    One job per id at a time (a shop's reconciliation, its scan of a day), however
    often the sweeper asks. ``options`` go to ``Queue.enqueue`` (retries, timeouts).
    """
    try:
        job = Job.fetch(job_id, connection=queue.connection)
    except NoSuchJobError:
        job = None
    if job is not None:
        if job.get_status() not in replace:
            return False
        job.delete()
    queue.enqueue(func, *args, job_id=job_id, **options)
    return True


def clear(connection: Redis, flag: str) -> None:
    """A flagged job's first step, before it reads: work from now on needs a new job."""
    connection.delete(flag)
