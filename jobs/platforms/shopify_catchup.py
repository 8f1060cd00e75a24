"""Shopify's catch-up: what webhooks never brought, read from the Admin API, processed once.

Shopify retries a failed delivery for four hours and then gives up; a
subscription that keeps failing is deleted; and delivery is not guaranteed.
So every :data:`~jobs.platforms.shopify.CATCH_UP_INTERVAL` (the sweeper asks
``SERVER.reconcile_due``) one job per installed shop:

1. pages through the customers, then the orders, updated since the shop's
   cursor minus :data:`OVERLAP` (``sortKey: UPDATED_AT``, ids and times only),
   at most :data:`PAGES_PER_PASS` pages of each: the cursor moves with every
   page committed, so the next pass continues where this one stopped;
2. reads whole only the ones we do not hold at that version (the stored
   order's ``platform_updated_at``, the contact's ``source_updated_at``), and
   stores each as a delivery of its own, body the node as Shopify answered,
   under a ``graphql/`` topic (:mod:`adapters.shopify.graphql`): the drain
   translates it with the node translator and applies it on the same path as
   a webhook. Its key names the resource and its version, so a second pass
   stores nothing again, and the handlers' idempotence and the ledger's keys
   mean a change that a late webhook brings too is acted on once;
3. checks that every subscription we need exists at our address (asking for
   the birthday's metafield namespace), re-creates what is missing or points
   elsewhere, and tells the merchant what was repaired;
4. once a day (or until it first works), makes sure the shop's web pixel is on
   with the right settings (:func:`~jobs.platforms.shopify.connect_pixel`).

A throttled or unreachable API ends the pass early: what was committed stays,
the cursor is never moved past what was read, and the next pass goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.payload import utc_time
from adapters.platform import AdminApiError
from adapters.shopify import graphql
from adapters.shopify.client import ShopifyAdmin, topic_enum
from jobs.intake import deliveries
from jobs.merchant import notices
from jobs.platforms.server import advance_cursor, sync_cursor
from jobs.platforms.shopify import (
    CATCH_UP_RESOURCE,
    CUSTOMER_TOPICS,
    WEBHOOK_TOPICS,
    admin_client,
    connect_pixel,
    pixel_due,
    register_webhooks_now,
    webhook_address,
)
from jobs.runtime import Runtime
from jobs.shop_settings import load as load_settings
from jobs.store.models import Contact, Delivery, Order, Shop, now

log = logging.getLogger(__name__)

#: re-read this much before the cursor: a change is stamped before it is listed, and
#: clocks differ
OVERLAP = timedelta(minutes=5)
#: listing pages per resource per pass (100 each); the rest waits for the next pass
PAGES_PER_PASS = 10
#: the source header every delivery the catch-up stores carries (as WooCommerce's)
SOURCE_HEADERS = {"X-Triggerpost-Source": "reconciliation", "X-Triggerpost-Shape": "graphql"}

NOTICE_API = "shopify_api"
NOTICE_REPAIRED = "shopify_webhooks_repaired"


def _stamp(node: Mapping[str, Any], key: str) -> datetime | None:
    try:
        return utc_time(node.get(key))
    except (TypeError, ValueError):
        return None


def _known(session: Session, shop_id: int, resource: str, ident: str, changed: datetime) -> bool:
    """We already hold this version (or a newer one) of the order or customer."""
    if resource == "orders":
        held = session.scalar(
            select(Order.platform_updated_at).where(
                Order.shop_id == shop_id, Order.order_id == ident
            )
        )
    else:
        held = session.scalar(
            select(Contact.source_updated_at).where(
                Contact.shop_id == shop_id, Contact.customer_id == ident
            )
        )
    return held is not None and held >= changed


def _customer_known(session: Session, shop_id: int, ident: str) -> bool:
    found = session.scalar(
        select(Contact.id).where(Contact.shop_id == shop_id, Contact.customer_id == ident)
    )
    return found is not None


class _Listed:
    """One listed node: its numeric id, GID and times (None when unreadable)."""

    def __init__(self, node: Any) -> None:
        ok = isinstance(node, Mapping)
        self.gid = str(node.get("id") or "") if ok else ""
        self.ident = str(node.get("legacyResourceId") or self.gid.rsplit("/", 1)[-1]) if ok else ""
        self.updated_at = _stamp(node, "updatedAt") if ok else None
        self.created_at = _stamp(node, "createdAt") if ok else None

    @property
    def usable(self) -> bool:
        return bool(self.gid and self.ident and self.updated_at)


def _read_whole(
    client: ShopifyAdmin, resource: str, gids: Sequence[str], fields: str
) -> list[dict[str, Any]]:
    kind, per_query = (
        ("Order", graphql.ORDERS_PER_QUERY)
        if resource == "orders"
        else ("Customer", graphql.CUSTOMERS_PER_QUERY)
    )
    query = graphql.nodes_query(kind, fields)
    found: list[dict[str, Any]] = []
    for start in range(0, len(gids), per_query):
        nodes = client.graphql(query, {"ids": list(gids[start : start + per_query])}).get("nodes")
        if not isinstance(nodes, list):
            raise AdminApiError(f"Shopify answered without the {resource}' nodes", transient=False)
        # null: deleted since it was listed (its deletion is another topic's business)
        found += [node for node in nodes if isinstance(node, dict) and node.get("id")]
    return found


def _store_missed(session: Session, shop_id: int, topic: str, node: dict[str, Any]) -> bool:
    """Store one node as a delivery of its own; False if this version is already stored."""
    listed = _Listed(node)
    key = f"graphql:{topic}:{listed.ident}:{node.get('updatedAt')}"
    try:
        with session.begin_nested():
            session.add(
                Delivery(
                    shop_id=shop_id,
                    platform="shopify",
                    topic=topic,
                    delivery_key=key[:128],
                    headers=dict(SOURCE_HEADERS),
                    # the node exactly as Shopify answered it
                    body=json.dumps(node, separators=(",", ":"), ensure_ascii=False).encode(),
                    received_at=now(),
                    triggered_at=listed.updated_at,
                )
            )
    except IntegrityError:
        return False
    return True


def _pass(
    runtime: Runtime,
    shop_id: int,
    client: ShopifyAdmin,
    resource: str,
    fields: str,
    since: datetime,
    started: datetime,
    counts: dict[str, int],
) -> None:
    """One resource's part of a pass: page, read the unknown whole, store, move the cursor."""
    window = since - OVERLAP
    query = graphql.listing_query(resource)
    search = graphql.search_since("updated_at", window)
    after: str | None = None
    for _ in range(PAGES_PER_PASS):
        page = client.graphql(query, {"query": search, "after": after}).get(resource) or {}
        listed = [_Listed(node) for node in page.get("nodes") or []]
        bad = [item for item in listed if not item.usable]
        if bad:
            log.warning(
                "shop %s: %d %s listed without id or time, left out", shop_id, len(bad), resource
            )
        listed = [item for item in listed if item.usable]
        counts[f"{resource}_seen"] += len(listed)
        with runtime.sessions() as session:
            unknown = [
                item
                for item in listed
                if item.updated_at is not None
                and not _known(session, shop_id, resource, item.ident, item.updated_at)
            ]
        whole = _read_whole(client, resource, [item.gid for item in unknown], fields)
        info = page.get("pageInfo") or {}
        more = bool(info.get("hasNextPage")) and bool(info.get("endCursor"))
        times = [item.updated_at for item in listed if item.updated_at is not None]
        with runtime.sessions.begin() as session:
            for node in whole:
                topic = _topic_for(session, shop_id, resource, node, window)
                if _store_missed(session, shop_id, topic, node):
                    counts["missed"] += 1
            # all changed up to the newest listed is seen; done: all up to the pass's start
            until = started if not more else max(times, default=since)
            advance_cursor(session, shop_id, resource, until, started)
        if not more:
            return
        after = str(info["endCursor"])
    counts["pages_capped"] += 1
    log.info(
        "shop %s: %s catch-up stopped at %d pages; the next pass goes on",
        shop_id,
        resource,
        PAGES_PER_PASS,
    )


def _topic_for(
    session: Session, shop_id: int, resource: str, node: Mapping[str, Any], window: datetime
) -> str:
    """orders: the order as it is now; customers: a creation we never heard of, if it was
    created in the window and we know no contact of that id, else an update."""
    if resource == "orders":
        return graphql.ORDER_TOPIC
    listed = _Listed(node)
    if (
        listed.created_at is not None
        and listed.created_at >= window
        and not _customer_known(session, shop_id, listed.ident)
    ):
        return graphql.CUSTOMER_CREATED_TOPIC
    return graphql.CUSTOMER_UPDATED_TOPIC


def catch_up(runtime: Runtime, shop_id: int) -> dict[str, int]:
    """One catch-up pass for one shop (the ``catch_up_shop`` job's work): what it
    found and did. Raises on a permanent API failure (the merchant is told)."""
    with runtime.sessions() as session:
        shop = session.get(Shop, shop_id)
        client = admin_client(runtime, shop) if shop is not None else None
        if shop is None or client is None:
            return {}
        rule = load_settings(shop).birthday
        first_since = shop.installed_at
        # the first pass starts at the install: the catch-up recovers what webhooks
        # missed since, the history import brings what came before
        since = {}
        for resource in ("customers", "orders"):
            row = sync_cursor(session, shop_id, resource)
            since[resource] = row.synced_until if row is not None else first_since
    started = now()
    counts = {
        "customers_seen": 0,
        "orders_seen": 0,
        "missed": 0,
        "pages_capped": 0,
        "interrupted": 0,
        "repaired": 0,
        "pixel": 0,
    }
    fields = {"customers": graphql.customer_fields(rule), "orders": graphql.order_fields()}
    try:
        # customers first: their orders then find them
        for resource in ("customers", "orders"):
            _pass(
                runtime,
                shop_id,
                client,
                resource,
                fields[resource],
                since[resource],
                started,
                counts,
            )
    except AdminApiError as exc:
        if not exc.transient:
            with runtime.sessions.begin() as session:
                notices.raise_notice(
                    session,
                    shop_id,
                    NOTICE_API,
                    f"triggerpost cannot read your shop's orders and customers ({exc}); "
                    "emails that depend on changes it missed may not go out.",
                )
                # tried: the next try waits for the next interval, not the next sweep
                advance_cursor(session, shop_id, CATCH_UP_RESOURCE, since["orders"], started)
            raise
        # throttled or unreachable: what was committed stays, the next pass goes on
        log.warning("shop %s: catch-up interrupted, the next pass continues: %s", shop_id, exc)
        counts["interrupted"] = 1
    with runtime.sessions.begin() as session:
        # the schedule reads ran_at: a pass ran, even one cut short
        advance_cursor(session, shop_id, CATCH_UP_RESOURCE, since["orders"], started)
        if not counts["interrupted"]:
            notices.clear_notice(session, shop_id, NOTICE_API)
    if counts["missed"]:
        log.warning("shop %s: catch-up found %s missed changes", shop_id, counts["missed"])
        deliveries.notify(runtime, shop_id, force=True)
    try:
        counts["repaired"] = len(
            check_subscriptions(runtime, shop_id, client, rule.metafield_namespace)
        )
    except AdminApiError as exc:
        if not exc.transient:
            raise
        log.warning("shop %s: subscriptions not checked this pass: %s", shop_id, exc)
    if pixel_due(runtime, shop_id):
        try:
            connect_pixel(runtime, shop_id)
            counts["pixel"] = 1
        except AdminApiError as exc:
            # the merchant was told when it is Shopify's refusal; the orders were caught up
            log.warning("shop %s: web pixel not made sure of this pass: %s", shop_id, exc)
    return counts


def check_subscriptions(
    runtime: Runtime, shop_id: int, client: ShopifyAdmin, namespace: str
) -> list[str]:
    """Every topic we need subscribed at our address (customer topics asking for the
    birthday's namespace); what was missing or wrong is re-created and the merchant told.
    Returns the topics repaired."""
    address = webhook_address(runtime)
    listed = client.subscription_list()
    ours = {s.topic: s for s in listed if s.address == address}
    elsewhere = {s.topic for s in listed if s.address != address}
    missing: list[str] = []
    moved: list[str] = []
    narrow: list[str] = []
    for topic in WEBHOOK_TOPICS:
        mine = ours.get(topic_enum(topic))
        if mine is None:
            (moved if topic_enum(topic) in elsewhere else missing).append(topic)
        elif topic in CUSTOMER_TOPICS and namespace not in mine.namespaces:
            narrow.append(topic)
    repaired = missing + moved + narrow
    if not repaired:
        return []
    register_webhooks_now(runtime, shop_id)
    parts = []
    if missing:
        parts.append("missing: " + ", ".join(missing))
    if moved:
        parts.append("pointing at another address: " + ", ".join(moved))
    if narrow:
        parts.append("not carrying the birthday field: " + ", ".join(narrow))
    log.warning("shop %s: webhook subscriptions repaired (%s)", shop_id, "; ".join(parts))
    with runtime.sessions.begin() as session:
        notices.raise_notice(
            session,
            shop_id,
            NOTICE_REPAIRED,
            "triggerpost found some of its subscriptions to your shop's events "
            f"{'; '.join(parts)}. They were re-created, and the changes made meanwhile "
            "were recovered from your shop.",
        )
    return repaired
