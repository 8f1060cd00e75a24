"""From stored delivery to events: real RQ workers, real Redis, failures and races."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from sqlalchemy import select

from connector.app import create_app
from connector.embedded_redis import EmbeddedRedis
from jobs import runtime as runtimes
from jobs.engine import schedule
from jobs.intake import apply, deliveries
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.store.models import (
    Contact,
    Decision,
    Delivery,
    Enrollment,
    Message,
    Shop,
    StoredEvent,
)
from jobs.workers import sweeper
from tests.support import (
    FIXTURES,
    SHOPIFY_SECRET,
    SHOPIFY_SHOP,
    count,
    dumps,
    post,
    run_worker,
    shopify_headers,
    stepping_clock,
)

SHOP = SHOPIFY_SHOP
SECRET = SHOPIFY_SECRET


def customer(n: int = 1) -> bytes:
    return dumps(
        {
            "id": 7000 + n,
            "email": f"kund{n}@example.se",
            "first_name": "Åsa",
            "last_name": "Lindström",
            "created_at": "2026-09-14T19:12:40+02:00",
            "updated_at": "2026-09-14T19:12:40+02:00",
            "addresses": [],
        }
    )


def send(
    client: FlaskClient, body: bytes, webhook_id: str, topic: str = "customers/create"
) -> None:
    response = post(client, "shopify", body, shopify_headers(topic, body, SECRET, SHOP, webhook_id))
    assert response.status_code == 200, response.json


def statuses(runtime: Runtime) -> list[str]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Delivery.status).order_by(Delivery.id)))


def emails(runtime: Runtime) -> list[str | None]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Contact.email).order_by(Contact.email)))


def test_worker_turns_deliveries_into_contacts(client: FlaskClient, runtime: Runtime) -> None:
    for n in (1, 2, 3):
        send(client, customer(n), f"wh-{n}")
    send(client, customer(1), "wh-1")  # a replay
    run_worker(runtime)
    assert statuses(runtime) == ["processed"] * 3
    assert emails(runtime) == ["kund1@example.se", "kund2@example.se", "kund3@example.se"]
    with runtime.sessions() as session:
        assert count(session, StoredEvent, StoredEvent.type == "CustomerCreated") == 3
    assert runtime.queue("intake").count == 0


def test_delivery_after_a_drain_gets_a_drain_of_its_own(
    client: FlaskClient, runtime: Runtime
) -> None:
    send(client, customer(1), "wh-1")
    run_worker(runtime)
    send(client, customer(2), "wh-2")
    assert runtime.queue("intake").count == 1
    run_worker(runtime)
    assert statuses(runtime) == ["processed", "processed"]


def test_failing_delivery_is_retried_then_fails_visibly(
    client: FlaskClient, runtime: Runtime
) -> None:
    bad = dumps({"email": "no-token@example.se", "updated_at": "2026-09-14T19:12:40+02:00"})
    send(client, bad, "wh-bad", topic="checkouts/update")
    send(client, customer(1), "wh-good")
    run_worker(runtime)

    # the good one is not held up by the bad one
    assert statuses(runtime) == ["failed", "processed"]
    with runtime.sessions() as session:
        failed = session.scalars(select(Delivery).where(Delivery.status == "failed")).one()
    assert failed.attempts == 1
    assert failed.error
    assert "token" in failed.error

    # its retry job waits in RQ's schedule
    job = Job.fetch(deliveries.retry_job_id(failed.id), connection=runtime.redis)
    assert job.id in ScheduledJobRegistry(queue=runtime.queue("intake")).get_job_ids()
    assert job.retries_left == len(deliveries.RETRY_INTERVALS) - 1

    # when the retries are used up it lands in the failed registry
    ScheduledJobRegistry(queue=runtime.queue("intake")).remove(job)
    job.retries_left = 0
    job.save()
    runtime.queue("intake").enqueue_job(job)
    run_worker(runtime)
    assert job.id in FailedJobRegistry(queue=runtime.queue("intake")).get_job_ids()
    with runtime.sessions() as session:
        assert session.get_one(Delivery, failed.id).attempts == 2


def failing_calls(monkeypatch: pytest.MonkeyPatch, failing: set[int]) -> dict[str, int]:
    """Make these calls of processing.apply (counted from 1) raise; returns the count."""
    real_apply = apply.apply
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> apply.Applied:
        calls["n"] += 1
        if calls["n"] in failing:
            raise ConnectionError("database went away")
        return real_apply(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(apply, "apply", flaky)
    return calls


def test_transient_failure_recovers_on_retry(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_calls(monkeypatch, {1, 2})  # the batch, then the delivery on its own in a savepoint
    send(client, customer(1), "wh-1")
    run_worker(runtime)
    assert statuses(runtime) == ["failed"]
    assert emails(runtime) == []  # the failed attempt left nothing behind

    job = Job.fetch(deliveries.retry_job_id(1), connection=runtime.redis)
    ScheduledJobRegistry(queue=runtime.queue("intake")).remove(job)
    runtime.queue("intake").enqueue_job(job)  # as the scheduler does when it is due
    run_worker(runtime)
    assert statuses(runtime) == ["processed"]
    assert emails(runtime) == ["kund1@example.se"]


def test_a_batch_that_raised_once_is_applied_again_delivery_by_delivery(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = failing_calls(monkeypatch, {2})  # the second delivery, on the batch's first pass
    for n in (1, 2, 3):
        send(client, customer(n), f"wh-{n}")
    run_worker(runtime)
    assert statuses(runtime) == ["processed"] * 3
    assert emails(runtime) == [f"kund{n}@example.se" for n in (1, 2, 3)]
    assert calls["n"] == 2 + 3  # the first pass, rolled back, then each on its own
    assert not runtime.queue("intake").scheduled_job_registry.get_job_ids()  # no retries


def test_a_failure_inside_a_batch_takes_back_only_its_own_writes(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliveries share a transaction: one that fails half-way (its contact already
    written) is rolled back alone, and its neighbours' work commits."""
    real_apply = apply.apply

    def fails_for_kund2(session, shop, event, **kwargs):  # type: ignore[no-untyped-def]
        applied = real_apply(session, shop, event, **kwargs)
        if getattr(getattr(event, "customer", None), "email", None) == "kund2@example.se":
            session.flush()  # the contact row is written, then the handler fails
            raise RuntimeError("failed after writing")
        return applied

    monkeypatch.setattr(apply, "apply", fails_for_kund2)
    for n in (1, 2, 3):
        send(client, customer(n), f"wh-{n}")
    with runtime.sessions() as session:
        waiting = session.scalar(select(Delivery.shop_id).limit(1))
    assert waiting is not None
    assert deliveries.process_batch(runtime, waiting) == 3  # all three in one transaction
    assert statuses(runtime) == ["processed", "failed", "processed"]
    assert emails(runtime) == ["kund1@example.se", "kund3@example.se"]
    with runtime.sessions() as session:
        failed = session.scalars(select(Delivery).where(Delivery.status == "failed")).one()
        assert failed.attempts == 1
        assert failed.error == "RuntimeError: failed after writing"
    assert Job.exists(deliveries.retry_job_id(failed.id), connection=runtime.redis)

    monkeypatch.setattr(apply, "apply", real_apply)
    job = Job.fetch(deliveries.retry_job_id(failed.id), connection=runtime.redis)
    ScheduledJobRegistry(queue=runtime.queue("intake")).remove(job)
    runtime.queue("intake").enqueue_job(job)
    run_worker(runtime)
    assert statuses(runtime) == ["processed"] * 3
    assert emails(runtime) == [f"kund{n}@example.se" for n in (1, 2, 3)]


def test_a_checkout_that_fails_inside_a_batch_leaves_no_decision_or_job(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its enrollment, planned emails, their decisions and their jobs go with its
    savepoint; the checkout beside it keeps all of its own."""
    real_apply = apply.apply

    def fails_for_tok_bad(session, shop, event, **kwargs):  # type: ignore[no-untyped-def]
        applied = real_apply(session, shop, event, **kwargs)
        if getattr(getattr(event, "checkout", None), "token", None) == "tok-bad":
            raise RuntimeError("failed after enrolling")
        return applied

    monkeypatch.setattr(apply, "apply", fails_for_tok_bad)
    template = json.loads((FIXTURES / "shopify" / "checkouts_create__customer.json").read_text())
    for n, token in enumerate(["tok-good", "tok-bad"]):
        payload = json.loads(json.dumps(template))
        payload["token"] = token
        # minutes apart: each checkout's reminders would have jobs of their own
        payload["updated_at"] = (datetime.now(UTC) - timedelta(minutes=10 + 10 * n)).isoformat()
        payload["email"] = payload["customer"]["email"] = f"kund{n}@example.se"
        payload["customer"]["id"] = 8000 + n
        send(client, dumps(payload), f"wh-{token}", topic="checkouts/create")
    with runtime.sessions() as session:
        shop_id = session.scalar(select(Delivery.shop_id).limit(1))
    assert shop_id is not None
    assert deliveries.process_batch(runtime, shop_id) == 2
    with runtime.sessions() as session:
        assert session.scalars(select(Enrollment.subject)).all() == ["tok-good"]
        subjects = {
            session.get_one(Enrollment, d.enrollment_id).subject
            for d in session.scalars(select(Decision))
            if d.enrollment_id is not None
        }
        assert subjects == {"tok-good"}
        planned = session.scalars(select(Message)).all()
    assert len(planned) == 3  # the good checkout's three reminders
    jobs = runtime.queue("messages").scheduled_job_registry.get_job_ids()
    jobs += runtime.queue("messages").job_ids
    assert sorted(jobs) == sorted(
        schedule.job_id(schedule.DueWork("message", shop_id, m.id, m.due_at)) for m in planned
    )


def test_racing_workers_apply_a_delivery_once(client: FlaskClient, runtime: Runtime) -> None:
    send(client, customer(1), "wh-1")
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        results.append(deliveries.process_one(runtime, 1))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]
    with runtime.sessions() as session:
        assert count(session, StoredEvent) == 1
        assert count(session, Contact) == 1


def test_flushed_redis_loses_nothing(client: FlaskClient, runtime: Runtime) -> None:
    send(client, customer(1), "wh-1")
    runtime.redis.flushdb()  # the drain job and its flag are gone
    assert sweeper.sweep_once(runtime, grace=0) == {"shops": 1, "failed": 0}
    run_worker(runtime)
    assert statuses(runtime) == ["processed"]


def test_sweeper_requeues_lost_retries(client: FlaskClient, runtime: Runtime) -> None:
    send(client, dumps({"email": "x@example.se"}), "wh-bad", topic="checkouts/update")
    run_worker(runtime)
    runtime.redis.flushdb()
    assert sweeper.sweep_once(runtime, grace=0) == {"shops": 0, "failed": 1}
    assert Job.exists(deliveries.retry_job_id(1), connection=runtime.redis)
    # a second pass does not pile up duplicates
    assert sweeper.sweep_once(runtime, grace=0) == {"shops": 0, "failed": 0}


def test_sweeper_leaves_fresh_deliveries_to_their_own_hand_off(
    client: FlaskClient, runtime: Runtime
) -> None:
    send(client, customer(1), "wh-1")
    assert sweeper.sweep_once(runtime) == {"shops": 0, "failed": 0}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of the test's own, so it can be stopped and started again."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_redis_down_during_intake_loses_nothing(runtime: Runtime, own_redis: EmbeddedRedis) -> None:
    settings = replace(runtime.settings, redis_url=own_redis.url)
    local = Runtime.create(settings)
    runtimes.install(local)
    try:
        with local.sessions.begin() as session:
            add_shop(session, local.secrets, "shopify", SHOP)
        client = create_app(runtime=local).test_client()

        own_redis.stop()
        started = time.monotonic()
        for n in (1, 2):
            send(client, customer(n), f"wh-{n}")
        assert time.monotonic() - started < 10  # timeouts, not hangs
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json["deliveries_waiting"] == 2

        own_redis.start()  # back, empty: nothing was ever enqueued
        assert local.queue("intake").count == 0
        assert sweeper.sweep_once(local, grace=0) == {"shops": 1, "failed": 0}
        run_worker(local)
        assert statuses(local) == ["processed", "processed"]
        assert emails(local) == ["kund1@example.se", "kund2@example.se"]
        assert client.get("/readyz").status_code == 200
    finally:
        local.close()
        runtimes.install(runtime)


def backlog(client: FlaskClient, runtime: Runtime, count: int) -> int:
    """``count`` stored deliveries of one shop; the shop's id."""
    for n in range(count):
        send(client, customer(n), f"wh-{n}")
    with runtime.sessions() as session:
        shop_id = session.scalar(select(Delivery.shop_id).limit(1))
    assert shop_id is not None
    return shop_id


def test_a_batch_takes_at_most_its_limit_oldest_first(
    client: FlaskClient, runtime: Runtime
) -> None:
    shop_id = backlog(client, runtime, deliveries.DRAIN_BATCH + 3)
    assert deliveries.process_batch(runtime, shop_id) == deliveries.DRAIN_BATCH
    assert statuses(runtime) == ["processed"] * deliveries.DRAIN_BATCH + ["received"] * 3
    assert deliveries.process_batch(runtime, shop_id) == 3


def test_a_drain_past_its_time_leaves_the_rest_to_a_new_job(
    client: FlaskClient, runtime: Runtime
) -> None:
    shop_id = backlog(client, runtime, deliveries.DRAIN_BATCH + 3)
    runtime.queue("intake").empty()  # the web edge's own drain job
    clock = stepping_clock()
    assert deliveries.drain(runtime, shop_id, budget=0.5, clock=clock) == deliveries.DRAIN_BATCH
    assert statuses(runtime).count("received") == 3
    assert [job.func_name for job in runtime.queue("intake").jobs] == ["jobs.tasks.drain_shop"]
    run_worker(runtime)
    assert statuses(runtime) == ["processed"] * (deliveries.DRAIN_BATCH + 3)


# --- birthdays from the platforms' payloads ---------------------------------------------


def birthday_of(runtime: Runtime, email: str) -> object:
    with runtime.sessions() as session:
        return session.scalars(select(Contact.birthday).where(Contact.email == email)).one()


def test_a_birthday_metafield_is_stored_and_a_later_payload_without_it_keeps_it(
    client: FlaskClient, runtime: Runtime
) -> None:
    raw = (FIXTURES / "shopify" / "customers_create__birth_date_metafield.json").read_bytes()
    send(client, raw, "wh-born")
    run_worker(runtime)
    email = "maryam.rezaei@example.se"
    assert birthday_of(runtime, email) == date(1988, 4, 17)

    later = json.loads(raw)
    later["updated_at"] = "2026-09-14T19:12:40+02:00"
    del later["metafields"]  # a subscription made before it asked for the namespace
    send(client, dumps(later), "wh-later", "customers/update")
    bad = {**later, "updated_at": "2026-09-15T08:00:00+02:00"}
    bad["metafields"] = [
        {"namespace": "facts", "key": "birth_date", "value": "1988-02-30", "type": "date"}
    ]
    send(client, dumps(bad), "wh-bad", "customers/update")
    run_worker(runtime)
    assert statuses(runtime) == ["processed"] * 3  # a bad birthday fails no delivery
    assert birthday_of(runtime, email) == date(1988, 4, 17)


def test_the_birthday_metafield_is_the_shops_setting(client: FlaskClient, runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOP)).one()
        shop.settings = {"birthday": {"metafield": "custom.fodelsedag"}}
    body = json.loads(customer(4))
    body["metafields"] = [
        {"namespace": "facts", "key": "birth_date", "value": "1970-01-01", "type": "date"},
        {"namespace": "custom", "key": "fodelsedag", "value": "24/12/1995", "type": "date"},
    ]
    send(client, dumps(body), "wh-custom")
    run_worker(runtime)
    assert birthday_of(runtime, "kund4@example.se") == date(1995, 12, 24)
