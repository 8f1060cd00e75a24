"""Webhook intake: verify, store durably, hand off, answer. No business work here.

Order of checks, each answered as the platforms expect:
ping (a platform's unsigned liveness check) 200; missing identity headers 401/400; a declared
length over the size limit 413; unknown shop 401; body over the size limit
(chunked bodies too) 413; bad signature 401; not JSON 415; malformed JSON, or
nested deeper than :data:`jobs.intake.deliveries.MAX_DEPTH`, 400; a topic we do not handle
200 (or the platform retries and in the end disables us); a replayed delivery
200 without a second processing.

Everything up to the unknown shop is decided on the headers alone: such a
request is refused without its body being read (a ping, a few bytes, is the
exception), so behind any server it costs no signature check and no copy of
the body. Our own server goes further: a request reaches this code only once
it has fully arrived, so no client, however slow, holds a request thread
(see :mod:`connector.web`).

Every answer is counted by its outcome, with the time it took
(:class:`jobs.metrics.WebhookOutcome`); the request's log lines carry the shop
once its signature checked out, and the delivery once stored (jobs.logs).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import NotFound, RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from adapters.platform import Platform, WebhookError
from adapters.registry import PLATFORMS
from jobs import logs, metrics
from jobs.intake import deliveries
from jobs.intake.writer import DeliveryWriter
from jobs.merchant import shops
from jobs.metrics import WebhookOutcome
from jobs.platforms.registry import SERVERS
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
        #: per platform, the app's own signing secrets (settings are read once)
        self._app_secrets = {
            name: server.app_webhook_secrets(runtime.settings) for name, server in SERVERS.items()
        }

    def get(self, platform: str, key: str, *, fresh: bool) -> shops.ShopIdentity | None:
        cached = self._cache.get((platform, key))
        if cached and not fresh and cached[0] > time.monotonic():
            return cached[1]
        runtime = self.runtime
        with runtime.sessions() as session:
            found = shops.identity(
                session, runtime.secrets, platform, key, self._app_secrets.get(platform, ())
            )
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


#: an answer, and how it is counted (jobs.metrics)
Answer = tuple[Response, int, WebhookOutcome]


def _answer(
    status: int, outcome: str, message: str | None = None, *, counted: WebhookOutcome
) -> Answer:
    body: dict[str, Any] = {"status": outcome}
    if message:
        body["message"] = message
    return jsonify(body), status, counted


IDENTITIES = "triggerpost.shop_identities"
WRITER = "triggerpost.delivery_writer"


def init_app(app: Flask, runtime: Runtime) -> None:
    app.extensions[IDENTITIES] = ShopIdentities(runtime)
    app.extensions[WRITER] = DeliveryWriter(runtime)
    app.register_blueprint(blueprint)


#: the most a ping may be (the known one is ``webhook_id=<number>``)
PING_BYTES = 64
#: one answer for an unknown shop and a bad signature, so a prober cannot tell which shops exist
REFUSED = "unknown shop or invalid signature"


@blueprint.post("/webhooks/<platform_name>")
def receive(platform_name: str) -> tuple[Response, int]:
    platform = PLATFORMS.get(platform_name)
    if platform is None:
        raise NotFound(f"no platform called {platform_name!r}")
    started = time.perf_counter()
    with logs.ids():  # the shop and delivery, once known, for this request's lines only
        response, status, outcome = _receive(platform)
    metrics.count_webhook(platform.name, outcome, time.perf_counter() - started)
    return response, status


def _receive(platform: Platform) -> Answer:
    raw_headers = dict(request.headers.items())
    try:
        headers = platform.read_headers(raw_headers)
    except WebhookError as exc:
        # unsigned: only the platform's liveness ping (a few bytes) is worth reading
        if platform.is_ping(_small_body(), raw_headers):
            return _answer(200, "pong", counted=WebhookOutcome.PING)
        log.warning("%s webhook refused: %s", platform.name, exc.message)
        return _answer(exc.status, "refused", exc.message, counted=WebhookOutcome.REFUSED_HEADERS)

    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        # before the shop is looked up: the same answer whether it exists or not
        log.warning(
            "%s %s: declared body of %d bytes refused unread",
            headers.shop_key,
            headers.topic,
            request.content_length,
        )
        return _answer(
            413,
            "refused",
            f"webhook bodies are limited to {limit} bytes",
            counted=WebhookOutcome.TOO_LARGE,
        )

    identities: ShopIdentities = current_app.extensions[IDENTITIES]
    if identities.get(platform.name, headers.shop_key, fresh=False) is None:
        log.warning("%s webhook for %s refused: unknown shop", platform.name, headers.shop_key)
        return _answer(401, "refused", REFUSED, counted=WebhookOutcome.UNKNOWN_SHOP)
    try:
        # only a known shop's body is read: an over-size chunked one is 413 here where an
        # unknown shop's was 401 unread (telling them apart costs a prober 5 MB a try)
        body = read_body(limit)
    except RequestEntityTooLarge:
        log.warning("%s %s: chunked body over %d bytes", headers.shop_key, headers.topic, limit)
        return _answer(
            413,
            "refused",
            f"webhook bodies are limited to {limit} bytes",
            counted=WebhookOutcome.TOO_LARGE,
        )
    shop = identities.verified(platform, headers.shop_key, body, headers.signature)
    if shop is None:
        log.warning("%s webhook for %s refused: invalid signature", platform.name, headers.shop_key)
        return _answer(401, "refused", REFUSED, counted=WebhookOutcome.REFUSED_SIGNATURE)
    logs.note(shop=shop.id)

    if request.mimetype != "application/json":
        log.warning("%s %s: content type %r", headers.shop_key, headers.topic, request.mimetype)
        return _answer(
            415,
            "refused",
            "webhook bodies must be application/json",
            counted=WebhookOutcome.NOT_JSON,
        )
    try:
        deliveries.parse_body(body)
    except deliveries.PayloadError as exc:
        log.warning(
            "%s %s delivery %s: body %s; first bytes %r",
            headers.shop_key,
            headers.topic,
            headers.delivery_id,
            exc,
            body[:120],
        )
        return _answer(400, "malformed", f"body is {exc}", counted=WebhookOutcome.MALFORMED)

    if headers.topic not in platform.topic_handlers:
        if headers.topic not in platform.ignored_topics:
            log.warning("%s: unsupported topic %r answered 200", headers.shop_key, headers.topic)
            return _answer(200, "unsupported", counted=WebhookOutcome.UNSUPPORTED)
        return _answer(200, "ignored", counted=WebhookOutcome.IGNORED)

    writer: DeliveryWriter = current_app.extensions[WRITER]
    delivery_id = writer.store(
        deliveries.delivery_row(
            shop_id=shop.id,
            platform=platform.name,
            headers=headers,
            raw_headers=_kept_headers(platform, raw_headers),
            body=body,
        )
    )
    if delivery_id is None:
        return _answer(200, "duplicate", counted=WebhookOutcome.DUPLICATE)
    logs.note(delivery=delivery_id)
    log.debug("%s %s stored as delivery %s", headers.shop_key, headers.topic, delivery_id)
    return _answer(200, "stored", counted=WebhookOutcome.STORED)


def read_body(limit: int) -> bytes:
    """The raw body as sent; RequestEntityTooLarge past ``limit`` bytes, chunked or not.

    Werkzeug's own limit on a body without a length (chunked) stops reading at
    the limit and hands back the cut body as if it were whole; reading one
    byte past the limit tells a body of exactly ``limit`` bytes from a larger one.
    """
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    body = get_input_stream(request.environ, max_content_length=limit + 1).read()
    if len(body) > limit:
        raise RequestEntityTooLarge()
    return body


def _small_body() -> bytes:
    """The body if it is at most :data:`PING_BYTES` long, else nothing (and nothing read)."""
    try:
        return read_body(PING_BYTES)
    except RequestEntityTooLarge:
        return b""


def _kept_headers(platform: Platform, headers: dict[str, str]) -> dict[str, str]:
    """The platform's own headers (for audits and re-processing), nothing else."""
    prefixes = platform.header_prefixes
    return {k: v for k, v in headers.items() if k.lower().startswith(prefixes)}
