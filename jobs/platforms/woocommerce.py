"""WooCommerce's server side: connecting a store, the REST client, webhooks, reconciliation.

Connecting proves, it does not take anyone's word. WooCommerce's key POST is
unsigned and does not name the store, and anyone can start a connect for any
store address and post made-up keys for it. So:

1. A connect is started only by a same-site form (see ``connector.platforms.woocommerce``),
   at most :data:`CONNECTS_PER_CLIENT` per address per :data:`NONCE_TTL`; it
   issues a single-use nonce (only its SHA-256 is stored) that comes back as
   ``user_id``.
2. A key POST is accepted once, for a live nonce; its keys wait on the nonce,
   sealed, and the store is answered 200 at once (anything else makes
   WooCommerce delete the key).
3. :func:`verify_connect`, a job, calls the REST API of the store the nonce was
   issued for (through the outbound policy) with those keys. Only if the store
   accepts them does a shop get them: a new shop, or an existing one whose
   keys are replaced and which is reactivated. Keys that do not work change
   nothing, and the merchant is told why.
4. A reconnect rotates the webhook secret, but the old one keeps verifying
   deliveries until the store's webhooks are confirmed re-pointed to the new
   one (:func:`ensure_webhooks`), so no genuine delivery is refused meanwhile.

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

import dataclasses
import json
import logging
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from rq import Retry
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters import events as ev
from adapters.events import utc
from adapters.http import ApiSession, RetryPolicy
from adapters.platform import AdminApiError, Platform, ShopContext, WebhookError, translate
from adapters.registry import PLATFORMS
from adapters.woocommerce.client import PER_PAGE, WEBHOOK_TOPICS, RemoteWebhook, WooCommerceApi
from adapters.woocommerce.webhooks import normalise_store_url
from jobs.intake import deliveries
from jobs.intake import history as history_import
from jobs.merchant import notices
from jobs.merchant.sessions import end_sessions
from jobs.merchant.shops import ShopError, add_shop, new_webhook_secret
from jobs.platforms.server import (
    CONSENT_SOURCE,
    HistoryPage,
    PlatformServer,
    advance_cursor,
    passes_due,
    sync_cursor,
)
from jobs.queues import DEFAULT, enqueue_as
from jobs.runtime import Runtime
from jobs.store.models import (
    Checkout,
    ConnectNonce,
    ConnectState,
    Contact,
    Delivery,
    Order,
    Shop,
    ShopStatus,
    Subscription,
    now,
)
from jobs.store.secrets import token_digest

log = logging.getLogger(__name__)

PLATFORM = "woocommerce"
#: how long a connect link stays usable (the merchant approves in their store's admin)
NONCE_TTL = timedelta(minutes=15)
#: connects one address may start per NONCE_TTL (each may make us call a store)
CONNECTS_PER_CLIENT = 10
#: how long a connect's row is kept (the merchant's return page reads it)
KEEP_CONNECTS = timedelta(days=1)
#: how often each store is reconciled (the sweeper enqueues it when due)
INTERVAL = timedelta(minutes=15)
#: re-read this much before the cursor: store clocks drift, and updates are merged
OVERLAP = timedelta(minutes=15)
#: retries of webhook set-up after a connect (seconds)
SETUP_RETRIES = (60, 300, 1800, 7200)
#: trying a store's keys: the merchant is waiting on the return page
VERIFY_RETRY = RetryPolicy(attempts=3, cap=4.0)
VERIFY_TIMEOUT = (5.0, 15.0)
#: the keys WooCommerce makes: ck_/cs_ and 40 hex digits (anything else is not a key)
CONSUMER_KEY = re.compile(r"ck_[0-9a-f]{40}")
CONSUMER_SECRET = re.compile(r"cs_[0-9a-f]{40}")

#: the jobs this module asks for (see jobs.tasks)
VERIFY_CONNECT = "jobs.tasks.verify_connect"
SETUP_WEBHOOKS = "jobs.tasks.setup_webhooks"
RECONCILE_SHOP = "jobs.tasks.reconcile_shop"

NOTICE_WEBHOOKS = "woocommerce_webhooks"
NOTICE_DISABLED = "woocommerce_webhook_disabled"
NOTICE_API = "woocommerce_api"


class ConnectError(ValueError):
    """A connect or key POST we refuse; the message says why."""


class ConnectLimitError(ConnectError):
    """Too many connects from one address; the message says when to try again."""


def webhook_address(runtime: Runtime) -> str:
    return f"{runtime.settings.base_url}/webhooks/woocommerce"


# --- connecting ----------------------------------------------------------------------


def issue_nonce(
    session: Session, address: str, dev_mode: bool, client: str = ""
) -> tuple[str, str]:
    """A fresh nonce for connecting the store at ``address``; returns (nonce, store home).

    ``client`` is the address the request came from: each may start only
    :data:`CONNECTS_PER_CLIENT` connects per :data:`NONCE_TTL`.
    """
    key = normalise_store_url(address)
    home = store_home(address, dev_mode)
    at = now()
    requested_by = token_digest("client:" + client)
    started = session.scalar(
        select(func.count())
        .select_from(ConnectNonce)
        .where(ConnectNonce.requested_by == requested_by, ConnectNonce.created_at > at - NONCE_TTL)
    )
    if (started or 0) >= CONNECTS_PER_CLIENT:
        raise ConnectLimitError(
            "too many connection attempts from your address; try again in a quarter of an hour"
        )
    # connects long over (keys of any that never settled included) are forgotten
    session.execute(
        delete(ConnectNonce).where(
            ConnectNonce.platform == PLATFORM, ConnectNonce.created_at < at - KEEP_CONNECTS
        )
    )
    nonce = secrets.token_urlsafe(32)
    session.add(
        ConnectNonce(
            platform=PLATFORM,
            nonce_hash=token_digest(nonce),
            shop_key=key,
            address=home,
            created_at=at,
            expires_at=at + NONCE_TTL,
            requested_by=requested_by,
            state=ConnectState.ISSUED,
        )
    )
    session.flush()
    return nonce, home


def store_home(address: str, dev_mode: bool) -> str:
    """The store's home URL as we will call it: scheme, host, port and path only."""
    text = address.strip()
    if "://" not in text:
        text = "https://" + text
    if not text.startswith("https://") and not (dev_mode and text.startswith("http://")):
        raise ConnectError("the store address must start with https:// (http only in development)")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (a port that is not a number raises here)
        (parts.hostname or "").encode("idna")
    except (ValueError, UnicodeError):
        raise ConnectError("that is not a web address a store can have") from None
    if not parts.hostname or parts.username is not None or parts.query or parts.fragment:
        raise ConnectError("give the store's address only, e.g. https://shop.example.com")
    return text.rstrip("/")


def accept_keys(runtime: Runtime, body: Any) -> int:
    """The store's key POST: its keys wait on the live nonce, untrusted, until
    :func:`verify_connect` has tried them. Returns the nonce's id."""
    if not isinstance(body, dict):
        raise ConnectError("the key POST must be a JSON object")
    nonce, key, secret = (body.get(k) for k in ("user_id", "consumer_key", "consumer_secret"))
    if not all(isinstance(v, str) and v for v in (nonce, key, secret)):
        raise ConnectError("the key POST lacks user_id, consumer_key or consumer_secret")
    if body.get("key_permissions") != "read_write":
        raise ConnectError("triggerpost needs read_write keys (to create coupons and webhooks)")
    if not CONSUMER_KEY.fullmatch(str(key)) or not CONSUMER_SECRET.fullmatch(str(secret)):
        raise ConnectError("the key POST does not carry WooCommerce REST keys")
    at = now()
    box = runtime.secrets
    with runtime.sessions.begin() as session:
        taken = session.execute(
            update(ConnectNonce)
            .where(
                ConnectNonce.nonce_hash == token_digest(str(nonce)),
                ConnectNonce.platform == PLATFORM,
                ConnectNonce.state == ConnectState.ISSUED,
                ConnectNonce.used_at.is_(None),
                ConnectNonce.expires_at > at,
            )
            .values(
                used_at=at,
                state=ConnectState.VERIFYING,
                consumer_key_enc=box.seal(str(key)),
                consumer_secret_enc=box.seal(str(secret)),
            )
            .returning(ConnectNonce.id)
            .execution_options(synchronize_session=False)
        )
        nonce_id = taken.scalar_one_or_none()
        if nonce_id is None:
            raise ConnectError("unknown, used or expired connect nonce")
    runtime.queue(DEFAULT).enqueue(VERIFY_CONNECT, nonce_id, failure_ttl=30 * 86400)
    return nonce_id


def _settle(
    session: Session, row: ConnectNonce, state: ConnectState, at: datetime, **values: Any
) -> None:
    row.state = state
    row.settled_at = at
    # the candidate keys are the shop's now, or worthless: either way not kept here
    row.consumer_key_enc = row.consumer_secret_enc = None
    for name, value in values.items():
        setattr(row, name, value)


def verify_connect(runtime: Runtime, nonce_id: int) -> str:
    """The ``verify_connect`` job's work: try the posted keys against the store;
    connect it only if they work.

    Returns the connect's final state. A store that cannot be reached or
    refuses the keys is told to the merchant on the return page; nothing of
    an existing shop changes.
    """
    with runtime.sessions() as session:
        row = session.get(ConnectNonce, nonce_id)
        if row is None or row.state != ConnectState.VERIFYING:
            return row.state if row is not None else "unknown"
        home, key_sealed, secret_sealed = row.address, row.consumer_key_enc, row.consumer_secret_enc
    box = runtime.secrets
    candidate = WooCommerceApi(
        base_url=home,
        consumer_key=box.open(key_sealed or ""),
        consumer_secret=box.open(secret_sealed or ""),
        http=runtime.api_session(retry=VERIFY_RETRY, timeout=VERIFY_TIMEOUT),
    )
    try:
        candidate.verify_keys()
    except AdminApiError as exc:
        log.warning("connect %s to %s refused: %s", nonce_id, home, exc)
        reason = _refusal(exc)
        with runtime.sessions.begin() as session:
            row = session.get_one(ConnectNonce, nonce_id)
            if row.state == ConnectState.VERIFYING:
                _settle(session, row, ConnectState.REFUSED, now(), reason=reason)
        return ConnectState.REFUSED
    with runtime.sessions.begin() as session:
        row = session.get_one(ConnectNonce, nonce_id)
        if row.state != ConnectState.VERIFYING:
            return row.state
        at = now()
        try:
            shop = connect_store(
                session,
                runtime,
                row.address,
                consumer_key=candidate.consumer_key,
                consumer_secret=candidate.consumer_secret,
            )
        except ShopError as exc:
            _settle(session, row, ConnectState.REFUSED, at, reason=str(exc))
            return ConnectState.REFUSED
        _settle(session, row, ConnectState.CONNECTED, at, shop_id=shop.id)
        notices.raise_notice(
            session, shop.id, NOTICE_WEBHOOKS, "triggerpost is setting up your store's webhooks."
        )
        shop_id = shop.id
    log.info("WooCommerce shop %s connected (keys verified against %s)", shop_id, home)
    runtime.queue(DEFAULT).enqueue(
        SETUP_WEBHOOKS,
        shop_id,
        retry=Retry(max=len(SETUP_RETRIES), interval=list(SETUP_RETRIES)),
        failure_ttl=30 * 86400,
    )
    # the store's past customers and orders (once: a reconnect resumes or skips it)
    history_import.enqueue(runtime, shop_id)
    return ConnectState.CONNECTED


def _refusal(exc: AdminApiError) -> str:
    """Why the keys were refused, for the merchant (never the store's own words)."""
    if exc.status in (401, 403):
        return (
            "your store did not accept the keys it sent triggerpost, so nothing was "
            "connected; start the connection again from here"
        )
    if exc.status == 404:
        return (
            "no WooCommerce REST API answers at this address (check the address, and "
            "that the store's permalinks are not set to plain)"
        )
    if exc.transient:
        return "triggerpost could not reach your store; check the address and try again"
    return f"triggerpost could not confirm the connection with your store ({exc})"


def connect_store(
    session: Session, runtime: Runtime, address: str, *, consumer_key: str, consumer_secret: str
) -> Shop:
    """Give the store at ``address`` keys that were just verified against it.

    A new store becomes a shop; a known one gets the new keys and is active
    again, and every merchant session it had ends. Its webhook secret is
    rotated, the old one kept valid until :func:`ensure_webhooks` has
    re-pointed the store's webhooks.
    """
    key = normalise_store_url(address)
    shop = session.scalar(select(Shop).where(Shop.platform == PLATFORM, Shop.key == key))
    old_secret = shop.webhook_secret_enc if shop is not None else None
    shop = add_shop(
        session,
        runtime.secrets,
        PLATFORM,
        address,
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        webhook_secret=new_webhook_secret(),
        dev_mode=not runtime.settings.production,
    )
    shop.previous_webhook_secret_enc = old_secret
    # whoever held the shop before this proof signs in anew
    end_sessions(session, shop.id, now())
    return shop


@dataclass(frozen=True)
class ConnectProgress:
    state: ConnectState
    shop_id: int | None
    reason: str | None
    store: str


def connect_progress(session: Session, nonce: str) -> ConnectProgress | None:
    """Where the connect this nonce started stands; None when unknown or long over."""
    row = session.scalars(
        select(ConnectNonce).where(
            ConnectNonce.nonce_hash == token_digest(nonce), ConnectNonce.platform == PLATFORM
        )
    ).one_or_none()
    if row is None:
        return None
    at = now()
    state = ConnectState(row.state)
    if state == ConnectState.ISSUED and row.expires_at <= at:
        return None
    if row.used_at is not None and at - row.used_at > NONCE_TTL:
        return None
    if state == ConnectState.CONNECTED:
        active = session.scalar(
            select(Shop.id).where(Shop.id == row.shop_id, Shop.status == ShopStatus.ACTIVE)
        )
        if active is None:
            return None
    return ConnectProgress(state, row.shop_id, row.reason, row.address)


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
    _record(runtime, shop_id, address, made.values(), secret)
    return made


def _record(
    runtime: Runtime,
    shop_id: int,
    address: str,
    hooks: Iterable[RemoteWebhook],
    secret: str | None = None,
) -> None:
    """Remember our webhooks; once all of them sign with ``secret`` and it is
    still the shop's, the secret a reconnect replaced stops being accepted."""
    at = now()
    with runtime.sessions.begin() as session:
        shop = session.get(Shop, shop_id)
        if (
            shop is not None
            and secret is not None
            and shop.previous_webhook_secret_enc is not None
            and runtime.secrets.open(shop.webhook_secret_enc or "") == secret
        ):
            shop.previous_webhook_secret_enc = None
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


def setup_webhooks(runtime: Runtime, shop_id: int) -> int:
    """The ``setup_webhooks`` job's work after a connect: create the store's webhooks.
    Raises to be retried."""
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


def _cursor(session: Session, shop_id: int, resource: str, default: datetime) -> datetime:
    row = sync_cursor(session, shop_id, resource)
    return row.synced_until if row is not None else default


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
            # a pass ran, cut short: the store is asked again at the next interval, not
            # at every sweep; the cursors stay where they were
            advance_cursor(session, shop_id, "orders", since_orders, started)
            advance_cursor(session, shop_id, "customers", since_customers, started)
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
        advance_cursor(session, shop_id, "orders", started, started)
        advance_cursor(session, shop_id, "customers", started, started)
        notices.clear_notice(session, shop_id, NOTICE_API)
    if counts["missed"]:
        log.warning("shop %s: reconciliation found %s missed changes", shop_id, counts["missed"])
        deliveries.notify(runtime, shop_id, force=True)
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


# --- the history import ------------------------------------------------------------
#
# The store's customers (all of them: older stores cannot filter them by date, and a
# customer's birthday and consent are only on their account), then its orders created
# since ``since``, both in id order, 100 a page. Each item becomes the events its
# webhook would have made (customer.updated, order.updated), read with the same
# ShopContext as a delivery; an unpaid order (a checkout to WooCommerce) is no part
# of the shop's past purchases and is left out. The cursor is JSON text: the resource
# and page to read next, the last id applied (an item seen again because the pages
# shifted is not applied twice) and the counts so far.

HISTORY_RESOURCES = ("customers", "orders")
HISTORY_TOPICS = {"customers": "customer.updated", "orders": "order.updated"}


@dataclass(frozen=True)
class HistoryCursor:
    resource: str = "customers"
    page: int = 1
    last_id: int = 0
    read: int = 0
    customers_total: int | None = None
    orders_total: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> HistoryCursor:
        if text is None:
            return cls()
        try:
            found = cls(**json.loads(text))
            if found.resource not in HISTORY_RESOURCES or found.page < 1:
                raise ValueError(found.resource)
        except (ValueError, TypeError) as exc:
            raise AdminApiError(
                f"history cursor {text[:80]!r} unreadable", transient=False
            ) from exc
        return found

    def text(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @property
    def total(self) -> int | None:
        if self.customers_total is None or self.orders_total is None:
            return None
        return self.customers_total + self.orders_total


def history(
    runtime: Runtime, shop: Shop, since: datetime, cursor: str | None
) -> Iterator[HistoryPage]:
    """The store's customers, then its orders since ``since``, a page at a time
    (the shop's ``HistorySource``)."""
    client = api(runtime, shop)
    if client is None:
        raise AdminApiError(f"shop {shop.id} has no REST keys: no history to read", transient=False)
    with runtime.sessions.begin() as session:
        context = deliveries.shop_context(session, session.get_one(Shop, shop.id), now())
    platform = PLATFORMS[PLATFORM]
    at = HistoryCursor.parse(cursor)
    if at.orders_total is None:
        at = dataclasses.replace(at, orders_total=client.history_orders(since, 1, per_page=1).total)
    while True:
        if at.resource == "customers":
            listed = client.history_customers(at.page)
            at = dataclasses.replace(at, customers_total=listed.total or at.customers_total)
        else:
            listed = client.history_orders(since, at.page)
            at = dataclasses.replace(at, orders_total=listed.total or at.orders_total)
        events, last_id, skipped = _history_events(
            platform, HISTORY_TOPICS[at.resource], listed.items, at.last_id, context
        )
        read = at.read + len(listed.items)
        last_page = (
            not listed.items
            or (listed.pages is not None and listed.number >= listed.pages)
            or (listed.pages is None and len(listed.items) < PER_PAGE)
        )
        if not last_page:
            at = dataclasses.replace(at, page=at.page + 1, last_id=last_id, read=read)
        elif at.resource == "customers":
            at = dataclasses.replace(at, resource="orders", page=1, last_id=0, read=read)
        else:
            yield HistoryPage(events, None, read, _total(at, read), skipped)
            return
        yield HistoryPage(events, at.text(), read, _total(at, read), skipped)


def _total(at: HistoryCursor, read: int) -> int | None:
    total = at.total
    return max(total, read) if total is not None else None


def _history_events(
    platform: Platform,
    topic: str,
    items: list[Any],
    after_id: int,
    context: ShopContext,
) -> tuple[list[ev.Event], int, int]:
    """The events of a page's items in id order; the last id and how many were skipped."""
    events: list[ev.Event] = []
    last_id, skipped = after_id, 0
    for item in items:
        ident = item.get("id") if isinstance(item, dict) else None
        if isinstance(ident, int) and not isinstance(ident, bool):
            if ident <= after_id:
                continue  # seen on the page before (the pages shifted)
            last_id = max(last_id, ident)
        try:
            made = translate(platform, topic, item, context)
        except WebhookError as exc:
            log.warning("history: a %s listed by the store skipped: %s", topic, exc.message)
            skipped += 1
            continue
        events.extend(e for e in made if not isinstance(e, ev.CheckoutStarted | ev.CheckoutUpdated))
    return events, last_id, skipped


def reconcile_job_id(shop_id: int) -> str:
    return f"reconcile-{shop_id}"


def due_shops(session: Session, at: datetime) -> list[int]:
    """Connected stores whose last reconciliation is older than INTERVAL."""
    return passes_due(session, PLATFORM, Shop.consumer_key_enc, "orders", INTERVAL, at)


def schedule_due(runtime: Runtime, at: datetime | None = None) -> int:
    """Enqueue a reconciliation for every due store (one job per store at a time)."""
    with runtime.sessions() as session:
        due = due_shops(session, at or now())
    return sum(
        enqueue_as(
            runtime.queue(DEFAULT),
            reconcile_job_id(shop_id),
            RECONCILE_SHOP,
            shop_id,
            result_ttl=0,
            failure_ttl=86400,
        )
        for shop_id in due
    )


SERVER = PlatformServer(
    name=PLATFORM,
    admin_client=api,
    reconcile_due=schedule_due,
    history=history,
    settings=frozenset({"consent", "birthday.meta_key"}),
    onboarding=(CONSENT_SOURCE,),
)
