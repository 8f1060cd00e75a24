"""Who is asking: the merchant session a request carries, bound to one shop.

A merchant session is bound to exactly one shop: ``login(shop_id)`` after a
verified Shopify install or a WooCommerce connect, and every merchant route
reads the shop from the session, never from the URL. The signed cookie
carries only a random session id; the session itself lives in the store
(jobs.merchant.sessions), so it can end: at ``POST /logout``, when the shop
is uninstalled or installed again, after a bounded lifetime, and whenever
its shop is no longer installed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar

from flask import abort, current_app, request, session

from connector.runtime import runtime_of
from jobs.merchant import sessions
from jobs.store.models import now

#: the cookie's key for the session id
SESSION_KEY = "merchant_session"
#: ``app.extensions`` key of the clock sessions are judged by (tests put a later one)
CLOCK = "triggerpost.merchant_clock"
#: the request's shop once resolved (the WSGI environ lives exactly as long as the request)
RESOLVED = "triggerpost.merchant_shop_id"

F = TypeVar("F", bound=Callable[..., Any])


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


def logout() -> None:
    """End this browser's session, in the store too (a copy of the cookie is worthless)."""
    token = session.get(SESSION_KEY)
    if isinstance(token, str):
        with runtime_of(current_app).sessions.begin() as db:
            sessions.end(db, token, _now())
    session.clear()
    request.environ[RESOLVED] = None


def current_shop_id() -> int | None:
    """The shop of this request's live session, or None (a dead session leaves the cookie)."""
    if RESOLVED in request.environ:
        resolved: int | None = request.environ[RESOLVED]
        return resolved
    if "Authorization" in request.headers:
        # a request that names its credentials is judged by them alone, never by the
        # cookie it also carries (the CSRF check trusts that); none is accepted yet
        request.environ[RESOLVED] = None
        return None
    token = session.get(SESSION_KEY)
    shop_id = None
    if isinstance(token, str):
        with runtime_of(current_app).sessions.begin() as db:
            shop_id = sessions.resolve(db, token, _now())
        if shop_id is None:
            session.pop(SESSION_KEY, None)
    request.environ[RESOLVED] = shop_id
    return shop_id


def merchant_required(view: F) -> F:
    """The view runs only for a live merchant session of an installed shop (else 401)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_shop_id() is None:
            abort(401, "sign in through your shop's admin to manage triggerpost")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]
