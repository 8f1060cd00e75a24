"""Group commit: concurrent deliveries share a commit, and none is answered before it."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select, text

from adapters.platform import WebhookHeaders
from jobs import intake
from jobs.intake_writer import DeliveryWriter, IntakeWriteError
from jobs.runtime import Runtime
from jobs.shops import add_shop
from jobs.store.models import Delivery


@pytest.fixture
def shop_id(runtime: Runtime) -> int:
    with runtime.sessions.begin() as session:
        return add_shop(session, runtime.secrets, "shopify", "a-shop.myshopify.com").id


def row(shop_id: int, delivery_id: str) -> dict[str, Any]:
    headers = WebhookHeaders(
        shop_key="a-shop.myshopify.com",
        topic="orders/create",
        delivery_id=delivery_id,
        signature="x",
    )
    return intake.delivery_row(
        shop_id=shop_id, platform="shopify", headers=headers, raw_headers={}, body=b"{}"
    )


@contextmanager
def writes_blocked(runtime: Runtime) -> Iterator[None]:
    """Another connection holds the write lock until the block ends.

    On SQLite a plain connection (not one of ours, which would queue on the
    writer lock file first): the writer gets as far as its BEGIN IMMEDIATE."""
    if runtime.engine.dialect.name == "sqlite":
        other = sqlite3.connect(runtime.engine.url.database or "", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        yield
        other.rollback()
        other.close()
        return
    with runtime.engine.connect() as connection:
        connection.execute(text("BEGIN"))
        connection.execute(text("LOCK TABLE deliveries IN EXCLUSIVE MODE"))
        yield
        connection.rollback()


def commits(runtime: Runtime) -> list[int]:
    counted = [0]

    def count(_connection: Any) -> None:
        counted[0] += 1

    event.listen(runtime.engine, "commit", count)
    return counted


def store_all(
    writer: DeliveryWriter, rows: list[dict[str, Any]]
) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = [None] * len(rows)

    def store(n: int) -> None:
        try:
            results[n] = writer.store(rows[n])
        except IntakeWriteError as exc:
            results[n] = exc

    threads = [threading.Thread(target=store, args=(n,)) for n in range(len(rows))]
    for thread in threads:
        thread.start()
    return threads, results


def wait_queued(writer: DeliveryWriter, n: int) -> None:
    deadline = time.monotonic() + 10
    while writer._queue.qsize() < n:
        assert time.monotonic() < deadline, "requests never reached the writer"
        time.sleep(0.01)


def writer_stuck(runtime: Runtime) -> threading.Event:
    """Set once the writer thread sends a statement (which then waits on the lock)."""
    busy = threading.Event()

    def seen(*_args: Any) -> None:
        if threading.current_thread().name == "triggerpost-intake-writer":
            busy.set()

    event.listen(runtime.engine, "before_cursor_execute", seen)
    return busy


@contextmanager
def first_batch_waiting(
    runtime: Runtime, writer: DeliveryWriter, shop_id: int
) -> Iterator[list[Any]]:
    """Writes are blocked and the writer holds a first batch: what comes next queues up."""
    busy = writer_stuck(runtime)
    with writes_blocked(runtime):
        threads, _ = store_all(writer, [row(shop_id, "blocker")])
        assert busy.wait(10)
        yield threads
    for thread in threads:
        thread.join(10)


def test_waiting_deliveries_share_one_commit(runtime: Runtime, shop_id: int) -> None:
    writer = DeliveryWriter(runtime)
    counted = commits(runtime)
    with first_batch_waiting(runtime, writer, shop_id):
        threads, results = store_all(writer, [row(shop_id, f"d-{n}") for n in range(20)])
        wait_queued(writer, 20)
        time.sleep(0.05)
        # nothing is answered while nothing is committed
        assert results == [None] * 20
    for thread in threads:
        thread.join(10)
    assert all(isinstance(r, int) for r in results)
    assert len(set(results)) == 20
    assert counted[0] == 2  # the blocked one, then the 20 that waited, together
    with runtime.sessions() as session:
        assert len(session.scalars(select(Delivery.id)).all()) == 21


def test_the_same_delivery_twice_in_a_batch_is_stored_once(runtime: Runtime, shop_id: int) -> None:
    writer = DeliveryWriter(runtime)
    with first_batch_waiting(runtime, writer, shop_id):
        threads, results = store_all(writer, [row(shop_id, "same"), row(shop_id, "same")])
        wait_queued(writer, 2)
    for thread in threads:
        thread.join(10)
    assert sum(isinstance(r, int) for r in results) == 1
    assert results.count(None) == 1
    assert writer.store(row(shop_id, "same")) is None  # and a replay later too


def test_one_bad_row_fails_only_its_own_request(runtime: Runtime, shop_id: int) -> None:
    writer = DeliveryWriter(runtime)
    with first_batch_waiting(runtime, writer, shop_id):
        rows = [row(shop_id, "good-1"), row(shop_id + 999, "no-such-shop"), row(shop_id, "good-2")]
        threads, results = store_all(writer, rows)
        wait_queued(writer, 3)
    for thread in threads:
        thread.join(10)
    assert isinstance(results[0], int)
    assert isinstance(results[1], IntakeWriteError)
    assert isinstance(results[2], int)
    with runtime.sessions() as session:
        keys = set(session.scalars(select(Delivery.delivery_key)))
    assert keys == {"blocker", "good-1", "good-2"}


def test_writer_survives_its_connection_being_dropped(runtime: Runtime, shop_id: int) -> None:
    writer = DeliveryWriter(runtime)
    assert isinstance(writer.store(row(shop_id, "before")), int)
    kept = writer._connection
    assert kept is not None
    if kept.dialect.name == "postgresql":
        pid = kept.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        kept.rollback()
        with runtime.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    else:
        kept.invalidate()  # as the pool does when SQLite's handle is gone
    assert isinstance(writer.store(row(shop_id, "after")), int)
    if kept.dialect.name == "postgresql":
        assert writer._connection is not kept  # dropped, replaced, and the row still stored
    with runtime.sessions() as session:
        assert set(session.scalars(select(Delivery.delivery_key))) == {"before", "after"}
