"""``triggerpost run``: the whole service on one machine, as one process group.

Starts the embedded Redis (when no Redis URL is configured), migrates the
database, then runs the web server and a worker (with its scheduler and
sweeper) as child processes. A child that dies is restarted (at most
``MAX_RESTARTS`` times a minute); Ctrl-C or SIGTERM stops the web server
first, then the worker, then Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from types import FrameType

from connector.embedded_redis import EmbeddedRedis, EmbeddedRedisError, tie_to_parent
from jobs.settings import Settings
from jobs.store.db import migrate

MAX_RESTARTS = 5
STOP_TIMEOUT = 15.0


class SupervisorError(RuntimeError):
    pass


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: deque[float] = field(default_factory=deque)

    def start(self, env: dict[str, str]) -> None:
        # a session of its own: Ctrl-C reaches only the supervisor, which then
        # stops the children in order
        # and it dies with the supervisor, however the supervisor dies
        self.process = subprocess.Popen(
            self.argv, env=env, start_new_session=True, preexec_fn=tie_to_parent
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run(settings: Settings, *, host: str, port: int, workers: int) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.outbox_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.database_url)

    stopping = False

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)

    redis = None
    if settings.embedded_redis:
        redis = EmbeddedRedis(
            settings.data_dir / "redis", socket=settings.redis_socket, persistent=True
        )
        try:
            redis.start(die_with_parent=True)
        except EmbeddedRedisError as exc:
            raise SupervisorError(f"embedded Redis: {exc} (is `triggerpost run` running?)") from exc
    env = dict(os.environ, TRIGGERPOST_DATA_DIR=str(settings.data_dir))
    cli = [sys.executable, "-m", "connector.cli"]
    children = [
        Child("web", [*cli, "web", "--host", host, "--port", str(port)]),
        *[Child(f"worker-{n + 1}", [*cli, "worker"]) for n in range(workers)],
    ]
    exit_code = 0
    try:
        for child in children:
            child.start(env)
        _announce(settings, host, port)
        while not stopping:
            time.sleep(0.2)
            for child in children:
                assert child.process is not None
                code = child.process.poll()
                if code is None or stopping:
                    continue
                now = time.monotonic()
                while child.restarts and child.restarts[0] < now - 60:
                    child.restarts.popleft()
                if len(child.restarts) >= MAX_RESTARTS:
                    print(f"triggerpost: {child.name} keeps exiting (code {code}); stopping")
                    exit_code = 1
                    stopping = True
                    break
                print(f"triggerpost: {child.name} exited with code {code}; restarting")
                child.restarts.append(now)
                child.start(env)
    finally:
        print("triggerpost: stopping")
        for child in children:
            child.stop()
        if redis is not None:
            redis.stop(STOP_TIMEOUT)
    return exit_code


def _announce(settings: Settings, host: str, port: int) -> None:
    base = f"http://{host}:{port}"
    lines = [
        "triggerpost is running (Ctrl-C stops everything)",
        f"  health:              {base}/healthz   readiness: {base}/readyz",
        f"  Shopify webhooks:    {base}/webhooks/shopify",
        f"  WooCommerce hooks:   {base}/webhooks/woocommerce",
        f"  data:                {settings.data_dir}",
        f"  database:            {settings.database_url}",
        f"  redis:               {settings.redis_url}",
        f"  outbox (emails):     {settings.outbox_dir}",
        "  add a shop:          .venv/bin/triggerpost shop add --help",
    ]
    print("\n".join(lines), flush=True)
