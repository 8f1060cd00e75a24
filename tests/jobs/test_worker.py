"""The worker process: it stops when asked, so deploys and restarts never hang on it,
and nothing it started outlives it, however it ends."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.job import JobStatus

from connector.embedded_redis import EmbeddedRedis
from jobs.queues import DEFAULT
from tests.conftest import SECRET_KEY
from tests.processes import (
    Process,
    descendants,
    kill_all,
    scheduler_holding_the_locks,
    wait_until_gone,
)


def worker_env(tmp_path: Path, sqlite_template: Path, redis_url: str) -> dict[str, str]:
    database = tmp_path / "triggerpost.db"
    shutil.copy(sqlite_template, database)
    return {
        **os.environ,
        "TRIGGERPOST_DATA_DIR": str(tmp_path / "var"),
        "TRIGGERPOST_DATABASE_URL": f"sqlite:///{database}",
        "TRIGGERPOST_REDIS_URL": redis_url,
        "TRIGGERPOST_SECRET_KEY": SECRET_KEY,
        "TRIGGERPOST_EMAIL_URL": "null://",
    }


def start_worker(
    env: dict[str, str], *options: str, log: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "worker", *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log or subprocess.DEVNULL,
    )


def wait_for_scheduler(redis: Redis, worker: subprocess.Popen[bytes], seconds: float) -> Process:
    """Polls until a scheduler of ``worker`` holds RQ's scheduler lock; returns it."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            holder = scheduler_holding_the_locks(redis)
        except RedisError:
            holder = None
        found = [p for p in descendants(worker.pid) if p.pid == holder]
        if found:
            return found[0]
        assert worker.poll() is None, "the worker died"
        assert time.monotonic() < deadline, "no scheduler of the worker holds the lock"
        time.sleep(0.1)


def test_workers_stop_promptly_on_sigterm(
    tmp_path: Path, sqlite_template: Path, redis_url: str
) -> None:
    """A warm shutdown of idle workers (each with its scheduler and its pubsub
    listener) ends within seconds: once it hung for a minute in RQ's listener
    thread, with a newer redis client than RQ expects (see pyproject.toml)."""
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    env = worker_env(tmp_path, sqlite_template, redis_url)
    names = [f"stop-test-{n}" for n in range(4)]
    workers = [start_worker(env, "--no-sweeper", "--name", name) for name in names]
    try:
        deadline = time.monotonic() + 60
        while {w.name for w in Worker.all(connection=redis)} < set(names):
            assert all(w.poll() is None for w in workers), "a worker died while starting"
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        time.sleep(1)  # idle, waiting on the queues
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        # RQ waits at most a second for its listener; 20 s leaves room for a slow machine
        codes = [worker.wait(20) for worker in workers]
        assert codes == [0] * len(workers)
        assert not {w.name for w in Worker.all(connection=redis)} & set(names)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        redis.flushdb()


@pytest.mark.parametrize("worker_class", ["simple", "fork"])
def test_a_worker_killed_with_sigkill_leaves_no_process_behind_and_its_scheduler_lock_passes_on(
    tmp_path: Path, sqlite_template: Path, redis_url: str, worker_class: str
) -> None:
    """Its sweeper, the resource tracker multiprocessing started for it, the
    scheduler RQ forked and a fork worker's horse end with it: an orphan
    scheduler kept the scheduler lock, so no other worker's scheduler
    enqueued due retries."""
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    env = worker_env(tmp_path, sqlite_template, redis_url)
    # a fork worker runs this in a horse of its own: it is busy when killed
    busy = Queue(DEFAULT, connection=redis).enqueue("time.sleep", 600, job_timeout=900)
    first = start_worker(env, "--worker-class", worker_class, "--name", "killed")
    second: subprocess.Popen[bytes] | None = None
    tree: list[Process] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            tree = descendants(first.pid)
            commands = [p.command for p in tree]
            scheduler = scheduler_holding_the_locks(redis)
            if (
                scheduler in {p.pid for p in tree}
                and any("spawn_main" in c for c in commands)  # the sweeper
                and any("resource_tracker" in c for c in commands)
                and busy.get_status() == JobStatus.STARTED
                and (
                    worker_class == "simple"
                    or any("cli worker" in p.command and p.pid != scheduler for p in tree)
                )
            ):
                break
            assert first.poll() is None, "the worker died while starting"
            assert time.monotonic() < deadline, f"the worker did not start: {commands}"
            time.sleep(0.1)

        first.kill()
        first.wait()
        living = wait_until_gone(tree, 30)
        assert not living, f"outlived the killed worker: {[p.command for p in living]}"

        second = start_worker(env, "--name", "successor")
        wait_for_scheduler(redis, second, 60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        kill_all(tree)  # what the test found outliving the worker
        if second is not None:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(20)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait()
        redis.flushdb()


def test_the_scheduler_carries_on_through_a_redis_outage(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """RQ's own scheduler ended at the first connection error, and its worker
    started it again only at its maintenance, ten minutes later or more: no
    retry, timed send or wake was enqueued until then."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=True)  # ours alone to kill
    server.start()
    env = worker_env(tmp_path, sqlite_template, server.url)
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = start_worker(env, "--no-sweeper", "--name", "outage", log=log)
    redis = Redis.from_url(server.url, socket_timeout=2)
    try:
        scheduler = wait_for_scheduler(redis, worker, 60)
        assert server.process is not None
        server.process.kill()  # the server crashed
        server.process.wait()

        # it found Redis gone and waits for it, at least twice
        deadline = time.monotonic() + 60
        while log_path.read_text().count("Scheduler: Redis unavailable") < 2:
            assert scheduler.alive(), "the scheduler ended with the Redis outage"
            assert time.monotonic() < deadline, "the scheduler did not notice the outage"
            time.sleep(0.1)

        server.start()
        assert wait_for_scheduler(redis, worker, 60) == scheduler
    finally:
        redis.close()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        server.stop()
