"""Group commit: concurrent deliveries share a commit, none is answered before it, and
none waits on a stalled Redis."""

from __future__ import annotations

import contextlib
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import event, select, text

from adapters.platform import WebhookHeaders
from connector.app import create_app
from jobs import runtime as runtimes
from jobs.intake import deliveries
from jobs.intake.writer import DeliveryWriter, IntakeWriteError
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.store.models import Delivery
from jobs.workers import sweeper
from tests.support import SHOPIFY_SECRET, dumps, post, run_worker, shopify_headers


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
    return deliveries.delivery_row(
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


def test_a_request_of_many_rows_is_answered_after_one_commit_of_them_all(
    runtime: Runtime, shop_id: int
) -> None:
    writer = DeliveryWriter(runtime)
    writer.store(row(shop_id, "earlier"))
    counted = commits(runtime)
    rows = [row(shop_id, f"e-{n}") for n in range(20)] + [row(shop_id, "earlier")]
    stored = writer.store_many(rows)
    assert all(isinstance(id_, int) for id_ in stored[:20])
    assert stored[20] is None  # stored before: not a second time
    assert counted[0] == 1
    assert writer.store_many([row(shop_id, "e-3")]) == [None]


def test_a_request_of_many_rows_fails_when_one_of_them_is_not_stored(
    runtime: Runtime, shop_id: int
) -> None:
    writer = DeliveryWriter(runtime)
    with pytest.raises(IntakeWriteError):
        writer.store_many([row(shop_id, "fine"), row(shop_id + 999, "no-such-shop")])


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


class StallingProxy:
    """A TCP proxy in front of Redis that stops forwarding, both ways, while stalled:
    Redis frozen with its connections open, as when its host hangs."""

    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        if parts.scheme == "unix":
            self._upstream: tuple[int, Any] = (socket.AF_UNIX, parts.path)
            db = parse_qs(parts.query).get("db", ["0"])[0]
        else:
            self._upstream = (socket.AF_INET, (parts.hostname, parts.port or 6379))
            db = parts.path.strip("/") or "0"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}/{db}"
        self._flowing = threading.Event()
        self._flowing.set()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self.resume()
        self._listener.close()
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            family, address = self._upstream
            server = socket.socket(family, socket.SOCK_STREAM)
            server.connect(address)
            self._sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                target.sendall(data)
        except OSError:
            pass  # one side is gone: so is the other
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(redis_url: str) -> Iterator[StallingProxy]:
    proxy = StallingProxy(redis_url)
    yield proxy
    proxy.close()


@contextmanager
def web_through(runtime: Runtime, proxy: StallingProxy, **redis: float) -> Iterator[FlaskClient]:
    """The web app, its Redis reached through ``proxy`` (with ``redis`` client options)."""
    local = Runtime.create(replace(runtime.settings, redis_url=proxy.url))
    if redis:
        local.redis = Redis.from_url(proxy.url, **redis)
    runtimes.install(local)
    try:
        with local.sessions.begin() as session:
            for shop in ("a-shop.myshopify.com", "b-shop.myshopify.com"):
                add_shop(session, local.secrets, "shopify", shop)
        local.redis.ping()  # connected before any stall
        yield create_app(runtime=local).test_client()
    finally:
        proxy.resume()
        local.close()
        runtimes.install(runtime)


def deliver(client: FlaskClient, shop: str, webhook_id: str) -> Any:
    body = dumps(
        {
            "id": 7001,
            "email": "kund@example.se",
            "created_at": "2026-09-14T19:12:40+02:00",
            "updated_at": "2026-09-14T19:12:40+02:00",
            "addresses": [],
        }
    )
    headers = shopify_headers("customers/create", body, SHOPIFY_SECRET, shop, webhook_id)
    return post(client, "shopify", body, headers)


def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def test_deliveries_are_answered_stored_while_redis_stalls_and_drained_once_it_answers(
    runtime: Runtime, proxy: StallingProxy
) -> None:
    # no client timeout: the hand-off hangs for as long as Redis does
    with web_through(runtime, proxy, socket_timeout=120) as client:
        proxy.stall()
        with ThreadPoolExecutor(1) as pool:
            for n, shop in enumerate(("a-shop.myshopify.com", "b-shop.myshopify.com")):
                answer = pool.submit(deliver, client, shop, f"stalled-{n}").result(timeout=60)
                assert answer.status_code == 200, answer.json
                assert answer.json == {"status": "stored"}
        assert proxy.stalled  # both answered while Redis had answered nothing
        with runtime.sessions() as session:
            assert set(session.scalars(select(Delivery.status))) == {"received"}

        proxy.resume()
        until(lambda: runtime.queue("intake").count == 2)  # each shop's drain job
        run_worker(runtime)
        with runtime.sessions() as session:
            assert list(session.scalars(select(Delivery.status))) == ["processed"] * 2


def test_a_hand_off_redis_does_not_take_is_left_to_the_sweeper(
    runtime: Runtime, proxy: StallingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    with web_through(runtime, proxy) as client, caplog.at_level(logging.WARNING):
        proxy.stall()
        answer = deliver(client, "a-shop.myshopify.com", "missed")
        assert answer.json == {"status": "stored"}
        until(lambda: "left to the sweeper" in caplog.text)  # the client's timeout ran out
        proxy.resume()

    assert runtime.queue("intake").count == 0
    assert sweeper.sweep_once(runtime, grace=0)["shops"] == 1
    run_worker(runtime)
    with runtime.sessions() as session:
        assert list(session.scalars(select(Delivery.status))) == ["processed"]
