"""Who is asking: the merchant a request speaks for, bound to one shop.

A request is signed in for exactly one shop, in one of two ways, recorded on
``flask.g.merchant_via`` (:class:`Via`):

- **a cookie session** (WooCommerce, development, a Shopify merchant outside
  the admin): ``login(shop_id)`` after a login link (``GET /login/<token>``,
  jobs.merchant.login_links), a verified Shopify install or a WooCommerce
  connect. The signed cookie carries only a random session id; the session
  itself lives in the store (jobs.merchant.sessions), so it can end: at
  ``POST /logout``, when the shop is uninstalled or installed again, after a
  bounded lifetime, and whenever its shop is no longer installed. Every
  state-changing request of a cookie session carries the page's CSRF token.
- **a platform's session token** (the Shopify admin, where our pages live in an
  iframe and third-party cookies are blocked): ``Authorization: Bearer <token>``
  on the API calls App Bridge makes, or ``id_token=`` in the query of a page
  load inside the admin. The token is verified by the platform that declares
  an :class:`~connector.platforms.common.EmbeddedAdmin`, and speaks for that
  platform's installed shop named in it. A request that carries a Bearer token
  is judged by it alone, never by a cookie it may also carry, so it needs no
  CSRF token: no other site can make a browser send one.

Every merchant route reads the shop from here, never from the URL. A refused
token is logged with its reason. A page load inside the admin without any
token goes through the platform's bounce page, which gets a fresh one and
comes back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    request,
    session,
)
from sqlalchemy import select

from connector.platforms.common import EmbeddedAdmin
from connector.runtime import allow_framing, runtime_of
from jobs.merchant import login_links, sessions
from jobs.store.models import Shop, ShopStatus, now

log = logging.getLogger(__name__)

#: the cookie's key for the session id
SESSION_KEY = "merchant_session"
#: ``app.extensions`` key of the clock sessions are judged by (tests put a later one)
CLOCK = "triggerpost.merchant_clock"
#: ``app.extensions`` key of the platforms whose admin embeds our pages, by name
ADMINS = "triggerpost.embedded_admins"
#: the request's shop once resolved (the WSGI environ lives exactly as long as the request)
RESOLVED = "triggerpost.merchant_shop_id"
#: the query parameter of a page load inside a platform's admin that carries its token
ID_TOKEN = "id_token"  # noqa: S105 (a parameter name)
#: the query parameters a page load inside the admin keeps on its links (the bounce
#: page needs the shop and the admin's host to ask for a fresh token)
EMBED_PARAMS = ("embedded", "shop", "host")
#: where the merchant lands once signed in
HOME = "/app/"

F = TypeVar("F", bound=Callable[..., Any])

#: ``GET /login/<token>``: the route a login link opens
blueprint = Blueprint("access", __name__)


class Via(StrEnum):
    """How this request was signed in."""

    COOKIE = "cookie"
    #: a platform's session token: a Bearer header (an API call) or an embedded page load
    TOKEN = "token"  # noqa: S105


@dataclass(frozen=True)
class Embedded:
    """A page load inside a platform's admin, signed in by its token."""

    admin: EmbeddedAdmin
    #: the shop's key on its platform (its myshopify domain)
    shop_key: str


def init_app(app: Flask, admins: Mapping[str, EmbeddedAdmin]) -> None:
    """The platforms whose admin embeds our pages; the layout's view of an embedded load."""
    app.extensions[ADMINS] = dict(admins)
    app.register_blueprint(blueprint)
    app.before_request(_fresh)
    app.context_processor(_layout)
    app.url_defaults(_keep_embedded)


#: what this module keeps on ``g`` for the request
_KEPT = ("merchant_via", "merchant_embedded", "frame_ancestors", "frame_scripts")


def _fresh() -> None:
    """Nothing of an earlier request's sign-in survives into this one's ``g`` (a test
    client keeping its context open would otherwise lend it to the next)."""
    for name in _KEPT:
        g.pop(name, None)


def _admins() -> Mapping[str, EmbeddedAdmin]:
    admins: Mapping[str, EmbeddedAdmin] = current_app.extensions.get(ADMINS, {})
    return admins


def _now() -> datetime:
    clock: Callable[[], datetime] = current_app.extensions.get(CLOCK, now)
    return clock()


def login(shop_id: int) -> None:
    """Start a session for this shop only (this browser's earlier session, any shop's, ends)."""
    runtime = runtime_of(current_app)
    earlier = session.get(SESSION_KEY)
    at = _now()
    with runtime.sessions.begin() as db:
        if isinstance(earlier, str):
            sessions.end(db, earlier, at)
        token = sessions.start(db, shop_id, at)
    session.clear()
    session[SESSION_KEY] = token
    session.permanent = True
    request.environ[RESOLVED] = shop_id
    g.merchant_via = Via.COOKIE


def logout() -> None:
    """End this browser's session, in the store too (a copy of the cookie is worthless)."""
    token = session.get(SESSION_KEY)
    if isinstance(token, str):
        with runtime_of(current_app).sessions.begin() as db:
            sessions.end(db, token, _now())
    session.clear()
    request.environ[RESOLVED] = None


def bearer_token() -> str | None:
    """The Bearer token of the ``Authorization`` header ("" when malformed), or None.

    Another scheme (a proxy's Basic credentials) is not ours, and is ignored.
    """
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()


def _token_shop(token: str, *, page: bool) -> int | None:
    """The installed shop a platform's token speaks for, or None (logged)."""
    settings = runtime_of(current_app).settings
    reasons = []
    for platform, admin in _admins().items():
        try:
            shop_key = admin.token_shop(settings, token)
        except ValueError as exc:
            reasons.append(f"{platform}: {exc}")
            continue
        with runtime_of(current_app).sessions() as db:
            shop_id = db.scalar(
                select(Shop.id).where(
                    Shop.platform == platform,
                    Shop.key == shop_key,
                    Shop.status == ShopStatus.ACTIVE,
                )
            )
        if shop_id is None:
            reasons.append(f"{platform}: {shop_key} is not installed")
            break
        g.merchant_via = Via.TOKEN
        if page:
            g.merchant_embedded = Embedded(admin, shop_key)
            allow_framing(admin.frame_ancestors(shop_key), admin.scripts)
        return shop_id
    if page:  # the refusal shows inside the admin's frame (never for a shop's origin)
        allow_framing(tuple(o for a in _admins().values() for o in a.admin_origins), ())
    log.warning(
        "refused a session token on %s %s: %s",
        request.method,
        request.path,
        "; ".join(reasons) or "no platform takes session tokens",
    )
    return None


def current_shop_id() -> int | None:
    """The shop this request is signed in for, or None.

    A Bearer token, else a page load's ``id_token``, else the cookie session;
    a credential that is named and refused signs nobody in, whatever else the
    request carries.
    """
    if RESOLVED in request.environ:
        resolved: int | None = request.environ[RESOLVED]
        return resolved
    shop_id = None
    bearer = bearer_token()
    if bearer is not None:
        shop_id = _token_shop(bearer, page=False)
    elif ID_TOKEN in request.args and request.method in ("GET", "HEAD"):
        shop_id = _token_shop(request.args[ID_TOKEN], page=True)
    else:
        token = session.get(SESSION_KEY)
        if isinstance(token, str):
            with runtime_of(current_app).sessions.begin() as db:
                shop_id = sessions.resolve(db, token, _now())
            if shop_id is None:
                session.pop(SESSION_KEY, None)
            else:
                g.merchant_via = Via.COOKIE
    request.environ[RESOLVED] = shop_id
    return shop_id


def _inside_admin() -> bool:
    """A page load inside a platform admin's frame (its marker, or the browser's word)."""
    return request.args.get("embedded") == "1" or request.headers.get("Sec-Fetch-Dest") == "iframe"


def _bouncer() -> EmbeddedAdmin | None:
    """The platform whose admin embeds us here (configured with its app's key), if any."""
    settings = runtime_of(current_app).settings
    return next((a for a in _admins().values() if a.api_key(settings)), None)


def _bounce(admin: EmbeddedAdmin) -> Any:
    """Through the platform's bounce page, which comes back here with a fresh token."""
    kept = [(k, v) for k, v in request.args.items(multi=True) if k != ID_TOKEN]
    back = f"{runtime_of(current_app).settings.base_url}{request.path}"
    if kept:
        back = f"{back}?{urlencode(kept)}"
    return redirect(admin.bounce(back, request.args.get("shop"), request.args.get("host")))


def merchant_required(view: F) -> F:
    """The view runs only for a request signed in for an installed shop (else 401).

    A page load inside a platform's admin without a token (a link followed in
    the frame) goes to get one first.
    """

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_shop_id() is None:
            admin = _bouncer()
            if (
                admin is not None
                and request.method == "GET"
                and bearer_token() is None
                and ID_TOKEN not in request.args
                and _inside_admin()
                and not request.path.startswith("/api/")
            ):
                return _bounce(admin)
            abort(401, "Sign in through your shop's admin to manage triggerpost.")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


# --- what the layout needs of an embedded load -------------------------------------------


def embedded() -> Embedded | None:
    """This request's embedded page load, if it is one."""
    found: Embedded | None = g.get("merchant_embedded")
    return found


def _layout() -> dict[str, Any]:
    """``embedded_head``: the template the layout includes first in its head on an
    embedded page (the platform's script), with ``embedded_api_key``;
    ``signed_in_via``: how (a session token has no sign-out)."""
    found = embedded()
    context: dict[str, Any] = {"signed_in_via": g.get("merchant_via")}
    if found is None:
        return {**context, "embedded_head": None}
    settings = runtime_of(current_app).settings
    return {
        **context,
        "embedded_head": found.admin.head_template,
        "embedded_api_key": found.admin.api_key(settings),
    }


def _keep_embedded(endpoint: str, values: dict[str, Any]) -> None:
    """Links between pages of an embedded load keep its markers (never the token,
    which lives a minute): the next page load knows it is inside the admin."""
    found = embedded()
    if found is None or not endpoint.startswith("merchant."):
        return
    for name in EMBED_PARAMS:
        if name in request.args:
            values.setdefault(name, request.args[name])
    values["shop"] = found.shop_key  # the token's, whatever the URL said


# --- login links -------------------------------------------------------------------------


@blueprint.route("/login/<token>", methods=["GET", "HEAD"])
def login_link(token: str) -> Any:
    """Spend a login link and start a cookie session for its shop; a HEAD (a mail
    client's or chat's link preview) spends nothing."""
    if request.method == "HEAD":
        return "", 200, {"Cache-Control": "no-store"}
    with runtime_of(current_app).sessions.begin() as db:
        shop_id = login_links.spend(db, token, _now())
    if shop_id is None:
        log.warning("refused a login link: unknown, used, expired or its shop uninstalled")
        abort(410, "This sign-in link has expired or was used already. Ask for a new one.")
    login(shop_id)
    response = redirect(HOME, code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


def link_url(base_url: str, token: str) -> str:
    """The address of a login link (the CLI prints it outside any request)."""
    return f"{base_url}/login/{token}"
