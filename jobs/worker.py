"""The RQ worker process: queues in priority order, scheduler, sweeper beside it.

Every process a worker starts ends with it, however it ends (see
:mod:`jobs.lifeline`): its sweeper, the scheduler RQ forks, a fork worker's
work horses, and so the resource tracker ``multiprocessing`` starts, which
ends when the last of them has closed its pipe.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os

from rq import SimpleWorker, Worker
from rq.worker import BaseWorker

from jobs import lifeline, sweeper
from jobs import runtime as runtimes
from jobs.queues import ALL_QUEUES
from jobs.runtime import Runtime
from jobs.settings import Settings

log = logging.getLogger(__name__)

#: ``simple`` runs jobs in the worker process (connections are reused from job
#: to job: several times RQ's forking throughput for our short jobs);
#: ``fork`` isolates every job in a child process.
WORKER_CLASSES: dict[str, type[BaseWorker]] = {"simple": SimpleWorker, "fork": Worker}


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
    from sqlalchemy.orm import configure_mappers

    import jobs.intake
    import jobs.schedule
    import jobs.send
    import jobs.shopify_app
    import jobs.woocommerce_app  # noqa: F401 (imported for the children)
    from emails.render import TEMPLATES, compiled

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
    runtime = Runtime.create(settings)
    runtimes.install(runtime)
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
