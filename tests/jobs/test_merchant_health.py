"""Connection health: what a merchant reads about their shop's webhooks, reconciliation
and notices, counted from the store, only ever their own shop's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobs.merchant import health
from jobs.merchant.notices import clear_notice, raise_notice
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.store.models import Delivery, DeliveryStatus, Subscription, SyncCursor

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _delivery(
    shop_id: int,
    key: str,
    topic: str,
    received_at: datetime,
    status: DeliveryStatus = DeliveryStatus.PROCESSED,
    error: str | None = None,
) -> Delivery:
    return Delivery(
        shop_id=shop_id,
        platform="shopify",
        topic=topic,
        delivery_key=key,
        body=b"{}",
        received_at=received_at,
        status=status,
        attempts=1 if error else 0,
        error=error,
    )


@pytest.fixture
def shops(runtime: Runtime) -> tuple[int, int]:
    with runtime.sessions.begin() as session:
        ours = add_shop(session, runtime.secrets, "shopify", "health-a.myshopify.com")
        theirs = add_shop(session, runtime.secrets, "shopify", "health-b.myshopify.com")
        session.flush()
        return ours.id, theirs.id


def _report(runtime: Runtime, shop_id: int, at: datetime = NOW) -> health.Report:
    with runtime.sessions() as session:
        return health.report(session, shop_id, at)


def test_webhooks_of_the_last_day_are_counted_per_topic(
    runtime: Runtime, shops: tuple[int, int]
) -> None:
    ours, theirs = shops
    with runtime.sessions.begin() as session:
        session.add_all(
            [
                _delivery(ours, "1", "orders/paid", NOW - timedelta(hours=1)),
                _delivery(ours, "2", "orders/paid", NOW - timedelta(hours=23)),
                _delivery(ours, "3", "checkouts/update", NOW - timedelta(minutes=5)),
                _delivery(ours, "4", "orders/paid", NOW - timedelta(hours=25)),  # a day ago
                _delivery(theirs, "5", "orders/paid", NOW - timedelta(hours=1)),
            ]
        )
    report = _report(runtime, ours)
    assert [(w["topic"], w["count"]) for w in report.webhooks] == [
        ("checkouts/update", 1),
        ("orders/paid", 2),
    ]
    assert report.webhooks[1]["last_at"] == NOW - timedelta(hours=1)
    assert report.healthy


def test_failed_deliveries_are_listed_with_their_error_in_words(
    runtime: Runtime, shops: tuple[int, int]
) -> None:
    ours, theirs = shops
    with runtime.sessions.begin() as session:
        session.add_all(
            [
                _delivery(
                    ours,
                    "1",
                    "orders/create",
                    NOW - timedelta(hours=2),
                    DeliveryStatus.FAILED,
                    "EventError: order.line_items[2].quantity is missing",
                ),
                _delivery(
                    theirs,
                    "2",
                    "orders/create",
                    NOW - timedelta(hours=2),
                    DeliveryStatus.FAILED,
                    "PayloadError: not JSON",
                ),
            ]
        )
    report = _report(runtime, ours)
    assert report.failed == 1
    [failure] = report.failed_recent
    assert failure["says"] == (
        "the webhook lacked something triggerpost needs (order.line_items[2].quantity is missing)"
    )
    assert not report.healthy
    answer = report.as_dict()
    assert answer["deliveries"]["failed"] == 1
    assert answer["deliveries"]["failures"][0]["topic"] == "orders/create"


def test_deliveries_waiting_too_long_say_the_intake_is_stuck(
    runtime: Runtime, shops: tuple[int, int]
) -> None:
    ours, _ = shops
    with runtime.sessions.begin() as session:
        session.add(
            _delivery(ours, "1", "orders/paid", NOW - timedelta(minutes=2), DeliveryStatus.RECEIVED)
        )
    fresh = _report(runtime, ours)
    assert (fresh.pending, fresh.stuck) == (1, False)
    later = _report(runtime, ours, NOW + health.STUCK_AFTER)
    assert (later.pending, later.stuck, later.healthy) == (1, True, False)


def test_reconciliation_cursors_subscriptions_and_open_notices_are_shown(
    runtime: Runtime, shops: tuple[int, int]
) -> None:
    ours, theirs = shops
    with runtime.sessions.begin() as session:
        session.add(
            SyncCursor(
                shop_id=ours,
                resource="orders",
                synced_until=NOW - timedelta(hours=1),
                ran_at=NOW - timedelta(minutes=50),
            )
        )
        session.add(SyncCursor(shop_id=theirs, resource="customers", synced_until=NOW, ran_at=NOW))
        session.add(
            Subscription(
                shop_id=ours, topic="orders/paid", remote_id="gid://1", address="x", status="active"
            )
        )
        raise_notice(session, ours, "webhook_disabled", "Your store disabled a webhook.", NOW)
        raise_notice(session, ours, "gone", "Cleared already.", NOW)
        clear_notice(session, ours, "gone", NOW)
        raise_notice(session, theirs, "other", "Not yours.", NOW)
    report = _report(runtime, ours)
    assert [(c["resource"], c["ran_at"]) for c in report.cursors] == [
        ("orders", NOW - timedelta(minutes=50))
    ]
    assert [s["topic"] for s in report.subscriptions] == ["orders/paid"]
    assert [n["message"] for n in report.notices] == ["Your store disabled a webhook."]
    assert not report.healthy
    answer = report.as_dict()
    assert answer["cursors"][0]["ran_at"] == (NOW - timedelta(minutes=50)).isoformat()
    assert answer["notices"][0]["code"] == "webhook_disabled"


def test_a_subscription_the_platform_paused_is_not_healthy(
    runtime: Runtime, shops: tuple[int, int]
) -> None:
    ours, _ = shops
    with runtime.sessions.begin() as session:
        session.add(
            Subscription(
                shop_id=ours, topic="order.updated", remote_id="7", address="x", status="paused"
            )
        )
    assert not _report(runtime, ours).healthy


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (None, None),
        ("no colon here", "no colon here"),
        ("PayloadError: not JSON", "the webhook's body could not be read (not JSON)"),
        ("KeyError: 'x'", "processing failed (KeyError: 'x')"),
    ],
)
def test_intake_errors_read_as_words(error: str | None, says: str | None) -> None:
    assert health.error_words(error) == says
