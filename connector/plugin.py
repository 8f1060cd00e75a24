"""A shop's plugin speaking to us, server to server: ``POST /plugin/<platform>/<action>``.

For a platform whose connector declares a plugin (``ConnectorPlatform.plugin``).
The plugin holds the shop's connection code (jobs.merchant.storefront): its
public key and its secret. Each request's body is JSON
``{"key": <public key>, "at": <unix seconds>, "nonce": <16-64 characters>}``
signed in ``X-Triggerpost-Signature`` (base64 of HMAC-SHA256 of the raw body
with the secret). Order of checks:

==============================================  =========================
a platform without a plugin, an unknown key,    404
an uninstalled shop, another platform's shop
a body over :data:`MAX_BODY`                    413
not such a JSON object                          400
a missing or wrong signature (another shop's    401
secret, an old secret after a new one)
``at`` more than :data:`WINDOW` seconds off     401
a nonce seen before (within the window)         401
==============================================  =========================

``status``: the shop, and how many storefront events came in the last day;
``login-link``: a single-use merchant-app login link (jobs.merchant.login_links).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from connector.merchant.auth import link_url
from connector.platforms.registry import CONNECTORS
from connector.runtime import runtime_of
from connector.webhooks import read_body
from jobs.intake import deliveries
from jobs.intake.storefront import utc_iso
from jobs.merchant import login_links, storefront
from jobs.runtime import Runtime
from jobs.store.models import Shop, ShopStatus, now
from jobs.store.secrets import SecretError

log = logging.getLogger(__name__)
blueprint = Blueprint("plugin", __name__, url_prefix="/plugin")

#: seconds a signed request's ``at`` may be off our clock
WINDOW = 300
MAX_BODY = 4096
SIGNATURE = "X-Triggerpost-Signature"
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


class PluginAuthError(Exception):
    """A plugin request refused; ``status`` and the words the plugin shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _refuse(status: int, message: str) -> PluginAuthError:
    log.warning("plugin %s refused (%d): %s", request.path, status, message)
    return PluginAuthError(status, message)


def nonce_key(shop_id: int, nonce: str) -> str:
    return f"triggerpost:plugin-nonce:{shop_id}:{nonce}"


def signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def authenticate(runtime: Runtime, platform: str) -> Shop:
    """The shop that signed this request, or PluginAuthError."""
    connector = CONNECTORS.get(platform)
    if connector is None or not connector.plugin:
        raise _refuse(404, f"no plugin for {platform!r}")
    try:
        body = read_body(MAX_BODY)
    except RequestEntityTooLarge:
        raise _refuse(413, f"bodies are limited to {MAX_BODY} bytes") from None
    try:
        document = deliveries.parse_body(body)
    except deliveries.PayloadError as exc:
        raise _refuse(400, f"body is {exc}") from None
    if not isinstance(document, dict):
        raise _refuse(400, "body must be a JSON object")
    key, at, nonce = document.get("key"), document.get("at"), document.get("nonce")
    if not isinstance(key, str) or not isinstance(nonce, str):
        raise _refuse(400, "key and nonce must be strings")
    if not isinstance(at, int) or isinstance(at, bool):
        raise _refuse(400, "at must be unix seconds (a whole number)")
    if not _NONCE.fullmatch(nonce):
        raise _refuse(400, "nonce must be 16-64 characters of A-Z a-z 0-9 _ -")
    with runtime.sessions() as session:
        shop = session.scalar(
            select(Shop).where(
                Shop.storefront_key == key,
                Shop.platform == platform,
                Shop.status == ShopStatus.ACTIVE,
            )
        )
        if shop is None:
            raise _refuse(404, "unknown key")
        session.expunge(shop)
    try:
        secret = runtime.secrets.open_optional(shop.plugin_secret_enc)
    except SecretError:
        log.exception("shop %s: plugin secret unreadable", shop.id)
        secret = None
    given = request.headers.get(SIGNATURE, "")
    if secret is None or not hmac.compare_digest(signature(secret, body), given):
        raise _refuse(401, "invalid signature")
    if abs(time.time() - at) > WINDOW:
        raise _refuse(401, f"request time more than {WINDOW} s from ours: check the clock")
    try:
        fresh = runtime.redis.set(nonce_key(shop.id, nonce), 1, nx=True, ex=2 * WINDOW)
    except RedisError as exc:
        log.warning("plugin nonce not checked (redis): %s", exc)
        raise PluginAuthError(503, "try again in a moment") from exc
    if not fresh:
        raise _refuse(401, "this request was sent before (replayed nonce)")
    return shop


def _signed(action: Callable[[Runtime, Shop], dict[str, Any]]) -> Callable[[str], Response]:
    def view(platform: str) -> Response:
        runtime = runtime_of(current_app)
        try:
            shop = authenticate(runtime, platform)
        except PluginAuthError as exc:
            response = jsonify(error=exc.message)
            response.status_code = exc.status
            return response
        return jsonify(action(runtime, shop))

    view.__name__ = action.__name__
    return view


def status(runtime: Runtime, shop: Shop) -> dict[str, Any]:
    at = now()
    with runtime.sessions() as session:
        seen = storefront.activity(session, shop.id, at)
    base = runtime.settings.base_url
    return {
        "shop": shop.key,
        "connected": True,
        "events_last_24h": seen.events_last_day,
        "last_event_at": utc_iso(seen.last_event_at) if seen.last_event_at else None,
        "app_url": f"{base}/app/",
    }


def login_link(runtime: Runtime, shop: Shop) -> dict[str, Any]:
    with runtime.sessions.begin() as session:
        token = login_links.issue(session, shop.id, now())
    return {"url": link_url(runtime.settings.base_url, token)}


blueprint.add_url_rule("/<platform>/status", view_func=_signed(status), methods=["POST"])
blueprint.add_url_rule("/<platform>/login-link", view_func=_signed(login_link), methods=["POST"])
