"""The Overview (``/app/``): every flow with its switch and what it does, and the
API the flow and settings pages write through.

API: ``GET /api/v1/flows`` (each flow's name, title, summary, kind, enabled,
options and their schema), ``PATCH /api/v1/flows/<name>`` (``enabled`` and
``options``), ``GET/PATCH /api/v1/settings`` (the shop-wide groups). A write is
validated whole by :mod:`jobs.shop_settings`: one bad field and nothing is
saved, every bad field named by its path in the request's own terms
(``options.delay_1_hours``, ``engine.quiet_start``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import abort, current_app, flash, redirect, request, url_for
from marshmallow import Schema, fields

from connector.merchant import analytics, ui
from connector.merchant.api import ApiError, api_route, invalid
from connector.merchant.auth import merchant_required
from connector.merchant.pages import blueprint as pages
from connector.merchant.ui import _
from connector.runtime import runtime_of
from jobs import shop_settings
from jobs.flows import registry
from jobs.flows.model import Flow
from jobs.intake import history
from jobs.merchant.notices import open_notices
from jobs.shop_settings import Problem, SettingsError
from jobs.store.models import Shop

#: the shop-wide settings groups the settings API reads and writes (flows and copy
#: have their own routes)
SHOP_GROUPS = ("branding", "sender", "engine", "consent", "birthday")


# --- reading and writing, for the API and the pages alike ------------------------------


def _schema_of(path: str) -> list[dict[str, Any]]:
    for group in shop_settings.describe():
        if group["path"] == path:
            fields_: list[dict[str, Any]] = group["fields"]
            return fields_
    return []


def flow_state(flow: Flow, settings: shop_settings.ShopSettings) -> dict[str, Any]:
    options = dict(settings.flow(flow))
    return {
        "name": flow.name,
        "title": flow.title,
        "summary": flow.summary,
        "kind": str(flow.kind),
        "enabled": bool(options.get("enabled", True)),
        "options": shop_settings.plain(options),
        "schema": _schema_of(f"flows.{flow.name}"),
    }


def known_flow(name: str) -> Flow:
    flow = registry.get(name)
    if flow is None:
        raise ApiError(404, "not_found", f"There is no flow called {name!r}.")
    return flow


def _renamed(problems: Iterable[Problem], flow: Flow) -> list[tuple[str, str]]:
    """``flows.<name>.enabled`` → ``enabled``, ``flows.<name>.x`` → ``options.x``."""
    prefix = ("flows", flow.name)
    renamed = []
    for problem in problems:
        path = problem.path
        if path[:2] == prefix:
            rest = path[2:]
            where = "enabled" if rest == ("enabled",) else ".".join(("options", *rest))
        else:
            where = problem.where
        renamed.append((where, problem.message))
    return renamed


def update_flow(shop_id: int, flow: Flow, patch: Mapping[str, Any]) -> dict[str, Any]:
    """Switch a flow and change its options in one write, or nothing (400 per field)."""
    options = dict(patch.get("options") or {})
    if "enabled" in options:
        raise invalid([("options.enabled", _("Use the flow's switch (enabled)."))])
    if "enabled" in patch:
        options["enabled"] = patch["enabled"]
    runtime = runtime_of(current_app)
    with runtime.sessions.begin() as db:
        shop = db.get_one(Shop, shop_id)
        try:
            settings = shop_settings.update(db, shop, {"flows": {flow.name: options}})
        except SettingsError as exc:
            raise invalid(_renamed(exc.problems, flow)) from exc
        return flow_state(flow, settings)


def shop_groups(settings: shop_settings.ShopSettings) -> dict[str, Any]:
    plain = settings.as_dict()
    return {group: plain[group] for group in SHOP_GROUPS}


def update_settings(shop_id: int, patch: Mapping[str, Any]) -> dict[str, Any]:
    runtime = runtime_of(current_app)
    with runtime.sessions.begin() as db:
        shop = db.get_one(Shop, shop_id)
        settings = shop_settings.update(db, shop, patch)  # SettingsError: 400 per field
        return shop_groups(settings)


def _load_settings(shop_id: int) -> shop_settings.ShopSettings:
    with runtime_of(current_app).sessions() as db:
        return shop_settings.load(db.get_one(Shop, shop_id))


# --- the API -----------------------------------------------------------------------------


class OptionField(Schema):
    path = fields.String()
    name = fields.String()
    type = fields.String()
    label = fields.String()
    help = fields.String()
    default = fields.Raw(allow_none=True)
    optional = fields.Boolean()
    unit = fields.String()
    min = fields.Raw()
    max = fields.Raw()
    max_length = fields.Integer()
    choices = fields.List(fields.Raw())


class FlowAnswer(Schema):
    name = fields.String(required=True)
    title = fields.String(required=True)
    summary = fields.String()
    kind = fields.String(metadata={"description": "marketing or transactional"})
    enabled = fields.Boolean(required=True)
    options = fields.Dict(keys=fields.String(), values=fields.Raw())
    schema = fields.List(fields.Nested(OptionField), metadata={"description": "each option"})


class FlowList(Schema):
    flows = fields.List(fields.Nested(FlowAnswer))


class FlowPatch(Schema):
    # checked with the options by the settings schema, so that every bad field is named at once
    enabled = fields.Raw(metadata={"description": "the flow's switch: true or false"})
    options = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(allow_none=True),
        metadata={"description": "option name → value; null gives back the default"},
    )


class SettingsAnswer(Schema):
    branding = fields.Dict()
    sender = fields.Dict()
    engine = fields.Dict()
    consent = fields.Dict()
    birthday = fields.Dict()
    schema = fields.List(fields.Dict(), metadata={"description": "each group and its fields"})


class SettingsPatch(Schema):
    branding = fields.Dict(allow_none=True)
    sender = fields.Dict(allow_none=True)
    engine = fields.Dict(allow_none=True)
    consent = fields.Dict(allow_none=True)
    birthday = fields.Dict(allow_none=True)


@api_route("/flows", summary="Every flow: switch, options and their schema", answer=FlowList)
def list_flows(shop_id: int) -> dict[str, Any]:
    settings = _load_settings(shop_id)
    return {"flows": [flow_state(flow, settings) for flow in registry.flows().values()]}


@api_route(
    "/flows/<name>",
    methods=("PATCH",),
    summary="Switch a flow on or off, change its options (all or nothing)",
    body=FlowPatch,
    answer=FlowAnswer,
)
def patch_flow(shop_id: int, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return update_flow(shop_id, known_flow(name), body)


def _settings_answer(groups: dict[str, Any]) -> dict[str, Any]:
    schema = [group for group in shop_settings.describe() if group["path"] in SHOP_GROUPS]
    return {**groups, "schema": schema}


@api_route("/settings", summary="The shop's settings", answer=SettingsAnswer)
def get_settings(shop_id: int) -> dict[str, Any]:
    return _settings_answer(shop_groups(_load_settings(shop_id)))


@api_route(
    "/settings",
    methods=("PATCH",),
    summary="Change the shop's settings (all or nothing; null gives back a default)",
    body=SettingsPatch,
    answer=SettingsAnswer,
)
def patch_settings(shop_id: int, body: dict[str, Any]) -> dict[str, Any]:
    return _settings_answer(update_settings(shop_id, body))


# --- the page ----------------------------------------------------------------------------


@pages.get("/app/")
@merchant_required
def overview() -> Any:
    shop = ui.page_shop()
    settings = ui.page_settings()
    flows = [flow_state(flow, settings) for flow in registry.flows().values()]
    with runtime_of(current_app).sessions() as db:
        notices = open_notices(db, shop.id)
        progress = history.progress_line(history.state(db, shop.id))
    return ui.render_page(
        "merchant/overview.html",
        title=_("Overview"),
        flows=flows,
        notices=notices,
        history=progress,
        **analytics.overview_context(shop),
    )


@pages.post("/app/flows/<name>/switch")
@merchant_required
def switch_flow(name: str) -> Any:
    """The switch without JavaScript: a form post, then back to where it was."""
    flow = registry.get(name)
    if flow is None:
        abort(404)
    wanted = request.form.get("enabled") == "true"
    try:
        update_flow(ui.page_shop().id, flow, {"enabled": wanted})
    except ApiError as exc:
        flash(exc.message, "error")
    else:
        message = _("{flow} is on.") if wanted else _("{flow} is off.")
        flash(message.format(flow=_(flow.title)), "done")
    return redirect(url_for("merchant.overview"))


ui.nav_item("merchant.overview", "Overview", 10)
