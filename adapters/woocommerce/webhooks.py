"""WooCommerce webhook deliveries: headers, signature, ping, topic table.

The shop is found by ``X-WC-Webhook-Source`` (``home_url('/')``), normalised
by :func:`normalise_store_url`. ``X-WC-Webhook-Delivery-ID`` is not unique per
delivery (see ``read_headers``), so a delivery is known by the webhook id,
that id and the body's digest together. The signature is
``base64(HMAC-SHA256(per-webhook secret, raw body))``. Creating a webhook
sends an unsigned, form-encoded ``webhook_id=N`` ping with no X-WC headers,
which must be answered exactly 200.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from adapters.platform import (
    ShopContext,
    Translator,
    WebhookError,
    WebhookHeaders,
    WebhookSigner,
    verify_base64_hmac,
)
from adapters.woocommerce.translate import IGNORED_TOPICS, TOPIC_HANDLERS, cart_link

PING = re.compile(rb"^webhook_id=\d+$")


def normalise_store_url(value: str) -> str:
    """The store's identity: lower-case host (and port) plus path, no scheme, no slash.

    ``https://Shop.Example.com/store/`` -> ``shop.example.com/store``. The scheme
    is left out because a store's ``home_url`` may say http while it is reached
    over https (or the reverse) and it is still the same store.
    """
    text = value.strip()
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port  # a port that is not a number raises here
    except ValueError:
        raise WebhookError(401, f"{value[:200]!r} is not a store URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(401, f"{value[:200]!r} is not a store URL")
    host = parts.hostname.lower()
    if port:
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")
    return host + path


@dataclass(frozen=True)
class WooCommerce:
    name: str = "woocommerce"
    label: str = "WooCommerce"
    sample_address: str = "https://shop.example.com"
    header_prefixes: tuple[str, ...] = ("x-wc-",)
    #: each webhook is made with the secret we give the store at connect
    webhook_signer: WebhookSigner = WebhookSigner.SHOP
    #: an abandoned checkout is a pending order, whose payment the REST API reports
    checkout_is_pending_order: bool = True
    #: product.deleted is a move to the trash; product.restored brings it back
    restores_deleted_products: bool = True
    topic_handlers: Mapping[str, Translator] = field(default_factory=lambda: TOPIC_HANDLERS)
    ignored_topics: frozenset[str] = IGNORED_TOPICS

    def read_headers(self, headers: Mapping[str, str]) -> WebhookHeaders:
        lower = {k.lower(): v for k, v in headers.items()}
        signature = lower.get("x-wc-webhook-signature", "")
        if not signature:
            raise WebhookError(401, "missing X-WC-Webhook-Signature")
        source = lower.get("x-wc-webhook-source", "")
        if not source:
            raise WebhookError(401, "missing X-WC-Webhook-Source")
        topic = lower.get("x-wc-webhook-topic", "").strip()
        if not topic:
            raise WebhookError(400, "missing X-WC-Webhook-Topic")
        delivery_id = lower.get("x-wc-webhook-delivery-id") or lower.get("x-wc-delivery-id")
        webhook_id = lower.get("x-wc-webhook-id", "").strip()
        return WebhookHeaders(
            shop_key=normalise_store_url(source),
            topic=topic,
            # wp_hash(webhook id . current second): two deliveries of one webhook
            # in the same second share it, so it names the delivery only
            # together with the webhook and the body's digest
            delivery_id=f"{webhook_id[:20]}/{delivery_id[:40]}" if delivery_id else None,
            signature=signature,
            delivery_id_unique=False,
        )

    def is_ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        lower = {k.lower(): v for k, v in headers.items()}
        return "x-wc-webhook-signature" not in lower and bool(PING.match(body.strip()))

    def verify(self, body: bytes, signature: str, secrets: Iterable[str]) -> bool:
        return verify_base64_hmac(body, signature, secrets)

    def shop_key(self, address: str) -> str:
        return normalise_store_url(address)

    def storefront_url(self, address: str, *, allow_http: bool) -> str:
        text = address.strip()
        if "://" not in text:
            text = "https://" + text
        if text.startswith("http://") and not allow_http:
            raise ValueError("the store URL must be https:// (http is allowed only in development)")
        return text.rstrip("/")

    def storefront_cart_link(self, shop: ShopContext, cart_token: str) -> str | None:
        # no cart webhook: the plugin keeps the cart under its token and restores it here
        return cart_link(shop, cart_token)


PLATFORM = WooCommerce()
