"""Storefront events: ``POST /events/<platform>/<key>``, from shoppers' browsers.

A shop's pages (the Shopify web pixel, the WooCommerce plugin's script) send
what a shopper does (a product viewed, added to a cart, a checkout started,
an address given) with ``navigator.sendBeacon`` or ``fetch``. The key in the
URL is public, so it is never trusted alone. Order of checks, cheapest first,
each refusal logged:

==========================================  =====================================
a declared length over :data:`MAX_BODY`     413, unread
an unknown platform or key, an uninstalled  404 (the same answer for each)
shop, a key of another platform's shop
``Origin`` (else ``Referer``) not one of    403
the shop's storefront origins
a bot's user agent (or none)                204, dropped, nothing stored
over the per-IP or the per-shop rate        429 with ``Retry-After``
a body over :data:`MAX_BODY` (chunked too)  413
not JSON, or not the events' schema         400 ``{"error": ...}``, nothing stored
otherwise                                   202 ``{"accepted": N}``, after all N
                                            events are committed (one delivery
                                            each, jobs.intake.storefront) and the
                                            shop handed to its drain
==========================================  =====================================

Every answer carries CORS headers, errors too, so the page's script (and
its developer's console) sees why. The body is sent as ``text/plain`` (no
preflight: what ``sendBeacon`` sends) or ``application/json`` (after an
``OPTIONS`` preflight, cached for :data:`PREFLIGHT_MAX_AGE`).

Nothing here grants marketing consent: anyone can post an event naming any
address.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validates
from marshmallow import validate as rules
from redis.exceptions import RedisError
from werkzeug.exceptions import RequestEntityTooLarge

from adapters.registry import PLATFORMS
from connector.runtime import runtime_of
from connector.webhooks import WRITER, read_body
from jobs import metrics
from jobs.intake import deliveries
from jobs.intake import storefront as rows
from jobs.intake.writer import DeliveryWriter, IntakeWriteError
from jobs.merchant import storefront
from jobs.runtime import Runtime
from jobs.store.models import now

log = logging.getLogger(__name__)
blueprint = Blueprint("storefront", __name__)

#: the largest body: 20 events with a full cart each fit in a few KiB
MAX_BODY = 16 * 1024
MAX_EVENTS = 20
MAX_ITEMS = 100
#: how long a key's shop (id, platform, origins) is reused without a query
KEY_TTL = 30.0
#: keys remembered at most (unknown ones too, so a prober costs no query a try)
KEY_CACHE_SIZE = 10_000
#: seconds a browser may reuse a preflight's answer
PREFLIGHT_MAX_AGE = 86_400
EVENT_TYPES = (
    "product_viewed",
    "product_added_to_cart",
    "cart_viewed",
    "checkout_started",
    "identify",
)
#: user agents that are not a shopper: crawlers, link previews, audits, headless browsers
BOT_AGENT = re.compile(
    r"bot|crawl|spider|slurp|headless|lighthouse|preview|facebookexternalhit|phantomjs"
    r"|pingdom|gtmetrix|pagespeed|prerender|scrapy|mediapartners|feedfetcher",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RateLimits:
    """Fixed windows counted in Redis. A shop of 100 k product views a day averages
    about 1.2 requests a second; its limit allows 80 times that, for the minute
    after a newsletter goes out. A visitor sends one request a page, a few at most."""

    per_ip: int = 240
    per_shop: int = 6_000
    window: int = 60


class StorefrontKeys:
    """Per-app cache of storefront keys → their shop (or None: unknown)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._cache: dict[str, tuple[float, storefront.StorefrontShop | None]] = {}

    def get(self, key: str) -> storefront.StorefrontShop | None:
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        with self.runtime.sessions() as session:
            found = storefront.by_key(session, key)
        if len(self._cache) >= KEY_CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + KEY_TTL, found)
        return found

    def forget(self) -> None:
        self._cache.clear()


class RateLimiter:
    """``INCR`` per IP and per shop in the current window, one round trip for both.

    Redis down: the events are let through (the store is the truth, and a
    storefront must never wait on us); the failure is logged.
    """

    def __init__(self, runtime: Runtime, limits: RateLimits) -> None:
        self.runtime = runtime
        self.limits = limits

    def retry_after(self, ip: str, shop_id: int) -> int | None:
        """None if the request may go on, else the seconds until the window ends."""
        limits = self.limits
        clock = time.time()
        window = int(clock) // limits.window
        keys = (
            f"triggerpost:sf-rate:ip:{ip}:{window}",
            f"triggerpost:sf-rate:shop:{shop_id}:{window}",
        )
        try:
            pipe = self.runtime.redis.pipeline(transaction=False)
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, limits.window + 1)
            by_ip, _, by_shop, _ = pipe.execute()
        except RedisError as exc:
            log.warning("storefront rate limits not counted (redis): %s", exc)
            return None
        if by_ip > limits.per_ip or by_shop > limits.per_shop:
            return max(1, (window + 1) * limits.window - int(clock))
        return None


KEYS = "triggerpost.storefront_keys"
LIMITER = "triggerpost.storefront_limiter"


def init_app(app: Flask, runtime: Runtime, limits: RateLimits | None = None) -> None:
    app.extensions[KEYS] = StorefrontKeys(runtime)
    app.extensions[LIMITER] = RateLimiter(runtime, limits or RateLimits())
    app.register_blueprint(blueprint)


# --- the events' schema ---------------------------------------------------------------------

_WORD = r"[A-Za-z0-9_-]"
_ID = rules.Regexp(rf"^{_WORD}{{1,64}}$", error="must be a platform id (letters, digits, - or _)")
_MONEY = rules.Regexp(r"^\d{1,12}(\.\d{1,4})?$", error="must be an amount like 12.50")
_CURRENCY = rules.Regexp(r"^[A-Z]{3}$", error="must be an ISO 4217 code like SEK")


def _text(limit: int = 512, **kw: Any) -> fields.String:
    return fields.String(validate=rules.Length(max=limit), **kw)


def _url(**kw: Any) -> fields.Url:
    return fields.Url(
        schemes={"http", "https"}, require_tld=False, validate=rules.Length(max=2048), **kw
    )


class _Data(Schema):
    class Meta:
        unknown = EXCLUDE  # a newer script's extra fields are not kept, and not an error


class ProductSchema(_Data):
    id = fields.String(required=True, validate=_ID)
    variant_id = fields.String(validate=_ID)
    title = _text()
    url = _url()
    price = fields.String(validate=_MONEY)
    currency = fields.String(validate=_CURRENCY)
    image_url = _url()


class ItemSchema(_Data):
    product_id = fields.String(required=True, validate=_ID)
    variant_id = fields.String(validate=_ID)
    title = _text(required=True)
    quantity = fields.Integer(required=True, strict=True, validate=rules.Range(min=1, max=100_000))
    price = fields.String(required=True, validate=_MONEY)
    image_url = _url()
    url = _url()


class CartSchema(_Data):
    token = fields.String(required=True, validate=rules.Regexp(rf"^{_WORD}{{8,64}}$"))
    items = fields.List(
        fields.Nested(ItemSchema), required=True, validate=rules.Length(max=MAX_ITEMS)
    )
    total = fields.String(required=True, validate=_MONEY)
    currency = fields.String(required=True, validate=_CURRENCY)


class CustomerSchema(_Data):
    email = fields.Email(validate=rules.Length(max=254))
    customer_id = fields.String(validate=_ID)
    first_name = _text(255)
    last_name = _text(255)


class ProductViewedSchema(_Data):
    product = fields.Nested(ProductSchema, required=True)
    customer = fields.Nested(CustomerSchema)


class AddedToCartSchema(_Data):
    product = fields.Nested(ProductSchema, required=True)
    quantity = fields.Integer(required=True, strict=True, validate=rules.Range(min=1, max=100_000))
    cart = fields.Nested(CartSchema)
    customer = fields.Nested(CustomerSchema)


class CartViewedSchema(_Data):
    cart = fields.Nested(CartSchema, required=True)
    customer = fields.Nested(CustomerSchema)


class CheckoutStartedSchema(_Data):
    cart = fields.Nested(CartSchema, required=True)
    email = fields.Email(validate=rules.Length(max=254))
    customer = fields.Nested(CustomerSchema)


class IdentifySchema(_Data):
    email = fields.Email(required=True, validate=rules.Length(max=254))
    source = fields.String(required=True, validate=rules.OneOf(("customer", "checkout", "form")))
    customer_id = fields.String(validate=_ID)
    first_name = _text(255)
    last_name = _text(255)


DATA_SCHEMAS: Mapping[str, Schema] = {
    "product_viewed": ProductViewedSchema(),
    "product_added_to_cart": AddedToCartSchema(),
    "cart_viewed": CartViewedSchema(),
    "checkout_started": CheckoutStartedSchema(),
    "identify": IdentifySchema(),
}


class EventSchema(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(required=True, validate=rules.Regexp(rf"^{_WORD}{{8,64}}$"))
    type = fields.String(required=True, validate=rules.OneOf(EVENT_TYPES))
    at = fields.String(required=True, validate=rules.Length(max=40))
    data = fields.Dict(required=True)

    @validates("at")
    def _zoned(self, value: str, **_: Any) -> None:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError("must be an ISO 8601 time with its zone") from None
        if parsed.tzinfo is None:
            raise ValidationError("must be an ISO 8601 time with its zone")


class BatchSchema(Schema):
    class Meta:
        unknown = RAISE

    visitor = fields.String(required=True, validate=rules.Regexp(rf"^{_WORD}{{16,64}}$"))
    events = fields.List(
        fields.Nested(EventSchema),
        required=True,
        validate=rules.Length(min=1, max=MAX_EVENTS),
    )


BATCH = BatchSchema()


class MalformedError(ValueError):
    """A body that is not a batch of storefront events; the message says where."""


def load_batch(body: bytes) -> dict[str, Any]:
    """The batch with each event's data checked against its type's schema."""
    try:
        document = deliveries.parse_body(body)
    except deliveries.PayloadError as exc:
        raise MalformedError(f"body is {exc}") from exc
    try:
        batch: dict[str, Any] = BATCH.load(document)
    except ValidationError as exc:
        raise MalformedError(_first_problem(exc.messages)) from exc
    for n, event in enumerate(batch["events"]):
        try:
            event["data"] = DATA_SCHEMAS[event["type"]].load(event["data"])
        except ValidationError as exc:
            raise MalformedError(_first_problem(exc.messages, f"events.{n}.data")) from exc
    return batch


def _first_problem(messages: Any, path: str = "") -> str:
    while isinstance(messages, Mapping) and messages:
        key, messages = next(iter(messages.items()))
        if key != "_schema":  # marshmallow's name for the object itself
            path = f"{path}.{key}" if path else str(key)
    if isinstance(messages, list | tuple) and messages:
        messages = messages[0]
    return f"{path or 'body'}: {messages}"


# --- the endpoint ---------------------------------------------------------------------------


def _cors(response: Response) -> Response:
    """CORS on every answer: the origin that asked (no credentials are ever allowed)."""
    origin = request.headers.get("Origin")
    if origin and storefront.origin_of(origin) is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"
    return response


def _answer(status: int, body: dict[str, Any] | None = None, **headers: str) -> Response:
    response = jsonify(body) if body is not None else Response(status=status)
    response.status_code = status
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return _cors(response)


def _refused(status: int, error: str, why: str, platform: str, key: str) -> Response:
    log.warning(
        "storefront events for %r/%r refused (%d): %s", platform[:32], key[:32], status, why
    )
    return _answer(status, {"error": error})


def request_origin() -> str | None:
    """The page's origin: ``Origin``, else the ``Referer``'s (some browsers omit Origin)."""
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return storefront.origin_of(origin)
    referer = request.headers.get("Referer")
    return storefront.origin_of(referer) if referer else None


def client_ip(proxy_hops: int) -> str:
    """The client's address: the socket's, or as many X-Forwarded-For hops back as the
    deployment says proxies append (a client's own X-Forwarded-For is never believed)."""
    if proxy_hops:
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [a for a in forwarded if a]
        if len(forwarded) >= proxy_hops:
            return forwarded[-proxy_hops]
    return request.remote_addr or "unknown"


def _shop(platform: str, key: str) -> storefront.StorefrontShop | None:
    if platform not in PLATFORMS or not re.fullmatch(r"pk_[a-z2-7]{26}", key):
        return None
    keys: StorefrontKeys = current_app.extensions[KEYS]
    shop = keys.get(key)
    if shop is None or shop.platform != platform:
        return None
    return shop


@blueprint.route(
    "/events/<platform>/<key>", methods=["POST", "OPTIONS"], provide_automatic_options=False
)
def events(platform: str, key: str) -> Response:
    if request.method == "OPTIONS":
        return preflight(platform, key)
    response = receive(platform, key)
    if response.status_code == 202:
        metrics.count_storefront("stored", response.get_json()["accepted"])
    else:
        metrics.count_storefront(OUTCOMES.get(response.status_code, "refused"))
    return response


#: what /metrics calls each answer but 202 (stored)
OUTCOMES = {
    204: "bot",
    400: "malformed",
    403: "refused_origin",
    404: "refused_key",
    413: "too_large",
    429: "rate_limited",
    503: "not_stored",
}


def preflight(platform: str, key: str) -> Response:
    shop = _shop(platform, key)
    if shop is None:
        return _refused(404, "unknown key", "unknown key", platform, key)
    if request_origin() not in shop.origins:
        return _refused(
            403, "origin not allowed", f"preflight from {request_origin()!r}", platform, key
        )
    return _answer(
        204,
        Access_Control_Allow_Methods="POST, OPTIONS",
        Access_Control_Allow_Headers="Content-Type",
        Access_Control_Max_Age=str(PREFLIGHT_MAX_AGE),
    )


def receive(platform: str, key: str) -> Response:
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _refused(413, "too large", f"declared {request.content_length} bytes", platform, key)
    shop = _shop(platform, key)
    if shop is None:
        return _refused(404, "unknown key", "unknown platform, key or shop", platform, key)
    origin = request_origin()
    if origin not in shop.origins:
        return _refused(403, "origin not allowed", f"origin {origin!r}", platform, key)
    agent = request.headers.get("User-Agent", "")
    if not agent.strip() or BOT_AGENT.search(agent):
        log.info("storefront events for shop %s dropped: user agent %r", shop.id, agent[:120])
        return _answer(204)
    runtime = runtime_of(current_app)
    limiter: RateLimiter = current_app.extensions[LIMITER]
    ip = client_ip(runtime.settings.proxy_hops)
    if (wait := limiter.retry_after(ip, shop.id)) is not None:
        log.warning("storefront events for shop %s from %s rate limited", shop.id, ip)
        return _answer(429, {"error": "rate limited"}, Retry_After=str(wait))
    try:
        body = read_body(MAX_BODY)
    except RequestEntityTooLarge:
        return _refused(413, "too large", f"body over {MAX_BODY} bytes", platform, key)
    if request.mimetype not in ("text/plain", "application/json", ""):
        return _refused(400, "body must be JSON", f"content type {request.mimetype}", platform, key)
    try:
        batch = load_batch(body)
    except MalformedError as exc:
        log.warning(
            "storefront events for shop %s malformed: %s; first bytes %r", shop.id, exc, body[:120]
        )
        return _answer(400, {"error": str(exc)})

    received_at = now()
    writer: DeliveryWriter = current_app.extensions[WRITER]
    try:
        writer.store_many(
            [
                rows.delivery_row(
                    shop_id=shop.id,
                    platform=shop.platform,
                    visitor=batch["visitor"],
                    event=event,
                    received_at=received_at,
                )
                for event in batch["events"]
            ]
        )
    except IntakeWriteError:
        log.exception("storefront events for shop %s not stored", shop.id)
        return _answer(503, {"error": "not stored, send again"}, Retry_After="5")
    return _answer(202, {"accepted": len(batch["events"])})
