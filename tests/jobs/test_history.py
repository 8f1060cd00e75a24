"""The history import: a shop's past customers and orders, known once, starting no email."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from sqlalchemy import func, select

from adapters import events as ev
from adapters.platform import translate
from adapters.registry import PLATFORMS
from jobs import shop_settings
from jobs.intake import apply, history
from jobs.intake.deliveries import shop_context
from jobs.merchant.shops import add_shop
from jobs.platforms import registry, woocommerce
from jobs.platforms.server import HistoryPage
from jobs.runtime import Runtime
from jobs.store import queries
from jobs.store.models import (
    Contact,
    Enrollment,
    HistoryImport,
    HistoryStatus,
    Message,
    NonEnrolment,
    Order,
    ProductSale,
    Shop,
    StoredEvent,
)
from tests.support import FIXTURES, count

STORE = "https://ullboden.se"
API = f"{STORE}/wp-json/wc/v3"
ORDER = json.loads(
    (FIXTURES / "woocommerce" / "order_updated__completed_emoji_name.json").read_bytes()
)
CUSTOMER = json.loads(
    (FIXTURES / "woocommerce" / "customer_updated__birthday_meta.json").read_bytes()
)
PENDING = json.loads((FIXTURES / "woocommerce" / "order_created__pending_guest.json").read_bytes())
NOW = datetime.now(UTC).replace(microsecond=0)
#: the products the order holds: each counts one order sold once the order is paid
PRODUCTS = len({item["product_id"] for item in ORDER["line_items"]})


def gmt(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def customer(n: int) -> dict[str, Any]:
    item = copy.deepcopy(CUSTOMER)
    item.update(id=n, email=f"kund{n}@example.se", username=f"kund{n}")
    item["billing"]["email"] = f"kund{n}@example.se"
    item["meta_data"] = [
        {"id": 1, "key": "billing_birth_date", "value": f"1980-03-{n % 28 + 1:02d}"}
    ]
    return item


def order(
    n: int,
    customer_id: int,
    placed: datetime,
    *,
    total: str = "248.20",
    status: str = "completed",
    modified: datetime | None = None,
) -> dict[str, Any]:
    item = copy.deepcopy(ORDER)
    changed = modified or placed + timedelta(hours=1)
    item.update(
        id=n,
        number=str(n),
        status=status,
        total=total,
        customer_id=customer_id,
        date_created_gmt=gmt(placed),
        date_modified_gmt=gmt(changed),
        date_paid_gmt=gmt(placed + timedelta(minutes=1)),
        date_completed_gmt=gmt(changed) if status == "completed" else None,
    )
    item["billing"]["email"] = f"kund{customer_id}@example.se"
    return item


class FakeStore:
    """A WooCommerce store's REST lists, paged as WooCommerce pages them."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.customers: list[dict[str, Any]] = []
        self.orders: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        #: (resource, page) answered 401 once: a store refusing in the middle
        self.fail_at: tuple[str, int] | None = None
        #: a store that says fewer pages than it has
        self.pages_said: int | None = None
        mock.add_callback(responses.GET, f"{API}/customers", callback=self.customers_page)
        mock.add_callback(responses.GET, f"{API}/orders", callback=self.orders_page)

    def customers_page(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        return self.answer("customers", self.customers, request)

    def orders_page(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        return self.answer("orders", self.orders, request)

    def answer(
        self, resource: str, items: list[dict[str, Any]], request: requests.PreparedRequest
    ) -> tuple[int, dict[str, str], str]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        self.requests.append((resource, query))
        page, per_page = int(query.get("page", "1")), int(query.get("per_page", "10"))
        if self.fail_at == (resource, page):
            self.fail_at = None
            return 401, {}, json.dumps({"code": "woocommerce_rest_cannot_view"})
        chunk = items[(page - 1) * per_page : page * per_page]
        pages = -(-len(items) // per_page)
        headers = {"X-WP-Total": str(len(items)), "X-WP-TotalPages": str(self.pages_said or pages)}
        return 200, headers, json.dumps(chunk)

    def pages_read(self, resource: str) -> list[int]:
        return [int(q["page"]) for r, q in self.requests if r == resource and q["per_page"] != "1"]


@pytest.fixture
def store() -> Iterator[FakeStore]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeStore(mock)


@pytest.fixture
def shop_id(runtime: Runtime) -> int:
    with runtime.sessions.begin() as session:
        shop = add_shop(
            session,
            runtime.secrets,
            "woocommerce",
            STORE,
            webhook_secret="a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6",
            consumer_key="ck_test_key",
            consumer_secret="cs_test_secret",
            currency="SEK",
        )
        shop_settings.update(session, shop, {"birthday": {"meta_key": "billing_birth_date"}})
        return shop.id


def run(runtime: Runtime, shop_id: int, **kwargs: Any) -> history.HistoryState:
    return history.run(runtime, shop_id, registry.history_source, **kwargs)


def a_shop_of(store: FakeStore, customers: int, orders: int) -> None:
    """``orders`` orders spread over ``customers`` customers, a day apart, the newest today."""
    store.customers = [customer(c) for c in range(1, customers + 1)]
    store.orders = [
        order(1000 + n, n % customers + 1, NOW - timedelta(days=orders - n)) for n in range(orders)
    ]


def no_email_planned(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        assert count(session, Enrollment) == 0
        assert count(session, Message) == 0
        assert count(session, NonEnrolment) == 0


def test_a_full_import_knows_every_customer_and_order_and_starts_no_flow(
    runtime: Runtime, store: FakeStore, shop_id: int
) -> None:
    a_shop_of(store, customers=3, orders=250)
    done = run(runtime, shop_id)

    assert (done.status, done.customers, done.orders, done.skipped) == ("done", 3, 250, 0)
    assert (done.read, done.total) == (253, 253)
    with runtime.sessions() as session:
        contacts = {c.customer_id: c for c in session.scalars(select(Contact))}
        assert len(contacts) == 3
        first = contacts["1"]
        theirs = [o for o in store.orders if o["customer_id"] == 1]
        assert first.orders_count == len(theirs) == 84
        assert first.total_spent == Decimal("248.20") * 84
        placed = sorted(datetime.fromisoformat(o["date_created_gmt"] + "+00:00") for o in theirs)
        assert (first.first_order_at, first.last_order_at) == (placed[0], placed[-1])
        # read with the shop's birthday rule, as its webhooks are
        assert first.birthday is not None
        assert first.birthday.month == 3
        # paid orders count for loyalty milestones
        paid = session.scalar(
            queries.CONTACT_PAID_ORDERS, {"shop_id": shop_id, "contact_id": first.id}
        )
        assert paid == 84
        assert count(session, Order) == 250
        # logged as the shop's past
        assert count(session, StoredEvent, StoredEvent.type == "OrderPaid") == 250
        assert session.scalar(select(func.sum(ProductSale.orders))) is not None
    no_email_planned(runtime)
    # customers first, then the orders of the last two years in id order
    orders = [q for r, q in store.requests if r == "orders" and q["per_page"] == "100"]
    assert (orders[0]["orderby"], orders[0]["order"]) == ("id", "asc")
    assert orders[0]["after"] == gmt(done.since)
    assert abs(datetime.now(UTC) - done.since - timedelta(days=730)) < timedelta(minutes=5)
    assert store.pages_read("orders") == [1, 2, 3]


def test_an_import_cut_short_continues_at_its_cursor_and_counts_each_order_once(
    runtime: Runtime, store: FakeStore, shop_id: int
) -> None:
    a_shop_of(store, customers=2, orders=450)
    store.fail_at = ("orders", 3)
    with pytest.raises(Exception, match="401"):
        run(runtime, shop_id)
    with runtime.sessions() as session:
        cut = history.state(session, shop_id)
        assert cut is not None
        assert (cut.status, cut.orders) == (HistoryStatus.FAILED, 200)
        assert "401" in (cut.last_error or "")
        assert count(session, Order) == 200
    assert "paused after 202 of 452" in (history.progress_line(cut) or "")

    done = run(runtime, shop_id)
    assert store.pages_read("orders") == [1, 2, 3, 3, 4, 5]
    assert store.pages_read("customers") == [1]
    assert (done.status, done.customers, done.orders, done.read) == ("done", 2, 450, 452)
    with runtime.sessions() as session:
        assert count(session, Order) == 450
        assert sum(c.orders_count for c in session.scalars(select(Contact))) == 450
        assert count(session, StoredEvent, StoredEvent.type == "OrderPlaced") == 450
    no_email_planned(runtime)


def test_a_made_up_source_resumes_after_a_crash_mid_way(runtime: Runtime, shop_id: int) -> None:
    """The core with any platform's source: a page is applied with its cursor, or not at all."""
    calls: list[str | None] = []
    crash = {"after": 2}

    def source(
        runtime: Runtime, shop: Shop, since: datetime, cursor: str | None
    ) -> Iterator[HistoryPage]:
        calls.append(cursor)
        start = int(cursor or 0)
        for page in range(start, 4):
            if page == crash["after"]:
                crash["after"] = -1
                raise ConnectionError("the platform went away")
            events = [
                ev.OrderPaid(
                    NOW - timedelta(days=page),
                    made_up_order(f"{page}-{n}", NOW - timedelta(days=page)),
                )
                for n in range(5)
            ]
            cursor_after = str(page + 1) if page < 3 else None
            yield HistoryPage(events, cursor_after, read=(page + 1) * 5, total=20)

    with pytest.raises(ConnectionError):
        history.run(runtime, shop_id, lambda platform: source)
    with runtime.sessions() as session:
        assert count(session, Order) == 10
    done = history.run(runtime, shop_id, lambda platform: source)
    assert calls == [None, "2"]
    assert (done.orders, done.read, done.total, done.status) == (20, 20, 20, "done")
    with runtime.sessions() as session:
        only = session.scalars(select(Contact)).one()
        assert only.orders_count == 20
    no_email_planned(runtime)


def made_up_order(order_id: str, at: datetime) -> ev.Order:
    return ev.Order(
        order_id=order_id,
        name="#" + order_id,
        customer=ev.Customer(customer_id="77", email="stamkund@example.se"),
        email="stamkund@example.se",
        total=ev.Money(Decimal("100.00"), "SEK"),
        line_items=(),
        placed_at=at,
        updated_at=at,
    )


def webhook(runtime: Runtime, shop_id: int, payload: dict[str, Any]) -> None:
    """What a drain does with an order.updated delivery."""
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, shop_id)
        context = shop_context(session, shop, NOW)
        for event in translate(PLATFORMS["woocommerce"], "order.updated", payload, context):
            apply.apply(session, shop, event, delivery_id=None)


def counted(runtime: Runtime) -> tuple[int, Decimal, int, str, Decimal]:
    with runtime.sessions() as session:
        contact = session.scalars(select(Contact)).one()
        row = session.scalars(select(Order)).one()
        sales = session.scalar(select(func.sum(ProductSale.orders))) or 0
        return contact.orders_count, contact.total_spent, sales, row.status, row.total


def test_a_webhook_then_the_same_order_from_history_counts_once_and_the_newer_wins(
    runtime: Runtime, store: FakeStore, shop_id: int
) -> None:
    placed = NOW - timedelta(days=3)
    newer = order(
        7, 1, placed, total="300.00", status="refunded", modified=NOW - timedelta(hours=1)
    )
    older = order(
        7, 1, placed, total="248.20", status="completed", modified=placed + timedelta(hours=2)
    )
    paid = order(
        7, 1, placed, total="300.00", status="processing", modified=NOW - timedelta(hours=2)
    )
    webhook(runtime, shop_id, paid)
    before = counted(runtime)
    assert before[:3] == (1, Decimal("300.00"), PRODUCTS)
    store.orders = [older]
    run(runtime, shop_id)
    # the older version from history changes nothing: counted once, the webhook's total
    assert counted(runtime) == before
    webhook(runtime, shop_id, newer)
    assert counted(runtime)[:4] == (0, Decimal(0), 0, "refunded")


def test_history_then_the_webhook_for_the_same_order_counts_once_and_the_newer_wins(
    runtime: Runtime, store: FakeStore, shop_id: int
) -> None:
    placed = NOW - timedelta(days=3)
    store.orders = [order(7, 1, placed, total="248.20", modified=placed + timedelta(hours=2))]
    run(runtime, shop_id)
    assert counted(runtime) == (1, Decimal("248.20"), PRODUCTS, "paid", Decimal("248.20"))
    webhook(runtime, shop_id, order(7, 1, placed, total="260.00", modified=NOW))
    assert counted(runtime) == (1, Decimal("260.00"), PRODUCTS, "paid", Decimal("260.00"))
    # and the store's history answered again (an import run anew) changes nothing
    run(runtime, shop_id, again=True)
    assert counted(runtime) == (1, Decimal("260.00"), PRODUCTS, "paid", Decimal("260.00"))
    with runtime.sessions() as session:
        assert session.scalar(select(HistoryImport.orders)) == 1


def test_paging_stops_at_the_pages_the_store_says_it_has(
    runtime: Runtime, store: FakeStore, shop_id: int
) -> None:
    a_shop_of(store, customers=1, orders=300)
    store.pages_said = 2
    done = run(runtime, shop_id)
    assert store.pages_read("orders") == [1, 2]
    assert done.orders == 200


def test_a_malformed_item_is_logged_and_skipped_never_failing_the_import(
    runtime: Runtime, store: FakeStore, shop_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    a_shop_of(store, customers=2, orders=5)
    no_date = order(2000, 1, NOW)
    del no_date["date_created_gmt"]
    too_long = order(2001, 1, NOW)
    too_long["customer_id"] = 9 * 10**70  # no platform's id is this long
    store.orders += [no_date, too_long, order(2002, 2, NOW)]
    store.customers.append("not a customer")  # type: ignore[arg-type]
    done = run(runtime, shop_id)
    assert (done.status, done.orders, done.customers, done.skipped) == ("done", 6, 2, 3)
    assert "skipped" in caplog.text
    with runtime.sessions() as session:
        assert count(session, Order) == 6


def test_unpaid_orders_are_no_part_of_the_imported_past(
    runtime: Runtime, store: FakeStore, shop_id: int
) -> None:
    pending = copy.deepcopy(PENDING)
    pending["date_created_gmt"] = gmt(NOW - timedelta(days=1))
    store.orders = [pending, order(3000, 1, NOW - timedelta(days=2))]
    done = run(runtime, shop_id)
    assert done.orders == 1
    with runtime.sessions() as session:
        assert count(session, Order) == 1
    no_email_planned(runtime)


def test_a_finished_import_is_not_enqueued_again_and_one_runs_at_a_time(
    runtime: Runtime, store: FakeStore, shop_id: int
) -> None:
    assert history.enqueue(runtime, shop_id)
    assert not history.enqueue(runtime, shop_id)  # its job is waiting
    assert runtime.queue("default").job_ids == [f"history-{shop_id}"]
    runtime.queue("default").empty()
    run(runtime, shop_id)
    assert not history.enqueue(runtime, shop_id)
    assert history.enqueue(runtime, shop_id, again=True)
    runtime.redis.set(f"triggerpost:history:{shop_id}", "someone else")
    with pytest.raises(history.HistoryBusyError):
        run(runtime, shop_id, again=True)


def test_the_merchant_reads_how_far_the_import_is() -> None:
    at = datetime(2026, 12, 6, tzinfo=UTC)
    state = history.HistoryState(
        shop_id=1,
        status=HistoryStatus.RUNNING,
        since=at - timedelta(days=730),
        customers=3000,
        orders=38200,
        read=41200,
        total=100000,
        skipped=0,
        started_at=at,
        updated_at=at,
        finished_at=None,
        last_error=None,
        resumable=True,
    )
    assert history.progress_line(None) is None
    assert (
        history.progress_line(state)
        == "Importing your history: 41,200 of 100,000 customers and orders (41 %)"
    )
    done = history.HistoryState(
        **{
            **state.__dict__,
            "status": HistoryStatus.DONE,
            "customers": 3120,
            "orders": 12400,
            "finished_at": at,
        }
    )
    assert (
        history.progress_line(done)
        == "History imported: 3,120 customers, 12,400 orders from the last 2 years"
    )


def test_woocommerce_declares_its_history_source() -> None:
    assert registry.history_source("woocommerce") is woocommerce.history
    assert re.fullmatch(r"history-\d+", history.job_id(5))


@pytest.mark.parametrize("cursor", ["not json", "[1]", '{"resource": "coupons"}', '{"page": "x"}'])
def test_a_cursor_that_cannot_be_read_is_a_clear_error(cursor: str) -> None:
    with pytest.raises(woocommerce.AdminApiError, match=r"history cursor .* unreadable"):
        woocommerce.HistoryCursor.parse(cursor)


def test_the_sweeper_resumes_an_import_whose_run_was_killed_and_retries_a_failed_one_later(
    runtime: Runtime, shop_id: int
) -> None:
    """A run killed with its job (no RQ retry comes) is picked up once its lease expired;
    one that failed after all its retries, hours later; a running one is left alone."""
    pages: list[str | None] = []

    def source(
        runtime: Runtime, shop: Shop, since: datetime, cursor: str | None
    ) -> Iterator[HistoryPage]:
        pages.append(cursor)
        order = made_up_order("1", NOW)
        yield HistoryPage([ev.OrderPaid(NOW, order)], "1", read=1, total=2)
        raise SystemExit("the worker is killed")  # not an Exception: no failure recorded

    with pytest.raises(SystemExit):
        history.run(runtime, shop_id, lambda platform: source)
    queue = runtime.queue("default")
    with runtime.sessions() as session:
        found = history.state(session, shop_id)
        assert found is not None
        assert (found.status, found.read) == ("running", 1)
        stalled_at = found.updated_at
    # the lease of the killed run is gone (released or expired); within the lease's
    # time nothing is resumed, after it the import is enqueued once
    assert history.resume_stalled(runtime, stalled_at + timedelta(seconds=60)) == 0
    later = stalled_at + timedelta(seconds=history.LEASE_SECONDS + 1)
    assert history.resume_stalled(runtime, later) == 1
    assert queue.job_ids == [f"history-{shop_id}"]
    assert history.resume_stalled(runtime, later) == 0  # its job is waiting
    queue.empty()
    # a run under way (its lease held) is never doubled
    runtime.redis.set(f"triggerpost:history:{shop_id}", "a live run")
    assert history.resume_stalled(runtime, later) == 0
    runtime.redis.delete(f"triggerpost:history:{shop_id}")
    # failed after its retries: tried again only RESUME_FAILED_AFTER after the last try
    with runtime.sessions.begin() as session:
        row = session.scalars(select(HistoryImport).where(HistoryImport.shop_id == shop_id)).one()
        row.status = HistoryStatus.FAILED
    assert history.resume_stalled(runtime, later) == 0
    assert history.resume_stalled(runtime, stalled_at + history.RESUME_FAILED_AFTER * 2) == 1
    assert queue.job_ids == [f"history-{shop_id}"]
