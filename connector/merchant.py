"""Merchant sessions and the landing page a merchant reaches after install/connect.

A merchant session is bound to exactly one shop: ``login(shop_id)`` after a
verified Shopify install or a WooCommerce connect, and every merchant route
reads the shop from the signed session cookie, never from the URL. The full
settings page (flows, delays, copy, analytics) grows on this blueprint.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, abort, current_app, jsonify, render_template, session
from sqlalchemy import select

from connector.app import runtime_of
from jobs.notices import open_notices
from jobs.store.models import PrivacyRequest, PrivacyRequestKind, Shop, ShopStatus

blueprint = Blueprint("merchant", __name__)
SHOP_KEY = "shop_id"

F = TypeVar("F", bound=Callable[..., Any])


def login(shop_id: int) -> None:
    """Start a session for this shop only (any earlier shop's session ends)."""
    session.clear()
    session[SHOP_KEY] = shop_id
    session.permanent = True


def logout() -> None:
    session.clear()


def current_shop_id() -> int | None:
    value = session.get(SHOP_KEY)
    return value if isinstance(value, int) else None


def merchant_required(view: F) -> F:
    """The view runs only for a merchant session of an installed shop (else 401)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        shop_id = current_shop_id()
        if shop_id is None:
            abort(401, "sign in through your shop's admin to manage triggerpost")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


@blueprint.get("/settings")
@merchant_required
def settings_page() -> Any:
    runtime = runtime_of(current_app)
    with runtime.sessions() as db:
        shop = db.get(Shop, current_shop_id())
        if shop is None or shop.status != ShopStatus.ACTIVE:
            logout()
            abort(401, "this shop is not installed")
        requests = db.scalars(
            select(PrivacyRequest)
            .where(PrivacyRequest.shop_id == shop.id)
            .order_by(PrivacyRequest.received_at.desc())
            .limit(50)
        ).all()
        return render_template(
            "settings.html",
            shop=shop,
            notices=open_notices(db, shop.id),
            privacy_requests=requests,
        )


@blueprint.get("/settings/privacy/<int:request_id>.json")
@merchant_required
def privacy_export(request_id: int) -> Any:
    """A customer's data export, for the merchant to send on (only their own shop's)."""
    runtime = runtime_of(current_app)
    with runtime.sessions() as db:
        found = db.get(PrivacyRequest, request_id)
        if (
            found is None
            or found.shop_id != current_shop_id()
            or found.kind != PrivacyRequestKind.DATA_REQUEST
        ):
            abort(404)
        if found.export is None:
            abort(410, "this export was erased when the customer's data was redacted")
        response = jsonify(found.export)
        response.headers["Content-Disposition"] = (
            f'attachment; filename="data-request-{found.reference or found.id}.json"'
        )
        return response
