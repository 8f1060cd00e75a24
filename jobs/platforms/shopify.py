"""The Shopify app's server side: install, tokens, the Admin client, subscriptions.

Tokens are expiring offline tokens. The access token is refreshed a few
minutes before it expires, and again when a call answers 401. The refresh
token rotates on every use, so two workers refreshing at once would leave
one of them holding a dead token: a refresh takes a per-shop Redis lock and
re-reads the row once it holds it, and whoever comes second uses the token
the first one stored.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import NamedTuple

from redis.exceptions import RedisError
from rq import Retry
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.http import ApiSession, RetryPolicy
from adapters.platform import AdminApiError
from adapters.shopify import oauth
from adapters.shopify.client import ShopifyAdmin, WebPixel
from adapters.shopify.translate import TOPIC_HANDLERS
from jobs.intake import deliveries
from jobs.intake import history as history_import
from jobs.merchant import notices
from jobs.merchant.sessions import end_sessions
from jobs.merchant.shops import add_shop
from jobs.platforms import shopify_history
from jobs.platforms.server import OWN_CART_EMAIL_OFF, HistoryPage, PlatformServer, passes_due
from jobs.queues import DEFAULT, enqueue_as
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.shop_settings import load as load_settings
from jobs.store.models import (
    ConnectNonce,
    Shop,
    ShopStatus,
    SpentInstallLink,
    Subscription,
    now,
)
from jobs.store.secrets import token_digest

log = logging.getLogger(__name__)

#: refresh this long before the access token expires (calls take seconds, jobs minutes)
REFRESH_AHEAD = timedelta(minutes=5)
#: the mandatory privacy topics go in shopify.app.toml; the API refuses them
COMPLIANCE_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})
#: everything we translate, subscribed through the Admin API at install
WEBHOOK_TOPICS = tuple(sorted(set(TOPIC_HANDLERS) - COMPLIANCE_TOPICS))
#: the topics whose payloads carry the birthday metafield's namespace (a shop setting)
CUSTOMER_TOPICS = ("customers/create", "customers/update")
#: the merchant waits on the install-time attempt: fail fast, the job retries
INSTALL_RETRY = RetryPolicy(attempts=2, cap=2.0)
#: retries of webhook registration after a failed install-time attempt (seconds)
REGISTER_RETRIES = (60, 300, 1800, 7200)
#: how long the merchant may take on Shopify's grant screen
STATE_TTL = timedelta(minutes=15)
#: a signed install query is accepted while its timestamp is within the tolerance,
#: so at most twice the tolerance after we first see it (it may come from the future)
SPENT_LINK_KEPT = 2 * oauth.TIMESTAMP_TOLERANCE

#: how often each shop's missed webhooks are looked for (the sweeper enqueues it when due)
CATCH_UP_INTERVAL = timedelta(minutes=15)
#: the sync cursor whose ``ran_at`` says when the shop's last catch-up pass ran
CATCH_UP_RESOURCE = "orders"

#: the job that retries the registration (see jobs.tasks)
REGISTER_WEBHOOKS = "jobs.tasks.register_webhooks"
#: the catch-up pass of one shop (see jobs.tasks)
CATCH_UP_SHOP = "jobs.tasks.catch_up_shop"

NOTICE_SCOPES = "shopify_scopes"
NOTICE_TOKEN = "shopify_token"  # noqa: S105 (a notice code, not a secret)
NOTICE_WEBHOOKS = "shopify_webhooks"
NOTICE_PIXEL = "shopify_pixel"

#: how often a catch-up pass makes sure of the pixel again (a merchant may delete it)
PIXEL_RECHECK = timedelta(days=1)


class InstallError(RuntimeError):
    """The install cannot complete (the merchant is told why)."""


def webhook_address(runtime: Runtime) -> str:
    return f"{runtime.settings.base_url}/webhooks/shopify"


def _credentials(runtime: Runtime) -> tuple[str, str]:
    settings = runtime.settings
    if not settings.shopify_api_key or not settings.shopify_api_secret:
        raise InstallError(
            "the Shopify app is not configured: set TRIGGERPOST_SHOPIFY_API_KEY and "
            "TRIGGERPOST_SHOPIFY_API_SECRET"
        )
    return settings.shopify_api_key, settings.shopify_api_secret


# --- tokens ----------------------------------------------------------------------


class _Stored(NamedTuple):
    token: str | None
    expires_at: datetime | None
    refresh_sealed: str | None
    domain: str


class StoredTokens:
    """A shop's tokens as the store holds them (implements the client's TokenSource)."""

    def __init__(self, runtime: Runtime, shop_id: int, http: ApiSession | None = None) -> None:
        self.runtime = runtime
        self.shop_id = shop_id
        self.http = http or runtime.api_session()

    def _read(self) -> _Stored:
        with self.runtime.sessions() as session:
            shop = session.get_one(Shop, self.shop_id)
            return _Stored(
                self.runtime.secrets.open_optional(shop.access_token_enc),
                shop.access_token_expires_at,
                shop.refresh_token_enc,
                shop.key,
            )

    def access_token(self) -> str:
        stored = self._read()
        if stored.token is None:
            raise AdminApiError("the shop has no access token (not installed)", transient=False)
        expires_at = stored.expires_at
        if stored.refresh_sealed and expires_at is not None and expires_at - REFRESH_AHEAD <= now():
            return self._refresh(stored.token) or stored.token
        return stored.token

    def after_rejection(self, rejected: str) -> str | None:
        stored = self._read()
        if stored.token is not None and stored.token != rejected:
            return stored.token  # another worker refreshed meanwhile
        return self._refresh(rejected) if stored.refresh_sealed else None

    def _refresh(self, stale: str) -> str | None:
        """Refresh unless someone already replaced ``stale``; the token to use, or None."""
        lock = self.runtime.redis.lock(
            f"triggerpost:shopify-refresh:{self.shop_id}", timeout=60, blocking_timeout=30
        )
        if not lock.acquire():
            raise AdminApiError("another worker is still refreshing the token", transient=True)
        try:
            stored = self._read()
            if stored.token is not None and stored.token != stale:
                return stored.token  # refreshed by another worker while we waited for the lock
            refresh_token = self.runtime.secrets.open_optional(stored.refresh_sealed)
            if refresh_token is None:
                return None
            client_id, client_secret = _credentials(self.runtime)
            # the HTTP call holds no database transaction (SQLite would block writers)
            try:
                grant = oauth.refresh(
                    self.http, stored.domain, client_id, client_secret, refresh_token
                )
            except AdminApiError as exc:
                if exc.transient:
                    raise
                log.warning("shop %s: token refresh refused: %s", self.shop_id, exc)
                with self.runtime.sessions.begin() as session:
                    notices.raise_notice(
                        session,
                        self.shop_id,
                        NOTICE_TOKEN,
                        "Shopify no longer accepts triggerpost's access: open triggerpost "
                        "from your Shopify admin to reconnect it.",
                    )
                return None
            with self.runtime.sessions.begin() as session:
                store_grant(self.runtime, session.get_one(Shop, self.shop_id), grant)
                notices.clear_notice(session, self.shop_id, NOTICE_TOKEN)
            return grant.access_token
        finally:
            with contextlib.suppress(RedisError):  # expired meanwhile: nothing to release
                lock.release()


def store_grant(runtime: Runtime, shop: Shop, grant: oauth.TokenGrant) -> None:
    box = runtime.secrets
    shop.access_token_enc = box.seal(grant.access_token)
    shop.access_token_expires_at = grant.expires_at
    # a refresh answer always carries the rotated refresh token; keep the old one otherwise
    if grant.refresh_token is not None:
        shop.refresh_token_enc = box.seal(grant.refresh_token)
        shop.refresh_token_expires_at = grant.refresh_expires_at
    if grant.scopes:
        shop.scopes = ",".join(sorted(grant.scopes))


def admin_client(
    runtime: Runtime, shop: Shop, http: ApiSession | None = None
) -> ShopifyAdmin | None:
    """The shop's Admin client, or None when it is not installed."""
    if shop.status != ShopStatus.ACTIVE or shop.access_token_enc is None:
        return None
    return ShopifyAdmin(
        shop=shop.key,
        tokens=StoredTokens(runtime, shop.id),
        api_version=runtime.settings.shopify_api_version,
        http=http or runtime.api_session(),
    )


def app_webhook_secrets(settings: Settings) -> tuple[str, ...]:
    """The app's client secret signs every shop's deliveries; during a rotation
    Shopify keeps signing with the older one for up to an hour."""
    return tuple(
        s for s in (settings.shopify_api_secret, settings.shopify_api_secret_previous) if s
    )


# --- the catch-up's schedule (the pass itself: jobs.platforms.shopify_catchup) ----------


def due_shops(session: Session, at: datetime) -> list[int]:
    """Installed shops whose last catch-up is older than CATCH_UP_INTERVAL."""
    return passes_due(
        session, "shopify", Shop.access_token_enc, CATCH_UP_RESOURCE, CATCH_UP_INTERVAL, at
    )


def catch_up_job_id(shop_id: int) -> str:
    return f"shopify-catch-up-{shop_id}"


def schedule_due(runtime: Runtime, at: datetime | None = None) -> int:
    """Enqueue a catch-up for every due shop (one job per shop at a time)."""
    with runtime.sessions() as session:
        due = due_shops(session, at or now())
    return sum(
        enqueue_as(
            runtime.queue(DEFAULT),
            catch_up_job_id(shop_id),
            CATCH_UP_SHOP,
            shop_id,
            result_ttl=0,
            failure_ttl=86400,
        )
        for shop_id in due
    )


# --- the history source (reading the bulk files: jobs.platforms.shopify_history) ---------


def history(
    runtime: Runtime, shop: Shop, since: datetime, cursor: str | None
) -> Iterator[HistoryPage]:
    """The shop's customers, then its orders, updated since ``since``, as pages of events
    to apply as the shop's past, from ``cursor`` on (None: from the start).

    Without the ``read_all_orders`` scope Shopify shows an app only the last 60
    days of orders: the import then holds those, and every customer since ``since``.
    """
    client = admin_client(runtime, shop)
    if client is None:
        raise AdminApiError(f"{shop.key} is not installed: no history to read", transient=False)
    with runtime.sessions() as session:
        context = deliveries.shop_context(session, shop, now())
    reader = shopify_history.BulkReader(client, runtime.api_session())
    return shopify_history.history_pages(reader, context, since, cursor)


SERVER = PlatformServer(
    name="shopify",
    admin_client=admin_client,
    app_webhook_secrets=app_webhook_secrets,
    reconcile_due=schedule_due,
    history=history,
    settings=frozenset({"birthday.metafield"}),
    onboarding=(OWN_CART_EMAIL_OFF,),
)


# --- install ---------------------------------------------------------------------
#
# Both signed requests of an install are single use, held in the store: the
# install query (else a copied App URL signs its holder in again and again
# until its timestamp goes stale), and the OAuth ``state`` (else a browser
# that kept an old session cookie, which still holds the state, passes the
# callback again).


def spend_install_query(
    session: Session, query_string: str, shop_domain: str, at: datetime
) -> bool:
    """True the first time this (verified) install query is used; False for a replay.

    The digest is of the signed message, so the same query signed with the
    rotated-out secret counts as the same link. A concurrent second use loses
    on the unique constraint.
    """
    session.execute(
        delete(SpentInstallLink)
        .where(SpentInstallLink.expires_at <= at)
        .execution_options(synchronize_session=False)
    )
    try:
        with session.begin_nested():
            session.add(
                SpentInstallLink(
                    platform="shopify",
                    digest=token_digest(oauth.query_message(query_string)),
                    shop_key=shop_domain,
                    used_at=at,
                    expires_at=at + SPENT_LINK_KEPT,
                )
            )
    except IntegrityError:
        return False
    return True


def issue_state(session: Session, shop_domain: str, at: datetime) -> str:
    """A fresh OAuth ``state`` for this shop's grant (only its SHA-256 is stored)."""
    session.execute(
        delete(ConnectNonce)
        .where(ConnectNonce.platform == "shopify", ConnectNonce.expires_at <= at)
        .execution_options(synchronize_session=False)
    )
    state = secrets.token_urlsafe(32)
    session.add(
        ConnectNonce(
            platform="shopify",
            nonce_hash=token_digest(state),
            shop_key=shop_domain,
            address=f"https://{shop_domain}",
            created_at=at,
            expires_at=at + STATE_TTL,
        )
    )
    session.flush()
    return state


def consume_state(session: Session, state: str, shop_domain: str, at: datetime) -> bool:
    """Use up a state issued for this shop: True once, while it is live; False after."""
    taken = session.execute(
        update(ConnectNonce)
        .where(
            ConnectNonce.nonce_hash == token_digest(state),
            ConnectNonce.platform == "shopify",
            ConnectNonce.shop_key == shop_domain,
            ConnectNonce.used_at.is_(None),
            ConnectNonce.expires_at > at,
        )
        .values(used_at=at)
        .execution_options(synchronize_session=False)
    )
    return taken.rowcount == 1  # type: ignore[attr-defined]


def complete_install(runtime: Runtime, shop_domain: str, code: str) -> int:
    """The callback's work after its checks: exchange the code, then :func:`install_grant`."""
    client_id, client_secret = _credentials(runtime)
    grant = oauth.exchange_code(runtime.api_session(), shop_domain, client_id, client_secret, code)
    return install_grant(runtime, shop_domain, grant)


def complete_embedded_install(runtime: Runtime, shop_domain: str, id_token: str) -> int:
    """An embedded app opened in a shop that has not installed it through us yet:
    the verified session token exchanged for an offline token, then :func:`install_grant`."""
    client_id, client_secret = _credentials(runtime)
    grant = oauth.exchange_id_token(
        runtime.api_session(), shop_domain, client_id, client_secret, id_token
    )
    return install_grant(runtime, shop_domain, grant)


def install_grant(runtime: Runtime, shop_domain: str, grant: oauth.TokenGrant) -> int:
    """Store a new grant, subscribe, import the history. Returns the shop id.

    Webhook registration is attempted at once; if Shopify cannot be reached it
    is handed to a retrying job and the merchant sees a notice until it works,
    so the merchant is never stuck on a failed install page. Every earlier
    merchant session of the shop ends: whoever held it before this grant signs
    in again.
    """
    missing = oauth.missing_scopes(grant.scopes, runtime.settings.shopify_scopes)
    with runtime.sessions.begin() as session:
        shop = add_shop(session, runtime.secrets, "shopify", shop_domain)
        # a new grant replaces the old one whole: an earlier refresh token is void
        shop.refresh_token_enc = shop.refresh_token_expires_at = None
        store_grant(runtime, shop, grant)
        end_sessions(session, shop.id, now())
        notices.clear_notice(session, shop.id, NOTICE_TOKEN)
        if missing:
            notices.raise_notice(
                session,
                shop.id,
                NOTICE_SCOPES,
                "Shopify did not grant " + ", ".join(missing) + ": some emails cannot be "
                "sent until you approve them (open triggerpost from your Shopify admin).",
            )
        else:
            notices.clear_notice(session, shop.id, NOTICE_SCOPES)
        shop_id = shop.id
    try:
        register_webhooks_now(runtime, shop_id, runtime.api_session(retry=INSTALL_RETRY))
    except AdminApiError as exc:
        log.warning("shop %s: webhook registration failed, retrying later: %s", shop_id, exc)
        with runtime.sessions.begin() as session:
            notices.raise_notice(
                session,
                shop_id,
                NOTICE_WEBHOOKS,
                "triggerpost could not yet subscribe to your shop's events; it keeps trying.",
            )
        runtime.queue(DEFAULT).enqueue(
            REGISTER_WEBHOOKS,
            shop_id,
            retry=Retry(max=len(REGISTER_RETRIES), interval=list(REGISTER_RETRIES)),
            failure_ttl=30 * 86400,
        )
    try:
        connect_pixel(runtime, shop_id, runtime.api_session(retry=INSTALL_RETRY))
    except AdminApiError as exc:
        # the merchant was told (a notice); the catch-up pass tries again
        log.warning("shop %s: the web pixel is not on yet: %s", shop_id, exc)
    if SERVER.history is not None:
        # the shop's past customers and orders (once: a reinstall resumes or skips it)
        history_import.enqueue(runtime, shop_id)
    return shop_id


def register_webhooks_now(
    runtime: Runtime, shop_id: int, http: ApiSession | None = None
) -> dict[str, str]:
    """Subscribe to every topic we translate (idempotent); records them. topic -> GID.

    Customer topics ask for the namespace of the shop's birthday metafield, so
    that their payloads carry it (run again after that setting changes)."""
    with runtime.sessions() as session:
        shop = session.get_one(Shop, shop_id)
        client = admin_client(runtime, shop, http)
        namespace = load_settings(shop).birthday.metafield_namespace
    if client is None:
        raise AdminApiError(f"shop {shop_id} is not installed", transient=False)
    address = webhook_address(runtime)
    made = client.ensure_subscriptions(
        WEBHOOK_TOPICS, address, dict.fromkeys(CUSTOMER_TOPICS, (namespace,))
    )
    details = client.shop_details()
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, shop_id)
        session.execute(delete(Subscription).where(Subscription.shop_id == shop_id))
        for topic, remote_id in made.items():
            session.add(
                Subscription(
                    shop_id=shop_id,
                    topic=topic,
                    remote_id=remote_id,
                    address=address,
                    checked_at=now(),
                )
            )
        if details.name:
            shop.name = details.name
        shop.currency = details.currency or shop.currency
        shop.timezone = details.timezone or shop.timezone
        if details.storefront_url:
            shop.base_url = details.storefront_url
        notices.clear_notice(session, shop_id, NOTICE_WEBHOOKS)
    return made


def register_webhooks(runtime: Runtime, shop_id: int) -> int:
    """The ``register_webhooks`` job's work: the retry of an install's webhook
    registration. Raises to be retried."""
    with runtime.sessions() as session:
        shop = session.scalar(select(Shop).where(Shop.id == shop_id))
        if shop is None or shop.status != ShopStatus.ACTIVE:
            return 0  # uninstalled meanwhile: nothing to subscribe
    return len(register_webhooks_now(runtime, shop_id))


# --- the web pixel (extensions/triggerpost-pixel) ---------------------------------------
#
# The pixel's code is deployed once for the app (`shopify app deploy`); each shop
# runs it only once the app creates the shop's web pixel with its settings: where
# events go and the shop's public storefront key.


def pixel_settings(runtime: Runtime, key: str) -> dict[str, str]:
    """The web pixel's settings, as shopify.extension.toml declares them: the address
    events go to (the pixel adds the key) and the shop's public key."""
    return {"endpoint": f"{runtime.settings.base_url}/events/shopify", "key": key}


def pixel_check_key(shop_id: int) -> str:
    """The Redis key that says the shop's pixel was made sure of within PIXEL_RECHECK.
    Only a schedule: Shopify holds the truth, and a lost key costs one more check."""
    return f"triggerpost:shopify-pixel:{shop_id}"


def _checked(runtime: Runtime, shop_id: int, done: bool) -> None:
    """``done``: not again before PIXEL_RECHECK; otherwise at the next catch-up pass."""
    with contextlib.suppress(RedisError):
        if done:
            runtime.redis.set(pixel_check_key(shop_id), "1", ex=PIXEL_RECHECK)
        else:
            runtime.redis.delete(pixel_check_key(shop_id))


def connect_pixel(runtime: Runtime, shop_id: int, http: ApiSession | None = None) -> WebPixel:
    """Turn the shop's web pixel on (or correct its settings); idempotent.

    Shopify's refusal (its user errors, a scope not granted) becomes a notice the
    merchant reads, is asked again a day later (or at the next grant) and is
    raised; a transient failure is only raised (the next catch-up pass tries again)."""
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, shop_id)
        client = admin_client(runtime, shop, http)
        key = shop.storefront_key
    if client is None:
        raise AdminApiError(f"shop {shop_id} is not installed", transient=False)
    try:
        pixel = client.ensure_web_pixel(pixel_settings(runtime, key))
    except AdminApiError as exc:
        _checked(runtime, shop_id, done=not exc.transient)
        if not exc.transient:
            with runtime.sessions.begin() as session:
                notices.raise_notice(
                    session,
                    shop_id,
                    NOTICE_PIXEL,
                    f"triggerpost could not turn on its pixel in your online store: {exc}. "
                    "Until it can, product views and checkouts are not seen before an order: "
                    "no browse reminders. Open triggerpost from your Shopify admin to "
                    "approve its access if Shopify asks.",
                )
        raise
    _checked(runtime, shop_id, done=True)
    with runtime.sessions.begin() as session:
        notices.clear_notice(session, shop_id, NOTICE_PIXEL)
    return pixel


def pixel_due(runtime: Runtime, shop_id: int) -> bool:
    """Whether a catch-up pass should make sure of the pixel now (never, or not within a
    day); True claims the check (of passes running at once, one asks)."""
    try:
        claimed = runtime.redis.set(pixel_check_key(shop_id), "1", nx=True, ex=PIXEL_RECHECK)
    except RedisError:
        return True  # Redis away: checking is harmless
    return bool(claimed)
