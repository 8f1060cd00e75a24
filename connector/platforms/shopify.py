"""Installing the Shopify app: ``GET /shopify/install`` and ``GET /shopify/callback``.

Install: Shopify sends the merchant's browser to our App URL with a signed
query. We check the signature, the time and the shop domain, spend the query
(a second use is refused), issue a fresh ``state`` (stored, and put in the
signed session cookie) and send the browser to Shopify's grant screen.
Callback: the same checks again plus ``state`` == the cookie's, for the same
shop, used up in the store (so an old cookie replayed finds it spent), and
only then the one outbound call: exchanging the code. A refused request never
reaches Shopify.

Opening the app again from the Shopify admin (already installed, token
held, scopes granted, webhooks subscribed) skips the grant screen and signs
the merchant in, once per signed link.

The app is embedded (``embedded = true`` in shopify.app.toml): the admin
loads the App URL in an iframe with ``embedded=1`` and App Bridge's session
token (``id_token``) in the signed query. Such a load is signed in by the
token alone (no cookie: browsers block them in the admin's frame): a shop
not installed yet is installed by token exchange, then the merchant app
opens at ``/app/`` with the token, and every API call carries a fresh one
(``Authorization: Bearer``, added by App Bridge). A page load inside the
frame without a token (a link followed) goes through the bounce page, where
App Bridge gets a fresh token and loads the page again with it
(:data:`EMBEDDED`, connector.merchant.auth).
"""

from __future__ import annotations

import base64
import hmac
import logging
from typing import Any
from urllib.parse import urlencode

import click
from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import select

from adapters.platform import AdminApiError
from adapters.shopify import oauth, session_token
from adapters.shopify.webhooks import SHOP_DOMAIN
from connector.merchant import auth
from connector.platforms.common import (
    ConnectorPlatform,
    Demo,
    DemoDelivery,
    EmbeddedAdmin,
    add_shop_by_hand,
)
from connector.runtime import allow_framing, csp_nonce, runtime_of
from jobs.platforms import shopify
from jobs.settings import Settings
from jobs.store.models import Shop, ShopStatus, Subscription, now

log = logging.getLogger(__name__)
blueprint = Blueprint("shopify", __name__, url_prefix="/shopify")
NONCE_KEY = "shopify_oauth"
#: App Bridge, loaded as Shopify requires: from its CDN, the first script in the head
APP_BRIDGE = "https://cdn.shopify.com/shopifycloud/app-bridge.js"
#: the Shopify admin's own origin (shops' admins live there, and at their myshopify origin)
ADMIN = "https://admin.shopify.com"
#: the query parameter App Bridge's bounce page reads: the page to load again, with a token
RELOAD = "shopify-reload"


def _query() -> str:
    return request.query_string.decode("ascii", "replace")


def _checked() -> oauth.SignedRequest:
    settings = runtime_of(current_app).settings
    try:
        return oauth.check_request(
            _query(),
            [settings.shopify_api_secret or "", settings.shopify_api_secret_previous or ""],
        )
    except oauth.OAuthError as exc:
        log.warning("refused Shopify %s: %s", request.path, exc)
        abort(400, str(exc))


def _already_installed(shop_domain: str) -> int | None:
    runtime = runtime_of(current_app)
    with runtime.sessions() as db:
        shop = db.scalar(select(Shop).where(Shop.platform == "shopify", Shop.key == shop_domain))
        if shop is None or shop.status != ShopStatus.ACTIVE or shop.access_token_enc is None:
            return None
        granted = frozenset((shop.scopes or "").split(","))
        if oauth.missing_scopes(granted, runtime.settings.shopify_scopes):
            return None
        # never subscribed (Shopify and Redis both down at install): install again
        subscribed = db.scalar(select(Subscription.id).where(Subscription.shop_id == shop.id))
        return shop.id if subscribed is not None else None


@blueprint.before_request
def _head_spends_nothing() -> Any:
    """A HEAD (a link checker's) must not spend a single-use install link or OAuth state."""
    if request.method == "HEAD":
        return "", 200, {"Cache-Control": "no-store"}
    return None


def _secrets(settings: Settings) -> list[str | None]:
    return [settings.shopify_api_secret, settings.shopify_api_secret_previous]


def _token_shop(settings: Settings, token: str) -> str:
    verified = session_token.verify(token, settings.shopify_api_key or "", _secrets(settings))
    return verified.shop


def _bounce(back: str, shop: str | None, host: str | None) -> str:
    query = {"shop": shop or "", "host": host or "", RELOAD: back}
    return f"{url_for('shopify.bounce')}?{urlencode(query)}"


@blueprint.get("/session-token-bounce")
def bounce() -> Any:
    """App Bridge, and nothing else: it reads ``shopify-reload`` and loads that page of
    ours again with a fresh ``id_token``. Without App Bridge (no network to Shopify's
    CDN) the merchant reads what to do."""
    settings = runtime_of(current_app).settings
    shop = request.args.get("shop", "").strip().lower()
    back = request.args.get(RELOAD, "")
    if not back.startswith(f"{settings.base_url}/") or "\\" in back:
        abort(400, "this page only reloads triggerpost's own pages")
    if SHOP_DOMAIN.match(shop):
        allow_framing((f"https://{shop}", ADMIN), (APP_BRIDGE,))
    else:
        allow_framing((ADMIN,), (APP_BRIDGE,))
    csp_nonce()  # a page of ours: the page policy, with App Bridge allowed
    page = render_template(
        "embedded/shopify_bounce.html", embedded_api_key=settings.shopify_api_key or ""
    )
    return page, 200, {"Cache-Control": "no-store"}


def _embedded_open(signed: oauth.SignedRequest) -> Any:
    """The admin opened the app in its frame: sign in by the session token, installing
    the app first if this shop has not been installed through us (token exchange)."""
    settings = runtime_of(current_app).settings
    token = signed.params.get(auth.ID_TOKEN, "")
    try:
        shop = _token_shop(settings, token)
    except session_token.SessionTokenError as exc:
        log.warning("refused an embedded load of %s: %s", signed.shop, exc)
        allow_framing((ADMIN,), ())
        abort(401, "Open triggerpost again from your Shopify admin.")
    if shop != signed.shop:
        log.warning("refused an embedded load of %s: its token is for %s", signed.shop, shop)
        allow_framing((ADMIN,), ())
        abort(401, "Open triggerpost again from your Shopify admin.")
    if _already_installed(shop) is None:
        runtime = runtime_of(current_app)
        try:
            shopify.complete_embedded_install(runtime, shop, token)
        except shopify.InstallError as exc:
            abort(503, str(exc))
        except AdminApiError as exc:
            log.warning("Shopify token exchange for %s failed: %s", shop, exc)
            abort(502, "Shopify did not complete the install; please try again")
    kept = {k: signed.params[k] for k in (*auth.EMBED_PARAMS, auth.ID_TOKEN) if k in signed.params}
    return redirect(f"{auth.HOME}?{urlencode(kept)}")


@blueprint.get("/install")
def install() -> Any:
    signed = _checked()
    if signed.params.get("embedded") == "1":
        if auth.ID_TOKEN not in signed.params:  # the app's page gets one through the bounce
            kept = {k: signed.params[k] for k in auth.EMBED_PARAMS if k in signed.params}
            return redirect(f"{auth.HOME}?{urlencode(kept)}")
        # signed in by the token, for its minute: the install query is not spent
        # (App Bridge may load it again), and no cookie is set
        return _embedded_open(signed)
    runtime = runtime_of(current_app)
    settings = runtime.settings
    with runtime.sessions.begin() as db:
        first_use = shopify.spend_install_query(db, _query(), signed.shop, now())
    if not first_use:
        log.warning("refused Shopify install for %s: the signed link was used before", signed.shop)
        abort(403, "this install link was used already; open triggerpost from your Shopify admin")
    shop_id = _already_installed(signed.shop)
    if shop_id is not None:
        auth.login(shop_id)
        return redirect(url_for("merchant.overview"))
    if not settings.shopify_api_key:
        abort(503, "the Shopify app is not configured (TRIGGERPOST_SHOPIFY_API_KEY)")
    with runtime.sessions.begin() as db:
        state = shopify.issue_state(db, signed.shop, now())
    session[NONCE_KEY] = {"state": state, "shop": signed.shop}
    return redirect(
        oauth.authorize_url(
            signed.shop,
            settings.shopify_api_key,
            settings.shopify_scopes,
            f"{settings.base_url}{url_for('shopify.callback')}",
            state,
        )
    )


@blueprint.get("/callback")
def callback() -> Any:
    signed = _checked()
    expected = session.pop(NONCE_KEY, None)  # single use, whatever happens next
    state = signed.params.get("state", "")
    if (
        not isinstance(expected, dict)
        or not hmac.compare_digest(str(expected.get("state", "")), state)
        or expected.get("shop") != signed.shop
    ):
        log.warning("refused Shopify callback for %s: state or shop mismatch", signed.shop)
        abort(403, "this install link is not the one we started; start the install again")
    runtime = runtime_of(current_app)
    with runtime.sessions.begin() as db:
        live = shopify.consume_state(db, state, signed.shop, now())
    if not live:
        log.warning("refused Shopify callback for %s: state used before or expired", signed.shop)
        abort(403, "this install link was used already or has expired; start the install again")
    code = signed.params.get("code")
    if not code:
        abort(400, "the callback carries no code")
    try:
        shop_id = shopify.complete_install(runtime, signed.shop, code)
    except shopify.InstallError as exc:
        abort(503, str(exc))
    except AdminApiError as exc:
        log.warning("Shopify install of %s failed: %s", signed.shop, exc)
        abort(502, "Shopify did not complete the install; please try again")
    auth.login(shop_id)
    return redirect(url_for("merchant.overview"))


# --- registering a shop by hand ------------------------------------------------------


@click.command("shopify")
@click.argument("domain")
@click.option("--access-token", default=None, help="Admin API access token.")
@click.option(
    "--webhook-secret",
    default=None,
    help="Signing secret of a custom app created in this shop's admin "
    "(default: TRIGGERPOST_SHOPIFY_API_SECRET).",
)
@click.option("--name", default=None, help="Display name.")
@click.option("--currency", default=None, help="Shop currency, e.g. SEK.")
@click.option("--timezone", default=None, help="IANA timezone, e.g. Europe/Stockholm.")
@click.pass_obj
def add_command(
    settings: Settings,
    domain: str,
    access_token: str | None,
    webhook_secret: str | None,
    name: str | None,
    currency: str | None,
    timezone: str | None,
) -> None:
    """Register DOMAIN (NAME.myshopify.com)."""
    if webhook_secret is None and not settings.shopify_api_secret:
        raise click.ClickException(
            "set TRIGGERPOST_SHOPIFY_API_SECRET or pass --webhook-secret: "
            "without one no webhook from this shop can be verified"
        )
    add_shop_by_hand(
        settings,
        "shopify",
        domain,
        name=name,
        webhook_secret=webhook_secret,
        access_token=access_token,
        currency=currency,
        timezone=timezone,
    )


EMBEDDED = EmbeddedAdmin(
    token_shop=_token_shop,
    shop_origin=lambda shop: f"https://{shop}",
    admin_origins=(ADMIN,),
    scripts=(APP_BRIDGE,),
    head_template="embedded/shopify_app_bridge.html",
    api_key=lambda settings: settings.shopify_api_key or "",
    bounce=_bounce,
)

# --- `triggerpost demo` -------------------------------------------------------------


def _demo_headers(
    topic: str, body: bytes, secret: str, shop_key: str, delivery_id: str
) -> dict[str, str]:
    """The headers Shopify sends a webhook with, signed as it signs them."""
    digest = hmac.new(secret.encode(), body, "sha256").digest()
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
        "X-Shopify-Shop-Domain": shop_key,
        "X-Shopify-API-Version": "2026-07",
        "X-Shopify-Webhook-Id": delivery_id,
        "X-Shopify-Event-Id": f"event-{delivery_id}",
    }


#: Astrid's order, placed by Erik instead: Astrid's cart stays abandoned
_ERIK = (
    ("astrid.lindqvist@example.se", "erik.nilsson@example.se"),
    ("Astrid", "Erik"),
    ("Lindqvist", "Nilsson"),
    ("8012345678901", "8012345678902"),  # his customer id
    ("4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a", "4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7b"),  # his checkout
    ("Z2NwLXVzLWNlbnRyYWwxOjAxSzU3WlEzTThUNFg5Q0RSUEhWMkZHUThX", "demo-cart-erik"),
)

_SUBSCRIBES = (('"state":"unsubscribed"', '"state":"subscribed"'),)

DEMO = Demo(
    address="triggerpost-demo.myshopify.com",
    deliveries=(
        # a new subscriber: the welcome series
        DemoDelivery("customers_create__api_2024_10_consent", "customers/create"),
        # a customer who subscribes, then leaves a cart behind: cart recovery
        DemoDelivery(
            "customers_email_marketing_consent_update__unsubscribed",
            "customers_email_marketing_consent/update",
            replace=_SUBSCRIBES,
        ),
        DemoDelivery(
            "checkouts_create__customer",
            "checkouts/create",
            replace=(('"buyer_accepts_marketing":false', '"buyer_accepts_marketing":true'),),
        ),
        # another who subscribes, then pays an order that is delivered: the thank-you,
        # the delivered notice, the review request
        DemoDelivery(
            "customers_email_marketing_consent_update__unsubscribed",
            "customers_email_marketing_consent/update",
            replace=(*_SUBSCRIBES, *_ERIK),
        ),
        DemoDelivery("orders_paid__customer", "orders/paid", replace=_ERIK),
        DemoDelivery("fulfillments_update__delivered", "fulfillments/update", replace=_ERIK),
    ),
    headers=_demo_headers,
    customers=(
        "maryam.rezaei@example.se",
        "Astrid.Lindqvist@example.se",
        "erik.nilsson@example.se",
    ),
)

CONNECTOR = ConnectorPlatform(
    name="shopify", blueprint=blueprint, add_command=add_command, embedded=EMBEDDED, demo=DEMO
)
