"""Storefront views benchmark: what a known customer's view costs the intake.

Before the browse abandonment, a view was only logged. Now a view that names a
known customer is counted (``product_views``) and goes through the flow engine
(the trigger's condition, its exits, the re-entry rule, an enrollment or the
reason there is none). This applies ``--views`` views to a scratch shop with
``--contacts`` subscribed customers and ``--products`` products, each view in
its own transaction as a drain applies it, three ways:

- anonymous views: logged only (the cost every view had before: the baseline);
- known customers' views, the flow off: counted, no flow;
- known customers' views, the flow on (the default): counted and judged.

Prints, for each: views per second, milliseconds per view, SQL statements per
view; then the ratio of each to the baseline.

    .venv/bin/python bench/views.py [--views 3000] [--contacts 500] [--products 50]

SQLite (a scratch file) only; figures only: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters import events as ev
from jobs import shop_settings
from jobs.engine import enrolment
from jobs.intake import apply
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.simulator import scratch_runtime
from jobs.store.models import Shop

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _shop(runtime: Runtime, contacts: int, products: int, *, flow_on: bool) -> int:
    with runtime.sessions.begin() as session:
        shop = add_shop(session, runtime.secrets, "shopify", f"bench-{flow_on}.myshopify.com")
        shop.timezone = "Europe/Stockholm"
        shop_settings.replace(
            session,
            shop,
            {"flows": {"welcome": {"enabled": False}, "browse_abandonment": {"enabled": flow_on}}},
        )
        shop_id = shop.id
        consent = ev.Consent(ev.ConsentState.SUBSCRIBED, "bench", START)
        for n in range(products):
            product = ev.Product(
                product_id=str(1000 + n),
                title=f"Product {n}",
                updated_at=START,
                price=ev.Money(Decimal("199.00"), "SEK"),
                status="active",
                available=True,
            )
            created = ev.ProductCreated(START, product)
            apply.apply(session, shop, created, delivery_id=None, at=START)
        for n in range(contacts):
            who = ev.Customer(customer_id=str(n), email=f"c{n}@example.se", consent=consent)
            apply.apply(session, shop, ev.CustomerCreated(START, who), delivery_id=None, at=START)
        enrolment.take_due_work(session)
    return shop_id


def _views(
    runtime: Runtime, shop_id: int, views: int, contacts: int, products: int, *, known: bool
) -> tuple[float, float]:
    """Seconds and SQL statements for ``views`` views, one transaction each."""
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(runtime.engine, "before_cursor_execute", count)
    began = time.perf_counter()
    try:
        for n in range(views):
            at = START + timedelta(hours=1, seconds=n)
            who = ev.Customer(customer_id=str(n % contacts), email=None) if known else None
            view = ev.ProductViewed(at, str(1000 + (n * 7) % products), customer=who)
            with runtime.sessions.begin() as session:
                shop = session.get_one(Shop, shop_id)
                apply.apply(session, shop, view, delivery_id=None, at=at)
                enrolment.take_due_work(session)
    finally:
        event.remove(runtime.engine, "before_cursor_execute", count)
    return time.perf_counter() - began, statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=3000)
    parser.add_argument("--contacts", type=int, default=500)
    parser.add_argument("--products", type=int, default=50)
    args = parser.parse_args()
    rows: list[tuple[str, float, float]] = []
    with scratch_runtime() as runtime:
        for name, known, flow_on in (
            ("anonymous views (logged only: baseline)", False, True),
            ("known customers' views, flow off", True, False),
            ("known customers' views, flow on", True, True),
        ):
            shop_id = _shop(runtime, args.contacts, args.products, flow_on=flow_on)
            seconds, statements = _views(
                runtime, shop_id, args.views, args.contacts, args.products, known=known
            )
            rows.append((name, seconds, statements))
    base = rows[0][1]
    print(f"{args.views} views, {args.contacts} contacts, {args.products} products (SQLite)")
    for name, seconds, statements in rows:
        print(
            f"  {name:42} {args.views / seconds:8.0f} views/s  "
            f"{1000 * seconds / args.views:6.2f} ms/view  "
            f"{statements / args.views:5.1f} statements/view  "
            f"x{seconds / base:4.2f} the baseline"
        )


if __name__ == "__main__":
    main()
