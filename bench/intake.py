"""Webhook intake benchmark: the full intake path against the server's bare ceiling.

Runs the real web server (gunicorn as ``triggerpost web`` runs it) on loopback and
sends N signed Shopify ``orders/create`` deliveries at concurrency C: first to a
bare endpoint that only reads the body, then to ``/webhooks/shopify``. Prints
requests/s, p50, p99 and errors for both, and their ratio, per database.

``--mode storefront`` sends storefront events instead, as shoppers' browsers do
(``text/plain`` from ``navigator.sendBeacon``, an ``Origin`` and a browser's user
agent; ``--events`` product views per request, each from its own visitor): to a
bare route that answers 202, then to ``/events/shopify/<key>`` (origin check,
bot filter, the rate limits counted in Redis, the schema, one delivery per event
committed before the 202). Storefront traffic is far heavier than webhooks: a
shop of 1 k orders a day sees about 100 k product views.

    .venv/bin/python bench/intake.py [--mode webhooks|storefront] [--events 1]
        [--requests 20000] [--concurrency 16]
        [--databases sqlite,postgresql] [--postgres-url URL] [--redis-url URL]
        [--postgres-database triggerpost_bench]

PostgreSQL is measured when --postgres-url or TEST_DATABASE_URL is given (the
database ``triggerpost_bench`` on that server is dropped and created afresh).
Redis is --redis-url or REDIS_URL (its db 15, flushed) when it answers, else an
embedded redis-server. Figures only: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import requests
from redis import Redis
from rq import Queue
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from connector.embedded_redis import EmbeddedRedis  # noqa: E402
from connector.web import options  # noqa: E402
from jobs.merchant.shops import add_shop  # noqa: E402
from jobs.queues import INTAKE  # noqa: E402
from jobs.settings import Settings  # noqa: E402
from jobs.store.db import make_engine, make_sessions, migrate  # noqa: E402
from jobs.store.models import Delivery  # noqa: E402
from jobs.store.secrets import SecretBox  # noqa: E402
from tests.support import shopify_headers  # noqa: E402

SHOP = "bench-shop.myshopify.com"
APP_SECRET = "bench-app-secret-0123456789"  # noqa: S105 - a throwaway secret
SECRET_KEY = "bench-" + "k" * 40
#: a real orders/create delivery (about 6 KB) that each request varies
TEMPLATE = REPO / "tests/fixtures/shopify/orders_create__presentment_currency.json"
PHASE_LIMIT = 120.0  # seconds: a phase stops here, whatever is left unsent
WARMUP = 500
WARMUP_IDS = 10**9  # the first order and webhook id of the warm-up deliveries
REDIS_DB = 15  # the db of a shared Redis the benchmark owns (flushed before and after)
TARGET = "target: intake >= 50 % of bare, p99 < 50 ms at 16 concurrent"


def build_requests(path: str, first: int, count: int) -> list[bytes]:
    """Raw HTTP/1.1 requests: distinct orders, unique webhook ids, valid signatures."""
    order = json.loads(TEMPLATE.read_bytes())
    built = []
    for n in range(first, first + count):
        order.update(id=n, admin_graphql_api_id=f"gid://shopify/Order/{n}", name=f"#{n}")
        order.update(order_number=n, email=f"kund{n}@example.se")
        # compact and raw UTF-8 like Shopify's (which also escapes "/" as "\\/")
        body = json.dumps(order, ensure_ascii=False, separators=(",", ":")).encode()
        webhook_id = str(uuid.UUID(int=n))
        headers = shopify_headers("orders/create", body, APP_SECRET, SHOP, webhook_id)
        # one connection per request, as from Shopify or a proxy; without "close" a
        # keep-alive worker (gthread) holds it open and the client waits for EOF
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        head.append(f"Content-Length: {len(body)}")
        head += [f"{name}: {value}" for name, value in headers.items()]
        built.append(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return built


CDN = "https://cdn.shopify.com/s/files/1"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def build_events(path: str, first: int, count: int, per_request: int) -> list[bytes]:
    """Raw sendBeacon-like requests: ``per_request`` distinct product views each."""
    built = []
    for n in range(first, first + count):
        events = [
            {
                "id": f"ev-{n:012d}-{i:03d}",
                "type": "product_viewed",
                "at": "2026-12-07T10:00:00.000Z",
                "data": {
                    "product": {
                        "id": str(632910392 + (n + i) % 500),
                        "variant_id": str(808950810 + (n + i) % 500),
                        "title": "Ullmössa i merinoull",
                        "url": f"https://{SHOP}/products/ullmossa-{(n + i) % 500}",
                        "price": "249.00",
                        "currency": "SEK",
                        "image_url": f"{CDN}/ullmossa-{(n + i) % 500}.jpg",
                    }
                },
            }
            for i in range(per_request)
        ]
        body = json.dumps({"visitor": f"v_{n:020d}", "events": events}).encode()
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        head += [f"Content-Length: {len(body)}", "Content-Type: text/plain;charset=UTF-8"]
        head += [f"Origin: https://{SHOP}", f"User-Agent: {BROWSER}"]
        built.append(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return built


# --- the load generator: processes of asyncio coroutines over raw sockets ------


async def _client(port: int, todo: list[bytes], results: list[tuple[float, int]]) -> None:
    while todo:
        payload = todo.pop()
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(payload)
            response = await reader.read()  # to EOF: the server closes (Connection: close)
            writer.close()
            status = int(response[9:12]) if response.startswith(b"HTTP/1.") else 0
        except (OSError, ValueError):
            status = 0
        results.append((time.perf_counter() - started, status))


def _generate(port: int, todo: list[bytes], clients: int, out: Connection) -> None:
    # Ctrl-C is the parent's business: it terminates us from its finally block
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's sys.exit handler
    results: list[tuple[float, int]] = []

    async def run() -> None:
        try:
            async with asyncio.timeout(PHASE_LIMIT):
                await asyncio.gather(*(_client(port, todo, results) for _ in range(clients)))
        except TimeoutError:
            pass  # requests still in flight are dropped: they count as not done

    # monotonic clocks are system-wide, so the parent can compare the processes'
    started = time.monotonic()
    asyncio.run(run())
    out.send((started, time.monotonic(), results))


@dataclass
class Figures:
    rate: float
    p50_ms: float
    p99_ms: float
    ok: int
    errors: int


def load(
    port: int, todo: list[bytes], concurrency: int, processes: int = 2, expect: int = 200
) -> Figures:
    """Send every request in ``todo`` at ``concurrency``; anything but ``expect`` is an error."""
    fork = multiprocessing.get_context("fork")  # the children inherit ``todo`` unpickled
    processes = min(processes, concurrency)
    pipes, children = [], []
    for i in range(processes):
        receive, send = fork.Pipe(duplex=False)
        share = todo[i::processes]
        clients = concurrency // processes + (i < concurrency % processes)
        children.append(fork.Process(target=_generate, args=(port, share, clients, send)))
        pipes.append((receive, send))
    try:
        for child in children:
            child.start()
        for _, send in pipes:
            send.close()  # ours: with it closed, a child that dies makes recv() raise
        reports = [receive.recv() for receive, _ in pipes]
    finally:
        for child in children:
            child.terminate()
            child.join()
    seconds = max(end for _, end, _ in reports) - min(start for start, _, _ in reports)
    results = [result for _, _, part in reports for result in part]
    latencies = sorted(latency for latency, _ in results) or [0.0]

    def ms(percentile: float) -> float:
        return latencies[min(len(latencies) - 1, int(percentile * len(latencies)))] * 1000

    ok = sum(1 for _, status in results if status == expect)
    # requests never answered before the phase limit are errors too
    return Figures(len(results) / seconds, ms(0.50), ms(0.99), ok, len(todo) - ok)


# --- set-up, teardown and the run ------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(process: subprocess.Popen[bytes], group: bool = False) -> None:
    """Terminate ``process`` (with ``group``: its whole session, e.g. gunicorn's workers)."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
        if process.poll() is not None:
            return
        try:
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
            process.wait(wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass  # gone already, or deaf to SIGTERM: SIGKILL next


def answers(url: str) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


def shared_redis(url: str) -> str:
    """The same server, db REDIS_DB: the benchmark flushes it, so never the user's db."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts._replace(query=f"db={REDIS_DB}").geturl()
    return parts._replace(path=f"/{REDIS_DB}").geturl()


def fresh_postgres(base: str, name: str = "triggerpost_bench") -> str:
    """A fresh database ``name`` on the server ``base`` names."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"a benchmark database is named with letters, digits and _, not {name!r}")
    url = make_url(base).set(drivername="postgresql")
    admin = url.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        # FORCE: a previous run killed hard may have left connections behind
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {name}")
    return url.set(database=name).render_as_string(hide_password=False)


def wait_healthy(server: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return
        except requests.RequestException:
            pass  # not bound yet, or bound with no worker booted yet
        time.sleep(0.2)
    raise RuntimeError("the web server did not answer /healthz")


def measure(database: str, url: str, redis: str, workdir: Path, args: argparse.Namespace) -> None:
    migrate(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERPOST_")}
    env.update(
        TRIGGERPOST_DATA_DIR=str(workdir / database),
        TRIGGERPOST_DATABASE_URL=url,
        TRIGGERPOST_REDIS_URL=redis,
        TRIGGERPOST_SECRET_KEY=SECRET_KEY,
        TRIGGERPOST_SHOPIFY_API_SECRET=APP_SECRET,
        TRIGGERPOST_LOG_LEVEL="WARNING",
    )
    settings = Settings.from_env(env)
    engine = make_engine(url)
    with make_sessions(engine).begin() as session:
        key = add_shop(session, SecretBox(settings.secret_key), "shopify", SHOP).storefront_key
    client = Redis.from_url(redis)
    client.flushdb()

    port, n, c = free_port(), args.requests, args.concurrency
    server = subprocess.Popen(
        [sys.executable, str(REPO / "bench/server.py"), "--port", str(port)],
        env=env,
        start_new_session=True,  # so stop() reaches the gunicorn workers too
    )
    if args.mode == "storefront":
        try:
            wait_healthy(server, port)
            measure_storefront(database, port, key, engine, client, args)
        finally:
            stop(server, group=True)
            engine.dispose()
            client.flushdb()
        return
    try:
        wait_healthy(server, port)
        load(port, build_requests("/bench/bare", WARMUP_IDS, WARMUP), c)
        bare = load(port, build_requests("/bench/bare", 0, n), c)
        # warm-up deliveries have ids of their own, or the measured ones would be duplicates
        warm = load(port, build_requests("/webhooks/shopify", WARMUP_IDS, WARMUP), c)
        intake = load(port, build_requests("/webhooks/shopify", 0, n), c)
    finally:
        stop(server, group=True)

    with make_sessions(engine)() as session:
        stored = session.scalar(select(func.count()).select_from(Delivery)) or 0
    engine.dispose()
    jobs = Queue(INTAKE, connection=client).count
    client.flushdb()

    print(f"\n{database}: {n} requests at concurrency {c} (after {WARMUP} warm-up)")
    print(f"  {'':12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, f in (("bare", bare), ("intake", intake)):
        print(f"  {name:12} {f.rate:8.0f} {f.p50_ms:8.2f} {f.p99_ms:8.2f} {f.errors:7d}")
    ratio = intake.rate / bare.rate * 100 if bare.rate else 0.0
    print(f"  intake / bare: {ratio:.0f} %   ({TARGET})")
    answered = intake.ok + warm.ok
    verdict = "match" if stored == answered else "MISMATCH"
    print(f"  stored deliveries: {stored}; 200s from intake incl. warm-up: {answered} ({verdict})")
    print(f"  RQ jobs enqueued in {INTAKE!r}: {jobs} (no worker runs; drain jobs, not per request)")


def measure_storefront(
    database: str, port: int, key: str, engine: Any, client: Redis, args: argparse.Namespace
) -> None:
    n, c, per = args.requests, args.concurrency, args.events
    events = f"/events/shopify/{key}"
    bare_path = f"/bench/bare-events/shopify/{key}"
    load(port, build_events(bare_path, WARMUP_IDS, WARMUP, per), c, expect=202)
    bare = load(port, build_events(bare_path, 0, n, per), c, expect=202)
    warm = load(port, build_events(events, WARMUP_IDS, WARMUP, per), c, expect=202)
    intake = load(port, build_events(events, 0, n, per), c, expect=202)
    with make_sessions(engine)() as session:
        stored = session.scalar(select(func.count()).select_from(Delivery)) or 0
    jobs = Queue(INTAKE, connection=client).count

    print(
        f"\n{database}: {n} storefront requests of {per} event(s) at concurrency {c} "
        f"(after {WARMUP} warm-up)"
    )
    print(f"  {'':12} {'req/s':>8} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, f in (("bare", bare), ("storefront", intake)):
        print(
            f"  {name:12} {f.rate:8.0f} {f.rate * per:9.0f} {f.p50_ms:8.2f} {f.p99_ms:8.2f} "
            f"{f.errors:7d}"
        )
    ratio = intake.rate / bare.rate * 100 if bare.rate else 0.0
    print(f"  storefront / bare: {ratio:.0f} %")
    answered = (intake.ok + warm.ok) * per
    verdict = "match" if stored == answered else "MISMATCH"
    print(f"  stored deliveries: {stored}; events in 202s incl. warm-up: {answered} ({verdict})")
    per_day = intake.rate * per * 86_400
    print(
        f"  at this rate one server takes {per_day / 1e6:.0f} M events a day "
        f"(a shop of 1 k orders a day: about 0.1 M product views)"
    )
    print(f"  RQ jobs enqueued in {INTAKE!r}: {jobs} (no worker runs; drain jobs, not per request)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("webhooks", "storefront"), default="webhooks")
    parser.add_argument("--events", type=int, default=1, help="storefront events per request")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument(
        "--postgres-database",
        default="triggerpost_bench",
        help="the database created afresh (and dropped first) on the PostgreSQL server",
    )
    args = parser.parse_args()
    databases = args.databases.split(",")
    if unknown := set(databases) - {"sqlite", "postgresql"}:
        parser.error(f"unknown databases: {', '.join(sorted(unknown))}")
    # a plain `kill` tears down like Ctrl-C does: through the finally blocks
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    workdir = Path(tempfile.mkdtemp(prefix="triggerpost-bench-"))
    embedded = None
    try:
        redis = shared_redis(args.redis_url or "redis://127.0.0.1:6379")
        if not answers(redis):
            embedded = EmbeddedRedis(workdir / "redis")
            embedded.start()
            redis = embedded.url
        web = options(Settings.from_env({"TRIGGERPOST_SECRET_KEY": SECRET_KEY}))
        shape = ", ".join(f"{key} {web.get(key)}" for key in ("worker_class", "workers", "threads"))
        print(f"gunicorn as `triggerpost web`: {shape}; {os.cpu_count()} CPUs; redis {redis}")
        for database in databases:
            if database == "sqlite":
                measure(database, f"sqlite:///{workdir / 'bench.db'}", redis, workdir, args)
            elif database == "postgresql" and args.postgres_url:
                url = fresh_postgres(args.postgres_url, args.postgres_database)
                measure(database, url, redis, workdir, args)
            else:
                print("\npostgresql: skipped (no --postgres-url or TEST_DATABASE_URL)")
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
    finally:
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
