"""Connecting a WooCommerce store: ``/woocommerce/connect``, ``/callback``, ``/return``.

1. ``GET /woocommerce/connect?store_url=...`` normalises the address (https
   outside development), issues a single-use nonce, remembers it in the
   merchant's signed session cookie, and sends the browser to the store's
   ``/wc-auth/v1/authorize`` with the nonce as ``user_id``.
2. The store POSTs the new REST keys to ``/woocommerce/callback`` (unsigned,
   server to server): accepted only for a live nonce, once, answered exactly
   200 (any other answer makes WooCommerce delete the key). Webhook creation
   runs in a job right after, so the answer is immediate.
3. The store sends the browser to ``/woocommerce/return?success=1&user_id=...``:
   the merchant is signed in only if this browser started that connect and
   the store's key POST arrived.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    request,
    session,
    url_for,
)

from adapters.platform import WebhookError
from connector import merchant
from connector.app import runtime_of
from jobs import woocommerce_app

log = logging.getLogger(__name__)
blueprint = Blueprint("woocommerce", __name__, url_prefix="/woocommerce")
NONCE_KEY = "woocommerce_connect"
APP_NAME = "triggerpost"


@blueprint.get("/connect")
def connect() -> Any:
    runtime = runtime_of(current_app)
    address = (request.args.get("store_url") or "").strip()
    if not address:
        abort(400, "give your store's address as store_url, e.g. https://shop.example.com")
    try:
        with runtime.sessions.begin() as db:
            nonce, home = woocommerce_app.issue_nonce(
                db, address, dev_mode=not runtime.settings.production
            )
    except woocommerce_app.ConnectError as exc:
        abort(400, str(exc))
    except WebhookError as exc:  # the address does not parse as a store URL
        abort(400, exc.message)
    session[NONCE_KEY] = nonce
    base = runtime.settings.base_url
    query = urlencode(
        {
            "app_name": APP_NAME,
            "scope": "read_write",
            "user_id": nonce,
            "return_url": f"{base}{url_for('woocommerce.connected')}",
            "callback_url": f"{base}{url_for('woocommerce.callback')}",
        }
    )
    return redirect(f"{home}/wc-auth/v1/authorize?{query}")


@blueprint.post("/callback")
def callback() -> tuple[Response, int]:
    runtime = runtime_of(current_app)
    body = request.get_json(silent=True)
    try:
        shop_id = woocommerce_app.accept_keys(runtime, body)
    except woocommerce_app.ConnectError as exc:
        log.warning("refused a WooCommerce key POST: %s", exc)
        return jsonify(error="refused", message=str(exc)), 403
    log.info("WooCommerce shop %s connected", shop_id)
    return jsonify(status="connected"), 200


@blueprint.get("/return")
def connected() -> Any:
    nonce = request.args.get("user_id", "")
    expected = session.pop(NONCE_KEY, None)
    if request.args.get("success") != "1":
        abort(400, "the connection was not approved in your store; start again to connect")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, nonce):
        abort(403, "this browser did not start that connection; start again from here")
    runtime = runtime_of(current_app)
    with runtime.sessions() as db:
        shop_id = woocommerce_app.connected_shop(db, nonce)
    if shop_id is None:
        abort(409, "your store has not sent triggerpost its keys; start the connection again")
    merchant.login(shop_id)
    return redirect(url_for("merchant.settings_page"))
