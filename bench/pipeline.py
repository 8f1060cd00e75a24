"""Flow-engine benchmark: webhooks to sent emails through real RQ workers.

For each database: seeds M contacts (10 k, then 1 M), stores K Shopify
deliveries of a realistic mix (checkouts started and updated, orders placed,
customers updated, products updated; guests without email among them), then
starts N worker processes and times until every delivery is processed and
every email they caused is sent (``null://`` backend: the engine's own cost).
The same N workers also drain K trivial RQ jobs, right before and right after:
RQ's bare rate on the same machine, same worker class, same run (the mean of
the two, since a shared machine's speed drifts within a run).

Prints events/s, emails/s, ms per event at each contact count, the ratio
of our work items (events + emails) per second to RQ's bare jobs/s, and the
workers' CPU milliseconds per item (steadier than the rates on a busy machine).

    .venv/bin/python bench/pipeline.py [--events 2000] [--workers 2]
        [--contacts 10000,1000000] [--databases sqlite,postgresql]
        [--worker-class simple|fork] [--mix cart|library] [--postgres-url URL]
        [--redis-url URL]

``--postgres-url`` (default ``TEST_DATABASE_URL``) names a database the bench
empties and uses: everything in it is dropped first.

Figures only: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from redis import Redis
from rq import Queue, Worker
from sqlalchemy import func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.shopify import PLATFORM
from bench.databases import each_database
from jobs.intake import deliveries
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.store.db import migrate
from jobs.store.models import Contact, Delivery, DeliveryStatus, Message, MessageState
from tests.support import FIXTURES, INSTANT, SHOPIFY_SECRET, dumps, shopify_headers

SHOP = "bench-shop.myshopify.com"
SECRET_KEY = "bench-secret-key-" + "x" * 32
#: the tests' instant settings, with room for a contact's many emails of a run
SETTINGS = {**INSTANT, "engine": {**INSTANT["engine"], "marketing_per_window": 1000}}
FIRST_CUSTOMER = 50_000_000


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / "shopify" / name).read_text())
    return loaded


CHECKOUT = fixture("checkouts_create__customer.json")
ORDER = fixture("orders_create__customer.json")
PAID = fixture("orders_paid__customer.json")
CUSTOMER = fixture("customers_update__api_2026_07.json")
PRODUCT = fixture("products_create__active.json")
NEW_CUSTOMER = fixture("customers_create__api_2024_10_consent.json")
FULFILLED = fixture("orders_fulfilled__shipped.json")
DELIVERED = fixture("fulfillments_update__delivered.json")


def person(i: int) -> tuple[int, str]:
    return FIRST_CUSTOMER + i, f"c{i}@bench.example"


def events(count: int, contacts: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """The mix: 35 % checkouts, 10 % checkout updates, 20 % orders (half completing a
    checkout, by the person who started it), 20 % customer updates, 10 % product
    updates, 5 % guest checkouts."""
    rng = random.Random(seed)
    now = datetime.now(UTC) - timedelta(minutes=1)
    out: list[tuple[str, dict[str, Any]]] = []
    open_checkouts: list[tuple[str, int, str]] = []  # token, customer id, email
    for n in range(count):
        roll = rng.random()
        customer_id, email = person(rng.randrange(contacts))
        stamp = (now + timedelta(milliseconds=n)).isoformat()
        if roll < 0.45 or (roll < 0.55 and not open_checkouts):
            if roll >= 0.35 and open_checkouts:  # the same cart changed again
                token, customer_id, email = open_checkouts[-1]
            else:
                token = f"tok{seed}-{n}"
                open_checkouts.append((token, customer_id, email))
            body = json.loads(json.dumps(CHECKOUT))
            body.update(token=token, email=email, created_at=stamp, updated_at=stamp)
            body["customer"].update(id=customer_id, email=email, updated_at=stamp)
            body["customer"]["email_marketing_consent"] = {
                "state": "subscribed",
                "opt_in_level": "single_opt_in",
                "consent_updated_at": "2026-01-10T12:00:00+00:00",
            }
            out.append(("checkouts/update", body))
        elif roll < 0.75:
            body = json.loads(json.dumps(ORDER))
            token = None
            if open_checkouts and rng.random() < 0.5:
                token, customer_id, email = open_checkouts.pop(rng.randrange(len(open_checkouts)))
            body.update(
                id=9_000_000 + n,
                name=f"#B{n}",
                email=email,
                contact_email=email,
                checkout_token=token,
                created_at=stamp,
                updated_at=stamp,
                processed_at=stamp,
            )
            body["customer"].update(id=customer_id, email=email, updated_at=stamp)
            out.append(("orders/create", body))
        elif roll < 0.95:
            if roll < 0.85:
                body = json.loads(json.dumps(CUSTOMER))
                body.update(id=customer_id, email=email, updated_at=stamp)
                out.append(("customers/update", body))
            else:
                body = json.loads(json.dumps(PRODUCT))
                body.update(id=7_000_000 + rng.randrange(500), updated_at=stamp)
                out.append(("products/update", body))
        else:
            body = json.loads(json.dumps(CHECKOUT))
            body.update(token=f"guest{seed}-{n}", email=None, customer=None, updated_at=stamp)
            out.append(("checkouts/update", body))
    return out  # fmt: skip


def library_events(count: int, contacts: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """The whole journey, in shares of its steps: 30 % checkouts and their updates,
    15 % paid orders (each two deliveries, orders/create and orders/paid, as
    Shopify sends them), 10 % fulfilments of earlier orders, 10 % deliveries of
    fulfilled ones, 10 % new subscribed customers, 10 % customer updates, 5 % new
    products, 5 % product updates, 5 % guest checkouts: every flow the library
    ships has its trigger. ``count`` deliveries in all."""
    rng = random.Random(seed)
    now = datetime.now(UTC) - timedelta(minutes=1)
    cart = iter(events(count * 2, contacts, seed))
    out: list[tuple[str, dict[str, Any]]] = []
    placed: list[tuple[int, int, str]] = []  # order id, customer id, email
    fulfilled: list[int] = []
    n = -1
    while len(out) < count:
        n += 1
        roll = rng.random()
        stamp = (now + timedelta(milliseconds=n)).isoformat()
        customer_id, email = person(rng.randrange(contacts))
        if (
            roll < 0.30
            or (0.45 <= roll < 0.55 and not placed)
            or (0.55 <= roll < 0.65 and not fulfilled)
        ):
            topic, body = next(t for t in cart if t[0] == "checkouts/update")
            out.append((topic, body))
        elif roll < 0.45:
            body = json.loads(json.dumps(ORDER))
            order_id = 8_000_000 + seed * 100_000 + n
            body.update(
                id=order_id,
                name=f"#L{n}",
                email=email,
                contact_email=email,
                checkout_token=None,
                created_at=stamp,
                updated_at=stamp,
                processed_at=stamp,
            )
            body["customer"].update(id=customer_id, email=email, updated_at=stamp)
            placed.append((order_id, customer_id, email))
            out.append(("orders/create", body))
            paid = json.loads(json.dumps(PAID))
            paid.update({key: body[key] for key in
                         ("id", "name", "email", "contact_email", "checkout_token", "created_at",
                          "processed_at", "line_items")})  # fmt: skip
            paid["updated_at"] = (now + timedelta(milliseconds=n, microseconds=500)).isoformat()
            paid["customer"] = body["customer"]
            out.append(("orders/paid", paid))
        elif roll < 0.55:
            order_id, customer_id, email = placed.pop(rng.randrange(len(placed)))
            body = json.loads(json.dumps(FULFILLED))
            body.update(
                id=order_id,
                name=f"#L{order_id}",
                email=email,
                contact_email=email,
                updated_at=stamp,
            )
            body["customer"].update(id=customer_id, email=email, updated_at=stamp)
            fulfilled.append(order_id)
            out.append(("orders/fulfilled", body))
        elif roll < 0.65:
            body = json.loads(json.dumps(DELIVERED))
            body.update(
                id=5_000_000 + seed * 100_000 + n, order_id=fulfilled.pop(0), updated_at=stamp
            )
            out.append(("fulfillments/update", body))
        elif roll < 0.75:
            body = json.loads(json.dumps(NEW_CUSTOMER))
            new_id, new_email = person(contacts + seed * 100_000 + n)
            body.update(id=new_id, email=new_email, created_at=stamp, updated_at=stamp)
            out.append(("customers/create", body))
        elif roll < 0.85:
            body = json.loads(json.dumps(CUSTOMER))
            body.update(id=customer_id, email=email, updated_at=stamp)
            out.append(("customers/update", body))
        elif roll < 0.95:
            body = json.loads(json.dumps(PRODUCT))
            if roll < 0.90:
                body.update(id=7_100_000 + seed * 100_000 + n, created_at=stamp)
                topic = "products/create"
            else:
                body.update(id=7_000_000 + rng.randrange(500))
                topic = "products/update"
            body.update(updated_at=stamp)
            out.append((topic, body))
        else:
            body = json.loads(json.dumps(CHECKOUT))
            body.update(token=f"lguest{seed}-{n}", email=None, customer=None, updated_at=stamp)
            out.append(("checkouts/update", body))
    return out[:count]  # fmt: skip


def library_settings() -> dict[str, Any]:
    """Every built-in flow on, its waits as short as they may be: zero where allowed (so
    its emails come due within the run), else the option's least valid value."""
    from jobs.flows import registry
    from jobs.flows.model import Days, Hours

    flows: dict[str, dict[str, Any]] = {}
    for name, flow in registry.built_in().items():
        options: dict[str, Any] = {"enabled": True}
        for option in getattr(flow, "options", ()):
            kept = ("expires_hours", "discount_valid_hours", "spacing_days")
            if isinstance(option.kind, (Hours, Days)) and option.name not in kept:
                options[option.name] = option.kind.min
        flows[name] = options
    return {**SETTINGS, "flows": {**flows, **SETTINGS["flows"]}}


def seed_contacts(runtime: Runtime, shop_id: int, upto: int) -> None:
    with runtime.sessions() as session:
        have = int(session.scalar(select(func.count()).select_from(Contact)) or 0)
    if have >= upto:
        return
    started = time.perf_counter()
    stamp = datetime(2026, 1, 10, 12, tzinfo=UTC)
    if runtime.engine.dialect.name == "postgresql":
        url = runtime.settings.database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            columns = ("shop_id, email, customer_id, first_name, consent_state, consent_source, "
                       "consent_at, orders_count, total_spent, created_at, updated_at")  # fmt: skip
            with cur.copy(f"COPY contacts ({columns}) FROM STDIN") as copy:
                for i in range(have, upto):
                    customer_id, email = person(i)
                    copy.write_row((shop_id, email, str(customer_id), "Bench", "subscribed",
                                    "bench", stamp, 0, "0", stamp, stamp))  # fmt: skip
    else:
        batch: list[dict[str, Any]] = []
        with runtime.engine.begin() as connection:
            for i in range(have, upto):
                customer_id, email = person(i)
                batch.append({"shop_id": shop_id, "email": email, "customer_id": str(customer_id),
                              "first_name": "Bench", "consent_state": "subscribed",
                              "consent_source": "bench", "consent_at": stamp, "orders_count": 0,
                              "total_spent": Decimal(0),
                              "created_at": stamp, "updated_at": stamp})  # fmt: skip
                if len(batch) == 50_000:
                    connection.execute(insert(Contact), batch)
                    batch = []
            if batch:
                connection.execute(insert(Contact), batch)
    with runtime.engine.begin() as connection:
        if runtime.engine.dialect.name == "postgresql":
            connection.execute(text("ANALYZE contacts"))
    print(f"    seeded contacts {have:,} -> {upto:,} in {time.perf_counter() - started:.0f} s")


def store(
    runtime: Runtime, shop_id: int, batch: list[tuple[str, dict[str, Any]]], tag: str
) -> None:
    rows = []
    for n, (topic, payload) in enumerate(batch):
        body = dumps(payload)
        raw = shopify_headers(topic, body, SHOPIFY_SECRET, SHOP, f"{tag}-{n}")
        headers = PLATFORM.read_headers(raw)
        rows.append(deliveries.delivery_row(shop_id=shop_id, platform="shopify", headers=headers,
                                        raw_headers=raw, body=body))  # fmt: skip
    with runtime.engine.begin() as connection:
        for start in range(0, len(rows), 500):
            deliveries.insert_deliveries(connection, rows[start : start + 500])


@contextmanager
def running_workers(
    settings: Settings, redis: Redis, count: int, worker_class: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start N long-running workers and wait until each is up and listening.

    Their start-up (interpreter, imports) is left out of every figure: both our
    rate and RQ's bare rate are timed from the moment work is handed to workers
    that are already waiting. Burst workers would not do: one of them quits
    whenever the queues are empty for a moment (while another is still turning
    deliveries into due emails).
    """
    env = {
        **os.environ,
        "TRIGGERPOST_DATA_DIR": str(settings.data_dir),
        "TRIGGERPOST_DATABASE_URL": settings.database_url,
        "TRIGGERPOST_REDIS_URL": settings.redis_url,
        "TRIGGERPOST_SECRET_KEY": settings.secret_key,
        "TRIGGERPOST_EMAIL_URL": "null://",
        "TRIGGERPOST_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "connector.cli", "worker", "--no-sweeper",
               "--worker-class", worker_class]  # fmt: skip
    processes = [subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parents[1],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(count)]  # fmt: skip
    try:
        while Worker.count(connection=redis) < count:
            _check_alive(processes)
            time.sleep(0.05)
        time.sleep(0.5)  # past registration, into their first wait on the queues
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                print("    (a worker ignored SIGTERM for 30 s: killed)")
                process.kill()
                process.wait()


def _check_alive(processes: list[subprocess.Popen[bytes]]) -> None:
    dead = [p for p in processes if p.poll() is not None]
    if dead:
        err = dead[0].stderr.read().decode() if dead[0].stderr else ""
        raise SystemExit(f"a worker died:\n{err[-2000:]}")


def cpu_seconds(processes: list[subprocess.Popen[bytes]]) -> float:
    """The processes' CPU time so far, user and system (Linux; 0 elsewhere).

    Other work on a shared machine stretches the wall clock, much less the CPU
    a worker spends on each item (a PostgreSQL server's own CPU is not counted).
    """
    total = 0.0
    for process in processes:
        try:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def wait_until(processes: list[subprocess.Popen[bytes]], done: Callable[[], bool]) -> None:
    while not done():
        _check_alive(processes)
        time.sleep(0.05)


def bare_rate(settings: Settings, redis: Redis, jobs: int, count: int, worker_class: str) -> float:
    queue = Queue("intake", connection=redis)
    finished = queue.finished_job_registry
    redis.delete(finished.key)  # an earlier measurement's jobs do not count

    def done() -> bool:
        return queue.count == 0 and finished.count >= jobs

    with running_workers(settings, redis, count, worker_class) as processes:
        started = time.perf_counter()
        with redis.pipeline() as pipe:
            for _ in range(jobs):
                queue.enqueue("os.getpid", pipeline=pipe)
            pipe.execute()
        wait_until(processes, done)
        return jobs / (time.perf_counter() - started)


def run(database: str, url: str, redis_url: str, args: argparse.Namespace, workdir: Path) -> None:
    settings = Settings.from_env({
        "TRIGGERPOST_DATA_DIR": str(workdir / database),
        "TRIGGERPOST_DATABASE_URL": url,
        "TRIGGERPOST_REDIS_URL": redis_url,
        "TRIGGERPOST_SECRET_KEY": SECRET_KEY,
        "TRIGGERPOST_SHOPIFY_API_SECRET": SHOPIFY_SECRET,
        "TRIGGERPOST_EMAIL_URL": "null://",
    })  # fmt: skip
    migrate(url)
    runtime = Runtime.create(settings)
    runtime.redis.flushdb()
    with runtime.sessions.begin() as session:
        shop = add_shop(session, runtime.secrets, "shopify", SHOP, currency="SEK")
        shop.settings = library_settings() if args.mix == "library" else SETTINGS
        shop_id = shop.id
    print(
        f"\n{database}: {args.workers} {args.worker_class} workers, {args.events} events per round"
    )
    print(f"  {'contacts':>10} {'events/s':>9} {'emails/s':>9} {'ms/event':>9} {'items/s':>9}"
          f" {'bare jobs/s':>11} {'ratio':>6} {'cpu ms/item':>11}")  # fmt: skip
    for round_, contacts in enumerate(int(c) for c in args.contacts.split(",")):
        seed_contacts(runtime, shop_id, contacts)
        mix = library_events if args.mix == "library" else events
        batch = mix(args.events, contacts, seed=round_)
        with runtime.sessions() as session:
            sent_before = (
                session.scalar(
                    select(func.count())
                    .select_from(Message)
                    .where(Message.state == MessageState.SENT)
                )
                or 0
            )
        before = bare_rate(settings, runtime.redis, args.events, args.workers, args.worker_class)
        store(runtime, shop_id, batch, f"r{round_}")

        def finished() -> bool:
            # a reader: on SQLite it takes no write lock from the workers
            with runtime.reads() as session:
                waiting = (
                    session.scalar(
                        select(func.count())
                        .select_from(Delivery)
                        .where(
                            Delivery.status.in_([DeliveryStatus.RECEIVED, DeliveryStatus.FAILED])
                        )
                    )
                    or 0
                )
                due = (
                    session.scalar(
                        select(func.count())
                        .select_from(Message)
                        .where(
                            Message.state.in_(
                                [MessageState.PLANNED, MessageState.SENDING, MessageState.HANDED]
                            ),
                            Message.due_at <= datetime.now(UTC),
                        )
                    )
                    or 0
                )
            return waiting == 0 and due == 0  # fmt: skip

        with running_workers(settings, runtime.redis, args.workers, args.worker_class) as procs:
            started, cpu = time.perf_counter(), cpu_seconds(procs)
            deliveries.notify(runtime, shop_id, force=True)
            wait_until(procs, finished)
            seconds = time.perf_counter() - started
            cpu = cpu_seconds(procs) - cpu
        with runtime.sessions() as session:
            left = (
                session.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.status != DeliveryStatus.PROCESSED)
                )
                or 0
            )
            sent = (
                session.scalar(
                    select(func.count())
                    .select_from(Message)
                    .where(Message.state == MessageState.SENT)
                )
                or 0
            ) - sent_before
            planned = session.scalar(select(func.count()).select_from(Message).where(
                Message.state == MessageState.PLANNED,
                Message.due_at <= datetime.now(UTC))) or 0  # fmt: skip
            later = session.scalar(select(func.count()).select_from(Message).where(
                Message.state == MessageState.PLANNED)) or 0  # fmt: skip
        if left or planned:
            print(f"    (unfinished: {left} deliveries, {planned} planned emails)")
        if later > planned:
            print(f"    ({later - planned} emails planned for later: not sent, not counted)")
        after = bare_rate(settings, runtime.redis, args.events, args.workers, args.worker_class)
        bare = (before + after) / 2
        items = (len(batch) + sent) / seconds
        print(f"  {contacts:>10,} {len(batch) / seconds:>9.0f} {sent / seconds:>9.0f}"
              f" {seconds / len(batch) * 1000 * args.workers:>9.2f} {items:>9.0f}"
              f" {bare:>11.0f} {items / bare:>6.0%}"
              f" {cpu / (len(batch) + sent) * 1000:>11.2f}"
              f"   (bare {before:.0f} before, {after:.0f} after)")  # fmt: skip
    runtime.redis.flushdb()
    runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--contacts", default="10000,1000000")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--worker-class", choices=("simple", "fork"), default="simple")
    # cart: the engine's original mix; library: every flow's trigger, every flow on
    parser.add_argument("--mix", choices=("cart", "library"), default="cart")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args()
    each_database(args, run)


if __name__ == "__main__":
    main()
