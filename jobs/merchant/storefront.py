"""A shop's storefront events: its public key, the origins that may send them, a plugin's secret.

The storefront key names the shop in ``POST /events/<platform>/<key>``
(connector.storefront). It is public: every visitor's browser has it. What
keeps a stranger's page from posting events for the shop is the origin check
(:func:`allowed_origins`: the shop's own domains over https, and the extra
origins the merchant adds), with the intake's size and rate limits; and none
of it is trusted with anything that matters: a browser-sent event never
grants marketing consent.

A platform whose shops run our plugin (connector.platforms declares it) gets
a plugin secret, shown to the merchant inside a *connection code*; the
plugin signs its server-to-server requests with it (connector.plugin). A new
secret replaces the old one at once: the old one stops working.
"""

from __future__ import annotations

import base64
import json
import secrets as random_secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from jobs.store.models import STOREFRONT_DELIVERIES, Delivery, Shop, ShopStatus
from jobs.store.secrets import SecretBox

#: how many extra origins a shop may declare (a shop has a domain or two, a few landing pages)
MAX_ORIGINS = 20
#: the topics storefront events are stored under: ``storefront/<type>`` (as
#: jobs.store.models.STOREFRONT_DELIVERIES says in SQL)
TOPIC_PREFIX = "storefront/"
#: the connection code's format version
CODE_VERSION = 1


class StorefrontError(ValueError):
    """A storefront setting cannot be saved as asked; the message says why."""


@dataclass(frozen=True)
class StorefrontShop:
    """What the storefront intake needs of a shop per request (safe to cache)."""

    id: int
    platform: str
    origins: frozenset[str]


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower case; None if it has no host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def own_origins(shop: Shop) -> list[str]:
    """The shop's own storefront origins: its address (the key platforms name it by,
    over https) and its storefront's public URL (a primary domain, or a store's own)."""
    found = [origin_of("https://" + shop.key.split("/")[0]), origin_of(shop.base_url)]
    return list(dict.fromkeys(o for o in found if o))


def allowed_origins(shop: Shop) -> frozenset[str]:
    """Every origin the shop's storefront events may come from.

    The one rule for it, so that it can grow (a platform's pixel sandbox) in one place.
    """
    return frozenset(own_origins(shop)) | frozenset(shop.storefront_origins or ())


def clean_origins(values: Iterable[object]) -> list[str]:
    """Extra origins as a merchant typed them, checked: https, a host, nothing after it."""
    cleaned: list[str] = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise StorefrontError("each origin is an address like https://shop.example.com")
        text = value.strip().rstrip("/")
        parts = urlsplit(text)
        origin = origin_of(text)
        if parts.scheme != "https" or origin is None:
            raise StorefrontError(f"{value!r} is not an https origin like https://shop.example.com")
        if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
            raise StorefrontError(f"{value!r} has more than an origin: give only https://host")
        if origin not in cleaned:
            cleaned.append(origin)
    if len(cleaned) > MAX_ORIGINS:
        raise StorefrontError(f"at most {MAX_ORIGINS} extra origins")
    return cleaned


def set_origins(shop: Shop, values: Iterable[object]) -> list[str]:
    """Replace the shop's extra origins (all or nothing); the ones saved."""
    cleaned = [o for o in clean_origins(values) if o not in own_origins(shop)]
    shop.storefront_origins = cleaned
    return cleaned


def by_key(session: Session, key: str) -> StorefrontShop | None:
    """The installed shop with this storefront key, or None."""
    shop = session.scalar(
        select(Shop).where(Shop.storefront_key == key, Shop.status == ShopStatus.ACTIVE)
    )
    if shop is None:
        return None
    return StorefrontShop(id=shop.id, platform=shop.platform, origins=allowed_origins(shop))


def new_plugin_secret() -> str:
    """43 characters of base64url: 256 random bits."""
    return random_secrets.token_urlsafe(32)


def rotate_plugin_secret(shop: Shop, box: SecretBox) -> str:
    """A new plugin secret for the shop; the old one stops working at once."""
    secret = new_plugin_secret()
    shop.plugin_secret_enc = box.seal(secret)
    return secret


def plugin_secret(shop: Shop, box: SecretBox) -> str:
    """The shop's plugin secret, made the first time it is asked for."""
    if shop.plugin_secret_enc is None:
        return rotate_plugin_secret(shop, box)
    return box.open(shop.plugin_secret_enc)


def connection_code(base_url: str, shop: Shop, box: SecretBox) -> str:
    """What the merchant pastes into the plugin: base64url (no padding) of its JSON."""
    document = {
        "v": CODE_VERSION,
        "url": base_url,
        "platform": shop.platform,
        "key": shop.storefront_key,
        "secret": plugin_secret(shop, box),
    }
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def endpoint(base_url: str, shop: Shop) -> str:
    return f"{base_url}/events/{shop.platform}/{shop.storefront_key}"


@dataclass(frozen=True)
class Activity:
    events_last_day: int
    last_event_at: datetime | None


def activity(session: Session, shop_id: int, at: datetime) -> Activity:
    """Storefront events the shop sent in the day before ``at``, and when the last one came."""
    # the partial index's own condition, as written there, so the planner can use it
    storefront = (Delivery.shop_id == shop_id, text(STOREFRONT_DELIVERIES))
    count = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(*storefront, Delivery.received_at > at - timedelta(days=1))
    )
    last = session.scalar(select(func.max(Delivery.received_at)).where(*storefront))
    return Activity(events_last_day=int(count or 0), last_event_at=last)
