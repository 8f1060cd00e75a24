"""Webhook to inbox through the real pieces: intake, RQ workers on Redis, the ledger,
rendering and the file outbox. Exactly one copy of each email, whatever happens."""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from jobs.engine import schedule
from jobs.intake import deliveries
from jobs.runtime import Runtime
from jobs.store.models import Delivery, Message, MessageState, Shop
from jobs.workers import sweeper
from tests.support import (
    FIXTURES,
    INSTANT,
    SHOPIFY_SECRET,
    SHOPIFY_SHOP,
    dumps,
    post,
    run_worker,
    shopify_headers,
)


def checkout_payload(updated: datetime) -> dict[str, Any]:
    payload = json.loads((FIXTURES / "shopify" / "checkouts_create__customer.json").read_text())
    stamp = updated.isoformat()
    payload["created_at"] = payload["updated_at"] = stamp
    payload["customer"]["updated_at"] = stamp
    payload["customer"]["email_marketing_consent"] = {
        "state": "subscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": "2026-01-10T12:00:00+00:00",
    }
    return payload


def configure(runtime: Runtime, blob: dict[str, Any]) -> None:
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOPIFY_SHOP)).one()
        shop.settings = blob


def deliver(client: FlaskClient, payload: dict[str, Any], webhook_id: str) -> None:
    body = dumps(payload)
    headers = shopify_headers("checkouts/update", body, SHOPIFY_SECRET, SHOPIFY_SHOP, webhook_id)
    assert post(client, "shopify", body, headers).status_code == 200


def outbox(runtime: Runtime) -> list[email.message.EmailMessage]:
    files = sorted(runtime.settings.outbox_dir.glob("*.eml"))
    return [email.message_from_bytes(f.read_bytes(), policy=default) for f in files]  # type: ignore[misc]


def states(runtime: Runtime) -> list[tuple[str, str]]:
    with runtime.sessions() as session:
        return [(m.step, m.state) for m in session.scalars(select(Message).order_by(Message.id))]


def worker_env(runtime: Runtime) -> dict[str, str]:
    """The environment of a worker process on the test's database, Redis and outbox."""
    return {
        **os.environ,
        "TRIGGERPOST_DATA_DIR": str(runtime.settings.data_dir),
        "TRIGGERPOST_DATABASE_URL": runtime.settings.database_url,
        "TRIGGERPOST_REDIS_URL": runtime.settings.redis_url,
        "TRIGGERPOST_SECRET_KEY": runtime.settings.secret_key,
        "TRIGGERPOST_EMAIL_URL": runtime.settings.email_url,
        "TRIGGERPOST_BASE_URL": runtime.settings.base_url,
    }


def worker_process(
    runtime: Runtime, crash_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A separate worker process (burst); ``crash_at`` makes it die at that point of a send."""
    env = {**worker_env(runtime), "CRASH_AT": crash_at or ""}
    return subprocess.run(
        [sys.executable, str(Path(__file__).parent / "crashing_worker.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_webhook_five_times_and_two_workers_send_each_email_once(
    client: FlaskClient, runtime: Runtime
) -> None:
    configure(runtime, INSTANT)
    payload = checkout_payload(datetime.now(UTC) - timedelta(minutes=5))
    for _ in range(5):
        deliver(client, payload, "same-delivery")  # a retried delivery
    for n in range(5):
        deliver(client, payload, f"another-subscription-{n}")  # the same change, other ids
    first, second = (
        subprocess.Popen(  # two workers racing for the same jobs
            [sys.executable, str(Path(__file__).parent / "crashing_worker.py")],
            env={
                **os.environ,
                "TRIGGERPOST_DATA_DIR": str(runtime.settings.data_dir),
                "TRIGGERPOST_DATABASE_URL": runtime.settings.database_url,
                "TRIGGERPOST_REDIS_URL": runtime.settings.redis_url,
                "TRIGGERPOST_SECRET_KEY": runtime.settings.secret_key,
                "TRIGGERPOST_BASE_URL": runtime.settings.base_url,
                "CRASH_AT": "",
            },
        )
        for _ in range(2)
    )
    assert first.wait(120) == 0
    assert second.wait(120) == 0
    run_worker(runtime)  # anything left over

    sent = outbox(runtime)
    assert sorted(m["Subject"] for m in sent) == sorted(
        [
            "Du har något kvar i varukorgen",
            "Din varukorg hos nordljus-test.myshopify.com väntar",
            "Lite hjälp på vägen",
        ]
    )
    assert all(m["To"] == "astrid.lindqvist@example.se" for m in sent)
    assert states(runtime) == [(f"email_{n}", MessageState.SENT) for n in (1, 2, 3)]


@pytest.mark.parametrize(
    ("crash_at", "resolution"),
    [
        ("compose", "requeued"),  # killed before the provider saw it: sent later, once
        ("after_delivery", "resent"),  # killed after the outbox took it: not a second copy
    ],
)
def test_a_worker_killed_mid_send_never_makes_a_second_copy(
    client: FlaskClient, runtime: Runtime, crash_at: str, resolution: str
) -> None:
    configure(
        runtime,
        {
            **INSTANT,
            "flows": {"cart_recovery": {"delay_1_hours": 0, "email_2": False, "email_3": False}},
        },
    )
    deliver(client, checkout_payload(datetime.now(UTC) - timedelta(minutes=5)), "d-1")
    died = worker_process(runtime, crash_at)
    assert died.returncode == 17, died.stderr[-2000:]
    # killed inside the claiming transaction, nothing of it was committed
    expected = MessageState.PLANNED if crash_at == "compose" else MessageState.HANDED
    assert states(runtime) == [("email_1", expected)]
    assert len(outbox(runtime)) == (0 if crash_at == "compose" else 1)

    later = datetime.now(UTC) + timedelta(minutes=11)  # past the claim's lease
    assert sweeper.sweep_sends(runtime, later)[resolution] == 1
    run_worker(runtime)
    assert states(runtime) == [("email_1", MessageState.SENT)]
    assert len(outbox(runtime)) == 1


def test_flushing_redis_loses_no_planned_email(client: FlaskClient, runtime: Runtime) -> None:
    configure(runtime, {**INSTANT, "flows": {"cart_recovery": {"delay_1_hours": 0}}})
    deliver(client, checkout_payload(datetime.now(UTC) - timedelta(minutes=5)), "d-1")
    with runtime.sessions() as session:
        (delivery_id,) = session.scalars(select(Delivery.id)).all()
    assert deliveries.process_one(runtime, delivery_id)  # email 1 queued now, 2 and 3 scheduled
    assert runtime.queue("messages").count == 1
    runtime.redis.flushdb()  # everything RQ held is gone
    run_worker(runtime)
    assert outbox(runtime) == []

    swept = sweeper.sweep_sends(runtime, datetime.now(UTC) + timedelta(seconds=31))
    assert swept["requeued"] == 1  # only what is due; 2 and 3 wait in the ledger
    run_worker(runtime)
    assert [m["Subject"] for m in outbox(runtime)] == ["Du har något kvar i varukorgen"]
    with runtime.sessions() as session:
        later = session.scalars(
            select(Message).where(Message.state == MessageState.PLANNED).order_by(Message.due_at)
        ).all()
    assert [m.step for m in later] == ["email_2", "email_3"]
    # when their time comes, the sweeper finds them too, though Redis never had them
    due = schedule.overdue(runtime, later[-1].due_at + timedelta(minutes=1))
    assert sorted(w.id for w in due) == sorted(m.id for m in later)


def _process_all(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        waiting = session.scalars(
            select(Delivery.id).where(Delivery.status == "received").order_by(Delivery.id)
        ).all()
    for delivery_id in waiting:
        assert deliveries.process_one(runtime, delivery_id)


def _waiting_jobs(runtime: Runtime) -> list[str]:
    """The scheduled jobs (each with its hash still there)."""
    ids = list(runtime.queue("messages").scheduled_job_registry.get_job_ids())
    for id_ in ids:
        assert runtime.redis.exists(f"rq:job:{id_}")
    return sorted(ids)


def _ticks(messages: Iterable[Message]) -> list[str]:
    now = datetime.now(UTC)
    work = [schedule.DueWork("message", m.shop_id, m.id, m.due_at) for m in messages]
    return sorted(schedule.job_id(w) for w in work if w.due_at > now)


def test_an_exit_takes_the_waiting_jobs_out_of_redis(client: FlaskClient, runtime: Runtime) -> None:
    configure(runtime, {**INSTANT, "flows": {"cart_recovery": {"delay_1_hours": 0}}})
    started = datetime.now(UTC) - timedelta(minutes=5)
    checkout = checkout_payload(started)
    deliver(client, checkout, "d-1")
    _process_all(runtime)
    planned = {m.id: m for m in _messages(runtime)}
    # the first email is due: a send drain waits for it; the shop's ticks for the others
    assert runtime.queue("messages").count == 1
    assert len(_ticks(planned.values())) == 2
    assert _waiting_jobs(runtime) == _ticks(planned.values())

    # the cart changes: the reminders move, and only their new ticks wait
    moved = checkout_payload(started + timedelta(minutes=3))
    deliver(client, moved, "d-2")
    _process_all(runtime)
    now_planned = _messages(runtime)
    assert all(m.due_at > planned[m.id].due_at for m in now_planned)
    assert _waiting_jobs(runtime) == _ticks(now_planned)
    assert runtime.queue("messages").count == 1  # the drain already asked for

    # the order for that checkout: every reminder exits, and no job is left behind
    order = json.loads((FIXTURES / "shopify" / "orders_create__customer.json").read_text())
    stamp = (started + timedelta(minutes=4)).isoformat()
    order.update(checkout_token=checkout["token"], created_at=stamp, updated_at=stamp,
                 processed_at=stamp)  # fmt: skip
    body = dumps(order)
    headers = shopify_headers("orders/create", body, SHOPIFY_SECRET, SHOPIFY_SHOP, "d-3")
    assert post(client, "shopify", body, headers).status_code == 200
    _process_all(runtime)
    assert [m.state for m in _messages(runtime)] == [MessageState.EXITED] * 3
    assert _waiting_jobs(runtime) == []  # the waiting drain finds nothing to send
    run_worker(runtime)
    assert outbox(runtime) == []


def _messages(runtime: Runtime) -> list[Message]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Message).order_by(Message.id)))


@pytest.mark.parametrize("worker_class", ["simple", "fork"])
def test_the_worker_command_takes_a_webhook_to_the_inbox(
    client: FlaskClient, runtime: Runtime, worker_class: str
) -> None:
    """`triggerpost worker` of either class: a forked child opens its own connections
    and finds what the parent loaded (modules, compiled templates) ready."""
    configure(runtime, {**INSTANT, "flows": {"cart_recovery": {"delay_1_hours": 0}}})
    deliver(client, checkout_payload(datetime.now(UTC) - timedelta(minutes=5)), "d-1")
    env = worker_env(runtime)
    command = [sys.executable, "-m", "connector.cli", "worker", "--burst", "--no-sweeper",
               "--worker-class", worker_class]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [m["Subject"] for m in outbox(runtime)] == ["Du har något kvar i varukorgen"]
    assert states(runtime) == [
        ("email_1", MessageState.SENT),
        ("email_2", MessageState.PLANNED),
        ("email_3", MessageState.PLANNED),
    ]
