"""Connecting a WooCommerce store: ``/woocommerce/connect``, ``/callback``, ``/return``.

1. ``GET /woocommerce/connect?store_url=...`` shows the merchant a form with
   the address filled in; only its same-site ``POST`` (carrying the form's
   token from this browser's session) starts a connect. A link on another
   site therefore cannot start one in a victim's browser and sign it in to a
   store the attacker controls. The POST normalises the address (https
   outside development, a public host), issues a single-use nonce (rate
   limited per address), remembers it in the session cookie, and sends the
   browser to the store's ``/wc-auth/v1/authorize`` with the nonce as ``user_id``.
2. The store POSTs the new REST keys to ``/woocommerce/callback`` (unsigned,
   server to server): accepted only for a live nonce, once, answered exactly
   200 (any other answer makes WooCommerce delete the key). The keys are not
   trusted yet: a job tries them against the store (``jobs.platforms.woocommerce``).
3. The store sends the browser to ``/woocommerce/return?success=1&user_id=...``:
   only the browser that started that connect is signed in (sent through a
   fresh login link, the way a WooCommerce merchant always signs in), and only
   once the keys have worked; until then it sees a page that refreshes itself.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

import click
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from adapters.platform import AdminApiError, WebhookError
from connector.platforms.common import ConnectorPlatform, add_shop_by_hand
from connector.runtime import PAGE_POLICY, csp_nonce, runtime_of
from jobs.merchant import login_links
from jobs.platforms import woocommerce
from jobs.settings import Settings
from jobs.store.models import ConnectState, now

log = logging.getLogger(__name__)
blueprint = Blueprint("woocommerce", __name__, url_prefix="/woocommerce")
NONCE_KEY = "woocommerce_connect"
FORM_KEY = "woocommerce_connect_form"
APP_NAME = "triggerpost"
#: seconds between two looks of the waiting page
REFRESH = 2


@blueprint.get("/connect")
def connect() -> Any:
    token = session.get(FORM_KEY)
    if not isinstance(token, str):
        token = session[FORM_KEY] = secrets.token_urlsafe(32)
    page = render_template(
        "connect.html",
        stage="start",
        form_token=token,
        store_url=(request.args.get("store_url") or "").strip()[:512],
    )
    # the form's answer redirects to the store's own address, which browsers hold
    # to form-action too: any https origin (http as well in development)
    schemes = "https:" if runtime_of(current_app).settings.production else "https: http:"
    policy = PAGE_POLICY.format(nonce=csp_nonce()).replace(
        "form-action 'self'", f"form-action 'self' {schemes}"
    )
    return page, 200, {"Cache-Control": "no-store", "Content-Security-Policy": policy}


def _same_site() -> bool:
    """The form was posted from our own page: its token, and its origin if the browser says."""
    expected = session.get(FORM_KEY)
    given = request.form.get("form_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, given):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


@blueprint.post("/connect")
def start() -> Any:
    if not _same_site():
        abort(403, "start the connection from triggerpost's connect page")
    runtime = runtime_of(current_app)
    address = (request.form.get("store_url") or "").strip()
    if not address:
        abort(400, "give your store's address, e.g. https://shop.example.com")
    try:
        with runtime.sessions.begin() as db:
            nonce, home = woocommerce.issue_nonce(
                db,
                address,
                dev_mode=not runtime.settings.production,
                client=request.remote_addr or "",
            )
            runtime.outbound.check_url(home)  # before the nonce is committed
    except woocommerce.ConnectLimitError as exc:
        abort(429, str(exc))
    except woocommerce.ConnectError as exc:
        abort(400, str(exc))
    except WebhookError as exc:  # the address does not parse as a store URL
        abort(400, exc.message)
    except AdminApiError as exc:  # the outbound policy refuses the host
        abort(400, f"triggerpost cannot connect to that address: {exc}")
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
    return redirect(f"{home}/wc-auth/v1/authorize?{query}", code=303)


@blueprint.post("/callback")
def callback() -> tuple[Response, int]:
    runtime = runtime_of(current_app)
    body = request.get_json(silent=True)
    try:
        nonce_id = woocommerce.accept_keys(runtime, body)
    except woocommerce.ConnectError as exc:
        log.warning("refused a WooCommerce key POST: %s", exc)
        return jsonify(error="refused", message=str(exc)), 403
    log.info("WooCommerce key POST for connect %s: keys to be verified", nonce_id)
    return jsonify(status="received"), 200


@blueprint.get("/return")
def connected() -> Any:
    nonce = request.args.get("user_id", "")
    expected = session.get(NONCE_KEY)
    if request.args.get("success") != "1":
        session.pop(NONCE_KEY, None)
        abort(400, "the connection was not approved in your store; start again to connect")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, nonce):
        abort(403, "this browser did not start that connection; start again from here")
    runtime = runtime_of(current_app)
    with runtime.sessions() as db:
        progress = woocommerce.connect_progress(db, nonce)
    if progress is None:
        session.pop(NONCE_KEY, None)
        abort(409, "this connection is over or unknown; start the connection again")
    headers = {"Cache-Control": "no-store"}
    if progress.state == ConnectState.CONNECTED and progress.shop_id is not None:
        session.pop(NONCE_KEY, None)
        # the one way a WooCommerce merchant signs in: through a fresh login link,
        # spent at once by this browser (the one that started the connect)
        with runtime.sessions.begin() as db:
            token = login_links.issue(db, progress.shop_id, now())
        return redirect(url_for("access.login_link", token=token), code=303)
    if progress.state == ConnectState.REFUSED:
        session.pop(NONCE_KEY, None)
        page = render_template("connect.html", stage="refused", reason=progress.reason,
                               store=progress.store)  # fmt: skip
        return page, 403, headers
    # the store's key POST has not come yet, or its keys are being tried
    page = render_template("connect.html", stage="waiting", store=progress.store, refresh=REFRESH)
    return page, 202, headers


# --- registering a shop by hand ------------------------------------------------------


@click.command("woocommerce")
@click.argument("store_url")
@click.option("--webhook-secret", required=True, help="Secret the store's webhooks sign with.")
@click.option("--consumer-key", default=None, help="REST API consumer key (ck_...).")
@click.option("--consumer-secret", default=None, help="REST API consumer secret (cs_...).")
@click.option("--name", default=None, help="Display name.")
@click.option("--currency", default=None, help="Shop currency, e.g. EUR.")
@click.option("--timezone", default=None, help="IANA timezone, e.g. Europe/Oslo.")
@click.pass_obj
def add_command(
    settings: Settings,
    store_url: str,
    webhook_secret: str,
    consumer_key: str | None,
    consumer_secret: str | None,
    name: str | None,
    currency: str | None,
    timezone: str | None,
) -> None:
    """Register the store at STORE_URL (https://shop.example.com)."""
    if bool(consumer_key) != bool(consumer_secret):
        raise click.ClickException("--consumer-key and --consumer-secret go together")
    add_shop_by_hand(
        settings,
        "woocommerce",
        store_url,
        name=name,
        webhook_secret=webhook_secret,
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        currency=currency,
        timezone=timezone,
    )


CONNECTOR = ConnectorPlatform(
    name="woocommerce",
    blueprint=blueprint,
    sessionless=("/woocommerce/callback",),
    add_command=add_command,
    plugin=True,  # the triggerpost plugin for WooCommerce (storefront events, consent)
)
