"""Helpers for tests: signing like the platforms do, running workers, reading the store."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from rq import SimpleWorker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapters.events import Event, Money, from_dict, to_dict
from adapters.platform import ShopContext
from adapters.registry import PLATFORMS
from jobs.queues import ALL_QUEUES
from jobs.runtime import Runtime

FIXTURES = Path(__file__).parent / "fixtures"

# The shops every web test registers (see the ``client`` fixture in conftest.py).
SHOPIFY_SHOP = "nordljus-test.myshopify.com"
SHOPIFY_SECRET = "shopify-app-secret"  # the app's, as the ``settings`` fixture sets it
#: shop settings under which every cart reminder is due at once and never held back
#: by quiet hours or caps: the pipeline is what is under test, not the guards
INSTANT: dict[str, Any] = {
    "flows": {"cart_recovery": {"delay_1_hours": 0, "delay_2_hours": 0, "delay_3_hours": 0}},
    "engine": {
        "quiet_end": "00:00",
        "quiet_start": "23:59:59",
        "min_gap_hours": 0,
        "marketing_per_window": 100,
    },
}
STORE = "https://butik.example.se/"
WOO_SECRET = "9d8c7b6a5f4e3d2c1b0a"


def sign(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, body)): how both Shopify and WooCommerce sign."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def shopify_headers(
    topic: str, body: bytes, secret: str, shop: str, webhook_id: str
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign(secret, body),
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": "2026-07",
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Triggered-At": "2026-09-14T17:12:41.000000Z",
        "X-Shopify-Event-Id": "event-" + webhook_id,
    }


def woocommerce_headers(
    topic: str, body: bytes, secret: str, source: str, delivery_id: str
) -> dict[str, str]:
    resource, event = topic.split(".", 1)
    return {
        "Content-Type": "application/json",
        "User-Agent": "WooCommerce/9.8.1 Hookshot (WordPress/6.8.2)",
        "X-WC-Webhook-Source": source,
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": sign(secret, body),
        "X-WC-Webhook-ID": "17",
        "X-WC-Webhook-Delivery-ID": delivery_id,
    }


def post(client: FlaskClient, platform: str, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(f"/webhooks/{platform}", data=body, headers=headers)


def run_worker(runtime: Runtime) -> None:
    """A real RQ worker in burst mode against the test Redis, in this process."""
    worker = SimpleWorker([runtime.queue(q) for q in ALL_QUEUES], connection=runtime.redis)
    worker.work(burst=True, with_scheduler=False)


def count(session: Session, model: Any, *where: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def sek(amount: str) -> Money:
    return Money(Decimal(amount), "SEK")


class FixtureSet:
    """One platform's fixture deliveries, named ``<topic>__<variant>.json``."""

    def __init__(self, platform: str) -> None:
        self.platform = PLATFORMS[platform]
        self.dir = FIXTURES / platform
        known = (*self.platform.topic_handlers, *self.platform.ignored_topics)
        self._topics = {t.replace("/", "_").replace(".", "_"): t for t in known}

    def paths(self) -> list[Path]:
        return sorted(self.dir.glob("*.json"))

    def topic(self, name: str) -> str:
        """``checkouts_update__guest`` -> ``checkouts/update`` (``order.updated`` for Woo)."""
        prefix = name.split("__", 1)[0]
        assert prefix in self._topics, f"{name} names no topic {self.platform.name} knows"
        return self._topics[prefix]

    def payload(self, name: str) -> dict[str, Any]:
        data = json.loads((self.dir / f"{name}.json").read_bytes())
        assert isinstance(data, dict)
        return data

    def translate(
        self, name: str, shop: ShopContext, body: dict[str, Any] | None = None
    ) -> list[Event]:
        handler = self.platform.topic_handlers[self.topic(name)]
        return handler(self.payload(name) if body is None else body, shop)

    def check_round_trip(self, name: str, shop: ShopContext) -> None:
        """Every event the fixture yields is in UTC and survives serialisation."""
        topic = self.topic(name)
        if topic in self.platform.ignored_topics:
            assert topic not in self.platform.topic_handlers
            return
        for event in self.translate(name, shop):
            assert event.occurred_at.tzinfo is UTC
            assert from_dict(to_dict(event)) == event

    def untested(self, test_module: Path) -> list[str]:
        """Fixtures the test module never names."""
        source = test_module.read_text(encoding="utf-8")
        return [p.stem for p in self.paths() if f'"{p.stem}"' not in source]


def stepping_clock() -> Callable[[], float]:
    """A monotonic clock on which a second passes each time it is read."""
    ticks = itertools.count()
    return lambda: float(next(ticks))
