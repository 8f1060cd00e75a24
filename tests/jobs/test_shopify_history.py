"""Shopify's history source: a shop's past customers and orders read with bulk
operations, streamed from the JSONL file in pages that a restart resumes. The Admin
API and the bulk file are faked with ``responses`` in the documented shapes."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from flask.testing import FlaskClient
from sqlalchemy import select

from adapters import events as ev
from adapters.platform import AdminApiError, ShopContext
from jobs.platforms import shopify_history
from jobs.platforms.server import HistoryPage
from jobs.platforms.shopify import admin_client, history
from jobs.platforms.shopify_history import BulkReader, Cursor, history_pages
from jobs.runtime import Runtime
from jobs.store.models import Shop, now
from tests.support import FIXTURES, SHOPIFY_SHOP

ORDER = json.loads((FIXTURES / "shopify_graphql" / "order__paid.json").read_text())
CUSTOMER = json.loads((FIXTURES / "shopify_graphql" / "customer__birthday.json").read_text())
SINCE = datetime(2025, 1, 1, tzinfo=UTC)
FILES = "https://storage.googleapis.com/shopify-tiers-assets-prod-us-east1/bulk-operation-outputs"


def customer_line(n: int) -> dict[str, Any]:
    node = copy.deepcopy(CUSTOMER)
    node["id"] = f"gid://shopify/Customer/{n}"
    node["legacyResourceId"] = str(n)
    node["defaultEmailAddress"]["emailAddress"] = f"kund{n}@example.se"
    return node


def order_lines(n: int, customer: int, items: int) -> list[dict[str, Any]]:
    """An order as the bulk file writes it: the order, then each line item on its own line."""
    node = copy.deepcopy(ORDER)
    line_items = node.pop("lineItems")["nodes"]
    node["id"] = f"gid://shopify/Order/{n}"
    node["legacyResourceId"] = str(n)
    node["name"] = f"#{n}"
    node["customer"] = customer_line(customer)
    node["customer"].pop("birthday")
    children = [
        {
            **line_items[i % len(line_items)],
            "id": f"gid://shopify/LineItem/{n}{i}",
            "__parentId": node["id"],
        }
        for i in range(items)
    ]
    return [node, *children]


def jsonl(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o) + "\n" for o in objects)


class FakeBulk:
    """Bulk operations of one shop: a run, its polling, its file."""

    def __init__(self, mock: responses.RequestsMock, runtime: Runtime) -> None:
        self.mock = mock
        self.files: dict[str, str] = {
            "customers": jsonl([customer_line(1), customer_line(2), customer_line(3)]),
            "orders": jsonl([*order_lines(101, 1, 2), *order_lines(102, 3, 1)]),
        }
        self.operations: dict[str, dict[str, Any]] = {}
        self.runs: list[str] = []
        self.polls_running = 0  # answers RUNNING this many times before COMPLETED
        self.in_progress: dict[str, Any] | None = None  # another operation holding the shop
        self.downloads: list[str] = []
        self.expired: set[str] = set()
        endpoint = (
            f"https://{SHOPIFY_SHOP}/admin/api/{runtime.settings.shopify_api_version}/graphql.json"
        )
        mock.add_callback(responses.POST, endpoint, callback=self.answer)

    def answer(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body or b"{}")
        return 200, {}, json.dumps({"data": self.data(body["query"], body.get("variables") or {})})

    def url(self, gid: str, version: int) -> str:
        return f"{FILES}/{gid.rsplit('/', 1)[-1]}-{version}.jsonl?X-Goog-Signature=abc"

    def data(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        if "mutation Run" in query:
            if self.in_progress is not None:
                return {
                    "bulkOperationRunQuery": {
                        "bulkOperation": None,
                        "userErrors": [
                            {
                                "field": None,
                                "message": "A bulk query operation for this app and shop is "
                                "already in progress: gid://shopify/BulkOperation/9.",
                                "code": "OPERATION_IN_PROGRESS",
                            }
                        ],
                    }
                }
            resource = (
                "customers" if variables["query"].lstrip("{ ").startswith("customers") else "orders"
            )
            gid = f"gid://shopify/BulkOperation/{len(self.operations) + 1}"
            self.operations[gid] = {
                "id": gid,
                "status": "CREATED",
                "query": variables["query"],
                "resource": resource,
                "version": 0,
                "polls": 0,
            }
            self.runs.append(resource)
            return {
                "bulkOperationRunQuery": {
                    "bulkOperation": {"id": gid, "status": "CREATED"},
                    "userErrors": [],
                }
            }
        if "query Operation" in query:
            op = self.operations.get(variables["id"])
            return {"node": self.state(op) if op else None}
        if "query Current" in query:
            current = self.in_progress
            if current is not None:
                left = int(current.get("ends_after", 1))
                if left <= 1:
                    self.in_progress = None  # ends after this answer
                else:
                    current["ends_after"] = left - 1
            return {"currentBulkOperation": current}
        if "query Counts" in query:
            return {"customersCount": {"count": 3}, "ordersCount": {"count": 2}}
        raise AssertionError(query[:60])

    def state(self, op: dict[str, Any]) -> dict[str, Any]:
        op["polls"] += 1
        if op["polls"] <= self.polls_running:
            return {
                "id": op["id"],
                "status": "RUNNING",
                "errorCode": None,
                "objectCount": "0",
                "rootObjectCount": "0",
                "url": None,
                "partialDataUrl": None,
                "query": op["query"],
            }
        op["version"] += 1
        url = self.url(op["id"], op["version"])
        body = self.files[op["resource"]]
        if url in self.expired:
            self.mock.get(url, status=403, body="<Error><Code>ExpiredToken</Code></Error>")
        else:
            self.mock.get(url, body=body)
        return {
            "id": op["id"],
            "status": "COMPLETED",
            "errorCode": None,
            "objectCount": str(body.count("\n")),
            "rootObjectCount": str(body.count("\n")),
            "url": url,
            "partialDataUrl": None,
            "query": op["query"],
        }


@pytest.fixture
def shop(client: FlaskClient, runtime: Runtime) -> Shop:
    with runtime.sessions.begin() as session:
        found = session.scalars(select(Shop).where(Shop.key == SHOPIFY_SHOP)).one()
        found.access_token_enc = runtime.secrets.seal("shpat_history")
        found.installed_at = now() - timedelta(hours=2)
    with runtime.sessions() as session:
        found = session.scalars(select(Shop).where(Shop.key == SHOPIFY_SHOP)).one()
        session.expunge(found)
        return found


@pytest.fixture
def bulk(runtime: Runtime) -> Iterator[FakeBulk]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeBulk(mock, runtime)


def pages(
    runtime: Runtime, shop: Shop, cursor: str | None = None, page_items: int = 500, **reader: Any
) -> list[HistoryPage]:
    client = admin_client(runtime, shop)
    assert client is not None
    context = ShopContext(
        domain=shop.key, currency="SEK", received_at=datetime(2026, 9, 14, tzinfo=UTC)
    )
    found = BulkReader(client, runtime.api_session(), sleep=lambda s: None, **reader)
    return list(history_pages(found, context, SINCE, cursor, page_items))


def kinds(found: list[HistoryPage]) -> list[str]:
    return [type(e).__name__ for page in found for e in page.events]


def test_customers_come_before_their_orders_with_their_line_items(
    runtime: Runtime, shop: Shop, bulk: FakeBulk
) -> None:
    found = list(history(runtime, shop, SINCE, None))
    assert bulk.runs == ["customers", "orders"]
    names = kinds(found)
    assert names[:3] == ["CustomerCreated"] * 3
    assert names[3:] == ["OrderPlaced", "OrderPaid", "OrderPlaced", "OrderPaid"]
    orders = [e for page in found for e in page.events if isinstance(e, ev.OrderPlaced)]
    assert [o.order.order_id for o in orders] == ["101", "102"]
    assert [len(o.order.line_items) for o in orders] == [2, 1]
    assert orders[0].order.customer.customer_id == "1"  # type: ignore[union-attr]
    assert found[-1].cursor is None
    assert (found[-1].read, found[-1].total) == (5, 5)
    # the query asks for what changed since, with the shop's birthday metafield
    first = bulk.operations["gid://shopify/BulkOperation/1"]["query"]
    assert "updated_at:>='2025-01-01T00:00:00+00:00'" in first
    assert 'birthday: metafield(namespace: "facts", key: "birth_date")' in first


def test_a_restarted_import_resumes_mid_file_without_a_new_operation(
    runtime: Runtime, shop: Shop, bulk: FakeBulk
) -> None:
    found = pages(runtime, shop, page_items=1)
    # one item a page: 3 customers, then 2 orders
    assert [p.read for p in found] == [1, 2, 3, 4, 5]
    mid = found[3]  # after the first order
    at = Cursor.parse(mid.cursor)
    assert (at.phase, at.operation, at.line) == ("orders", "gid://shopify/BulkOperation/2", 3)
    runs = list(bulk.runs)
    rest = pages(runtime, shop, mid.cursor, page_items=1)
    assert bulk.runs == runs  # the operation was asked again, not run again
    assert kinds(rest) == ["OrderPlaced", "OrderPaid"]
    assert [o.order.order_id for p in rest for o in p.events if isinstance(o, ev.OrderPlaced)] == [
        "102"
    ]
    assert rest[-1].read == 5
    assert rest[-1].cursor is None


def test_a_cursor_after_the_customers_goes_straight_to_the_orders(
    runtime: Runtime, shop: Shop, bulk: FakeBulk
) -> None:
    rest = pages(runtime, shop, Cursor(shopify_history.Phase.ORDERS, None, 0, 3, 3).text())
    assert bulk.runs == ["orders"]
    assert rest[-1].read == 5


def test_an_expired_file_url_is_asked_for_again(
    runtime: Runtime, shop: Shop, bulk: FakeBulk
) -> None:
    bulk.expired.add(bulk.url("gid://shopify/BulkOperation/1", 1))
    found = pages(runtime, shop)
    assert kinds(found)[:3] == ["CustomerCreated"] * 3
    assert found[-1].cursor is None


def test_an_operation_that_is_gone_is_run_again_from_its_start(
    runtime: Runtime, shop: Shop, bulk: FakeBulk
) -> None:
    stale = Cursor(shopify_history.Phase.ORDERS, "gid://shopify/BulkOperation/77", 3, 4, 3).text()
    rest = pages(runtime, shop, stale)
    assert bulk.runs == ["orders"]
    assert [o.order.order_id for p in rest for o in p.events if isinstance(o, ev.OrderPlaced)] == [
        "101",
        "102",
    ]
    assert rest[-1].read == 5  # counted from the phase's start, not twice


def test_a_running_operation_is_waited_for(runtime: Runtime, shop: Shop, bulk: FakeBulk) -> None:
    bulk.polls_running = 3
    assert pages(runtime, shop)[-1].read == 5


def test_our_own_operation_already_in_progress_is_adopted(
    runtime: Runtime, shop: Shop, bulk: FakeBulk
) -> None:
    client = admin_client(runtime, shop)
    assert client is not None
    context = ShopContext(domain=shop.key, currency="SEK")
    ours = shopify_history.bulk_query(shopify_history.Phase.CUSTOMERS, SINCE, context)
    # a crashed import left its operation running
    bulk.operations["gid://shopify/BulkOperation/1"] = {
        "id": "gid://shopify/BulkOperation/1",
        "status": "RUNNING",
        "query": ours,
        "resource": "customers",
        "version": 0,
        "polls": 0,
    }
    bulk.in_progress = {
        "id": "gid://shopify/BulkOperation/1",
        "status": "RUNNING",
        "query": ours,
        "ends_after": 99,
    }
    reader = BulkReader(client, runtime.api_session(), sleep=lambda s: None)
    assert reader.start(ours) == "gid://shopify/BulkOperation/1"
    assert bulk.runs == []


def test_another_operation_in_progress_is_waited_out_then_ours_runs(
    runtime: Runtime, shop: Shop, bulk: FakeBulk
) -> None:
    bulk.in_progress = {
        "id": "gid://shopify/BulkOperation/9",
        "status": "RUNNING",
        "query": "{ products { edges { node { id } } } }",
        "ends_after": 2,
    }
    found = pages(runtime, shop)
    assert bulk.runs == ["customers", "orders"]
    assert found[-1].read == 5


def test_another_operation_that_never_ends_fails_the_import_for_now(
    runtime: Runtime, shop: Shop, bulk: FakeBulk
) -> None:
    bulk.in_progress = {
        "id": "gid://shopify/BulkOperation/9",
        "status": "RUNNING",
        "query": "{ products { edges { node { id } } } }",
        "ends_after": 10**6,
    }
    with pytest.raises(AdminApiError) as caught:
        pages(runtime, shop, other_wait=20.0)
    assert caught.value.transient


def test_a_malformed_line_is_skipped_and_logged_by_its_number(
    runtime: Runtime, shop: Shop, bulk: FakeBulk, caplog: pytest.LogCaptureFixture
) -> None:
    orders = bulk.files["orders"].splitlines(keepends=True)
    broken = {**order_lines(103, 2, 0)[0], "totalPriceSet": None}
    orphan = {"title": "Mössa", "__parentId": "gid://shopify/Order/999"}
    bulk.files["orders"] = "".join(
        [
            orders[0],
            '{"id": "gid://shopify/Order/5", "name": \n',
            *orders[1:],
            json.dumps(broken) + "\n",
            json.dumps(orphan) + "\n",
        ]
    )
    with caplog.at_level(logging.WARNING, logger="jobs.platforms.shopify_history"):
        found = pages(runtime, shop)
    ids = [o.order.order_id for p in found for o in p.events if isinstance(o, ev.OrderPlaced)]
    assert ids == ["101", "102"]
    placed = [o for p in found for o in p.events if isinstance(o, ev.OrderPlaced)]
    assert len(placed[0].order.line_items) == 2  # the broken line between did not cut its items
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "line 2 is not JSON" in logged
    assert "line 7: order left out: order.totalPriceSet is missing" in logged
    assert "line 8: a child of no open parent" in logged
    assert "astrid" not in logged.lower()
    assert "kund" not in logged


def test_a_cursor_this_source_did_not_write_is_refused() -> None:
    with pytest.raises(shopify_history.HistoryCursorError):
        Cursor.parse("page=3")
