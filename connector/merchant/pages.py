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
    redirect,
    render_template,
    request,
    url_for,
)

from connector.merchant import ui
from connector.merchant.auth import current_shop_id, logout, merchant_required
from connector.merchant.ui import _
from connector.runtime import runtime_of

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
    if current_shop_id() is not None:
        ui.page_shop()  # the goodbye in the shop's language
    logout()
    if request.accept_mimetypes.best == "application/json":
        return jsonify(
            status="signed out", message="Open triggerpost from your shop to sign in again."
        )
    return render_template(
        "merchant/error.html",
        ui_language=ui.language(),
        title=_("Signed out"),
        message=_("You are signed out. Open triggerpost from your shop's admin to sign in again."),
    )


@blueprint.get("/settings")
@merchant_required
def settings_page() -> Any:
    """The landing page's old address: the app now starts at its Overview."""
    return redirect(url_for("merchant.overview"), code=302)
