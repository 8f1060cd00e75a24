"""Segments benchmark: a count of a shop's segment, and the check at enrolment.

Builds one shop's contacts with their orders and each order's products (Core
executemany: 100 k contacts, then grown to 1 M), in a made-up but realistic
mix: countries, languages, tags (VIP, wholesale), consent, one to three
orders for four in five contacts, 200 products in 20 collections. Then, for
three segments a merchant would write:

- ``swedish_big_spenders``: Sweden, spent 1,000 or more, not tagged wholesale
- ``lapsing_repeat``: 2+ orders, the last 90 days ago or more, subscribed
- ``coffee_lately``: bought from the "Coffee" collection within 90 days, subscribed

it prints, per size: the count (time, statements), and the enrolment-time
check (``segments.contains``, one contact by id) as time per check over
``--checks`` contacts and statements per check; each against a baseline
measured in the same run: a plain COUNT of the shop's contacts, and a plain
lookup of one contact by id. Then what the segments page asks at each load (the
five built-ins' counts), and the ratio of the largest size to the smallest.

    .venv/bin/python bench/segments.py [--contacts 100000,1000000] [--checks 2000]
        [--database-url URL]

SQLite (a scratch file) by default; ``--database-url`` names a PostgreSQL
database the bench empties and uses: everything in it is dropped first.

Figures only: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, event, func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.databases import empty_postgres
from jobs.audience import segments
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.store.db import migrate, plain
from jobs.store.models import Contact, Order, OrderProduct, ProductGroup, Shop, stored_tags

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
CHUNK = 20_000
PRODUCTS = 200
COLLECTIONS = ("Coffee", "Tea", "Kitchen", "Books", "Garden", *(f"Group {n}" for n in range(15)))
COUNTRIES = ("SE", "SE", "SE", "SE", "NO", "NO", "DK", "FI", "DE", "GB")
LANGUAGES = {"SE": "sv-SE", "NO": "nb-NO", "DK": "da-DK", "FI": "fi-FI", "DE": "de-DE"}

SEGMENTS: dict[str, Any] = {
    "swedish_big_spenders": {
        "all": [
            {"field": "country", "op": "in", "value": ["SE"]},
            {"field": "total_spent", "op": "gte", "value": "1000"},
            {"not": {"field": "tags", "op": "any_of", "value": ["wholesale"]}},
        ]
    },
    "lapsing_repeat": {
        "all": [
            {"field": "orders_count", "op": "gte", "value": 2},
            {"field": "days_since_last_order", "op": "gte", "value": 90},
            {"field": "consent", "op": "in", "value": ["subscribed"]},
        ]
    },
    "coffee_lately": {
        "all": [
            {"field": "bought_collection", "op": "any_of", "value": ["Coffee"], "within_days": 90},
            {"field": "consent", "op": "in", "value": ["subscribed"]},
        ]
    },
}


def orders_of(i: int) -> list[tuple[datetime, Decimal, list[str]]]:
    """Contact ``i``'s orders: (placed, total, products); none for one in five."""
    if i % 5 == 0:
        return []
    out = []
    for n in range(1 + i % 3):
        placed = NOW - timedelta(days=(i * 7 + n * 131) % 720, hours=i % 24)
        products = [f"p{(i * 13 + n * 7 + k) % PRODUCTS}" for k in range(1 + (i + n) % 3)]
        out.append((placed, Decimal(150 + (i * 37 + n * 11) % 900), products))
    return out


def rows_for(shop_id: int, low: int, high: int, first_order_id: int) -> tuple[list[Any], ...]:
    contacts, orders, lines = [], [], []
    order_id = first_order_id
    for i in range(low, high):
        country = COUNTRIES[i % len(COUNTRIES)]
        bought = orders_of(i)
        tags = ["VIP"] if i % 10 == 1 else []
        if i % 20 == 3:
            tags.append("wholesale")
        contacts.append(
            {
                "id": i + 1,
                "shop_id": shop_id,
                "email": f"c{i}@bench.example",
                "customer_id": str(10_000_000 + i),
                "country_code": country,
                "locale": LANGUAGES.get(country, "en"),
                "consent_state": "subscribed" if i % 3 else "not_subscribed",
                "consent_at": NOW - timedelta(days=400),
                "orders_count": len(bought),
                "total_spent": sum((total for _, total, _ in bought), Decimal(0)),
                "first_order_at": min((p for p, _, _ in bought), default=None),
                "last_order_at": max((p for p, _, _ in bought), default=None),
                "platform_created_at": NOW - timedelta(days=i % 900),
                "tags": stored_tags(tags),
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
        for placed, total, products in bought:
            order_id += 1
            orders.append(
                {
                    "id": order_id,
                    "shop_id": shop_id,
                    "order_id": str(order_id),
                    "name": f"#{order_id}",
                    "contact_id": i + 1,
                    "status": "paid",
                    "currency": "SEK",
                    "total": total,
                    "test": False,
                    "data": {},
                    "placed_at": placed,
                    "platform_updated_at": placed,
                    "created_at": placed,
                    "updated_at": placed,
                }
            )
            lines += [
                {"shop_id": shop_id, "order_row_id": order_id, "product_id": p} for p in products
            ]
    return contacts, orders, lines


def grow(runtime: Runtime, shop_id: int, upto: int) -> None:
    with runtime.sessions() as session:
        have = int(session.scalar(select(func.count()).select_from(Contact)) or 0)
        last_order = int(session.scalar(select(func.max(Order.id))) or 0)
    started = time.perf_counter()
    with runtime.engine.begin() as connection:
        for low in range(have, upto, CHUNK):
            contacts, orders, lines = rows_for(shop_id, low, min(upto, low + CHUNK), last_order)
            last_order += len(orders)
            connection.execute(insert(Contact), contacts)
            connection.execute(insert(Order), orders)
            connection.execute(insert(OrderProduct), lines)
    with runtime.engine.begin() as connection:
        if runtime.engine.dialect.name == "postgresql":
            for table in ("contacts", "orders", "order_products", "product_groups"):
                connection.execute(text(f"ANALYZE {table}"))
        else:
            connection.execute(text("ANALYZE"))
    print(f"  contacts {have:,} -> {upto:,} in {time.perf_counter() - started:.0f} s")


@contextmanager
def statements(runtime: Runtime) -> Iterator[list[str]]:
    ran: list[str] = []

    def note(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        ran.append(sql)

    event.listen(runtime.engine, "before_cursor_execute", note)
    try:
        yield ran
    finally:
        event.remove(runtime.engine, "before_cursor_execute", note)


def best(runtime: Runtime, ask: Callable[[], Any], rounds: int = 3) -> tuple[float, int, Any]:
    """The best wall time of ``rounds`` (a shared machine), its statements and answer."""
    times = []
    for _ in range(rounds):
        with statements(runtime) as ran:
            started = time.perf_counter()
            answer = ask()
            times.append(time.perf_counter() - started)
    return min(times), len(ran), answer


def measure(
    runtime: Runtime,
    shop_id: int,
    size: int,
    picked: list[int],
    parsed: dict[str, segments.Condition],
) -> dict[str, tuple[float, float]]:
    """Each segment's count and check at this size, and the baselines: (count s, check s)."""
    here: dict[str, tuple[float, float]] = {}
    with runtime.sessions() as session:
        count_all = select(func.count()).select_from(Contact).where(Contact.shop_id == shop_id)
        took, ran, answer = best(runtime, lambda: session.execute(count_all).scalar())
        print(f"  {size:>9,} contacts; baseline COUNT of the shop's contacts: "
              f"{took * 1000:8.1f} ms, {ran} statement ({answer:,})")  # fmt: skip
        one = select(Contact.id).where(Contact.id == bindparam("c"))

        def lookups() -> int:  # as contains() asks: on the session's connection
            connection = plain(session)
            return sum(1 for c in picked if connection.execute(one, {"c": c}).first())

        took_one, ran_one, _ = best(runtime, lookups)
        per_lookup = took_one / len(picked)
        print(f"    baseline lookup of one contact by id: {per_lookup * 1e6:8.1f} µs "
              f"per lookup, {ran_one / len(picked):.0f} statement each")  # fmt: skip
        here["baseline"] = (took, per_lookup)
        for name, condition in parsed.items():

            def counting(c: segments.Condition = condition) -> int:
                return segments.count(session, shop_id, c, NOW)

            def checking(c: segments.Condition = condition) -> int:
                return sum(segments.contains(session, shop_id, n, c, NOW) for n in picked)

            took, ran, counted = best(runtime, counting)
            took_check, ran_check, inside = best(runtime, checking)
            per_check = took_check / len(picked)
            here[name] = (took, per_check)
            print(f"    {name:<22} count {took * 1000:8.1f} ms ({ran} statement, "
                  f"{counted:,} contacts, {took / here['baseline'][0]:.1f}x baseline); "
                  f"check {per_check * 1e6:7.1f} µs ({ran_check / len(picked):.0f} "
                  f"statement, {per_check / per_lookup:.1f}x lookup; "
                  f"{inside}/{len(picked)} in)")  # fmt: skip
        # what the segments page asks at each load: every built-in's count (a shop's
        # saved segments add one each)
        built_in = [segments.parse(raw) for raw in segments.BUILT_IN.values()]

        def listing() -> list[int]:
            return [segments.count(session, shop_id, c, NOW) for c in built_in]

        took, ran, _counts = best(runtime, listing)
        here["segments_page"] = (took, here["baseline"][1])
        print(f"    the segments page's {len(built_in)} built-in counts: {took * 1000:8.1f} ms "
              f"({ran} statements, {took / here['baseline'][0]:.1f}x baseline)")  # fmt: skip
    return here


def run(url: str, sizes: list[int], checks: int, workdir: Path) -> None:
    migrate(url)
    settings = Settings.from_env(
        {
            "TRIGGERPOST_DATA_DIR": str(workdir),
            "TRIGGERPOST_DATABASE_URL": url,
            "TRIGGERPOST_REDIS_URL": "redis://127.0.0.1:1/0",  # never asked
            "TRIGGERPOST_SECRET_KEY": "bench-" + "s" * 32,
        }
    )
    runtime = Runtime.create(settings)
    print(f"\n{runtime.engine.dialect.name}")
    parsed = {name: segments.parse(raw) for name, raw in SEGMENTS.items()}
    try:
        with runtime.sessions.begin() as session:
            shop: Shop = add_shop(session, runtime.secrets, "shopify", "bench.myshopify.com")
            shop_id = shop.id
            session.execute(
                insert(ProductGroup),
                [
                    {
                        "shop_id": shop_id,
                        "product_id": f"p{n}",
                        "kind": "collection",
                        "name": COLLECTIONS[n % len(COLLECTIONS)],
                    }
                    for n in range(PRODUCTS)
                ],
            )
        figures: dict[int, dict[str, tuple[float, float]]] = {}
        for size in sizes:
            grow(runtime, shop_id, size)
            picked = random.Random(size).sample(range(1, size + 1), min(checks, size))
            figures[size] = measure(runtime, shop_id, size, picked, parsed)
        small, large = min(figures), max(figures)
        if small != large:
            for name in figures[large]:
                count_ratio = figures[large][name][0] / figures[small][name][0]
                check_ratio = figures[large][name][1] / figures[small][name][1]
                print(f"  {name:<24} {large:,} / {small:,}: count {count_ratio:5.1f}x, "
                      f"check {check_ratio:5.2f}x")  # fmt: skip
    finally:
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", default="100000,1000000")
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.contacts.split(","))
    with tempfile.TemporaryDirectory(prefix="triggerpost-bench-") as tmp:
        workdir = Path(tmp)
        if args.database_url:
            empty_postgres(args.database_url)  # the bench's own database
            run(args.database_url, sizes, args.checks, workdir)
        else:
            run(f"sqlite:///{workdir / 'bench.db'}", sizes, args.checks, workdir)


if __name__ == "__main__":
    main()
