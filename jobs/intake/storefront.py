"""Storefront events as deliveries: one row per event, through the webhooks' own intake.

A storefront event (connector.storefront) is stored like a webhook delivery,
so the group commit, the drain, the sweeper and the retries all hold for it:

==============  ==============================================================
platform        the shop's platform
topic           ``storefront/<type>`` (``storefront/product_viewed``, ...)
delivery_key    ``sf-`` + SHA-256 hex of ``<visitor>:<event id>``: a replayed
                event (a beacon sent twice, a retry) is stored once
headers         ``{"X-Triggerpost-Source": "storefront"}``
body            canonical JSON (sorted keys, no spaces) of ``visitor``, ``id``,
                ``type``, ``at`` (exactly as the browser sent it),
                ``received_at`` (the server's UTC time) and ``data``
==============  ==============================================================

The browser's ``at`` is only a claim: the translator clamps it to the day
before ``received_at``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from jobs.merchant.storefront import TOPIC_PREFIX
from jobs.store.db import delete_in_batches
from jobs.store.models import Delivery, DeliveryStatus

HEADERS = {"X-Triggerpost-Source": "storefront"}


def delivery_key(visitor: str, event_id: str) -> str:
    return "sf-" + hashlib.sha256(f"{visitor}:{event_id}".encode()).hexdigest()


def utc_iso(at: datetime) -> str:
    """``2026-12-07T10:00:00.000Z``: the server's times in the body, as browsers write theirs."""
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def delivery_row(
    *,
    shop_id: int,
    platform: str,
    visitor: str,
    event: dict[str, Any],
    received_at: datetime,
) -> dict[str, Any]:
    """The row of one event (``id``, ``type``, ``at``, ``data``) as the writer stores it."""
    body = {
        "visitor": visitor,
        "id": event["id"],
        "type": event["type"],
        "at": event["at"],
        "received_at": utc_iso(received_at),
        "data": event["data"],
    }
    return {
        "shop_id": shop_id,
        "platform": platform,
        "topic": TOPIC_PREFIX + event["type"],
        "delivery_key": delivery_key(visitor, event["id"]),
        "headers": dict(HEADERS),
        "body": canonical(body),
        "received_at": received_at,
        "triggered_at": None,
        "status": DeliveryStatus.RECEIVED,
        "attempts": 0,
    }


#: how long a processed storefront event's delivery is kept: its events are in the event
#: log (and an anonymous visitor's in jobs.intake.visitors); the row only catches a
#: replay of the same event, and browsers retry within minutes, not days
KEEP_DAYS = 7
#: rows deleted per transaction (a big shop stores about 100 k a day)
PRUNE_BATCH = 5_000


def prune_all(sessions: Any, at: datetime) -> int:
    """Every processed storefront delivery received more than :data:`KEEP_DAYS` days
    before ``at``, a batch per transaction (by the status and time index); how many.
    Webhooks' deliveries are never touched, nor storefront ones still waiting or failed."""
    return delete_in_batches(
        sessions,
        Delivery,
        Delivery.status == DeliveryStatus.PROCESSED,
        Delivery.received_at < at - timedelta(days=KEEP_DAYS),
        Delivery.topic.startswith(TOPIC_PREFIX, autoescape=True),
        batch=PRUNE_BATCH,
    )
