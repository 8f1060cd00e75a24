"""The Flask application factory."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Request, jsonify
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException

from jobs.merchant_sessions import LIFETIME
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
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_webhook_bytes,
        # Lax: the cookie rides along when Shopify or a store redirects the merchant back
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        SESSION_COOKIE_HTTPONLY=True,
        # the browser drops the cookie when the session it names has ended anyway
        PERMANENT_SESSION_LIFETIME=LIFETIME,
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
