"""Dry run benchmark: a shop's long event log, replayed for its last 30 days.

Writes a shop's event log of N events over 180 days into a fresh store
(customers who subscribe, leave carts, order and pay; about a sixth of them in
the last 30 days), then times ``jobs.dry_run.dry_run`` over the last 30 days.
The baseline, measured in the same run, is writing that log: every event
applied once as the shop's past, in batches, which is the floor the dry run's
part before the window cannot beat. Prints events, seconds, events/s, the
emails projected, and the ratio of the dry run to the baseline.

    .venv/bin/python bench/dry_run.py [--events 50000] [--days 30]
        [--database-url postgresql://...]

Without --database-url the store is a SQLite file in a temporary folder.
Figures only: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from adapters import events as ev  # noqa: E402
from jobs.dry_run import dry_run  # noqa: E402
from jobs.intake import apply  # noqa: E402
from jobs.merchant.shops import add_shop  # noqa: E402
from jobs.store.db import make_engine, make_read_sessions, make_sessions, migrate  # noqa: E402
from jobs.store.models import Shop  # noqa: E402
from jobs.store.secrets import SecretBox  # noqa: E402

SHOP = "bench-dry-run.myshopify.com"
UNTIL = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
SPAN_DAYS = 180
BATCH = 1000


def sek(amount: str) -> ev.Money:
    return ev.Money(Decimal(amount), "SEK")


def story(n: int, start: datetime) -> Iterator[ev.Event]:
    """One customer's events from ``start``: sign-up, two carts, and every other
    customer an order of the second cart, paid an hour later (4 events on average)."""
    who = ev.Customer(
        customer_id=str(100_000 + n),
        email=f"bench{n}@example.se",
        first_name="Anna",
        address=ev.Address(country_code="SE"),
        consent=ev.Consent(ev.ConsentState.SUBSCRIBED, "bench", start),
        updated_at=start,
    )
    yield ev.CustomerCreated(occurred_at=start, customer=who)
    for i, offset in enumerate((timedelta(hours=2), timedelta(days=3))):
        at = start + offset
        token = f"tok{n}x{i}"
        yield ev.CheckoutUpdated(
            occurred_at=at,
            checkout=ev.Checkout(
                token=token,
                customer=who,
                email=who.email,
                recovery_url=f"https://{SHOP}/checkouts/{token}/recover",
                total=sek("499.00"),
                line_items=(ev.LineItem("Ullmössa", 1, sek("499.00"), product_id="p1"),),
                updated_at=at,
                created_at=at,
            ),
        )
    if n % 2 == 0:
        at = start + timedelta(days=3, minutes=30)
        order = ev.Order(
            order_id=str(900_000 + n),
            name=f"#{n}",
            customer=who,
            email=who.email,
            total=sek("499.00"),
            line_items=(),
            placed_at=at,
            updated_at=at,
            checkout_token=f"tok{n}x1",
        )
        yield ev.OrderPlaced(occurred_at=at, order=order)
        paid = at + timedelta(hours=1)
        yield ev.OrderPaid(occurred_at=paid, order=order)


def log_events(total: int) -> list[ev.Event]:
    """About ``total`` events, the customers' starts spread evenly over the span."""
    customers = max(1, total // 4)
    first = UNTIL - timedelta(days=SPAN_DAYS)
    step = timedelta(days=SPAN_DAYS - 4) / customers
    events = [e for n in range(customers) for e in story(n, first + n * step)]
    return sorted(events, key=lambda e: e.occurred_at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="triggerpost-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'store.db'}"
        migrate(url)
        engine = make_engine(url)
        sessions = make_sessions(engine)
        with sessions.begin() as session:
            old = session.query(Shop).filter(Shop.key == SHOP).one_or_none()
            if old is not None:
                session.delete(old)
        with sessions.begin() as session:
            shop = add_shop(session, SecretBox("bench-" + "k" * 40), "shopify", SHOP)
            shop.timezone = "Europe/Stockholm"
            shop_id = shop.id

        events = log_events(args.events)
        began = time.perf_counter()
        for i in range(0, len(events), BATCH):
            with sessions.begin() as session:
                shop = session.get_one(Shop, shop_id)
                for event in events[i : i + BATCH]:
                    apply.apply(session, shop, event, delivery_id=None, historical=True)
        baseline = time.perf_counter() - began

        began = time.perf_counter()
        result = dry_run(make_read_sessions(engine), shop_id, days=args.days, until=UNTIL)
        took = time.perf_counter() - began
        engine.dispose()

    where = url.split(":", 1)[0]
    logged = result.events_before + result.events_in_window
    print(f"store: {where}; {len(events)} logged events over {SPAN_DAYS} days")
    print(
        f"log written as the shop's past (baseline): {baseline:.1f} s, "
        f"{len(events) / baseline:,.0f} events/s"
    )
    print(
        f"dry run of the last {args.days} days: {took:.1f} s for {logged} events "
        f"({result.events_before} before the window, {result.events_in_window} in it), "
        f"{logged / took:,.0f} events/s"
    )
    print(
        f"projected: {sum(s.count for s in result.sent)} emails to "
        f"{result.contacts_reached} contacts, {sum(s.count for s in result.after)} after; "
        f"held back {sum(result.deferred.values())}"
    )
    print(f"ratio dry run / baseline: {took / baseline:.2f}")


if __name__ == "__main__":
    main()
