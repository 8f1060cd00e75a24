"""The production shape on one machine, for a test and a benchmark.

What docs/deploy.md describes, as separate processes: PostgreSQL (the
database given), a redis-server of this machine's own on a free port and
without persistence (so that restarting it loses everything it held, as a
Redis that is not the truth may), ``triggerpost migrate`` as the release
step, N ``triggerpost web`` processes and M ``triggerpost worker`` processes
(each with its sweeper) under ``TRIGGERPOST_ENV=production``, and an SMTP
server (aiosmtpd) on loopback as the email provider. Nothing embedded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from redis import Redis
from redis.exceptions import RedisError
from rq import Worker

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "connector.cli"]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
SECRET_KEY = "production-shape-secret-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Mailbox:
    """An aiosmtpd handler counting what the provider was handed, by Message-ID."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.message_ids: list[str] = []
        self.received_at: list[float] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        found = ""
        for line in content.split(b"\r\n\r\n", 1)[0].splitlines():
            if line.lower().startswith(b"message-id:"):
                found = line.split(b":", 1)[1].strip().decode()
        with self.lock:
            self.message_ids.append(found)
            self.received_at.append(time.time())
        return "250 Message accepted"


@dataclass
class Shape:
    """Every process of the shape; :meth:`stop` ends them all."""

    database_url: str
    where: Path
    webs: int = 2
    workers: int = 3
    #: the web processes' command (the benchmark adds a bare route to the same server)
    web_command: list[str] | None = None
    sweep_interval: int = 2
    redis_port: int = field(default_factory=free_port)
    smtp_port: int = field(default_factory=free_port)
    web_ports: list[int] = field(default_factory=list)
    mailbox: Mailbox = field(default_factory=Mailbox)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    smtp: Controller | None = None

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def bases(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.web_ports]

    def environment(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERPOST_")}
        return inherited | {
            "TRIGGERPOST_ENV": "production",
            "TRIGGERPOST_DATABASE_URL": self.database_url,
            "TRIGGERPOST_REDIS_URL": self.redis_url,
            "TRIGGERPOST_EMAIL_URL": f"smtp://127.0.0.1:{self.smtp_port}",
            "TRIGGERPOST_EMAIL_FROM": "shops@mail.example.com",
            "TRIGGERPOST_BASE_URL": "https://triggerpost.example.com",
            "TRIGGERPOST_SECRET_KEY": SECRET_KEY,
            "TRIGGERPOST_DATA_DIR": str(self.where / "var"),
            "TRIGGERPOST_SWEEP_INTERVAL": str(self.sweep_interval),
            "TRIGGERPOST_LOG_LEVEL": "WARNING",
        }

    def start(self) -> None:
        self.where.mkdir(parents=True, exist_ok=True)
        self.smtp = Controller(self.mailbox, hostname="127.0.0.1", port=self.smtp_port)
        self.smtp.start()
        self.start_redis()
        env = self.environment()
        release = subprocess.run([*CLI, "migrate"], env=env, capture_output=True, check=False)
        if release.returncode != 0:
            raise RuntimeError(f"migrate failed: {release.stderr.decode()}")
        for n in range(self.webs):
            port = free_port()
            self.web_ports.append(port)
            command = self.web_command or [*CLI, "web"]
            self._spawn(f"web-{n + 1}", [*command, "--port", str(port), "--workers", "1"])
        for n in range(self.workers):
            self.start_worker(n + 1)
        self.wait_ready(60)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.where / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            argv, env=self.environment(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def start_worker(self, n: int) -> None:
        self._spawn(f"worker-{n}", [*CLI, "worker", "--name", f"shape-worker-{n}-{time.time_ns()}"])

    def start_redis(self) -> None:
        log = (self.where / "redis.log").open("ab")
        # no RDB, no AOF: a restart loses every job, flag and lock it held
        self.processes["redis"] = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.where)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 10
        redis = Redis.from_url(self.redis_url)
        try:
            while True:
                try:
                    redis.ping()
                    return
                except RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            redis.close()

    def restart_redis(self, down: float = 1.0) -> None:
        """redis-server killed (SIGKILL) and started again empty on the same port."""
        process = self.processes["redis"]
        process.kill()
        process.wait()
        time.sleep(down)
        self.start_redis()

    def kill_worker(self, n: int) -> None:
        """SIGKILL to a worker (what it started ends with it: see jobs.workers.lifeline)."""
        process = self.processes[f"worker-{n}"]
        process.kill()
        process.wait()

    def wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for base in self.bases:
            while True:
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                self._check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{base} not ready: see {self.where}/web-*.log")
                time.sleep(0.2)
        redis = Redis.from_url(self.redis_url)
        try:
            while len(Worker.all(connection=redis)) < self.workers:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers not up: see {self.where}/worker-*.log")
                time.sleep(0.2)
        finally:
            redis.close()

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: see {self.where}")

    def stop(self) -> None:
        for name, process in self.processes.items():
            if name != "redis" and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            if name == "redis":
                continue
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        redis = self.processes.get("redis")
        if redis is not None and redis.poll() is None:
            redis.kill()
            redis.wait()
        if self.smtp is not None:
            self.smtp.stop()
