"""The Flask application factory, and what holds for every answer it gives.

Security headers on every response (a view may set its own first):

=============================  ==================================================
``X-Content-Type-Options``     ``nosniff``: a JSON export or a pixel is never
                               run as a script or shown as a page
``X-Frame-Options``            ``DENY``, with CSP ``frame-ancestors 'none'``: no
                               page of ours inside another site's frame (a
                               hidden unsubscribe button, a framed settings page);
                               except a merchant page a platform's admin embeds,
                               signed in by that shop's token: no
                               ``X-Frame-Options``, and ``frame-ancestors`` that
                               shop's admin and the platform's only
``Content-Security-Policy``    a page rendered from ``connector/templates`` (the
                               email link pages and the settings page): its own
                               ``<style nonce>`` and forms posting back to us,
                               nothing else; anything else (JSON, webhooks,
                               redirects, the pixel): ``default-src 'none'``
``Referrer-Policy``            ``no-referrer`` on the email links (their URLs
                               carry the customer's token); ``same-origin``
                               elsewhere (``no-referrer`` would also send
                               ``Origin: null`` on our own form posts)
``Strict-Transport-Security``  production only (where the base URL must be https)
=============================  ==================================================

No ``Cross-Origin-Resource-Policy``: the open pixel is loaded by webmail
from other origins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from flask import Flask, Request, Response, abort, g, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter, Map

from connector import (
    email_events,
    email_links,
    errors,
    health,
    metrics,
    plugin,
    storefront,
    webhooks,
)
from connector.merchant import api, areas, auth, pages, ui
from connector.platforms.registry import CONNECTORS
from connector.runtime import EXTENSION, MERCHANT_POLICY, PAGE_POLICY, csp_nonce, framed_policy
from jobs.intake import deliveries
from jobs.merchant.sessions import LIFETIME
from jobs.runtime import Runtime
from jobs.settings import Settings


class CookieSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions, except on routes no person's browser calls.

    Opening a session on every webhook cost several percent of the intake.
    """

    SESSIONLESS = (
        "/webhooks/", "/events/", "/plugin/", "/healthz", "/readyz", "/metrics",
        "/t/", "/u/", "/p/",
    )  # fmt: skip

    def __init__(self, sessionless: Iterable[str] = ()) -> None:
        #: ours, and the paths platforms call (a key POST from a store)
        self.sessionless = (*self.SESSIONLESS, *sessionless)

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(self.sessionless):
            return None  # Flask then gives the request a NullSession, which refuses writes
        return super().open_session(app, request)


#: the largest id the store can hold: BIGINT on PostgreSQL, INTEGER on SQLite,
#: both signed 64-bit
ID_MAX = 2**63 - 1


class StoreIdConverter(IntegerConverter):
    """``<int:...>`` in every route: an id beyond the store's range is 404, not a crash.

    Werkzeug's own converter passes any size of number on, and the database
    driver then fails on it (SQLite: "Python int too large", PostgreSQL:
    "bigint out of range").
    """

    regex = r"[0-9]+"  # ASCII digits only (``\d`` would take any script's digits)

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", ID_MAX)
        super().__init__(map, *args, **kwargs)


#: JSON, webhook answers, redirects, the pixel: nothing to load, run or frame
NOTHING_POLICY = "default-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
#: the blueprint whose URLs carry a customer's token: never sent on as a referrer
EMAIL_LINKS = "email_links"
HSTS = "max-age=63072000; includeSubDomains"


def security_headers(settings: Settings) -> Any:
    """The ``after_request`` hook that sets the headers in the module's table."""
    always = [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY")]
    if settings.production:
        always.append(("Strict-Transport-Security", HSTS))
    # built once, and added with one extend: Headers.setdefault costs about 6 us a
    # header, more than the rest of a webhook's answer
    plain = {
        referrer: [
            *always,
            ("Content-Security-Policy", NOTHING_POLICY),
            ("Referrer-Policy", referrer),
        ]
        for referrer in ("no-referrer", "same-origin")
    }

    framable = [header for header in always if header[0] != "X-Frame-Options"]

    def secure(response: Response) -> Response:
        referrer = "no-referrer" if request.blueprint == EMAIL_LINKS else "same-origin"
        nonce = g.get("csp_nonce")
        merchant_page = request.blueprint == pages.blueprint.name or g.get("merchant_page")
        if merchant_page and response.mimetype == "text/html":
            policy: str | None = MERCHANT_POLICY.format(nonce=csp_nonce())
        elif nonce is not None:
            policy = PAGE_POLICY.format(nonce=nonce)
        else:
            policy = None
        if g.get("frame_ancestors") or g.get("frame_scripts"):
            # a page a platform's admin embeds (connector.merchant.auth): framed by
            # that shop's admin only, with the platform's script
            policy, framed = framed_policy(policy or NOTHING_POLICY)
            wanted = [
                *(framable if framed else always),
                ("Content-Security-Policy", policy),
                ("Referrer-Policy", referrer),
            ]
        elif policy is None:
            wanted = plain[referrer]
        else:
            wanted = [*always, ("Content-Security-Policy", policy), ("Referrer-Policy", referrer)]
        headers = response.headers
        present = {name.lower() for name, _ in headers}  # a view's own choice stands
        headers.extend([(name, value) for name, value in wanted if name.lower() not in present])
        return response

    return secure


class BoundedJSON(DefaultJSONProvider):
    """Flask's JSON read as a webhook's body is (:func:`jobs.intake.deliveries.parse_body`):
    a document nested deeper than its bound (or past the parser's stack) is no JSON, a
    400 from every ``request.get_json``, never a RecursionError further on (a 500)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        if kwargs:
            return super().loads(s, **kwargs)
        try:
            return deliveries.parse_body(s.encode() if isinstance(s, str) else s)
        except deliveries.PayloadError as exc:
            raise ValueError(str(exc)) from None


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the web app. Settings default to the environment, read once here."""
    if runtime is None:
        runtime = Runtime.create(settings or Settings.from_env())
    settings = runtime.settings
    app = Flask(__name__)
    app.json = BoundedJSON(app)
    # before any blueprint: a rule binds its converters when it is added
    app.url_map.converters["int"] = StoreIdConverter
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_webhook_bytes,
        # Lax: the cookie rides along when a platform or a store redirects the merchant back
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        SESSION_COOKIE_HTTPONLY=True,
        # the browser drops the cookie when the session it names has ended anyway
        PERMANENT_SESSION_LIFETIME=LIFETIME,
        # CSRF tokens for the merchant area only (checked in merchant_csrf below): the
        # webhooks, email links and platforms' callbacks are not cookie-session forms
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_HEADERS=["X-CSRF-Token"],
        WTF_CSRF_TIME_LIMIT=int(LIFETIME.total_seconds()),
        WTF_CSRF_SSL_STRICT=False,  # the Origin check of our own pages is the session's
    )
    app.session_interface = CookieSessions(
        path for connector in CONNECTORS.values() for path in connector.sessionless
    )
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    ui.init_app(app)
    csrf = CSRFProtect(app)
    app.after_request(security_headers(settings))
    app.extensions[EXTENSION] = runtime
    logging.getLogger("triggerpost").setLevel(settings.log_level)

    webhooks.init_app(app, runtime)
    storefront.init_app(app, runtime)
    app.register_blueprint(plugin.blueprint)
    app.register_blueprint(health.blueprint)
    metrics.init_app(app)
    assert areas.AREAS  # every area's routes are on the blueprints before they register
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(api.blueprint)
    auth.init_app(
        app, {name: c.embedded for name, c in CONNECTORS.items() if c.embedded is not None}
    )
    app.register_blueprint(email_links.blueprint)
    app.register_blueprint(email_events.blueprint)
    for connector in CONNECTORS.values():
        app.register_blueprint(connector.blueprint)

    machine_paths = tuple(path for c in CONNECTORS.values() for path in c.sessionless)
    merchant_area = (pages.blueprint.name, api.blueprint.name)

    @app.before_request
    def merchant_csrf() -> None:
        """A state-changing request of a cookie session must carry the page's CSRF token.

        A request with a Bearer token is judged by that token alone (a cookie is
        never read for it, connector.merchant.auth), and no other site can make a
        browser send one: it needs none.
        """
        if (
            request.blueprint in merchant_area
            and request.method not in ("GET", "HEAD", "OPTIONS")
            and auth.bearer_token() is None
        ):
            try:
                csrf.protect()
            except CSRFError:
                abort(
                    403,
                    "This form has expired or did not come from triggerpost's own page: "
                    "reload the page and try again.",
                )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return errors.answer(exc, machine_paths)

    return app
