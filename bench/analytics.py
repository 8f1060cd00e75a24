"""Analytics benchmark: a shop's report costs its range, not its whole ledger.

Builds one shop (Stockholm time, so the ranges cross the clock changes) with
``--messages`` sent emails spread over a year and a day (each size in turn: 100 k,
then grown to 1 M), a click on one in twenty, a hard bounce or an unsubscribe on
one in two hundred, an attributed order on one in a hundred, and a second shop of
the same size beside it (whose rows the report must step over). Then runs the
report over the last 30 days and over the whole 366 days.

Prints, per database and size: each report's time (and the CPU time of this process,
which is SQLite's whole work, and tells what a busy machine's wall clock does not),
its SQL statement count and
the rows the report has (flow-days), the plan of the messages query, and the
ratio of the largest size's 30-day time to the smallest's.

    .venv/bin/python bench/analytics.py [--messages 100000,1000000]
        [--databases sqlite,postgresql] [--postgres-url URL]

``--postgres-url`` (or TEST_DATABASE_URL) names a PostgreSQL database the bench
empties and uses: everything in it is dropped first.

Figures only: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.databases import each_database
from jobs.flows import registry
from jobs.merchant.shops import add_shop
from jobs.reports import analytics
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.store.db import migrate
from jobs.store.models import (
    SCOPE_ALL,
    SCOPE_MARKETING,
    Attribution,
    Contact,
    Engagement,
    Enrollment,
    Message,
    Order,
    Shop,
    Suppression,
)

END = datetime(2026, 12, 1, tzinfo=UTC)
SPAN = timedelta(days=367)
CONTACTS = 10_000
BATCH = 20_000


def _shop(runtime: Runtime, key: str) -> int:
    with runtime.sessions.begin() as session:
        shop = add_shop(
            session,
            runtime.secrets,
            "shopify",
            f"{key}.myshopify.com",
            currency="SEK",
            timezone="Europe/Stockholm",
        )
        session.flush()
        contacts = [
            {"shop_id": shop.id, "email": f"c{n}@{key}.example", "customer_id": str(n)}
            for n in range(CONTACTS)
        ]
        session.execute(insert(Contact), contacts)
        first = session.scalar(select(Contact.id).where(Contact.shop_id == shop.id).limit(1))
        flows = list(registry.flows())
        session.execute(
            insert(Enrollment),
            [
                {
                    "shop_id": shop.id,
                    "flow": flow,
                    "key": f"bench-{flow}",
                    "subject": "bench",
                    "contact_id": first,
                    "holdout": False,
                    "anchor_at": END - SPAN,
                    "entered_at": END - SPAN,
                    "state": "active",
                    "step_index": 0,
                    "context": {},
                }
                for flow in flows
            ],
        )
        return shop.id


#: PostgreSQL makes the same rows itself, from generate_series: a million in seconds
#: instead of the client's half hour (the SQLite path's rows, made in Python)
_PG_GROW = (
    """WITH e AS (SELECT row_number() OVER (ORDER BY id) - 1 AS i, id, flow
                 FROM enrollments WHERE shop_id = :shop),
            k AS (SELECT count(*) AS k FROM e),
            s AS (SELECT n, CAST(:end AS timestamptz)
                        - interval '367 days' * (((n * 7919) % 100000) / 100000.0) AS t
                  FROM generate_series(CAST(:start AS bigint), :stop - 1) AS n)
       INSERT INTO messages (shop_id, enrollment_id, contact_id, dedupe_key, flow, step,
                             template, kind, priority, state, due_at, planned_at, expires_at,
                             sent_at, attempts, data, created_at, updated_at)
       SELECT :shop, e.id, :contact + s.n % :contacts, 'm' || s.n, e.flow, 'first', 'bench',
              'marketing', 0, 'sent', s.t, s.t, s.t + interval '1 day', s.t, 1, '{}', now(), now()
       FROM s, k, e WHERE e.i = s.n % k.k""",
    """INSERT INTO engagements (shop_id, message_id, contact_id, kind, at)
       SELECT shop_id, id, contact_id, 'click', sent_at + interval '2 hours' FROM messages
       WHERE shop_id = :shop AND id > :before
         AND CAST(substr(dedupe_key, 2) AS bigint) % 20 = 0""",
    """INSERT INTO suppressions (shop_id, email, scope, reason, source, message_id, created_at)
       SELECT shop_id, 's' || n || '@x.example',
              CASE WHEN n % 400 = 7 THEN 'all' ELSE 'marketing' END,
              CASE WHEN n % 400 = 7 THEN 'hard_bounce' ELSE 'unsubscribed' END,
              'bench', id, sent_at
       FROM (SELECT *, CAST(substr(dedupe_key, 2) AS bigint) AS n FROM messages
             WHERE shop_id = :shop AND id > :before) AS m
       WHERE n % 200 = 7""",
    """INSERT INTO orders (shop_id, order_id, name, currency, total, data, placed_at,
                           platform_updated_at, contact_id, status, test, created_at, updated_at)
       SELECT shop_id, 'o' || n, '#' || n, 'SEK', 249.50, '{}', sent_at + interval '3 hours',
              sent_at + interval '3 hours', contact_id, 'paid', false, now(), now()
       FROM (SELECT *, CAST(substr(dedupe_key, 2) AS bigint) AS n FROM messages
             WHERE shop_id = :shop AND id > :before) AS m
       WHERE n % 100 = 0""",
    """INSERT INTO attributions (shop_id, order_row_id, message_id, flow, revenue, currency,
                                 engagement_at, attributed_at)
       SELECT m.shop_id, o.id, m.id, m.flow, 249.50, 'SEK', m.sent_at + interval '2 hours',
              m.sent_at + interval '3 hours'
       FROM messages AS m JOIN orders AS o
         ON o.shop_id = m.shop_id AND o.order_id = 'o' || substr(m.dedupe_key, 2)
       WHERE m.shop_id = :shop AND m.id > :before
         AND CAST(substr(m.dedupe_key, 2) AS bigint) % 100 = 0""",
)


def _grow_in_postgresql(runtime: Runtime, shop_id: int, start: int, stop: int) -> None:
    with runtime.sessions.begin() as session:
        first = session.scalar(
            select(Contact.id).where(Contact.shop_id == shop_id).order_by(Contact.id).limit(1)
        )
        before = session.scalar(text("SELECT coalesce(max(id), 0) FROM messages"))
        values = {
            "shop": shop_id,
            "start": start,
            "stop": stop,
            "end": END,
            "contact": first,
            "contacts": CONTACTS,
            "before": before,
        }
        for statement in _PG_GROW:
            session.execute(text(statement), values)


def _grow(runtime: Runtime, shop_id: int, start: int, stop: int) -> None:
    """Messages ``start`` .. ``stop`` of the shop, with their clicks, bounces and orders."""
    if runtime.engine.dialect.name == "postgresql":
        _grow_in_postgresql(runtime, shop_id, start, stop)
        return
    with runtime.sessions.begin() as session:
        enrollments = dict(
            session.execute(
                select(Enrollment.flow, Enrollment.id).where(Enrollment.shop_id == shop_id)
            ).all()
        )
        first_contact = session.scalar(
            select(Contact.id).where(Contact.shop_id == shop_id).order_by(Contact.id).limit(1)
        )
        assert first_contact is not None
        flows = list(enrollments)
        for low in range(start, stop, BATCH):
            high = min(stop, low + BATCH)
            rows = []
            for n in range(low, high):
                at = END - SPAN * ((n * 7919) % 100_000) / 100_000
                rows.append(
                    {
                        "shop_id": shop_id,
                        "enrollment_id": enrollments[flows[n % len(flows)]],
                        "contact_id": first_contact + n % CONTACTS,
                        "dedupe_key": f"m{n}",
                        "flow": flows[n % len(flows)],
                        "step": "first",
                        "template": "bench",
                        "kind": "marketing",
                        "priority": 0,
                        "state": "sent",
                        "due_at": at,
                        "planned_at": at,
                        "expires_at": at + timedelta(days=1),
                        "sent_at": at,
                        "attempts": 1,
                        "data": {},
                    }
                )
            ids = session.scalars(
                insert(Message).returning(Message.id, sort_by_parameter_order=True), rows
            ).all()
            clicks, suppressions, orders = [], [], []
            for n, (row, message_id) in enumerate(zip(rows, ids, strict=True), start=low):
                at = row["sent_at"]
                if n % 20 == 0:
                    clicks.append(
                        {
                            "shop_id": shop_id,
                            "message_id": message_id,
                            "contact_id": row["contact_id"],
                            "kind": "click",
                            "at": at + timedelta(hours=2),
                        }
                    )
                if n % 200 == 7:
                    bounce = n % 400 == 7
                    suppressions.append(
                        {
                            "shop_id": shop_id,
                            "email": f"s{n}@x.example",
                            "scope": SCOPE_ALL if bounce else SCOPE_MARKETING,
                            "reason": "hard_bounce" if bounce else "unsubscribed",
                            "source": "bench",
                            "message_id": message_id,
                            "created_at": at,
                        }
                    )
                if n % 100 == 0:
                    orders.append((row, message_id, n))
            if clicks:
                session.execute(insert(Engagement), clicks)
            if suppressions:
                session.execute(insert(Suppression), suppressions)
            if orders:
                order_ids = session.scalars(
                    insert(Order).returning(Order.id, sort_by_parameter_order=True),
                    [
                        {
                            "shop_id": shop_id,
                            "order_id": f"o{n}",
                            "name": f"#{n}",
                            "currency": "SEK",
                            "total": Decimal("249.50"),
                            "data": {},
                            "placed_at": row["sent_at"] + timedelta(hours=3),
                            "platform_updated_at": row["sent_at"] + timedelta(hours=3),
                            "contact_id": row["contact_id"],
                            "status": "paid",
                            "test": False,
                        }
                        for row, _, n in orders
                    ],
                ).all()
                session.execute(
                    insert(Attribution),
                    [
                        {
                            "shop_id": shop_id,
                            "order_row_id": order_id,
                            "message_id": message_id,
                            "flow": row["flow"],
                            "revenue": Decimal("249.50"),
                            "currency": "SEK",
                            "engagement_at": row["sent_at"] + timedelta(hours=2),
                            "attributed_at": row["sent_at"] + timedelta(hours=3),
                        }
                        for (row, message_id, _), order_id in zip(orders, order_ids, strict=True)
                    ],
                )


def _timed_report(runtime: Runtime, shop_id: int, days: int) -> tuple[float, float, int, int, Any]:
    statements = 0

    def count(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    last = date(2026, 11, 30)
    first = last - timedelta(days=days - 1)
    with runtime.sessions() as session:
        shop = session.get_one(Shop, shop_id)
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", count)
        try:
            began, cpu = time.perf_counter(), time.process_time()
            found = analytics.report(session, shop, first, last)
            took, cpu = time.perf_counter() - began, time.process_time() - cpu
        finally:
            event.remove(engine, "before_cursor_execute", count)
    return took, cpu, statements, len(found.cells), found.total()


def _plan(runtime: Runtime, database: str, shop_id: int) -> str:
    explain = "EXPLAIN QUERY PLAN" if database == "sqlite" else "EXPLAIN"
    start, end = END - timedelta(days=30), END
    query = (
        f"{explain} SELECT count(*) FROM messages WHERE shop_id = :shop AND state = 'sent' "  # noqa: S608 (fixed words)
        "AND sent_at >= :start AND sent_at < :end"
    )
    params: dict[str, Any] = {"shop": shop_id, "start": start, "end": end}
    if database == "sqlite":
        params.update(start=start.replace(tzinfo=None), end=end.replace(tzinfo=None))
    with runtime.sessions() as session:
        rows = session.execute(text(query), params).all()
    return "\n".join("    " + " ".join(str(part) for part in row) for row in rows)


def run(database: str, url: str, redis_url: str, args: argparse.Namespace, workdir: Path) -> None:
    migrate(url)
    settings = Settings.from_env(
        {
            "TRIGGERPOST_DATA_DIR": str(workdir / "var"),
            "TRIGGERPOST_DATABASE_URL": url,
            "TRIGGERPOST_REDIS_URL": redis_url,
            "TRIGGERPOST_SECRET_KEY": "bench-secret-key-" + "x" * 32,
        }
    )
    runtime = Runtime.create(settings)
    try:
        print(f"\n{database}")
        ours, theirs = _shop(runtime, "bench"), _shop(runtime, "beside")
        done = 0
        times = []
        for size in [int(part) for part in args.messages.split(",")]:
            began = time.perf_counter()
            _grow(runtime, ours, done, size)
            _grow(runtime, theirs, done, size)
            done = size
            with runtime.sessions.begin() as session:
                if database == "postgresql":
                    session.execute(text("ANALYZE"))
            print(f"  {size:,} messages per shop (built in {time.perf_counter() - began:.1f} s)")
            for days in (30, 366):
                took, cpu, statements, cells, total = _timed_report(runtime, ours, days)
                if days == 30:
                    times.append(took)
                print(
                    f"    {days:>3} days: {took * 1000:8.1f} ms ({cpu * 1000:.1f} ms of this "
                    f"process's CPU), {statements} statements, "
                    f"{cells} flow-days; sent {total.sent:,}, clicked {total.clicked:,}, "
                    f"bounced {total.bounced:,}, unsubscribed {total.unsubscribed:,}, "
                    f"orders {total.orders:,}, revenue {total.revenue} SEK"
                )
        print("  the messages query's plan (30 days):")
        print(_plan(runtime, database, ours))
        if len(times) > 1:
            print(f"  30 days at the largest size / at the smallest: {times[-1] / times[0]:.2f}")
    finally:
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", default="100000,1000000")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    each_database(parser.parse_args(), run)


if __name__ == "__main__":
    main()
