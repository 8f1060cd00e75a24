"""Shopify webhook deliveries: headers, signature, topic table.

Header names are matched case-insensitively (HTTP/2 sends them lower case).
The signature is ``base64(HMAC-SHA256(app secret, raw body))``; during a
secret rotation Shopify signs with the oldest unrevoked secret, so the caller
passes every secret currently valid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from adapters.platform import (
    ShopContext,
    Translator,
    WebhookError,
    WebhookHeaders,
    WebhookSigner,
    verify_base64_hmac,
)
from adapters.shopify.graphql import NODE_TOPICS
from adapters.shopify.translate import IGNORED_TOPICS, TOPIC_HANDLERS

SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9\-]*\.myshopify\.com$")


def normalise_shop_domain(value: str) -> str:
    """``Foo.myshopify.com`` -> ``foo.myshopify.com``; anything else is refused."""
    domain = value.strip().lower()
    if not SHOP_DOMAIN.match(domain):
        raise WebhookError(401, f"{value!r} is not a myshopify.com shop domain")
    return domain


def _parse_triggered_at(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # in UTC here: a time at the edge of the calendar cannot be stored as one
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class Shopify:
    name: str = "shopify"
    label: str = "Shopify"
    sample_address: str = "your-shop.myshopify.com"
    header_prefixes: tuple[str, ...] = ("x-shopify-",)
    #: the app's client secret, the same for every shop that installed it
    webhook_signer: WebhookSigner = WebhookSigner.APP
    #: a checkout is not an order until it is paid: nothing to ask the store about
    checkout_is_pending_order: bool = False
    #: a deleted product is gone for good: its id never names a product again
    restores_deleted_products: bool = False
    #: the webhook topics, and the ``graphql/`` topics of nodes the catch-up read itself
    topic_handlers: Mapping[str, Translator] = field(
        default_factory=lambda: {**TOPIC_HANDLERS, **NODE_TOPICS}
    )
    ignored_topics: frozenset[str] = IGNORED_TOPICS

    def read_headers(self, headers: Mapping[str, str]) -> WebhookHeaders:
        lower = {k.lower(): v for k, v in headers.items()}
        signature = lower.get("x-shopify-hmac-sha256", "")
        if not signature:
            raise WebhookError(401, "missing X-Shopify-Hmac-Sha256")
        shop = lower.get("x-shopify-shop-domain", "")
        if not shop:
            raise WebhookError(401, "missing X-Shopify-Shop-Domain")
        topic = lower.get("x-shopify-topic", "").strip()
        if not topic:
            raise WebhookError(400, "missing X-Shopify-Topic")
        return WebhookHeaders(
            shop_key=normalise_shop_domain(shop),
            topic=topic,
            delivery_id=lower.get("x-shopify-webhook-id") or None,
            signature=signature,
            triggered_at=_parse_triggered_at(lower.get("x-shopify-triggered-at")),
            api_version=lower.get("x-shopify-api-version") or None,
        )

    def is_ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return False

    def verify(self, body: bytes, signature: str, secrets: Iterable[str]) -> bool:
        return verify_base64_hmac(body, signature, secrets)

    def shop_key(self, address: str) -> str:
        return normalise_shop_domain(address)

    def storefront_url(self, address: str, *, allow_http: bool) -> str:
        # the myshopify domain serves the storefront until the shop details name another
        return f"https://{normalise_shop_domain(address)}"

    def storefront_cart_link(self, shop: ShopContext, cart_token: str) -> str | None:
        # its checkouts come by webhook, with their own recovery link
        return None


PLATFORM = Shopify()
