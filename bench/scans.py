"""Daily scans benchmark: a shop's scan costs its matches, not its contact count.

Builds one shop's contacts with Core executemany (100 k, then grown to 1 M), the
same matches at each size (``--birthdays`` tomorrow, ``--lapsed`` customers
lapsing today at 90 days, among contacts none of the day's lookups finds), and
runs the shop's daily scan with a birthday and a win-back flow on (made up here,
as the tests do): every fact goes through the engine, enrolls and plans its email.

Prints, per size: the scan's time, its SQL statement count, and the plan of each
lookup (EXPLAIN QUERY PLAN / EXPLAIN); then the ratio of the largest size's time
to the smallest's (target: at most 1.3), and a scan with ``--factor`` times the
matches at the largest size.

    .venv/bin/python bench/scans.py [--contacts 100000,1000000] [--birthdays 300]
        [--lapsed 500] [--factor 10] [--database-url URL]

SQLite (a scratch file) by default; ``--database-url`` names a PostgreSQL
database the bench empties and uses: everything in it is dropped first.

Figures only: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters import events as ev
from bench.databases import empty_postgres
from jobs.flows import registry
from jobs.flows.model import (
    Count,
    Days,
    Flow,
    MessageKind,
    Option,
    Send,
    SubjectKind,
    Trigger,
    common,
)
from jobs.intake import scans
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.store.db import migrate
from jobs.store.models import Contact, Shop

ZONE = "Europe/Stockholm"
TODAY = date(2026, 6, 1)
TOMORROW = TODAY + timedelta(days=1)
LAPSE_DAYS = 90
LAPSED_ON = TODAY - timedelta(days=LAPSE_DAYS)
STAMP = datetime(2026, 1, 10, 12, tzinfo=UTC)
CHUNK = 50_000

BIRTHDAY = Flow(
    name="bench_birthday",
    title="Birthday (bench)",
    category="birthday",
    kind=MessageKind.MARKETING,
    priority=15,
    trigger=Trigger(
        events=(ev.BirthdayCame,),
        subject=lambda e: f"birthday:{e.on.year}",  # type: ignore[attr-defined]
    ),
    steps=(Send("greeting", "birthday"),),
    subject_kind=SubjectKind.CONTACT,
    options=(*common(expires_hours=24),),
)
LAPSED = Flow(
    name="bench_win_back",
    title="Win-back (bench)",
    category="win_back",
    kind=MessageKind.MARKETING,
    priority=12,
    trigger=Trigger(
        events=(ev.CustomerLapsed,),
        subject=lambda e: f"lapse:{e.last_order_at.isoformat()}",  # type: ignore[attr-defined]
    ),
    steps=(Send("come_back", "birthday"),),
    subject_kind=SubjectKind.CONTACT,
    options=(
        Option("lapsed_days", Days(LAPSE_DAYS), label="Lapsed after", help="Days."),
        Option("min_orders", Count(1, unit="orders"), label="Orders", help="At least."),
        *common(expires_hours=48),
    ),
)


def local_noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 10, tzinfo=UTC)  # noon in Stockholm (CEST)


def crowd_row(shop_id: int, i: int) -> dict[str, Any]:
    """A contact none of today's lookups finds: another birthday, another last order."""
    birthday = date(1970 + i % 40, 1, 1) + timedelta(days=i % 365)
    if (birthday.month, birthday.day) in ((TOMORROW.month, TOMORROW.day), (2, 29)):
        birthday += timedelta(days=3)
    ordered = local_noon(LAPSED_ON - timedelta(days=1 + i % 900))
    if i % 3 == 0:
        ordered = local_noon(LAPSED_ON + timedelta(days=1 + i % 80))
    return {
        "shop_id": shop_id,
        "email": f"c{i}@bench.example",
        "customer_id": str(10_000_000 + i),
        "birthday": birthday,
        "birthday_md": birthday.month * 100 + birthday.day,
        "consent_state": "subscribed",
        "consent_at": STAMP,
        "orders_count": 1 + i % 4,
        "total_spent": Decimal(0),
        "first_order_at": ordered - timedelta(days=i % 400),
        "last_order_at": ordered,
        "created_at": STAMP,
        "updated_at": STAMP,
    }


def match_rows(shop_id: int, start: int, birthdays: int, lapsed: int) -> list[dict[str, Any]]:
    rows = []
    for n in range(start, start + birthdays):
        birthday = date(1980 + n % 30, TOMORROW.month, TOMORROW.day)
        rows.append(
            {
                **crowd_row(shop_id, 0),
                "email": f"b{n}@bench.example",
                "customer_id": str(50_000_000 + n),
                "birthday": birthday,
                "birthday_md": birthday.month * 100 + birthday.day,
            }
        )
    for n in range(start, start + lapsed):
        rows.append(
            {
                **crowd_row(shop_id, 0),
                "email": f"l{n}@bench.example",
                "customer_id": str(60_000_000 + n),
                "last_order_at": local_noon(LAPSED_ON) + timedelta(minutes=n % 300),
            }
        )
    return rows


def grow(runtime: Runtime, shop_id: int, upto: int) -> None:
    """The shop's crowd of non-matching contacts grown to ``upto``, a chunk at a time."""
    with runtime.sessions() as session:
        have = int(session.scalar(select(func.count()).select_from(Contact)) or 0)
    started = time.perf_counter()
    with runtime.engine.begin() as connection:
        for low in range(have, upto, CHUNK):
            rows = [crowd_row(shop_id, i) for i in range(low, min(upto, low + CHUNK))]
            connection.execute(insert(Contact), rows)
    analyse(runtime)
    print(f"  contacts {have:,} -> {upto:,} in {time.perf_counter() - started:.0f} s")


def analyse(runtime: Runtime) -> None:
    with runtime.engine.begin() as connection:
        connection.execute(text("ANALYZE contacts" if is_postgres(runtime) else "ANALYZE"))


def is_postgres(runtime: Runtime) -> bool:
    return runtime.engine.dialect.name == "postgresql"


def forget(runtime: Runtime, shop_id: int) -> None:
    """What a scan wrote, taken back: the next scan finds the same day to do."""
    with runtime.engine.begin() as connection:
        for table in ("decisions", "messages", "non_enrolments", "enrollments", "events"):
            connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 (fixed names)
        connection.execute(text("DELETE FROM scan_states WHERE shop_id = :s"), {"s": shop_id})


@contextmanager
def statements(runtime: Runtime) -> Iterator[list[tuple[str, Any]]]:
    ran: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, sql: str, params: Any, *args: Any) -> None:
        ran.append((sql, params))

    event.listen(runtime.engine, "before_cursor_execute", note)
    try:
        yield ran
    finally:
        event.remove(runtime.engine, "before_cursor_execute", note)


Scan = tuple[float, float, list[tuple[str, Any]], dict[str, int]]


def scan(runtime: Runtime, shop_id: int) -> Scan:
    """The day's scan, afresh: wall seconds, this process's CPU seconds (steadier on a
    shared machine), the statements it sent, the facts it emitted."""
    forget(runtime, shop_id)
    at = datetime(2026, 5, 31, 22, 30, tzinfo=UTC)  # 00:30 on 1 June in Stockholm
    with statements(runtime) as ran:
        started, cpu = time.perf_counter(), time.process_time()
        emitted = scans.scan_shop(runtime, shop_id, at, via=lambda work: None)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
    return took, cpu, ran, emitted


def plans(runtime: Runtime, ran: list[tuple[str, Any]]) -> list[str]:
    """The plans of the scan's lookups of contacts, as the database runs them."""
    lookups = [(sql, p) for sql, p in ran if "ORDER BY contacts.id +" in sql]
    seen: set[str] = set()
    shown = []
    with runtime.engine.connect() as connection:
        for sql, params in lookups:
            if sql in seen:
                continue
            seen.add(sql)
            if is_postgres(runtime):
                rows = connection.exec_driver_sql(f"EXPLAIN {sql}", params).all()
                shown.append("\n".join(f"      {row[0]}" for row in rows))
            else:
                rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
                shown.append("\n".join(f"      {row[-1]}" for row in rows))
    return shown


def run(url: str, sizes: list[int], args: argparse.Namespace, workdir: Path) -> None:
    migrate(url)
    settings = Settings.from_env(
        {
            "TRIGGERPOST_DATA_DIR": str(workdir),
            "TRIGGERPOST_DATABASE_URL": url,
            "TRIGGERPOST_REDIS_URL": "redis://127.0.0.1:1/0",  # never asked: via= hands off
            "TRIGGERPOST_SECRET_KEY": "bench-" + "s" * 32,
        }
    )
    runtime = Runtime.create(settings)
    print(f"\n{runtime.engine.dialect.name}: {args.birthdays} birthdays tomorrow, "
          f"{args.lapsed} lapsing today")  # fmt: skip
    try:
        with runtime.sessions.begin() as session:
            shop: Shop = add_shop(session, runtime.secrets, "shopify", "bench.myshopify.com")
            shop.timezone = ZONE
            shop_id = shop.id
        with runtime.engine.begin() as connection:
            connection.execute(insert(Contact), match_rows(shop_id, 0, args.birthdays, args.lapsed))
        times: dict[int, tuple[float, float]] = {}
        for size in sizes:
            grow(runtime, shop_id, size)
            scan(runtime, shop_id)  # warm: compiled statements, settings, caches
            took, cpu, ran, emitted = scan(runtime, shop_id)
            times[size] = (took, cpu)
            print(f"  {size:>9,} contacts: scan {took * 1000:7.0f} ms ({cpu * 1000:.0f} ms CPU "
                  f"here), {len(ran):5} statements, emitted {emitted}")  # fmt: skip
            for shown in plans(runtime, ran):
                print(shown)
        small, large = min(times), max(times)
        if small != large:
            print(f"  ratio {large:,} / {small:,}: {times[large][0] / times[small][0]:.2f} "
                  f"(CPU here {times[large][1] / times[small][1]:.2f})")  # fmt: skip
        more = args.factor - 1
        with runtime.engine.begin() as connection:
            connection.execute(
                insert(Contact),
                match_rows(shop_id, 10_000, args.birthdays * more, args.lapsed * more),
            )
        analyse(runtime)
        took, cpu, ran, emitted = scan(runtime, shop_id)
        print(f"  {args.factor}x the matches at {large:,}: scan {took * 1000:7.0f} ms "
              f"({cpu * 1000:.0f} ms CPU here), {len(ran):5} statements, emitted {emitted}; "
              f"{took / times[large][0]:.1f}x the time")  # fmt: skip
    finally:
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", default="100000,1000000")
    parser.add_argument("--birthdays", type=int, default=300)
    parser.add_argument("--lapsed", type=int, default=500)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.contacts.split(","))
    registry.register(BIRTHDAY)
    registry.register(LAPSED)
    with tempfile.TemporaryDirectory(prefix="triggerpost-bench-") as tmp:
        workdir = Path(tmp)
        if args.database_url:
            empty_postgres(args.database_url)  # the bench's own database
            run(args.database_url, sizes, args, workdir)
        else:
            run(f"sqlite:///{workdir / 'bench.db'}", sizes, args, workdir)


if __name__ == "__main__":
    main()
