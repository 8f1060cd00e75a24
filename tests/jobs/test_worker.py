"""The worker process: it stops when asked, so deploys and restarts never hang on it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis
from rq import Worker

from tests.conftest import SECRET_KEY


def test_workers_stop_promptly_on_sigterm(
    tmp_path: Path, sqlite_template: Path, redis_url: str
) -> None:
    """A warm shutdown of idle workers (each with its scheduler and its pubsub
    listener) ends within seconds: once it hung for a minute in RQ's listener
    thread, with a newer redis client than RQ expects (see pyproject.toml)."""
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    database = tmp_path / "triggerpost.db"
    shutil.copy(sqlite_template, database)
    env = {
        **os.environ,
        "TRIGGERPOST_DATA_DIR": str(tmp_path / "var"),
        "TRIGGERPOST_DATABASE_URL": f"sqlite:///{database}",
        "TRIGGERPOST_REDIS_URL": redis_url,
        "TRIGGERPOST_SECRET_KEY": SECRET_KEY,
        "TRIGGERPOST_EMAIL_URL": "null://",
    }
    names = [f"stop-test-{n}" for n in range(4)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "worker", "--no-sweeper", "--name", name],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in names
    ]
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
