"""The RQ worker process: queues in priority order, scheduler, sweeper beside it.

Every process a worker starts ends with it, however it ends (see
:mod:`jobs.workers.lifeline`): its sweeper, the scheduler RQ forks, a fork worker's
work horses, and so the resource tracker ``multiprocessing`` starts, which
ends when the last of them has closed its pipe.

The scheduler (which enqueues jobs that have come due: retries, timed sends,
wakes) carries on through a Redis outage: RQ's own ends at the first
connection error, and its worker starts it again only at its maintenance,
ten minutes later or more.
"""

from __future__ import annotations

import gc
import importlib
import logging
import multiprocessing
import os
import time
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import SimpleWorker, Worker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.scheduler import RQScheduler
from rq.worker import BaseWorker
from sqlalchemy.orm import configure_mappers

from emails.render import TEMPLATES, compiled
from jobs import logs, metrics
from jobs import runtime as runtimes
from jobs.queues import ALL_QUEUES
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.workers import lifeline, sweeper

log = logging.getLogger(__name__)

#: the module RQ finds every job in, by its path (see jobs.tasks)
TASKS = "jobs.tasks"
#: seconds between a scheduler's attempts to reach Redis again
SCHEDULER_RETRY_WAIT = 2.0


class SteadyScheduler(RQScheduler):
    """RQ's scheduler, waiting for Redis to come back instead of ending."""

    def work(self) -> None:
        while True:
            try:
                super().work()
                return
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if self._stop_requested:  # its locks expire on their own
                    return
                self.log.warning(
                    "Scheduler: Redis unavailable (%s); trying again in %.0f s",
                    exc,
                    SCHEDULER_RETRY_WAIT,
                )
                time.sleep(SCHEDULER_RETRY_WAIT)


class SteadySchedulerWorker(BaseWorker):
    """A worker whose scheduler is a :class:`SteadyScheduler`, and whose jobs' log
    lines carry the job's id."""

    def perform_job(self, job: Any, *args: Any, **kwargs: Any) -> bool:
        with logs.ids(job=job.id):
            return bool(super().perform_job(job, *args, **kwargs))

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        # RQ's own (rq 3.0), which names its scheduler class in the code
        self.scheduler = SteadyScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()


class SteadySimpleWorker(SteadySchedulerWorker, SimpleWorker):
    pass


class SteadyForkWorker(SteadySchedulerWorker, Worker):
    def monitor_work_horse(self, *args: Any, **kwargs: Any) -> None:
        """RQ's, then the ended job process leaves the metrics' live sum (jobs.metrics)."""
        horse = self.horse_pid
        try:
            super().monitor_work_horse(*args, **kwargs)
        finally:
            metrics.mark_dead(horse)


#: ``simple`` runs jobs in the worker process (connections are reused from job
#: to job: several times RQ's forking throughput for our short jobs);
#: ``fork`` isolates every job in a child process.
WORKER_CLASSES: dict[str, type[BaseWorker]] = {
    "simple": SteadySimpleWorker,
    "fork": SteadyForkWorker,
}


def start_sweeper(settings: Settings) -> multiprocessing.process.BaseProcess:
    # spawned, not forked: the sweeper starts clean, without the worker's connections
    process = multiprocessing.get_context("spawn").Process(
        target=sweeper.run_beside,
        args=(os.getpid(), settings),
        name="triggerpost-sweeper",
        daemon=True,
    )
    process.start()
    return process


def preload() -> None:
    """What every job needs, loaded once when a worker starts.

    A ``fork`` worker runs each job in a new child, which starts from the
    parent's memory: modules the jobs import, the ORM's mapper set-up and the
    email templates they compile would otherwise be made again by every child.
    A ``simple`` worker's first emails no longer wait for their templates.
    Nothing holding a connection is made here: children must open their own.
    """
    # by path, as RQ loads it: the jobs and every module they run
    importlib.import_module(TASKS)
    configure_mappers()
    for name in TEMPLATES:
        for direction in ("ltr", "rtl"):
            compiled(name, direction)


def work(
    settings: Settings,
    *,
    worker_class: str = "simple",
    burst: bool = False,
    with_sweeper: bool = True,
    name: str | None = None,
) -> bool:
    """Run one worker until it is stopped (or, in burst mode, until the queues are empty)."""
    if settings.metrics_dir is not None:
        metrics.use_directory(settings.metrics_dir)
    runtime = Runtime.create(settings)
    runtimes.install(runtime)
    metrics.process_started(metrics.ProcessKind.WORKER)
    preload()
    # what start-up made lives as long as the process: the collector skips it
    # from now on (and a forked child's pages stay shared with the parent)
    gc.freeze()
    lifeline.tie_forked_children()
    sweeper_process = start_sweeper(settings) if with_sweeper and not burst else None
    try:
        worker = WORKER_CLASSES[worker_class](
            [runtime.queue(name) for name in ALL_QUEUES], connection=runtime.redis, name=name
        )
        return bool(worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level))
    finally:
        if sweeper_process is not None:
            sweeper_process.terminate()
            sweeper_process.join(10)
        runtimes.install(None)
        runtime.close()
        metrics.mark_dead(os.getpid())
