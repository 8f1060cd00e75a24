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
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import click
from flask import Blueprint, abort, current_app, redirect, request, session, url_for
from sqlalchemy import select

from adapters.platform import AdminApiError
from adapters.shopify import oauth
from connector.merchant import auth
from connector.platforms.common import ConnectorPlatform, add_shop_by_hand
from connector.runtime import runtime_of
from jobs.platforms import shopify
from jobs.settings import Settings
from jobs.store.models import Shop, ShopStatus, Subscription, now

log = logging.getLogger(__name__)
blueprint = Blueprint("shopify", __name__, url_prefix="/shopify")
NONCE_KEY = "shopify_oauth"


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


@blueprint.get("/install")
def install() -> Any:
    signed = _checked()
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
        return redirect(url_for("merchant.settings_page"))
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
    return redirect(url_for("merchant.settings_page"))


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


CONNECTOR = ConnectorPlatform(name="shopify", blueprint=blueprint, add_command=add_command)
