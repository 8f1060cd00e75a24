"""``triggerpost run``: the whole service on one machine, as one process group.

Checks that its port is free (a busy one is named, and nothing starts), starts
the embedded Redis (when no Redis URL is configured), migrates the database,
then runs the web server and a worker (with its scheduler and sweeper) as
child processes, and says it is running once the web server answers. Without
TRIGGERPOST_BASE_URL, the links every process makes use the port served on,
and the address is noted in the data directory for the commands run beside it
(a login link, ``triggerpost demo``). A child that dies is restarted, and so
is the embedded Redis (each at most ``MAX_RESTARTS`` times a minute; the web
server and the workers reconnect on their own, and the append-only file gives
the new Redis the jobs the old one held). Ctrl-C or SIGTERM stops the web
server first, then the worker, then Redis. Every process started here dies
with the supervisor, however it dies (see :mod:`jobs.workers.lifeline`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import requests

from adapters.registry import PLATFORMS
from connector.embedded_redis import EmbeddedRedis, EmbeddedRedisError, RedisliteMissingError
from connector.web import PortInUseError, check_port
from jobs import metrics
from jobs.settings import Settings, note_served_base_url
from jobs.store.db import migrate
from jobs.workers.lifeline import tie_to_parent

MAX_RESTARTS = 5
STOP_TIMEOUT = 15.0


class SupervisorError(RuntimeError):
    pass


@dataclass
class Restarts:
    """When a process was restarted: at most ``MAX_RESTARTS`` in any minute."""

    times: deque[float] = field(default_factory=deque)

    def allow(self) -> bool:
        """True (and counted) if one more restart is within the limit."""
        now = time.monotonic()
        while self.times and self.times[0] < now - 60:
            self.times.popleft()
        if len(self.times) >= MAX_RESTARTS:
            return False
        self.times.append(now)
        return True


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: Restarts = field(default_factory=Restarts)

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
    try:
        check_port(host, port)
    except PortInUseError as exc:
        raise SupervisorError(str(exc)) from exc
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.outbox_dir.mkdir(parents=True, exist_ok=True)
    note_served_base_url(settings)
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
        except RedisliteMissingError as exc:
            raise SupervisorError(str(exc)) from exc
        except EmbeddedRedisError as exc:
            raise SupervisorError(f"embedded Redis: {exc} (is `triggerpost run` running?)") from exc
    # the workers make links too (unsubscribe, clicks): the web server's base URL
    env = dict(
        os.environ,
        TRIGGERPOST_DATA_DIR=str(settings.data_dir),
        TRIGGERPOST_BASE_URL=settings.base_url,
    )
    run_metrics = fresh_metrics_directory(settings)
    if run_metrics is not None:
        env["TRIGGERPOST_METRICS_DIR"] = str(run_metrics)
    cli = [sys.executable, "-m", "connector.cli"]
    children = [
        Child("web", [*cli, "web", "--host", host, "--port", str(port)]),
        *[Child(f"worker-{n + 1}", [*cli, "worker"]) for n in range(workers)],
    ]
    redis_restarts = Restarts()
    exit_code = 0
    try:
        for child in children:
            child.start(env)
        if not _web_answers(children[0], base_url=f"http://{_dial(host)}:{port}"):
            print("triggerpost: the web server did not start (see its messages above)")
            return 1
        _announce(settings, host, port)
        while not stopping:
            time.sleep(0.2)
            code = redis.exit_code() if redis is not None else None
            if redis is not None and code is not None and not stopping:
                if not redis_restarts.allow():
                    print(f"triggerpost: redis keeps exiting (code {code}); stopping")
                    exit_code = 1
                    break
                print(f"triggerpost: redis exited with code {code}; restarting", flush=True)
                try:
                    redis.start(die_with_parent=True)
                except EmbeddedRedisError as exc:
                    print(f"triggerpost: redis did not start again ({exc}); stopping")
                    exit_code = 1
                    break
            for child in children:
                assert child.process is not None
                code = child.process.poll()
                if code is None or stopping:
                    continue
                if not child.restarts.allow():
                    print(f"triggerpost: {child.name} keeps exiting (code {code}); stopping")
                    exit_code = 1
                    stopping = True
                    break
                if run_metrics is not None:
                    metrics.mark_dead(child.process.pid, run_metrics)
                print(f"triggerpost: {child.name} exited with code {code}; restarting")
                child.start(env)
    finally:
        print("triggerpost: stopping")
        for child in children:
            child.stop()
        if redis is not None:
            redis.stop(STOP_TIMEOUT)
        if run_metrics is not None:
            shutil.rmtree(run_metrics, ignore_errors=True)
    return exit_code


#: how long the web server has to answer its health check before the banner
WEB_START_TIMEOUT = 60.0


def _dial(host: str) -> str:
    """The address a client on this machine reaches ``host`` by."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (what it listens on, not a bind)
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _web_answers(web: Child, *, base_url: str) -> bool:
    """Waits until the web server answers /healthz; False if it exited first."""
    deadline = time.monotonic() + WEB_START_TIMEOUT
    while time.monotonic() < deadline:
        assert web.process is not None
        if web.process.poll() is not None:
            return False
        try:
            if requests.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


def fresh_metrics_directory(settings: Settings) -> Path | None:
    """This run's metrics directory, empty: ``run-<pid>`` inside the configured one, shared
    by the web server and the workers it starts. Those of runs that ended without
    cleaning up (killed) are removed; a run still going keeps its own."""
    if settings.metrics_dir is None:
        return None
    root = settings.metrics_dir
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("run-*"):
        pid = old.name.removeprefix("run-")
        if not (pid.isdigit() and _alive(int(pid))):
            shutil.rmtree(old, ignore_errors=True)
    ours = root / f"run-{os.getpid()}"
    shutil.rmtree(ours, ignore_errors=True)
    ours.mkdir()
    return ours


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _announce(settings: Settings, host: str, port: int) -> None:
    base = f"http://{_dial(host)}:{port}"
    lines = [
        "triggerpost is running (Ctrl-C stops everything)",
        f"  health:               {base}/healthz   readiness: {base}/readyz",
        *(f"  {p.label + ' webhooks:':<22}{base}/webhooks/{p.name}" for p in PLATFORMS.values()),
        f"  data:                 {settings.data_dir}",
        f"  database:             {settings.database_url}",
        f"  redis:                {settings.redis_url}",
        f"  outbox (emails):      {settings.outbox_dir}",
        f"  links in emails:      {settings.base_url}/...",
        "  see it work:          make demo   (a demo shop, webhooks, emails in the outbox)",
        "  add a shop:           .venv/bin/triggerpost shop add --help",
    ]
    print("\n".join(lines), flush=True)
