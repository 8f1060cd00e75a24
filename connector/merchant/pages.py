"""The merchant's pages: the landing page after install or connect, sign out (each
area of the app adds its own). Who may see them is decided in
:mod:`connector.merchant.auth`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
)
from sqlalchemy import select

from connector.merchant.auth import current_shop_id, logout, merchant_required
from connector.runtime import runtime_of
from jobs.intake import history
from jobs.merchant.notices import open_notices
from jobs.store.models import PrivacyRequest, Shop

blueprint = Blueprint("merchant", __name__)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@blueprint.post("/logout")
def sign_out() -> Any:
    """SameSite=Lax already keeps a cross-site POST from carrying the cookie; an
    Origin, when the browser sends one, must be ours too."""
    origin = request.headers.get("Origin")
    if origin is not None:
        ours = {_origin(runtime_of(current_app).settings.base_url), _origin(request.host_url)}
        if origin.rstrip("/").lower() not in ours:
            abort(403, "sign out from triggerpost's own pages")
    logout()
    return jsonify(status="signed out", message="Open triggerpost from your shop to sign in again.")


@blueprint.get("/settings")
@merchant_required
def settings_page() -> Any:
    runtime = runtime_of(current_app)
    with runtime.sessions() as db:
        shop = db.get_one(Shop, current_shop_id())
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
            history=history.progress_line(history.state(db, shop.id)),
            privacy_requests=requests,
        )
