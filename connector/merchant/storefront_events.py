"""Storefront events in the merchant app: the "Storefront events" section of ``/app/settings``.

What the merchant needs to send us storefront events (jobs.merchant.storefront):
the shop's public key and the endpoint, the origins allowed to send (its own,
and extra ones the merchant adds, https only), and, for a platform whose shops
run our plugin, the connection code to paste into it, with a "new secret"
action (the old code stops working at once).

API: ``GET /api/v1/storefront``, ``PATCH /api/v1/storefront`` (``{"extra_origins":
[...]}``, all or nothing), ``POST /api/v1/storefront/plugin-secret`` (a new secret;
the answer has the new code). Without JavaScript the section's forms post to
``/app/settings/storefront`` and ``/app/settings/storefront/secret``.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, request, url_for
from marshmallow import Schema, fields

from connector.merchant import ui
from connector.merchant.api import ApiError, api_route, invalid
from connector.merchant.auth import merchant_required
from connector.merchant.pages import blueprint as pages
from connector.merchant.ui import _
from connector.platforms.registry import CONNECTORS
from connector.runtime import runtime_of
from jobs.merchant import storefront
from jobs.store.models import Shop


def _has_plugin(shop: Shop) -> bool:
    connector = CONNECTORS.get(shop.platform)
    return connector is not None and connector.plugin


def view(shop_id: int) -> dict[str, Any]:
    """The section's facts (a plugin's secret is made the first time it is shown)."""
    runtime = runtime_of(current_app)
    base = runtime.settings.base_url
    with runtime.sessions.begin() as db:
        shop = db.get_one(Shop, shop_id)
        plugin = _has_plugin(shop)
        return {
            "key": shop.storefront_key,
            "endpoint": storefront.endpoint(base, shop),
            "own_origins": storefront.own_origins(shop),
            "extra_origins": list(shop.storefront_origins or ()),
            "plugin": plugin,
            "connection_code": (
                storefront.connection_code(base, shop, runtime.secrets) if plugin else None
            ),
        }


def save_origins(shop_id: int, origins: list[Any]) -> dict[str, Any]:
    runtime = runtime_of(current_app)
    with runtime.sessions.begin() as db:
        try:
            storefront.set_origins(db.get_one(Shop, shop_id), origins)
        except storefront.StorefrontError as exc:
            raise invalid([("extra_origins", str(exc))]) from exc
    return view(shop_id)


def new_secret(shop_id: int) -> dict[str, Any]:
    runtime = runtime_of(current_app)
    with runtime.sessions.begin() as db:
        shop = db.get_one(Shop, shop_id)
        if not _has_plugin(shop):
            raise ApiError(404, "not_found", "Your platform has no triggerpost plugin.")
        storefront.rotate_plugin_secret(shop, runtime.secrets)
    return view(shop_id)


# --- the API -------------------------------------------------------------------------------


class StorefrontAnswer(Schema):
    key = fields.String()
    endpoint = fields.String()
    own_origins = fields.List(fields.String())
    extra_origins = fields.List(fields.String())
    plugin = fields.Boolean()
    connection_code = fields.String(allow_none=True)


class StorefrontPatch(Schema):
    extra_origins = fields.List(fields.Raw(), required=True)


@api_route(
    "/storefront",
    summary="The shop's storefront events key, endpoint and origins",
    answer=StorefrontAnswer,
)
def get_storefront(shop_id: int) -> dict[str, Any]:
    return view(shop_id)


@api_route(
    "/storefront",
    methods=("PATCH",),
    summary="Replace the extra storefront origins",
    body=StorefrontPatch,
    answer=StorefrontAnswer,
)
def patch_storefront(shop_id: int, body: dict[str, Any]) -> dict[str, Any]:
    return save_origins(shop_id, body["extra_origins"])


@api_route(
    "/storefront/plugin-secret",
    methods=("POST",),
    summary="A new plugin secret: the old connection code stops working",
    answer=StorefrontAnswer,
)
def post_plugin_secret(shop_id: int) -> dict[str, Any]:
    return new_secret(shop_id)


# --- the pages' forms -----------------------------------------------------------------------


def _back() -> Any:
    return redirect(url_for("merchant.settings_editor") + "#storefront")


@pages.post("/app/settings/storefront")
@merchant_required
def save_storefront_origins() -> Any:
    lines = [line for line in request.form.get("extra_origins", "").splitlines() if line.strip()]
    try:
        save_origins(ui.page_shop().id, lines)
    except ApiError:
        flash(
            _("Not saved: each extra origin is an https address like https://shop.example.com"),
            "error",
        )
        return _back()
    flash(_("Saved"), "done")
    return _back()


@pages.post("/app/settings/storefront/secret")
@merchant_required
def new_storefront_secret() -> Any:
    try:
        new_secret(ui.page_shop().id)
    except ApiError:
        flash(_("Your platform has no triggerpost plugin."), "error")
        return _back()
    flash(_("A new code was made: paste it into the plugin. The old one no longer works."), "done")
    return _back()
