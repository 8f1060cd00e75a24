"""The Flask application factory."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Request, jsonify
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter, Map

from jobs.runtime import Runtime
from jobs.settings import Settings

EXTENSION = "triggerpost"


class CookieSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions, except on routes no person's browser calls.

    Opening a session on every webhook cost several percent of the intake.
    """

    SESSIONLESS = (
        "/webhooks/",
        "/healthz",
        "/readyz",
        "/t/",
        "/u/",
        "/p/",
        "/woocommerce/callback",
    )

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(self.SESSIONLESS):
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


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the web app. Settings default to the environment, read once here."""
    from connector import (
        email_events,
        email_links,
        health,
        merchant,
        shopify,
        webhooks,
        woocommerce,
    )

    if runtime is None:
        runtime = Runtime.create(settings or Settings.from_env())
    settings = runtime.settings
    app = Flask(__name__)
    # before any blueprint: a rule binds its converters when it is added
    app.url_map.converters["int"] = StoreIdConverter
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_webhook_bytes,
        # Lax: the cookie rides along when Shopify or a store redirects the merchant back
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
    )
    app.session_interface = CookieSessions()
    app.extensions[EXTENSION] = runtime
    logging.getLogger("triggerpost").setLevel(settings.log_level)

    webhooks.init_app(app, runtime)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(merchant.blueprint)
    app.register_blueprint(email_links.blueprint)
    app.register_blueprint(email_events.blueprint)
    app.register_blueprint(shopify.blueprint)
    app.register_blueprint(woocommerce.blueprint)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return jsonify(error=exc.name, message=exc.description), exc.code or 500

    return app


def runtime_of(app: Flask) -> Runtime:
    runtime: Runtime = app.extensions[EXTENSION]
    return runtime
