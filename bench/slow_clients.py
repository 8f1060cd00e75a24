"""Slow clients against the intake: genuine webhook latency with and without them.

Runs the real web server (gunicorn as ``triggerpost web`` runs it) on loopback
and sends signed Shopify ``orders/create`` deliveries for a while, first alone, then
while N slow clients hold connections open: half of them send complete
headers for the shop (signed-looking, a 100 KB body promised) and then the
body a byte a second, half send their headers a byte a second. A slow client
that is cut (408 or closed) connects again at once, so the pressure stays.
Prints p50, p99, max and errors of the genuine deliveries per phase, their
ratio to the phase without slow clients, and how the slow clients ended.

    .venv/bin/python bench/slow_clients.py [--slow 48,96,192] [--seconds 15]
        [--concurrency 4] [--workers N] [--stock-worker] [--redis-url URL]

``--stock-worker`` runs gunicorn's own gthread worker (what ``triggerpost
web`` ran before it buffered requests) for comparison. SQLite, and Redis as
in bench/intake.py. Figures only: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from redis import Redis
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.intake import (  # noqa: E402
    APP_SECRET,
    SECRET_KEY,
    SHOP,
    answers,
    build_requests,
    free_port,
    shared_redis,
    stop,
    wait_healthy,
)
from connector.embedded_redis import EmbeddedRedis  # noqa: E402
from connector.web import DEFAULT_WORKERS, THREADS  # noqa: E402
from jobs.merchant.shops import add_shop  # noqa: E402
from jobs.settings import Settings  # noqa: E402
from jobs.store.db import make_engine, make_sessions, migrate  # noqa: E402
from jobs.store.models import Delivery  # noqa: E402
from jobs.store.secrets import SecretBox  # noqa: E402

REQUEST_TIMEOUT = 15.0  # seconds a genuine delivery is given before it counts as an error
SETTLE = 2.0  # seconds the slow clients get to take their places before a phase
WARMUP = 3.0  # seconds of deliveries before the first measured phase
FIRST_IDS = 10**9  # order and webhook ids of the first phase; each phase takes its own


# --- the slow clients: one process of asyncio coroutines --------------------------


def slow_head(port: int) -> bytes:
    """Headers for the shop, signed-looking, promising a body that will come slowly."""
    lines = [
        "POST /webhooks/shopify HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "Content-Length: 100000",
        "X-Shopify-Topic: orders/create",
        f"X-Shopify-Shop-Domain: {SHOP}",
        "X-Shopify-Hmac-Sha256: " + "A" * 43 + "=",
        "X-Shopify-Webhook-Id: slow",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _slow_client(port: int, slow_headers: bool, ends: Counter[str]) -> None:
    head = slow_head(port)
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            ends["refused"] += 1
            await asyncio.sleep(0.5)
            continue
        sent = 0 if slow_headers else len(head)
        if sent:
            writer.write(head)
        try:
            while True:
                try:
                    answer = await asyncio.wait_for(reader.read(64), 1.0)
                except TimeoutError:
                    writer.write(head[sent : sent + 1] if sent < len(head) else b"{")
                    sent += 1
                    await writer.drain()
                    continue
                if answer.startswith(b"HTTP/1.1 408"):
                    ends["408"] += 1
                elif answer.startswith(b"HTTP/1."):
                    ends[answer[9:12].decode()] += 1
                else:
                    ends["closed"] += 1
                break
        except OSError:
            ends["closed"] += 1
        writer.close()


def _slow_clients(port: int, count: int, out: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ends: Counter[str] = Counter()

    def report(*_: object) -> None:
        out.send(dict(ends))
        os._exit(0)

    signal.signal(signal.SIGTERM, report)

    async def run() -> None:
        await asyncio.gather(*(_slow_client(port, n % 2 == 1, ends) for n in range(count)))

    asyncio.run(run())


# --- the genuine deliveries ------------------------------------------------------


def _deliver(port: int, payload: bytes, until: float) -> tuple[float, int]:
    started = time.perf_counter()
    if time.monotonic() > until:
        return 0.0, -1  # not sent: the phase is over
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
            sock.sendall(payload)
            response = b""
            while chunk := sock.recv(65536):  # to EOF: the requests say Connection: close
                response += chunk
                if time.perf_counter() - started > REQUEST_TIMEOUT:
                    raise TimeoutError
        status = int(response[9:12]) if response.startswith(b"HTTP/1.") else 0
    except (OSError, ValueError):
        status = 0
    return time.perf_counter() - started, status


@dataclass
class Figures:
    sent: int
    ok: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # not answered 200 (within REQUEST_TIMEOUT)
    ends: dict[str, int]


def phase(port: int, slow: int, first: int, seconds: float, args: argparse.Namespace) -> Figures:
    fork = multiprocessing.get_context("fork")
    receive, send = fork.Pipe(duplex=False)
    clients = fork.Process(target=_slow_clients, args=(port, slow, send)) if slow else None
    ends: dict[str, int] = {}
    todo = build_requests("/webhooks/shopify", first, args.max_requests)
    try:
        if clients is not None:
            clients.start()
            time.sleep(SETTLE)  # let them connect and take what they can
        until = time.monotonic() + seconds
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(lambda payload: _deliver(port, payload, until), todo))
    finally:
        if clients is not None:
            clients.terminate()
            if receive.poll(10):
                ends = receive.recv()
            clients.join()
    latencies = sorted(latency for latency, status in results if status >= 0) or [0.0]

    def ms(percentile: float) -> float:
        return latencies[min(len(latencies) - 1, int(percentile * len(latencies)))] * 1000

    sent = sum(1 for _, status in results if status >= 0)
    ok = sum(1 for _, status in results if status == 200)
    return Figures(sent, ok, ms(0.50), ms(0.99), latencies[-1] * 1000, sent - ok, ends)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", default="48,96,192", help="slow clients per phase")
    parser.add_argument("--seconds", type=float, default=15.0, help="each phase's length")
    parser.add_argument("--max-requests", type=int, default=10_000, help="at most, per phase")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--stock-worker", action="store_true")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args()
    counts = [int(n) for n in args.slow.split(",")]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    workdir = Path(tempfile.mkdtemp(prefix="triggerpost-bench-"))
    embedded = server = None
    try:
        redis = shared_redis(args.redis_url or "redis://127.0.0.1:6379")
        if not answers(redis):
            embedded = EmbeddedRedis(workdir / "redis")
            embedded.start()
            redis = embedded.url
        Redis.from_url(redis).flushdb()
        url = f"sqlite:///{workdir / 'bench.db'}"
        migrate(url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERPOST_")}
        env.update(
            TRIGGERPOST_DATA_DIR=str(workdir / "var"),
            TRIGGERPOST_DATABASE_URL=url,
            TRIGGERPOST_REDIS_URL=redis,
            TRIGGERPOST_SECRET_KEY=SECRET_KEY,
            TRIGGERPOST_SHOPIFY_API_SECRET=APP_SECRET,
            TRIGGERPOST_LOG_LEVEL="ERROR",
        )
        settings = Settings.from_env(env)
        engine = make_engine(url)
        with make_sessions(engine).begin() as session:
            add_shop(session, SecretBox(settings.secret_key), "shopify", SHOP)

        port = free_port()
        command = [sys.executable, str(REPO / "bench/server.py"), "--port", str(port)]
        command += ["--workers", str(args.workers)] + (["--stock-worker"] * args.stock_worker)
        # the server's log goes to a file: the slow clients' requests end in refusals
        log = workdir / "web.log"
        with log.open("wb") as output:
            server = subprocess.Popen(
                command, env=env, stdout=output, stderr=output, start_new_session=True
            )
        try:
            wait_healthy(server, port)
        except RuntimeError:
            print(log.read_text()[-3000:], file=sys.stderr)
            raise
        worker = "gthread (gunicorn's own)" if args.stock_worker else "BufferingWorker"
        print(
            f"gunicorn, {worker}: {args.workers} processes x {THREADS} threads; "
            f"{os.cpu_count()} CPUs; signed deliveries for {args.seconds:.0f} s per phase at "
            f"concurrency {args.concurrency}, each given {REQUEST_TIMEOUT:.0f} s"
        )
        print(f"  {'slow clients':>12} {'sent':>6} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}"
              f" {'errors':>7} {'p99 / alone':>11}  slow clients ended")  # fmt: skip
        answered = phase(port, 0, FIRST_IDS, WARMUP, args).ok
        alone = None
        for n, slow in enumerate([0, *counts], start=1):
            figures = phase(port, slow, FIRST_IDS + n * args.max_requests, args.seconds, args)
            alone = alone or figures
            answered += figures.ok
            ratio = figures.p99_ms / alone.p99_ms if alone.p99_ms else 0.0
            ends = ", ".join(f"{k}: {v}" for k, v in sorted(figures.ends.items())) or "-"
            print(
                f"  {slow:12d} {figures.sent:6d} {figures.p50_ms:9.1f} {figures.p99_ms:9.1f} "
                f"{figures.max_ms:9.1f} {figures.errors:7d} {ratio:10.1f}x  {ends}"
            )
        with make_sessions(engine)() as session:
            stored = session.scalar(select(func.count()).select_from(Delivery)) or 0
        engine.dispose()
        Redis.from_url(redis).flushdb()
        verdict = "match" if stored == answered else "MISMATCH"
        print(f"  stored deliveries: {stored}; 200s incl. warm-up: {answered} ({verdict})")
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
    finally:
        if server is not None:
            stop(server, group=True)
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
