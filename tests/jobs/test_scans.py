"""The daily scans: a shop's own data, read once a shop-local day, becomes the facts that
start birthday, anniversary, win-back and re-engagement flows (made-up flows here)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from alembic import command
from sqlalchemy import event, insert, select, text
from sqlalchemy.engine import Engine

from adapters import events as ev
from jobs.flows.model import (
    Count,
    Days,
    Flow,
    MessageKind,
    Option,
    Send,
    SubjectKind,
    Trigger,
    WaitUntil,
    common,
)
from jobs.intake import apply, contacts_import, scans
from jobs.runtime import Runtime
from jobs.simulator import Scenario, Simulator, simulate
from jobs.store.db import alembic_config, make_engine, migrate
from jobs.store.models import (
    SCAN_DAY,
    Contact,
    Engagement,
    Message,
    ScanState,
    Shop,
    ShopStatus,
    StoredEvent,
)
from jobs.workers import sweeper
from tests.jobs.engine_support import T0, Harness, customer, extra_flow, order
from tests.support import run_worker

STOCKHOLM = "Europe/Stockholm"

# --- made-up flows, one per fact --------------------------------------------------------


def _birthday_subject(event: ev.Event) -> str:
    assert isinstance(event, ev.BirthdayCame)
    return f"birthday:{event.on.year}"


def _morning_of_the_day(event: ev.Event) -> datetime:
    # from the day's start (UTC), the contact's next 09:00 is on the day itself
    assert isinstance(event, ev.BirthdayCame)
    return datetime.combine(event.on, time(0), tzinfo=UTC)


BIRTHDAY = Flow(
    name="test_scan_birthday",
    title="Birthday (test)",
    category="birthday",
    kind=MessageKind.MARKETING,
    priority=15,
    trigger=Trigger(
        events=(ev.BirthdayCame,), subject=_birthday_subject, anchor=_morning_of_the_day
    ),
    steps=(WaitUntil(time(9, 0)), Send("greeting", "birthday")),
    subject_kind=SubjectKind.CONTACT,
    options=(*common(expires_hours=24),),
)


def _anniversary_subject(event: ev.Event) -> str:
    assert isinstance(event, ev.OrderAnniversaryCame)
    return f"anniversary:{event.years}"


ANNIVERSARY = Flow(
    name="test_scan_anniversary",
    title="Anniversary (test)",
    category="birthday",
    kind=MessageKind.MARKETING,
    priority=14,
    trigger=Trigger(events=(ev.OrderAnniversaryCame,), subject=_anniversary_subject),
    steps=(Send("note", "birthday"),),
    subject_kind=SubjectKind.CONTACT,
    options=(*common(expires_hours=48),),
)


def _lapse_subject(event: ev.Event) -> str:
    assert isinstance(event, ev.CustomerLapsed)
    return f"lapse:{event.last_order_at.isoformat()}"


LAPSED = Flow(
    name="test_scan_win_back",
    title="Win-back (test)",
    category="win_back",
    kind=MessageKind.MARKETING,
    priority=12,
    trigger=Trigger(events=(ev.CustomerLapsed,), subject=_lapse_subject),
    steps=(Send("come_back", "birthday"),),
    subject_kind=SubjectKind.CONTACT,
    options=(
        Option("lapsed_days", Days(90, min=30), label="Lapsed after", help="Days."),
        Option("min_orders", Count(1, unit="orders"), label="Orders", help="At least."),
        *common(expires_hours=48),
    ),
)


def _quiet_subject(event: ev.Event) -> str:
    assert isinstance(event, ev.SubscriberWentQuiet)
    return f"quiet:{event.days}"


QUIET = Flow(
    name="test_scan_quiet",
    title="Re-engagement (test)",
    category="win_back",
    kind=MessageKind.MARKETING,
    priority=11,
    trigger=Trigger(events=(ev.SubscriberWentQuiet,), subject=_quiet_subject),
    steps=(Send("still_there", "birthday"),),
    subject_kind=SubjectKind.CONTACT,
    options=(
        Option("quiet_days", Days(30), label="Quiet after", help="Days."),
        *common(expires_hours=48),
    ),
)


@contextmanager
def flows(*declared: Flow) -> Iterator[None]:
    with ExitStack() as stack:
        for flow in declared:
            stack.enter_context(extra_flow(flow))
        yield


def local(day: date, hour: int = 0, zone: str = STOCKHOLM) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=scans.shop_zone(zone)).astimezone(UTC)


#: only this module's made-up flows act on the facts: the built-in ones (and the welcome) off
ONLY_MADE_UP = {
    name: {"enabled": False}
    for name in ("welcome", "birthday", "anniversary", "win_back", "re_engagement")
}


class Shop_(Harness):
    """A Stockholm shop on a virtual clock; its welcome series off (not the subject here)."""

    def __init__(self, runtime: Runtime, start: datetime = T0) -> None:
        super().__init__(runtime, timezone=STOCKHOLM)
        self.settings(flows=ONLY_MADE_UP)
        self.sim = Simulator(self.sender, self.shop_id, start)

    def contact(self, **fields: Any) -> int:
        with self.runtime.sessions.begin() as session:
            contact = Contact(shop_id=self.shop_id, **fields)
            session.add(contact)
            session.flush()
            return contact.id

    def facts(self, kind: type[ev.Event]) -> list[dict[str, Any]]:
        with self.runtime.sessions() as session:
            rows = session.scalars(
                select(StoredEvent)
                .where(StoredEvent.shop_id == self.shop_id, StoredEvent.type == kind.__name__)
                .order_by(StoredEvent.id)
            ).all()
            return [{**row.data, "contact_id": row.contact_id} for row in rows]

    def scan(self, at: datetime) -> dict[str, int]:
        return scans.scan_shop(self.runtime, self.shop_id, at, via=lambda work: None)

    def sent_messages(self, flow: str) -> list[Message]:
        return [m for m in self.messages() if m.flow == flow and m.state == "sent"]


@pytest.fixture
def shop(runtime: Runtime) -> Shop_:
    return Shop_(runtime)


# --- birthdays ----------------------------------------------------------------------------


def test_a_birthday_is_told_the_day_before_and_the_greeting_lands_on_the_morning_of_the_day(
    shop: Shop_,
) -> None:
    anna = customer("anna@example.se", customer_id="c1")
    anna = ev.Customer(**{**anna.__dict__, "birthday": date(1990, 3, 10)})
    with flows(BIRTHDAY):
        shop.at(T0, ev.CustomerCreated(occurred_at=T0, customer=anna))
        shop.run(local(date(2026, 3, 11), 12))
    (fact,) = shop.facts(ev.BirthdayCame)
    # the scan of 9 March (Stockholm) tells of the birthday on the 10th
    assert fact["on"] == "2026-03-10"
    assert fact["occurred_at"] == local(date(2026, 3, 9)).isoformat()
    assert fact["contact"] == {"customer_id": "c1", "email": "anna@example.se"}
    (message,) = shop.sent_messages("test_scan_birthday")
    assert message.sent_at == local(date(2026, 3, 10), 9)  # her morning of the day
    assert shop.sent() == [("anna@example.se", "test_scan_birthday/greeting")]


def test_a_29_february_birthday_is_the_28th_in_a_year_without_it(runtime: Runtime) -> None:
    shop = Shop_(runtime, start=local(date(2027, 2, 20), 12))
    leapling = shop.contact(customer_id="c1", email="leap@example.se", birthday=date(2000, 2, 29))
    unknown_year = shop.contact(email="feb28@example.se", birthday=date(1904, 2, 28))
    march = shop.contact(email="march@example.se", birthday=date(1904, 3, 1))
    with flows(BIRTHDAY):
        shop.run(local(date(2027, 3, 3)))
    told = {(f["contact_id"], f["on"], f["occurred_at"]) for f in shop.facts(ev.BirthdayCame)}
    assert told == {
        (leapling, "2027-02-28", local(date(2027, 2, 27)).isoformat()),
        (unknown_year, "2027-02-28", local(date(2027, 2, 27)).isoformat()),
        (march, "2027-03-01", local(date(2027, 2, 28)).isoformat()),
    }


def test_in_a_leap_year_29_february_is_its_own_day(runtime: Runtime) -> None:
    shop = Shop_(runtime, start=local(date(2028, 2, 26), 12))
    leapling = shop.contact(email="leap@example.se", birthday=date(2000, 2, 29))
    feb28 = shop.contact(email="feb28@example.se", birthday=date(1990, 2, 28))
    with flows(BIRTHDAY):
        shop.run(local(date(2028, 3, 1)))
    told = {(f["contact_id"], f["on"]) for f in shop.facts(ev.BirthdayCame)}
    assert told == {(feb28, "2028-02-28"), (leapling, "2028-02-29")}


def test_a_first_orders_anniversary_counts_whole_years_in_the_shops_calendar(
    runtime: Runtime,
) -> None:
    shop = Shop_(runtime, start=local(date(2026, 5, 1), 12))
    # 23:30 UTC on 11 May is already 12 May in Stockholm
    two_years = shop.contact(
        email="a@example.se",
        consent_state="subscribed",
        orders_count=3,
        first_order_at=datetime(2024, 5, 11, 23, 30, tzinfo=UTC),
        last_order_at=datetime(2026, 4, 1, tzinfo=UTC),
    )
    shop.contact(  # a day later: not yet
        email="b@example.se",
        orders_count=1,
        first_order_at=datetime(2025, 5, 13, 12, tzinfo=UTC),
        last_order_at=datetime(2025, 5, 13, 12, tzinfo=UTC),
    )
    with flows(ANNIVERSARY):
        shop.run(local(date(2026, 5, 11), 12))
    (fact,) = shop.facts(ev.OrderAnniversaryCame)
    assert (fact["contact_id"], fact["years"], fact["on"]) == (two_years, 2, "2026-05-12")
    assert fact["occurred_at"] == local(date(2026, 5, 11)).isoformat()
    assert len(shop.sent_messages("test_scan_anniversary")) == 1, shop.outcomes()


# --- lapsed customers and quiet subscribers ------------------------------------------------


def test_a_customer_lapses_on_the_90th_day_after_their_last_order(shop: Shop_) -> None:
    bo = customer("bo@example.se", customer_id="c2")
    placed = T0 + timedelta(days=1)  # 3 March, 10:00 in Stockholm
    with flows(LAPSED):
        shop.at(placed, order("1001", placed, bo, None))
        shop.run(local(date(2026, 5, 31), 23))  # day 89
        assert shop.facts(ev.CustomerLapsed) == []
        shop.run(local(date(2026, 6, 2)))  # day 90 began on 1 June
    (fact,) = shop.facts(ev.CustomerLapsed)
    assert fact["days"] == 90
    assert fact["orders_count"] == 1
    assert fact["last_order_at"] == placed.isoformat()
    assert fact["occurred_at"] == local(date(2026, 6, 1)).isoformat()
    assert shop.sent() == [("bo@example.se", "test_scan_win_back/come_back")]


def test_min_orders_and_each_flows_days_are_scanned_once_per_distinct_pair(shop: Shop_) -> None:
    today = date(2026, 6, 1)
    last = local(today - timedelta(days=90), 12)
    one = shop.contact(email="one@example.se", orders_count=1, last_order_at=last)
    three = shop.contact(email="three@example.se", orders_count=3, last_order_at=last)
    loyal = Flow(**{**LAPSED.__dict__, "name": "test_scan_loyal_win_back"})
    shop.settings(flows={"welcome": {"enabled": False}, loyal.name: {"min_orders": 2}})
    with flows(LAPSED, loyal):
        shop.scan(local(today, 1))
    facts = shop.facts(ev.CustomerLapsed)
    # one fact each: the two flows' pairs (90, 1) and (90, 2) find the same lapse once
    assert sorted(f["contact_id"] for f in facts) == [one, three]
    with shop.runtime.sessions() as session:
        rows = session.scalars(select(Message.flow, Message.contact_id)).all()
    assert rows  # both flows enrolled from the one fact of the loyal customer


def test_a_subscriber_who_never_ordered_goes_quiet_on_day_30(shop: Shop_) -> None:
    cleo = customer("cleo@example.se", customer_id="c3")  # subscribed at T0
    dag = customer("dag@example.se", customer_id="c4", subscribed=False)
    eva = customer("eva@example.se", customer_id="c5")
    with flows(QUIET):
        shop.at(T0, ev.CustomerCreated(occurred_at=T0, customer=cleo))
        shop.at(T0, ev.CustomerCreated(occurred_at=T0, customer=dag))
        shop.at(T0, order("2001", T0, eva, None))  # a buyer is not a quiet subscriber
        shop.run(local(date(2026, 4, 2)))
    (fact,) = shop.facts(ev.SubscriberWentQuiet)
    assert fact["contact"]["email"] == "cleo@example.se"
    assert fact["days"] == 30
    assert fact["last_engaged_at"] is None
    assert fact["occurred_at"] == local(date(2026, 4, 1)).isoformat()  # 2 March + 30 days


def test_a_fact_no_enabled_flow_triggers_on_is_not_scanned(shop: Shop_) -> None:
    today = date(2026, 6, 1)
    shop.contact(email="bo@example.se", orders_count=1, last_order_at=local(date(2026, 3, 3)))
    shop.contact(email="anna@example.se", birthday=date(1990, 6, 2))
    shop.settings(flows={**ONLY_MADE_UP, LAPSED.name: {"enabled": False}})
    with flows(LAPSED):
        assert shop.scan(local(today, 1)) == {}
    with flows(BIRTHDAY):
        assert shop.scan(local(today, 2)) == {"BirthdayCame": 1}
    assert shop.facts(ev.CustomerLapsed) == []
    with shop.runtime.sessions() as session:
        facts = set(
            session.scalars(select(ScanState.fact).where(ScanState.shop_id == shop.shop_id))
        )
    assert facts == {"BirthdayCame", SCAN_DAY}


# --- once a day, catching up once ----------------------------------------------------------


def test_a_scan_run_twice_in_one_day_emits_nothing_the_second_time(shop: Shop_) -> None:
    today = date(2026, 6, 1)
    shop.contact(email="anna@example.se", birthday=date(1990, 6, 2))
    shop.contact(email="bo@example.se", orders_count=2, last_order_at=local(date(2026, 3, 3), 9))
    with flows(BIRTHDAY, LAPSED):
        assert shop.scan(local(today, 1)) == {"BirthdayCame": 1, "CustomerLapsed": 1}
        assert shop.scan(local(today, 15)) == {"BirthdayCame": 0, "CustomerLapsed": 0}
    assert len(shop.facts(ev.BirthdayCame)) == len(shop.facts(ev.CustomerLapsed)) == 1


def test_three_days_down_are_caught_up_once_and_a_late_birthday_is_let_go(shop: Shop_) -> None:
    today = date(2026, 6, 10)
    lapsed = {
        shop.contact(
            email=f"l{n}@example.se",
            orders_count=1,
            last_order_at=local(today - timedelta(days=90 + n), 12),
        ): n
        for n in range(5)  # lapsing today, on each of the 3 missed days, and the day before
    }
    born = {
        shop.contact(email=f"b{n}@example.se", birthday=date(1980, 6, 11) - timedelta(days=n)): n
        for n in range(4)  # tomorrow, today, yesterday, the day before
    }
    with flows(BIRTHDAY, LAPSED):
        shop.scan(local(today - timedelta(days=4), 1))  # the last scan before the outage
        before = {k: len(shop.facts(k)) for k in (ev.BirthdayCame, ev.CustomerLapsed)}
        emitted = shop.scan(local(today, 3))  # 7, 8 and 9 June were missed
        again = shop.scan(local(today, 4))
    assert before == {ev.BirthdayCame: 0, ev.CustomerLapsed: 1}  # its own day's lapse
    assert emitted == {"BirthdayCame": 3, "CustomerLapsed": 4}
    assert again == {"BirthdayCame": 0, "CustomerLapsed": 0}
    lapses = [lapsed[f["contact_id"]] for f in shop.facts(ev.CustomerLapsed)]
    assert sorted(lapses) == [0, 1, 2, 3, 4]  # each once
    birthdays = {born[f["contact_id"]]: f["on"] for f in shop.facts(ev.BirthdayCame)}
    # the birthday two days ago is too late to greet; yesterday's still gets its day
    assert birthdays == {0: "2026-06-11", 1: "2026-06-10", 2: "2026-06-09"}


def test_a_scan_that_crashed_midway_goes_on_after_the_last_batch_it_committed(
    shop: Shop_, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = date(2026, 6, 1)
    ids = [shop.contact(email=f"c{n}@example.se", birthday=date(1985, 6, 2)) for n in range(7)]
    monkeypatch.setattr(scans, "BATCH", 2)
    real_apply = apply.apply
    calls = {"n": 0}

    def crashing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 5:  # in the third batch
            raise RuntimeError("the worker died")
        return real_apply(*args, **kwargs)

    with flows(BIRTHDAY):
        monkeypatch.setattr(apply, "apply", crashing)
        with pytest.raises(RuntimeError):
            shop.scan(local(today, 1))
        assert len(shop.facts(ev.BirthdayCame)) == 4  # two batches committed
        monkeypatch.setattr(apply, "apply", real_apply)
        assert shop.scan(local(today, 2)) == {"BirthdayCame": 3}
    assert sorted(f["contact_id"] for f in shop.facts(ev.BirthdayCame)) == ids


# --- the sweeper: one job per shop and day ---------------------------------------------------


def test_the_sweeper_enqueues_each_active_shops_scan_once_a_day(
    runtime: Runtime, shop: Shop_
) -> None:
    shop.contact(email="anna@example.se", birthday=date(1990, 1, 1))
    with runtime.sessions.begin() as session:
        gone = Shop(
            platform="shopify",
            key="gone.myshopify.com",
            name="Gone",
            base_url="https://gone.myshopify.com",
            status=ShopStatus.UNINSTALLED,
        )
        session.add(gone)
    with flows(BIRTHDAY):
        assert sweeper.sweep_scans(runtime) == 1  # the active shop only
        assert sweeper.sweep_scans(runtime) == 0  # its job waits: the same job
        run_worker(runtime)
        assert sweeper.sweep_scans(runtime) == 0  # scanned today
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        assert sweeper.sweep_scans(runtime, tomorrow) == 1
        assert sweeper.sweep_scans(runtime, tomorrow) == 0
    with runtime.sessions() as session:
        day = session.scalar(
            select(ScanState).where(ScanState.shop_id == shop.shop_id, ScanState.fact == SCAN_DAY)
        )
        assert day is not None
        assert day.through == scans.local_day(datetime.now(UTC), scans.shop_zone(STOCKHOLM))


# --- cost follows the matches ------------------------------------------------------------------


def _crowd(runtime: Runtime, shop_id: int, n: int, offset: int) -> None:
    """``n`` contacts none of today's lookups finds (other birthdays, recent orders)."""
    recent = datetime(2026, 5, 20, 12, tzinfo=UTC)
    rows = [
        {
            "shop_id": shop_id,
            "email": f"crowd{offset + i}@example.se",
            "birthday": date(1980, 1 + i % 5, 1 + i % 28),
            "birthday_md": (1 + i % 5) * 100 + 1 + i % 28,
            "orders_count": 1 + i % 3,
            "first_order_at": recent - timedelta(days=i % 300),
            "last_order_at": recent + timedelta(hours=i % 200),
            "consent_state": "subscribed",
            "consent_at": recent,
            "total_spent": Decimal(0),
        }
        for i in range(n)
    ]
    with runtime.engine.begin() as connection:
        connection.execute(
            insert(Contact).values(created_at=T0, updated_at=T0),
            rows,
        )


@contextmanager
def counting(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the engine sends while the block runs, with its parameters."""
    statements: list[tuple[str, Any]] = []

    def count(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        statements.append((statement, params))

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _matches(shop: Shop_, today: date) -> None:
    for n in range(3):
        shop.contact(email=f"bday{n}@example.se", birthday=date(1990, 6, 2))
        shop.contact(
            email=f"lapsed{n}@example.se",
            orders_count=2,
            last_order_at=local(today - timedelta(days=90), 12),
            first_order_at=local(date(2025, 1, 1), 12),
        )
        shop.contact(
            email=f"quiet{n}@example.se",
            consent_state="subscribed",
            consent_at=local(today - timedelta(days=30), 12),
        )


def test_a_scans_statements_do_not_grow_with_the_contacts_it_does_not_find(
    runtime: Runtime,
) -> None:
    today = date(2026, 6, 1)
    counts = []
    shop = Shop_(runtime)
    for crowd in (1_000, 10_000):
        with runtime.sessions.begin() as session:
            session.execute(text("DELETE FROM contacts"))
            session.execute(text("DELETE FROM scan_states"))
            session.execute(text("DELETE FROM events"))
        _crowd(runtime, shop.shop_id, crowd, offset=0)
        _matches(shop, today)
        with flows(BIRTHDAY, ANNIVERSARY, LAPSED, QUIET), counting(runtime.engine) as statements:
            emitted = shop.scan(local(today, 1))
        assert emitted == {
            "BirthdayCame": 3,
            "OrderAnniversaryCame": 0,
            "CustomerLapsed": 3,
            "SubscriberWentQuiet": 3,
        }
        counts.append(len(statements))
        with runtime.sessions.begin() as session:
            session.execute(text("DELETE FROM messages"))
            session.execute(text("DELETE FROM enrollments"))
            session.execute(text("DELETE FROM decisions"))
            session.execute(text("DELETE FROM non_enrolments"))
    assert counts[0] == counts[1]


def plan(engine: Engine, statement: Any, values: dict[str, Any]) -> str:
    """The database's plan for the statement as the scan runs it (PostgreSQL told to
    avoid a sequential scan where it can: a test table is too small to need an index)."""
    with counting(engine) as ran, engine.connect() as connection:
        connection.execute(statement, values).all()
    sql, params = ran[-1]
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
            return "\n".join(str(row[-1]) for row in rows)
        connection.exec_driver_sql("SET enable_seqscan = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {sql}", params).all()
        return "\n".join(row[0] for row in rows)


def test_every_lookup_reads_its_index(runtime: Runtime, shop: Shop_) -> None:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    _crowd(runtime, shop.shop_id, 5_000, offset=0)
    with runtime.engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE contacts")  # planners that know the table
    page = {"shop_id": shop.shop_id, "after_id": 0, "limit": 201}
    plans = {
        "ix_contacts_shop_id_birthday_md": plan(
            runtime.engine, scans.BIRTHDAYS, {**page, "month_days": [602, 603]}
        ),
        "ix_contacts_shop_id_last_order_at": plan(
            runtime.engine, scans.LAPSED, {**page, "since": at, "until": at, "min_orders": 1}
        ),
        # quiet subscribers never ordered: where few contacts never did (as here), the
        # planner may rather read them by their number of orders (segments' index)
        "ix_contacts_shop_id_consent_state_consent_at|ix_contacts_shop_id_orders_count": plan(
            runtime.engine, scans.QUIET, {**page, "since": at, "until": at}
        ),
        "ix_contacts_shop_id_first_order_at": plan(
            runtime.engine,
            scans._anniversaries(2),
            {**page, "since_0": at, "until_0": at, "since_1": at, "until_1": at},
        ),
    }
    for indexes, found in plans.items():
        assert any(index in found for index in indexes.split("|")), found
        assert "SCAN contacts\n" not in f"{found}\n", found
        assert "Seq Scan" not in found, found


def test_the_migration_gives_birthdays_already_held_their_month_and_day(database_url: str) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "0009")
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO shops (id, platform, key, name, status, base_url, settings,"
                    " installed_at, created_at, updated_at) VALUES (1, 'shopify',"
                    " 'm.myshopify.com', 'M', 'active', 'https://m', '{}', :t, :t, :t)"
                ),
                {"t": T0.replace(tzinfo=None)},
            )
            for email, birthday in (("a@x.se", "2000-02-29"), ("b@x.se", "1904-12-31")):
                connection.execute(
                    text(
                        "INSERT INTO contacts (shop_id, email, birthday, orders_count,"
                        " total_spent, created_at, updated_at) VALUES (1, :e, :b, 0, 0, :t, :t)"
                    ),
                    {"e": email, "b": date.fromisoformat(birthday), "t": T0.replace(tzinfo=None)},
                )
        migrate(database_url)
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT email, birthday_md FROM contacts ORDER BY email")
            ).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [("a@x.se", 229), ("b@x.se", 1231)]


# --- the date keys stay true, and a year of a shop's life -----------------------------------


def test_every_way_a_birthday_arrives_or_goes_keeps_its_month_and_day(
    runtime: Runtime, shop: Shop_
) -> None:
    anna = ev.Customer(
        customer_id="c1", email="anna@example.se", birthday=date(1990, 12, 24), updated_at=T0
    )
    shop.at(T0, ev.CustomerCreated(occurred_at=T0, customer=anna))
    csv = b"email,birthday\nbo@example.se,--02-29\nanna@example.se,1990-07-04\n"
    with runtime.sessions() as session:
        stored = session.get_one(Shop, shop.shop_id)
    contacts_import.run(runtime.sessions, stored, lambda: io.BytesIO(csv), dry_run=False, at=T0)
    with runtime.sessions() as session:
        rows = session.execute(
            select(Contact.email, Contact.birthday, Contact.birthday_md).order_by(Contact.email)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("anna@example.se", date(1990, 7, 4), 704),
        ("bo@example.se", date(1904, 2, 29), 229),
    ]
    redact = ev.CustomerRedactRequested(
        occurred_at=T0 + timedelta(hours=1), customer_id="c1", email="anna@example.se"
    )
    shop.at(T0 + timedelta(hours=1), redact)
    with runtime.sessions() as session:
        erased = session.execute(
            select(Contact.birthday, Contact.birthday_md).where(Contact.customer_id.is_(None))
        ).all()
    assert (None, None) in [tuple(r) for r in erased]


def test_a_year_of_a_shops_life_greets_birthdays_and_wins_back_from_its_data_alone() -> None:
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)

    def created(n: int, birthday: str) -> dict[str, Any]:
        who = customer(f"p{n}@example.se", customer_id=f"c{n}", at=start)
        who = ev.Customer(**{**who.__dict__, "birthday": date.fromisoformat(birthday)})
        return {"at": start.isoformat(), "event": ev.to_dict(ev.CustomerCreated(start, who))}

    def ordered(n: int, at: datetime) -> dict[str, Any]:
        who = customer(f"p{n}@example.se", customer_id=f"c{n}", at=start)
        return {"at": at.isoformat(), "event": ev.to_dict(order(f"{n}-{at:%j}", at, who, None))}

    scenario = Scenario.from_dict(
        {
            "shop": {"timezone": STOCKHOLM, "settings": {"flows": ONLY_MADE_UP}},
            "start": start.isoformat(),
            "until": datetime(2027, 1, 5, tzinfo=UTC).isoformat(),
            "events": [
                created(1, "1988-04-17"),
                created(2, "1904-10-02"),
                created(3, "1976-02-29"),  # 2026 has none: the 28th
                ordered(1, datetime(2026, 2, 1, 12, tzinfo=UTC)),
                ordered(2, datetime(2026, 3, 1, 12, tzinfo=UTC)),
                ordered(2, datetime(2026, 9, 1, 12, tzinfo=UTC)),  # won back
            ],
        }
    )
    with flows(BIRTHDAY, LAPSED):
        result = simulate(scenario)
    sent = sorted((c.email_to, c.subject) for c in result.sent)
    assert sent == [
        ("p1@example.se", "test_scan_birthday/greeting"),
        ("p1@example.se", "test_scan_win_back/come_back"),  # 90 days after 1 February
        ("p2@example.se", "test_scan_birthday/greeting"),
        ("p2@example.se", "test_scan_win_back/come_back"),  # 90 days after 1 March
        ("p2@example.se", "test_scan_win_back/come_back"),  # and after 1 September
        ("p3@example.se", "test_scan_birthday/greeting"),
    ]
    greeted = sorted(
        (row["at"], row["contact"])
        for row in result.timeline
        if row["outcome"] == "sent" and row["flow"] == "test_scan_birthday"
    )
    assert [at[:10] for at, _ in greeted] == ["2026-02-28", "2026-04-17", "2026-10-02"]
    won_back = sorted(
        row["at"][:10]
        for row in result.timeline
        if row["outcome"] == "sent" and row["flow"] == "test_scan_win_back"
    )
    assert won_back == ["2026-05-02", "2026-05-30", "2026-11-30"]


def test_a_quiet_subscriber_is_told_with_their_last_click(shop: Shop_) -> None:
    cleo = customer("cleo@example.se", customer_id="c3")
    shop.settings(flows={})  # the welcome series on: an email to click in
    with flows(QUIET):
        shop.at(T0, ev.CustomerCreated(occurred_at=T0, customer=cleo))
        shop.run(T0 + timedelta(days=2))
        (first, *_) = shop.messages()
        clicked = T0 + timedelta(days=1, hours=3)
        with shop.runtime.sessions.begin() as session:
            session.add(
                Engagement(
                    shop_id=shop.shop_id,
                    message_id=first.id,
                    contact_id=first.contact_id,
                    kind="click",
                    at=clicked,
                )
            )
        shop.run(local(date(2026, 4, 2)))
    (fact,) = shop.facts(ev.SubscriberWentQuiet)
    assert fact["last_engaged_at"] == clicked.isoformat()
