"""Shopify history source benchmark: a bulk file of N orders streamed, grouped, translated.

Writes a JSONL file as a bulk operation does (each order, then each of its line
items on a line of its own with ``__parentId``) from the GraphQL fixture order,
then reads it with ``jobs.platforms.shopify_history.read_pages`` in pages of 500:
no HTTP, no database. Prints lines/s and orders/s, the same file merely parsed
line by line (``json.loads``, the floor) as a baseline and the ratio, and the
process's peak memory before and after (the file is streamed, never held).

    .venv/bin/python bench/shopify_history.py [--orders 100000] [--items 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.platform import ShopContext
from jobs.platforms.shopify_history import Cursor, Phase, read_pages

FIXTURE = Path(__file__).resolve().parents[1] / "tests/fixtures/shopify_graphql/order__paid.json"


def write_file(path: Path, orders: int, items: int) -> int:
    template = json.loads(FIXTURE.read_text())
    line_items = template.pop("lineItems")["nodes"]
    lines = 0
    with path.open("w") as out:
        for n in range(orders):
            order = copy.copy(template)
            order["id"] = f"gid://shopify/Order/{5000000 + n}"
            order["legacyResourceId"] = str(5000000 + n)
            order["name"] = f"#{1000 + n}"
            out.write(json.dumps(order) + "\n")
            for i in range(items):
                child = {
                    **line_items[i % len(line_items)],
                    "id": f"gid://shopify/LineItem/{n}{i}",
                    "__parentId": order["id"],
                }
                out.write(json.dumps(child) + "\n")
            lines += 1 + items
    return lines


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=3, help="line items per order")
    args = parser.parse_args()
    context = ShopContext(
        domain="bench.myshopify.com", currency="SEK", received_at=datetime(2026, 9, 14, tzinfo=UTC)
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bulk.jsonl"
        lines = write_file(path, args.orders, args.items)
        size = path.stat().st_size / 1e6
        before = peak_mb()

        started = time.perf_counter()
        with path.open("rb") as f:
            for raw in f:
                json.loads(raw)
        floor = time.perf_counter() - started

        started = time.perf_counter()
        orders = events = pages = 0
        with path.open("rb") as f:
            at = Cursor(Phase.ORDERS, "gid://shopify/BulkOperation/1", 0, 0, 0)
            for page in read_pages(f, at, "gid://shopify/BulkOperation/1", context, None):
                pages += 1
                events += len(page.events)
                orders = page.read
        ours = time.perf_counter() - started
        after = peak_mb()

    print(f"file: {args.orders} orders, {lines} lines, {size:.1f} MB")
    print(f"json.loads only : {lines / floor:10,.0f} lines/s  ({floor:.2f} s)")
    print(
        f"history source  : {lines / ours:10,.0f} lines/s  {orders / ours:9,.0f} orders/s"
        f"  ({ours:.2f} s, {pages} pages, {events} events)"
    )
    print(f"ratio (ours / json.loads floor): {ours / floor:.1f}x the time")
    print(f"peak memory: {before:.0f} MB before reading, {after:.0f} MB after")


if __name__ == "__main__":
    main()
