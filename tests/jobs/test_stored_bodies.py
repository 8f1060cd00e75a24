"""Stored bodies the drain cannot read: they fail alone, with a reason, and crash nothing.

The web edge refuses such bodies, but not everything stored came through it:
reconciliation stores the store's REST resources as deliveries of their own,
and rows stored by an older version stay stored.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from jobs.intake import deliveries
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.store.models import Delivery, DeliveryStatus, Order, now
from tests.support import FIXTURES, STORE, WOO_SECRET


def order(order_id: int, note: bytes = b'""') -> bytes:
    """An order as the store's REST API lists it, its note the raw JSON ``note``."""
    resource = json.loads(
        (FIXTURES / "woocommerce/order_created__processing_paid.json").read_bytes()
    )
    resource.update(id=order_id, customer_note="@")
    return json.dumps(resource, separators=(",", ":")).encode().replace(b'"@"', note)


def store(runtime: Runtime, shop_id: int, key: str, body: bytes) -> int:
    """A delivery stored as reconciliation stores the ones webhooks missed."""
    with runtime.sessions.begin() as session:
        delivery = Delivery(
            shop_id=shop_id,
            platform="woocommerce",
            topic="order.updated",
            delivery_key=key,
            headers={"X-Triggerpost-Source": "reconciliation"},
            body=body,
            received_at=now(),
        )
        session.add(delivery)
        session.flush()
        return delivery.id


@pytest.mark.parametrize("depth", [deliveries.MAX_DEPTH + 1, 990, 100_000])
def test_a_stored_body_nested_too_deep_fails_alone_with_its_reason(
    runtime: Runtime, depth: int
) -> None:
    with runtime.sessions.begin() as session:
        shop_id = add_shop(
            session, runtime.secrets, "woocommerce", STORE, webhook_secret=WOO_SECRET
        ).id
    arrays = depth - 1  # the order itself is the first level
    before = store(runtime, shop_id, "sync:1", order(1))
    too_deep = store(runtime, shop_id, "sync:2", order(2, b"[" * arrays + b"]" * arrays))
    after = store(runtime, shop_id, "sync:3", order(3))

    assert deliveries.drain(runtime, shop_id) == 3

    with runtime.sessions() as session:
        rows = {d.id: d for d in session.scalars(select(Delivery))}
        orders = set(session.scalars(select(Order.order_id)))
    assert rows[before].status == rows[after].status == DeliveryStatus.PROCESSED
    assert orders == {"1", "3"}
    assert rows[too_deep].status == DeliveryStatus.FAILED
    assert rows[too_deep].error == f"PayloadError: nested deeper than {deliveries.MAX_DEPTH} levels"
