"""Webhook intake: verify, store durably, hand off, answer. No business work here.

Order of checks, each answered as the platforms expect:
ping (WooCommerce, unsigned) 200; missing identity headers 401/400; unknown
shop 401; bad signature 401; body over the size limit 413; not JSON 415;
malformed JSON 400; a topic we do not handle 200 (or the platform retries and
in the end disables us); a replayed delivery 200 without a second processing.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import NotFound

from adapters.platform import Platform, WebhookError, platforms
from jobs import intake, shops
from jobs.intake_writer import DeliveryWriter
from jobs.runtime import Runtime

log = logging.getLogger(__name__)
blueprint = Blueprint("webhooks", __name__)

#: how long a shop's identity (id, status, secrets) is reused without a query;
#: a failed signature check always re-reads it, so a new secret works at once
IDENTITY_TTL = 30.0


class ShopIdentities:
    """Per-app cache of the shops webhooks name, keyed by (platform, shop key)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._cache: dict[tuple[str, str], tuple[float, shops.ShopIdentity]] = {}

    def get(self, platform: str, key: str, *, fresh: bool) -> shops.ShopIdentity | None:
        cached = self._cache.get((platform, key))
        if cached and not fresh and cached[0] > time.monotonic():
            return cached[1]
        runtime = self.runtime
        with runtime.sessions() as session:
            found = shops.identity(session, runtime.secrets, runtime.settings, platform, key)
        if found is None:
            self._cache.pop((platform, key), None)
        else:
            self._cache[(platform, key)] = (time.monotonic() + IDENTITY_TTL, found)
        return found

    def verified(
        self, platform: Platform, key: str, body: bytes, signature: str
    ) -> shops.ShopIdentity | None:
        """The shop, if it exists and signed this body; None otherwise."""
        for fresh in (False, True):
            shop = self.get(platform.name, key, fresh=fresh)
            if shop is not None and platform.verify(body, signature, shop.webhook_secrets):
                return shop
        return None


def _answer(status: int, outcome: str, message: str | None = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"status": outcome}
    if message:
        body["message"] = message
    return jsonify(body), status


IDENTITIES = "triggerpost.shop_identities"
WRITER = "triggerpost.delivery_writer"


def init_app(app: Flask, runtime: Runtime) -> None:
    app.extensions[IDENTITIES] = ShopIdentities(runtime)
    app.extensions[WRITER] = DeliveryWriter(runtime)
    app.register_blueprint(blueprint)


@blueprint.post("/webhooks/<platform_name>")
def receive(platform_name: str) -> tuple[Response, int]:
    platform = platforms().get(platform_name)
    if platform is None:
        raise NotFound(f"no platform called {platform_name!r}")
    body = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413 from Werkzeug
    raw_headers = dict(request.headers.items())

    if platform.is_ping(body, raw_headers):
        return _answer(200, "pong")
    try:
        headers = platform.read_headers(raw_headers)
    except WebhookError as exc:
        log.warning("%s webhook refused: %s", platform.name, exc.message)
        return _answer(exc.status, "refused", exc.message)

    identities: ShopIdentities = current_app.extensions[IDENTITIES]
    shop = identities.verified(platform, headers.shop_key, body, headers.signature)
    if shop is None:
        log.warning(
            "%s webhook for %s refused: unknown shop or bad signature",
            platform.name,
            headers.shop_key,
        )
        # one answer for both, so a prober cannot tell which shops exist
        return _answer(401, "refused", "unknown shop or invalid signature")

    if request.mimetype != "application/json":
        log.warning("%s %s: content type %r", headers.shop_key, headers.topic, request.mimetype)
        return _answer(415, "refused", "webhook bodies must be application/json")
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning(
            "%s %s delivery %s is not valid JSON (%s); first bytes %r",
            headers.shop_key,
            headers.topic,
            headers.delivery_id,
            exc,
            body[:120],
        )
        return _answer(400, "malformed", f"body is not valid JSON: {exc}")

    if headers.topic not in platform.topic_handlers:
        if headers.topic not in platform.ignored_topics:
            log.warning("%s: unsupported topic %r answered 200", headers.shop_key, headers.topic)
            return _answer(200, "unsupported")
        return _answer(200, "ignored")

    writer: DeliveryWriter = current_app.extensions[WRITER]
    delivery_id = writer.store(
        intake.delivery_row(
            shop_id=shop.id,
            platform=platform.name,
            headers=headers,
            raw_headers=_kept_headers(raw_headers),
            body=body,
        )
    )
    if delivery_id is None:
        return _answer(200, "duplicate")
    return _answer(200, "stored")


def _kept_headers(headers: dict[str, str]) -> dict[str, str]:
    """The platform's own headers (for audits and re-processing), nothing else."""
    return {k: v for k, v in headers.items() if k.lower().startswith(("x-shopify-", "x-wc-"))}
