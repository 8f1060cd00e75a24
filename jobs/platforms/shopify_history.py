"""Shopify's history source: a shop's past customers and orders, for the history import.

Read with GraphQL bulk operations (``bulkOperationRunQuery``): Shopify runs
the query in the background and writes a JSONL file, one object per line,
nested connections (an order's line items) as lines of their own carrying
``__parentId``, each after its parent (``groupObjects``). Two operations run
one after the other (a shop runs one bulk query at a time): customers, then
orders, so every order's customer is known before its order.

The file is streamed line by line, never held whole (a shop may have
100,000 orders): a parent and its children are grouped as they pass, translated
by the same node translation as the catch-up (:mod:`adapters.shopify.graphql`)
and handed out in pages of :data:`PAGE_ITEMS`. Each page's cursor says where
to resume after it: the phase, the operation and the line of the first item
not yet handed out, and how many items were read. A restarted import asks the
operation again (its URL may have expired: a fresh one is asked for; the
operation may be gone: a new one is started and the phase read from its
beginning, which applying events again tolerates). A line that is not JSON
or an item that cannot be translated is skipped and logged by its line number,
never by its content.

The pages are the history import's :class:`jobs.platforms.server.HistoryPage`;
:func:`jobs.platforms.shopify.history` is Shopify's history source, reading
through :func:`history_pages`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from adapters import events as ev
from adapters.http import ApiSession
from adapters.platform import AdminApiError, ShopContext, WebhookError
from adapters.shopify import graphql
from adapters.shopify.client import GraphQLError, ShopifyAdmin, version_at_least
from jobs.platforms.server import HistoryPage

log = logging.getLogger(__name__)

#: items (customers or orders, with their line items) per page handed out
PAGE_ITEMS = 500
#: seconds between questions about a running operation
POLL_SECONDS = 5.0
#: how long to wait for another bulk query of the app in the shop to end before
#: giving up for now (the import is retried, the cursor kept)
OTHER_OPERATION_WAIT = 30 * 60.0
#: statuses of an operation that will never give a file
GONE = frozenset({"CANCELED", "CANCELING", "EXPIRED"})
RUNNING = frozenset({"CREATED", "RUNNING"})
#: what a download of an expired (signed) URL answers
EXPIRED_URL = frozenset({400, 401, 403, 404, 410})


class Phase(StrEnum):
    CUSTOMERS = "customers"
    ORDERS = "orders"


PHASES = (Phase.CUSTOMERS, Phase.ORDERS)


class HistoryCursorError(ValueError):
    """A cursor this source did not write."""


@dataclass(frozen=True)
class Cursor:
    phase: Phase
    operation: str | None  # the bulk operation's GID; None: not started
    line: int  # the first line not yet handed out
    read: int  # items read in the whole import
    before: int  # items read before this phase began (a phase read again counts from here)

    def text(self) -> str:
        return f"v1|{self.phase}|{self.operation or ''}|{self.line}|{self.read}|{self.before}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if text is None:
            return cls(Phase.CUSTOMERS, None, 0, 0, 0)
        parts = text.split("|")
        try:
            version, phase, operation, line, read, before = parts
            if version != "v1":
                raise ValueError(version)
            return cls(Phase(phase), operation or None, int(line), int(read), int(before))
        except ValueError:
            raise HistoryCursorError(f"{text[:80]!r} is not a Shopify history cursor") from None


# --- the bulk operation ------------------------------------------------------------

RUN = """
mutation Run($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}"""

RUN_GROUPED = """
mutation Run($query: String!) {
  bulkOperationRunQuery(query: $query, groupObjects: true) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}"""

_OPERATION = "id status errorCode objectCount rootObjectCount url partialDataUrl query"

OPERATION = f"""
query Operation($id: ID!) {{
  node(id: $id) {{ ... on BulkOperation {{ {_OPERATION} }} }}
}}"""

CURRENT = f"""
query Current {{
  currentBulkOperation {{ {_OPERATION} }}
}}"""

COUNTS = """
query Counts($query: String!) {
  customersCount(query: $query) { count }
  ordersCount(query: $query, limit: null) { count }
}"""


def _search(since: datetime) -> str:
    return f"updated_at:>='{since.astimezone(UTC).isoformat()}'"


def bulk_query(phase: Phase, since: datetime, context: ShopContext) -> str:
    """The bulk query of one phase: everything updated (so also created) since ``since``."""
    fields = (
        graphql.customer_fields(context.birthday)
        if phase == Phase.CUSTOMERS
        else graphql.order_fields(bulk=True)
    )
    return f'{{ {phase}(query: "{_search(since)}") {{ edges {{ node {{ {fields} }} }} }} }}'


def _same_query(a: str | None, b: str) -> bool:
    return a is not None and " ".join(a.split()) == " ".join(b.split())


@dataclass
class BulkReader:
    """One shop's bulk operations: started, polled, downloaded (a restart picks them up)."""

    client: ShopifyAdmin
    http: ApiSession
    sleep: Callable[[float], None] = time.sleep
    poll_seconds: float = POLL_SECONDS
    other_wait: float = OTHER_OPERATION_WAIT

    def operation(self, gid: str) -> dict[str, Any] | None:
        node = self.client.graphql(OPERATION, {"id": gid}).get("node")
        return node if isinstance(node, dict) and node.get("id") else None

    def current(self) -> dict[str, Any] | None:
        node = self.client.graphql(CURRENT).get("currentBulkOperation")
        return node if isinstance(node, dict) and node.get("id") else None

    def start(self, query: str) -> str:
        """Start the operation; adopt one of ours already running the same query; wait
        for another bulk query of the app to end (a shop runs one at a time)."""
        waited = 0.0
        mutation = RUN_GROUPED if version_at_least(self.client.api_version, "2025-07") else RUN
        while True:
            data = self.client.graphql(mutation, {"query": query})["bulkOperationRunQuery"]
            errors = data.get("userErrors") or []
            made = data.get("bulkOperation")
            if not errors and isinstance(made, dict) and made.get("id"):
                return str(made["id"])
            if not any(e.get("code") == "OPERATION_IN_PROGRESS" for e in errors):
                raise GraphQLError(
                    "bulk query refused: " + "; ".join(str(e.get("message")) for e in errors),
                    transient=False,
                )
            running = self.current()
            if running is not None and _same_query(running.get("query"), query):
                log.info("%s: adopting bulk operation %s", self.client.shop, running["id"])
                return str(running["id"])
            if waited >= self.other_wait:
                raise AdminApiError(
                    "another bulk query of triggerpost is still running in the shop",
                    transient=True,
                )
            self.sleep(self.poll_seconds)
            waited += self.poll_seconds

    def finished(self, gid: str) -> dict[str, Any] | None:
        """Poll until the operation ends: its final state, or None when it is gone."""
        while True:
            node = self.operation(gid)
            if node is None or node.get("status") in GONE:
                return None
            status = node.get("status")
            if status == "COMPLETED":
                return node
            if status == "FAILED":
                code = node.get("errorCode")
                raise AdminApiError(
                    f"Shopify's bulk operation failed ({code})",
                    transient=code in ("INTERNAL_SERVER_ERROR", "TIMEOUT"),
                )
            if status not in RUNNING:
                raise AdminApiError(
                    f"bulk operation in an unknown state {status!r}", transient=True
                )
            self.sleep(self.poll_seconds)

    def lines(self, url: str) -> Iterator[bytes] | None:
        """The file's lines as they arrive; None when its URL has expired."""
        response = self.http.request(
            "GET", url, stream=True, expect=lambda r: r.ok or r.status_code in EXPIRED_URL
        )
        if response.status_code in EXPIRED_URL:
            response.close()
            return None
        return _closing(response.iter_lines(chunk_size=64 * 1024), response.close)


def _closing(lines: Iterator[bytes], close: Callable[[], None]) -> Iterator[bytes]:
    try:
        yield from lines
    finally:
        close()


# --- the file, grouped and translated ----------------------------------------------


def _translate(
    phase: Phase, root: dict[str, Any], children: list[Any], context: ShopContext, line: int
) -> list[ev.Event]:
    try:
        if phase == Phase.CUSTOMERS:
            return graphql.customer_node_events(root, context)
        node = {**root, "lineItems": {"nodes": children}}
        return graphql.order_node_events(node, context)
    except WebhookError as exc:
        log.warning("bulk file line %d: %s left out: %s", line + 1, phase.rstrip("s"), exc.message)
        return []


def read_pages(
    lines: Iterable[bytes],
    at: Cursor,
    operation: str,
    context: ShopContext,
    total: int | None,
    page_items: int = PAGE_ITEMS,
) -> Iterator[HistoryPage]:
    """Pages of one phase's file from ``at.line``; the last carries the cursor of the
    phase's end (the next phase's start, or None after orders)."""
    read = at.read
    page: list[ev.Event] = []
    in_page = 0
    root: dict[str, Any] | None = None
    root_line = at.line
    children: list[Any] = []
    for number, raw in enumerate(lines):
        if number < at.line or not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            log.warning("bulk file line %d is not JSON, skipped", number + 1)
            continue
        if not isinstance(item, dict):
            log.warning("bulk file line %d is not an object, skipped", number + 1)
            continue
        parent = item.get("__parentId")
        if parent is not None:
            if root is not None and parent == root.get("id"):
                children.append(item)
            else:
                log.warning("bulk file line %d: a child of no open parent, skipped", number + 1)
            continue
        if root is not None:
            page += _translate(at.phase, root, children, context, root_line)
            read += 1
            in_page += 1
            if in_page >= page_items:
                yield HistoryPage(
                    page, Cursor(at.phase, operation, number, read, at.before).text(), read, total
                )
                page, in_page = [], 0
        root, root_line, children = item, number, []
    if root is not None:
        page += _translate(at.phase, root, children, context, root_line)
        read += 1
    after = PHASES.index(at.phase) + 1
    end = Cursor(PHASES[after], None, 0, read, read).text() if after < len(PHASES) else None
    yield HistoryPage(page, end, read, total)


# --- the source ---------------------------------------------------------------------


def _total(client: ShopifyAdmin, since: datetime) -> int | None:
    """Shopify's count of the customers and orders to read; None when it gives none."""
    try:
        data = client.graphql(COUNTS, {"query": _search(since)})
        counts = [(data.get(k) or {}).get("count") for k in ("customersCount", "ordersCount")]
    except AdminApiError as exc:
        log.info("%s: no count of the history: %s", client.shop, exc)
        return None
    found = [c for c in counts if isinstance(c, int)]
    return sum(found) if len(found) == len(counts) else None


def history_pages(
    reader: BulkReader,
    context: ShopContext,
    since: datetime,
    cursor: str | None,
    page_items: int = PAGE_ITEMS,
) -> Iterator[HistoryPage]:
    """The pages from ``cursor`` on (see :func:`history`), with the reader given."""
    at = Cursor.parse(cursor)
    total = _total(reader.client, since)
    for phase in PHASES[PHASES.index(at.phase) :]:
        if phase != at.phase:
            at = Cursor(phase, None, 0, at.read, at.read)
        query = bulk_query(phase, since, context)
        restarted = False
        while True:
            operation = at.operation or reader.start(query)
            done = reader.finished(operation)
            lines: Iterator[bytes] | None = None
            if done is not None:
                url = done.get("url")
                if not url:  # nothing matched: Shopify writes no file
                    lines = iter(())
                else:
                    lines = reader.lines(str(url))
                    if lines is None:  # the URL expired: the operation gives a fresh one
                        again = reader.operation(operation)
                        fresh = again.get("url") if again else None
                        lines = reader.lines(str(fresh)) if fresh and fresh != url else None
            if lines is not None:
                break
            if restarted:
                raise AdminApiError("Shopify's bulk file could not be read", transient=True)
            # gone, or its file is: a new operation, read from its beginning
            log.warning(
                "%s: bulk operation %s gone; starting the %s again",
                reader.client.shop,
                operation,
                phase,
            )
            at = Cursor(phase, None, 0, at.before, at.before)
            restarted = True
        last: HistoryPage | None = None
        start = Cursor(phase, operation, at.line, at.read, at.before)
        for page in read_pages(lines, start, operation, context, total, page_items):
            last = page
            yield page
        at = Cursor.parse(last.cursor) if last is not None and last.cursor else at
        if last is not None and last.cursor is None:
            return


__all__ = ["BulkReader", "history_pages"]
