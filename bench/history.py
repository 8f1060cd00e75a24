"""History import benchmark: a WooCommerce store's past orders into the store.

For each database: a faked WooCommerce REST API (``responses`` callbacks that
make each page of 100 on the fly, shaped as the store answers: the real
order and customer fixtures with their ids, dates and buyers changed) holds C
customers and K orders (100 k) of the last two years; the import runs as the
``import_history`` job does, page by page, each page one transaction. The same
pages are also read without applying them, right before (the fake API, JSON,
translation: the source's own cost), so the ratio says what applying costs
on top of reading.

Prints orders/s and items/s of the import, the source alone, and their ratio,
and the SQL statements the import sent per order (each call to the database
driver counts once, so a batch of rows sent in one call is one statement).

    .venv/bin/python bench/history.py [--orders 100000] [--customers 10000]
        [--databases sqlite,postgresql] [--postgres-url URL] [--redis-url URL]

``--postgres-url`` (default ``TEST_DATABASE_URL``) names a database the bench
empties and uses: everything in it is dropped first.

Figures only: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses
from sqlalchemy import event, func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.databases import each_database
from jobs.intake import history
from jobs.merchant.shops import add_shop
from jobs.platforms import registry, woocommerce
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.store.db import migrate
from jobs.store.models import Contact, Order, Shop
from tests.support import FIXTURES

STORE = "https://bench-butik.example.se"
API = f"{STORE}/wp-json/wc/v3"
SECRET_KEY = "bench-secret-key-" + "x" * 32
ORDER = json.loads(
    (FIXTURES / "woocommerce" / "order_updated__completed_emoji_name.json").read_bytes()
)
CUSTOMER = json.loads(
    (FIXTURES / "woocommerce" / "customer_updated__birthday_meta.json").read_bytes()
)
NOW = datetime.now(UTC).replace(microsecond=0)


def gmt(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S")


class Store:
    """C customers and K orders over the last two years, made a page at a time."""

    def __init__(self, customers: int, orders: int) -> None:
        self.customers, self.orders = customers, orders
        self.span = timedelta(days=729).total_seconds()

    def customer(self, n: int) -> dict[str, Any]:
        item = copy.deepcopy(CUSTOMER)
        item.update(id=n, email=f"kund{n}@example.se", username=f"kund{n}")
        item["billing"]["email"] = f"kund{n}@example.se"
        return item

    def order(self, n: int) -> dict[str, Any]:
        item = copy.deepcopy(ORDER)
        buyer = n % self.customers + 1
        placed = NOW - timedelta(seconds=self.span * (1 - n / self.orders))
        item.update(
            id=10_000 + n,
            number=str(10_000 + n),
            customer_id=buyer,
            date_created_gmt=gmt(placed),
            date_modified_gmt=gmt(placed + timedelta(days=2)),
            date_paid_gmt=gmt(placed + timedelta(minutes=1)),
            date_completed_gmt=gmt(placed + timedelta(days=2)),
        )
        item["billing"]["email"] = f"kund{buyer}@example.se"
        return item

    def answer(
        self, request: requests.PreparedRequest, count: int, make: Any
    ) -> tuple[int, dict[str, str], str]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        page, per_page = int(query["page"]), int(query["per_page"])
        first = (page - 1) * per_page
        items = [make(n) for n in range(first, min(first + per_page, count))]
        pages = -(-count // per_page)
        headers = {"X-WP-Total": str(count), "X-WP-TotalPages": str(pages)}
        return 200, headers, json.dumps(items)

    def install(self, mock: responses.RequestsMock) -> None:
        mock.add_callback(
            responses.GET,
            f"{API}/customers",
            callback=lambda r: self.answer(r, self.customers, lambda n: self.customer(n + 1)),
        )
        mock.add_callback(
            responses.GET,
            f"{API}/orders",
            callback=lambda r: self.answer(r, self.orders, self.order),
        )


def run(database: str, url: str, redis_url: str, args: argparse.Namespace, workdir: Path) -> None:
    settings = Settings.from_env({
        "TRIGGERPOST_DATA_DIR": str(workdir / database),
        "TRIGGERPOST_DATABASE_URL": url,
        "TRIGGERPOST_REDIS_URL": redis_url,
        "TRIGGERPOST_SECRET_KEY": SECRET_KEY,
    })  # fmt: skip
    migrate(url)
    runtime = Runtime.create(settings)
    runtime.redis.flushdb()
    with runtime.sessions.begin() as session:
        shop = add_shop(
            session, runtime.secrets, "woocommerce", STORE, webhook_secret="s" * 32,
            consumer_key="ck_bench", consumer_secret="cs_bench", currency="SEK",  # noqa: S106
        )  # fmt: skip
        shop_id = shop.id
    store = Store(args.customers, args.orders)
    items = args.customers + args.orders
    print(f"\n{database}: {args.customers:,} customers, {args.orders:,} orders, 100 a page")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        store.install(mock)
        with runtime.sessions() as session:
            detached = session.get_one(Shop, shop_id)
            session.expunge(detached)
        started = time.perf_counter()
        events = 0
        for page in woocommerce.history(runtime, detached, NOW - timedelta(days=730), None):
            events += len(page.events)
        source = time.perf_counter() - started
        statements = [0]

        def count(*_: object) -> None:
            statements[0] += 1

        event.listen(runtime.engine, "before_cursor_execute", count)
        started = time.perf_counter()
        done = history.run(runtime, shop_id, registry.history_source)
        imported = time.perf_counter() - started
        event.remove(runtime.engine, "before_cursor_execute", count)
    with runtime.sessions() as session:
        orders = session.scalar(select(func.count()).select_from(Order))
        contacts = session.scalar(select(func.count()).select_from(Contact))
    print(f"  source alone  {source:8.1f} s  {args.orders / source:8,.0f} orders/s"
          f"  {items / source:8,.0f} items/s  ({events:,} events)")  # fmt: skip
    print(f"  import        {imported:8.1f} s  {args.orders / imported:8,.0f} orders/s"
          f"  {items / imported:8,.0f} items/s  ({done.orders:,} orders, {done.customers:,}"
          f" customers applied; {orders:,} order rows, {contacts:,} contacts)")  # fmt: skip
    print(f"  import / source alone: {source / imported:.2f} of the reading rate")
    print(f"  statements    {statements[0]:,} in all, {statements[0] / args.orders:.1f} per order"
          f" ({statements[0] / items:.1f} per item)")  # fmt: skip
    runtime.redis.flushdb()
    runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args()
    each_database(args, run)


if __name__ == "__main__":
    main()
