"""WooCommerce's server side: connect nonces, the REST client, webhooks, reconciliation.

Connecting: WooCommerce's key POST is unsigned and does not name the store,
so the connect request issues a single-use nonce (only its SHA-256 is
stored) that comes back as ``user_id``; a key POST is accepted only for a
live nonce, once.

Reconciliation exists because WooCommerce never retries a failed delivery,
merges the updates of one resource within 10 minutes, and disables a webhook
after repeated failures. Every ``INTERVAL`` a job per shop lists the orders
modified since its cursor (minus an overlap) and the newest customers, and
stores whatever the store knows better than we do as a delivery of its own,
processed by the same path as a webhook: handlers are idempotent and ignore
stale payloads, the engine's ledger keys dedupe, so nothing is sent twice.
It then checks our webhooks and re-activates any the store disabled, telling
the merchant.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from rq import Retry
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.events import utc
from adapters.http import ApiSession
from adapters.platform import AdminApiError
from adapters.woocommerce.client import WEBHOOK_TOPICS, RemoteWebhook, WooCommerceApi
from adapters.woocommerce.webhooks import normalise_store_url
from jobs import admin, intake, notices
from jobs.queues import DEFAULT
from jobs.runtime import Runtime, current
from jobs.shops import ShopError, add_shop, new_webhook_secret
from jobs.store.models import (
    Checkout,
    ConnectNonce,
    Contact,
    Delivery,
    Order,
    Shop,
    ShopStatus,
    Subscription,
    SyncCursor,
    now,
)

log = logging.getLogger(__name__)

PLATFORM = "woocommerce"
#: how long a connect link stays usable (the merchant approves in their store's admin)
NONCE_TTL = timedelta(minutes=15)
#: how often each store is reconciled (the sweeper enqueues it when due)
INTERVAL = timedelta(minutes=15)
#: re-read this much before the cursor: store clocks drift, and updates are merged
OVERLAP = timedelta(minutes=15)
#: retries of webhook set-up after a connect (seconds)
SETUP_RETRIES = (60, 300, 1800, 7200)

NOTICE_WEBHOOKS = "woocommerce_webhooks"
NOTICE_DISABLED = "woocommerce_webhook_disabled"
NOTICE_API = "woocommerce_api"


class ConnectError(ValueError):
    """A connect or key POST we refuse; the message says why."""


def webhook_address(runtime: Runtime) -> str:
    return f"{runtime.settings.base_url}/webhooks/woocommerce"


# --- connect nonces ----------------------------------------------------------------


def _digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode("utf-8")).hexdigest()


def issue_nonce(session: Session, address: str, dev_mode: bool) -> tuple[str, str]:
    """A fresh nonce for connecting the store at ``address``; returns (nonce, store home)."""
    key = normalise_store_url(address)
    home = store_home(address, dev_mode)
    nonce = secrets.token_urlsafe(32)
    session.add(
        ConnectNonce(
            platform=PLATFORM,
            nonce_hash=_digest(nonce),
            shop_key=key,
            address=home,
            expires_at=now() + NONCE_TTL,
        )
    )
    session.flush()
    return nonce, home


def store_home(address: str, dev_mode: bool) -> str:
    text = address.strip()
    if "://" not in text:
        text = "https://" + text
    if not text.startswith("https://") and not (dev_mode and text.startswith("http://")):
        raise ConnectError("the store address must start with https:// (http only in development)")
    return text.rstrip("/")


def accept_keys(runtime: Runtime, body: Any) -> int:
    """The store's key POST: accepted once, for a live nonce. Returns the shop id."""
    if not isinstance(body, dict):
        raise ConnectError("the key POST must be a JSON object")
    nonce, key, secret = (body.get(k) for k in ("user_id", "consumer_key", "consumer_secret"))
    if not all(isinstance(v, str) and v for v in (nonce, key, secret)):
        raise ConnectError("the key POST lacks user_id, consumer_key or consumer_secret")
    if body.get("key_permissions") != "read_write":
        raise ConnectError("triggerpost needs read_write keys (to create coupons and webhooks)")
    at = now()
    with runtime.sessions.begin() as session:
        taken = session.execute(
            update(ConnectNonce)
            .where(
                ConnectNonce.nonce_hash == _digest(str(nonce)),
                ConnectNonce.platform == PLATFORM,
                ConnectNonce.used_at.is_(None),
                ConnectNonce.expires_at > at,
            )
            .values(used_at=at)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            raise ConnectError("unknown, used or expired connect nonce")
        row = session.scalars(
            select(ConnectNonce).where(ConnectNonce.nonce_hash == _digest(str(nonce)))
        ).one()
        try:
            shop = add_shop(
                session,
                runtime.secrets,
                PLATFORM,
                row.address,
                consumer_key=str(key),
                consumer_secret=str(secret),
                # a new secret on every connect: old webhooks are re-pointed to it
                webhook_secret=new_webhook_secret(),
                dev_mode=not runtime.settings.production,
            )
        except ShopError as exc:
            raise ConnectError(str(exc)) from exc
        notices.raise_notice(
            session, shop.id, NOTICE_WEBHOOKS, "triggerpost is setting up your store's webhooks."
        )
        shop_id = shop.id
    runtime.queue(DEFAULT).enqueue(
        setup_webhooks,
        shop_id,
        retry=Retry(max=len(SETUP_RETRIES), interval=list(SETUP_RETRIES)),
        failure_ttl=30 * 86400,
    )
    return shop_id


def connected_shop(session: Session, nonce: str) -> int | None:
    """The shop a completed connect made (the merchant's browser comes back with the nonce)."""
    row = session.scalars(
        select(ConnectNonce).where(
            ConnectNonce.nonce_hash == _digest(nonce),
            ConnectNonce.platform == PLATFORM,
            ConnectNonce.used_at.is_not(None),
        )
    ).one_or_none()
    if row is None or row.used_at is None or now() - row.used_at > NONCE_TTL:
        return None
    return session.scalar(
        select(Shop.id).where(
            Shop.platform == PLATFORM, Shop.key == row.shop_key, Shop.status == ShopStatus.ACTIVE
        )
    )


# --- the REST client -----------------------------------------------------------------


def api(runtime: Runtime, shop: Shop, http: ApiSession | None = None) -> WooCommerceApi | None:
    """The store's REST client, or None without keys (a webhook-only manual connection)."""
    if (
        shop.status != ShopStatus.ACTIVE
        or not shop.consumer_key_enc
        or not shop.consumer_secret_enc
    ):
        return None
    return WooCommerceApi(
        base_url=shop.base_url,
        consumer_key=runtime.secrets.open(shop.consumer_key_enc),
        consumer_secret=runtime.secrets.open(shop.consumer_secret_enc),
        currency=shop.currency,
        http=http or runtime.api_session(),
    )


admin.register(PLATFORM, api)


def _shop_and_api(runtime: Runtime, shop_id: int) -> tuple[Shop, WooCommerceApi] | None:
    with runtime.sessions() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            return None
        client = api(runtime, shop)
        session.expunge(shop)
    return (shop, client) if client is not None else None


# --- webhooks ----------------------------------------------------------------------


def ensure_webhooks(runtime: Runtime, shop_id: int) -> dict[str, RemoteWebhook]:
    """Our webhooks exist, are active and sign with the shop's current secret."""
    found = _shop_and_api(runtime, shop_id)
    if found is None:
        raise AdminApiError(f"shop {shop_id} has no REST keys", transient=False)
    shop, client = found
    secret = runtime.secrets.open(shop.webhook_secret_enc or "")
    address = webhook_address(runtime)
    ours = {w.topic: w for w in client.webhooks() if w.delivery_url == address}
    made: dict[str, RemoteWebhook] = {}
    for topic in WEBHOOK_TOPICS:
        existing = ours.get(topic)
        if existing is None:
            made[topic] = client.create_webhook(topic, address, secret, f"triggerpost {topic}")
        else:
            made[topic] = client.update_webhook(existing.webhook_id, secret=secret, status="active")
    _record(runtime, shop_id, address, made.values())
    return made


def _record(runtime: Runtime, shop_id: int, address: str, hooks: Iterable[RemoteWebhook]) -> None:
    at = now()
    with runtime.sessions.begin() as session:
        for hook in hooks:
            row = session.scalars(
                select(Subscription).where(
                    Subscription.shop_id == shop_id, Subscription.topic == hook.topic
                )
            ).one_or_none()
            if row is None:
                row = Subscription(shop_id=shop_id, topic=hook.topic, address=address)
                session.add(row)
            row.remote_id = hook.webhook_id
            row.address = address
            row.status = hook.status
            row.checked_at = at
        notices.clear_notice(session, shop_id, NOTICE_WEBHOOKS)


def setup_webhooks(shop_id: int) -> int:
    """RQ job after a connect: create the store's webhooks. Raises to be retried."""
    runtime = current()
    try:
        return len(ensure_webhooks(runtime, shop_id))
    except AdminApiError as exc:
        with runtime.sessions.begin() as session:
            if session.get(Shop, shop_id) is not None:
                notices.raise_notice(
                    session,
                    shop_id,
                    NOTICE_WEBHOOKS,
                    f"triggerpost could not yet create your store's webhooks ({exc}); "
                    "it keeps trying.",
                )
        raise


# --- reconciliation ----------------------------------------------------------------


def _cursor_row(session: Session, shop_id: int, resource: str) -> SyncCursor | None:
    return session.scalars(
        select(SyncCursor).where(SyncCursor.shop_id == shop_id, SyncCursor.resource == resource)
    ).one_or_none()


def _cursor(session: Session, shop_id: int, resource: str, default: datetime) -> datetime:
    row = _cursor_row(session, shop_id, resource)
    return row.synced_until if row is not None else default


def _advance(session: Session, shop_id: int, resource: str, until: datetime, at: datetime) -> None:
    row = _cursor_row(session, shop_id, resource)
    if row is None:
        session.add(SyncCursor(shop_id=shop_id, resource=resource, synced_until=until, ran_at=at))
    else:
        row.synced_until = max(row.synced_until, until)
        row.ran_at = at


def _modified(item: dict[str, Any]) -> datetime | None:
    text = item.get("date_modified_gmt") or item.get("date_created_gmt")
    if not isinstance(text, str):
        return None
    parsed = datetime.fromisoformat(text)
    # the *_gmt fields are UTC written without an offset
    return utc(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def _known(session: Session, shop_id: int, kind: str, item: dict[str, Any]) -> bool:
    """We already hold this version (or a newer one) of the order or customer."""
    changed = _modified(item)
    if changed is None:
        return False
    ident = str(item.get("id"))
    if kind == "order":
        times = [
            session.scalar(
                select(Order.platform_updated_at).where(
                    Order.shop_id == shop_id, Order.order_id == ident
                )
            ),
            session.scalar(
                select(Checkout.platform_updated_at).where(
                    Checkout.shop_id == shop_id, Checkout.token == ident
                )
            ),
        ]
    else:
        times = [
            session.scalar(
                select(Contact.source_updated_at).where(
                    Contact.shop_id == shop_id, Contact.customer_id == ident
                )
            )
        ]
    return any(t is not None and t >= changed for t in times)


def _store_missed(session: Session, shop: Shop, topic: str, item: dict[str, Any]) -> bool:
    """Store one listed resource as a delivery of its own; False if already stored."""
    changed = item.get("date_modified_gmt") or item.get("date_created_gmt") or ""
    key = f"sync:{topic}:{item.get('id')}:{changed}"
    try:
        with session.begin_nested():
            session.add(
                Delivery(
                    shop_id=shop.id,
                    platform=PLATFORM,
                    topic=topic,
                    delivery_key=key[:128],
                    headers={"X-Triggerpost-Source": "reconciliation"},
                    # the same bytes a webhook would carry (WooCommerce sends the REST resource)
                    body=json.dumps(item, separators=(",", ":")).encode("utf-8"),
                    received_at=now(),
                )
            )
    except IntegrityError:
        return False
    return True


def reconcile(runtime: Runtime, shop_id: int) -> dict[str, int]:
    """One reconciliation pass for one store; returns what it found and did."""
    found = _shop_and_api(runtime, shop_id)
    if found is None:
        return {}
    shop, client = found
    started = now()
    counts = {"orders_seen": 0, "customers_seen": 0, "missed": 0, "reactivated": 0}
    # the first pass starts at the connect: reconciliation recovers what webhooks
    # missed since, it does not import the store's history
    with runtime.sessions() as session:
        since_orders = _cursor(session, shop_id, "orders", shop.installed_at)
        since_customers = _cursor(session, shop_id, "customers", shop.installed_at)
    try:
        orders = list(client.orders_modified_after(since_orders - OVERLAP))
        customers: list[dict[str, Any]] = []
        for item in client.customers_newest_first():
            created = _modified({"date_created_gmt": item.get("date_created_gmt")})
            if created is not None and created < since_customers - OVERLAP:
                break
            customers.append(item)
        hooks = client.webhooks()
    except AdminApiError as exc:
        with runtime.sessions.begin() as session:
            notices.raise_notice(
                session,
                shop_id,
                NOTICE_API,
                f"triggerpost cannot read your store's orders ({exc}). Check that the "
                "REST API keys still exist and that the store is reachable.",
            )
        raise
    with runtime.sessions.begin() as session:
        shop_row = session.get_one(Shop, shop_id)
        for kind, topic, items in (
            ("order", "order.updated", orders),
            ("customer", "customer.updated", customers),
        ):
            counts[f"{kind}s_seen"] = len(items)
            for item in items:
                if not _known(session, shop_id, kind, item) and _store_missed(
                    session, shop_row, topic, item
                ):
                    counts["missed"] += 1
        _advance(session, shop_id, "orders", started, started)
        _advance(session, shop_id, "customers", started, started)
        notices.clear_notice(session, shop_id, NOTICE_API)
    if counts["missed"]:
        log.warning("shop %s: reconciliation found %s missed changes", shop_id, counts["missed"])
        intake.notify(runtime, shop_id, force=True)
    counts["reactivated"] = _revive(runtime, shop, client, hooks)
    return counts


def _revive(
    runtime: Runtime, shop: Shop, client: WooCommerceApi, hooks: list[RemoteWebhook]
) -> int:
    """Re-activate our webhooks the store disabled or paused; recreate missing ones."""
    address = webhook_address(runtime)
    ours = {h.topic: h for h in hooks if h.delivery_url == address}
    revived: list[RemoteWebhook] = []
    missing = [t for t in WEBHOOK_TOPICS if t not in ours]
    for hook in ours.values():
        if hook.status != "active":
            revived.append(client.update_webhook(hook.webhook_id, status="active"))
    if missing:
        ensure_webhooks(runtime, shop.id)
    if revived:
        _record(runtime, shop.id, address, revived)
        with runtime.sessions.begin() as session:
            notices.raise_notice(
                session,
                shop.id,
                NOTICE_DISABLED,
                "Your store had disabled triggerpost's webhook for "
                + ", ".join(sorted(h.topic for h in revived))
                + " after failed deliveries. It was re-activated, and changes made "
                "meanwhile were recovered from your store.",
            )
    return len(revived) + len(missing)


def reconcile_shop(shop_id: int) -> dict[str, int]:
    """RQ job: reconcile one store."""
    return reconcile(current(), shop_id)


def reconcile_job_id(shop_id: int) -> str:
    return f"reconcile-{shop_id}"


def due_shops(session: Session, at: datetime) -> list[int]:
    """Connected stores whose last reconciliation is older than INTERVAL."""
    shops = session.scalars(
        select(Shop.id).where(
            Shop.platform == PLATFORM,
            Shop.status == ShopStatus.ACTIVE,
            Shop.consumer_key_enc.is_not(None),
        )
    ).all()
    recent = set(
        session.scalars(
            select(SyncCursor.shop_id).where(
                SyncCursor.resource == "orders", SyncCursor.ran_at > at - INTERVAL
            )
        )
    )
    return [s for s in shops if s not in recent]


def schedule_due(runtime: Runtime, at: datetime | None = None) -> int:
    """Enqueue a reconciliation for every due store (one job per store at a time)."""
    from rq.job import Job

    with runtime.sessions() as session:
        due = due_shops(session, at or now())
    queued = 0
    for shop_id in due:
        job_id = reconcile_job_id(shop_id)
        if Job.exists(job_id, connection=runtime.redis):
            job = Job.fetch(job_id, connection=runtime.redis)
            if not job.is_finished and not job.is_failed:
                continue
            job.delete()
        runtime.queue(DEFAULT).enqueue(
            reconcile_shop, shop_id, job_id=job_id, result_ttl=0, failure_ttl=86400
        )
        queued += 1
    return queued
