"""Registering shops and reading what the intake needs to trust their webhooks."""

from __future__ import annotations

import secrets as random_secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from adapters.platform import WebhookError, WebhookSigner
from adapters.registry import UnknownPlatformError
from adapters.registry import platform as platform_named
from jobs.merchant import sessions
from jobs.store.models import Shop, ShopStatus, new_storefront_key, now
from jobs.store.secrets import SecretBox


class ShopError(ValueError):
    """A shop cannot be registered as asked; the message says why."""


@dataclass(frozen=True)
class ShopIdentity:
    """The immutable facts the intake needs per request (safe to cache)."""

    id: int
    platform: str
    key: str
    status: str
    webhook_secrets: tuple[str, ...]


def shop_key(platform: str, address: str) -> str:
    """The normalised key a platform's webhooks identify the shop by."""
    try:
        return platform_named(platform).shop_key(address)
    except UnknownPlatformError as exc:
        raise ShopError(exc.args[0]) from exc
    except WebhookError as exc:
        raise ShopError(exc.message) from exc


def add_shop(
    session: Session,
    box: SecretBox,
    platform: str,
    address: str,
    *,
    name: str | None = None,
    webhook_secret: str | None = None,
    access_token: str | None = None,
    consumer_key: str | None = None,
    consumer_secret: str | None = None,
    currency: str | None = None,
    timezone: str | None = None,
    dev_mode: bool = False,
) -> Shop:
    """Register a shop, or update and reactivate the one with the same address."""
    key = shop_key(platform, address)
    known = platform_named(platform)
    if known.webhook_signer == WebhookSigner.SHOP and not webhook_secret:
        raise ShopError(f"a {known.label} shop needs the webhook secret its webhooks sign with")
    try:
        base_url = known.storefront_url(address, allow_http=dev_mode)
    except ValueError as exc:
        raise ShopError(str(exc)) from exc
    if webhook_secret is not None and len(webhook_secret) < 8:
        raise ShopError("a webhook secret shorter than 8 characters is guessable")

    shop = session.scalar(select(Shop).where(Shop.platform == platform, Shop.key == key))
    if shop is None:
        shop = Shop(
            platform=platform,
            key=key,
            name=name or key,
            base_url=base_url,
            storefront_key=new_storefront_key(),  # its storefront events' address
        )
        session.add(shop)
    elif name:
        shop.name = name
    shop.status = ShopStatus.ACTIVE
    shop.uninstalled_at = None
    shop.installed_at = now()
    if webhook_secret is not None:
        shop.webhook_secret_enc = box.seal(webhook_secret)
    if access_token is not None:
        shop.access_token_enc = box.seal(access_token)
    if consumer_key is not None:
        shop.consumer_key_enc = box.seal(consumer_key)
    if consumer_secret is not None:
        shop.consumer_secret_enc = box.seal(consumer_secret)
    if currency:
        shop.currency = currency.upper()
    if timezone:
        shop.timezone = timezone
    session.flush()
    return shop


def new_webhook_secret() -> str:
    """Alphanumeric on purpose: a store may HTML-entity-decode the secret it signs with."""
    return random_secrets.token_hex(24)


def identity(
    session: Session, box: SecretBox, platform: str, key: str, app_secrets: Iterable[str] = ()
) -> ShopIdentity | None:
    """The shop and every secret that may sign its webhooks: its own (the
    current and, during a reconnect, the previous one), then ``app_secrets``
    (the app's, for a platform whose app signs every shop's deliveries)."""
    shop = session.scalar(select(Shop).where(Shop.platform == platform, Shop.key == key))
    if shop is None:
        return None
    secrets: list[str] = []
    for sealed in (shop.webhook_secret_enc, shop.previous_webhook_secret_enc):
        if sealed:
            secrets.append(box.open(sealed))
    secrets += app_secrets
    return ShopIdentity(
        id=shop.id,
        platform=shop.platform,
        key=shop.key,
        status=shop.status,
        webhook_secrets=tuple(secrets),
    )


def mark_uninstalled(shop: Shop, at: datetime) -> None:
    """The platform revoked our access: tokens are useless now, so drop them, and
    whoever is signed in for the shop is signed out."""
    shop.status = ShopStatus.UNINSTALLED
    shop.uninstalled_at = at
    shop.access_token_enc = None
    shop.refresh_token_enc = None
    shop.access_token_expires_at = None
    session = object_session(shop)
    if session is None:
        raise ShopError("an uninstall needs the shop's database session, to end its sign-ins")
    sessions.end_sessions(session, shop.id, at)
