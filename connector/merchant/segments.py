"""Segments in the merchant app: the shop's saved segments and the built-in ones, each
with its live count and the flows it is for; save, delete, and count a draft.

``/app/segments`` lists them (read only: a flow's "Only for" names one).

``GET /api/v1/segments``, ``PUT`` and ``DELETE /api/v1/segments/<name>``,
``POST /api/v1/segments/count``. A segment is written through the shop's
settings (``segments``, :mod:`jobs.shop_settings`), so a bad one is refused
field by field (``condition.all[2].value``) and nothing is saved; a segment a
flow is for cannot be deleted until the flow is for another.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flask import current_app
from marshmallow import Schema, fields

from connector.merchant import ui
from connector.merchant.api import ApiError, api_route, invalid
from connector.merchant.auth import merchant_required
from connector.merchant.pages import blueprint as pages
from connector.merchant.ui import _
from connector.runtime import runtime_of
from jobs import shop_settings
from jobs.audience import segments
from jobs.flows import registry
from jobs.shop_settings import Problem, SettingsError
from jobs.store.models import Shop


def _used_by(settings: shop_settings.ShopSettings, name: str) -> list[str]:
    return [
        flow.name
        for flow in registry.flows().values()
        if settings.flow(flow).get("audience") == name
    ]


def _listed(session: Any, shop: Shop, at: datetime) -> list[dict[str, Any]]:
    settings = shop_settings.load(shop)
    found = []
    named = {**segments.BUILT_IN, **shop_settings.plain(settings.segments)}
    for name, raw in named.items():
        condition = segments.parse(raw)
        found.append(
            {
                "name": name,
                "title": _(segments.BUILT_IN_TITLES[name])
                if name in segments.BUILT_IN and name not in settings.segments
                else name,
                "built_in": name not in settings.segments,
                "condition": segments.to_json(condition),
                "count": segments.count(session, shop.id, condition, at),
                "used_by": _used_by(settings, name),
            }
        )
    return found


def _renamed(problems: Iterable[Problem], name: str) -> list[tuple[str, str]]:
    """``segments.<name>.all[0].value`` → ``condition.all[0].value``."""
    out = []
    for problem in problems:
        path = problem.path
        if path[:2] == ("segments", name):
            out.append((".".join(("condition", *path[2:])), problem.message))
        else:
            out.append((problem.where, problem.message))
    return out


class SegmentAnswer(Schema):
    name = fields.String(required=True)
    title = fields.String(required=True)
    built_in = fields.Boolean(required=True)
    condition = fields.Raw(required=True, metadata={"description": "the segment's conditions"})
    count = fields.Integer(required=True, metadata={"description": "contacts in it now"})
    used_by = fields.List(fields.String(), metadata={"description": "the flows it is for"})


class SegmentList(Schema):
    segments = fields.List(fields.Nested(SegmentAnswer))
    fields_ = fields.Dict(
        data_key="fields",
        metadata={"description": "each field a condition may name: its label and operators"},
    )


class SegmentBody(Schema):
    condition = fields.Raw(
        required=True, metadata={"description": "all/any/not over field, op, value"}
    )


class CountAnswer(Schema):
    count = fields.Integer(required=True)


def _fields() -> dict[str, Any]:
    return {
        field.value: {
            "label": _(segments.LABELS[field]),
            "ops": [op.value for op in segments.OPS[field]],
        }
        for field in segments.Field
    }


@api_route(
    "/segments",
    summary="The shop's segments and the built-in ones, each with its live count",
    answer=SegmentList,
)
def list_segments(shop_id: int) -> dict[str, Any]:
    with runtime_of(current_app).sessions() as db:
        shop = db.get_one(Shop, shop_id)
        return {"segments": _listed(db, shop, datetime.now(UTC)), "fields_": _fields()}


@api_route(
    "/segments/<name>",
    methods=("PUT",),
    summary="Save a segment under a name (all or nothing: a 400 names each bad field)",
    body=SegmentBody,
    answer=SegmentAnswer,
)
def put_segment(shop_id: int, name: str, body: dict[str, Any]) -> dict[str, Any]:
    problem = segments.check_name(name)
    if problem is not None:
        raise invalid([("name", _(problem))])
    with runtime_of(current_app).sessions.begin() as db:
        shop = db.get_one(Shop, shop_id)
        raw = copy.deepcopy(shop.settings or {})
        raw.setdefault("segments", {})
        if not isinstance(raw["segments"], dict):
            raw["segments"] = {}
        raw["segments"][name] = body["condition"]
        try:
            shop_settings.replace(db, shop, raw)
        except SettingsError as exc:
            raise invalid(_renamed(exc.problems, name)) from exc
        listed = _listed(db, shop, datetime.now(UTC))
    return next(item for item in listed if item["name"] == name)


@api_route(
    "/segments/<name>",
    methods=("DELETE",),
    summary="Delete a saved segment (refused while a flow is for it)",
)
def delete_segment(shop_id: int, name: str) -> dict[str, Any]:
    with runtime_of(current_app).sessions.begin() as db:
        shop = db.get_one(Shop, shop_id)
        settings = shop_settings.load(shop)
        if name not in settings.segments:
            raise ApiError(404, "not_found", _("There is no saved segment of that name."))
        used = _used_by(settings, name)
        if used:
            raise ApiError(
                409,
                "in_use",
                _("A flow is for this segment: choose another for it first ({flows}).").format(
                    flows=", ".join(used)
                ),
            )
        raw = copy.deepcopy(shop.settings or {})
        raw.get("segments", {}).pop(name, None)
        shop_settings.replace(db, shop, raw)
    return {"deleted": name}


@api_route(
    "/segments/count",
    methods=("POST",),
    summary="How many contacts a draft segment holds now (nothing is saved)",
    body=SegmentBody,
    answer=CountAnswer,
)
def count_draft(shop_id: int, body: dict[str, Any]) -> dict[str, Any]:
    with runtime_of(current_app).sessions() as db:
        shop = db.get_one(Shop, shop_id)
        try:
            found = segments.resolve(body["condition"], shop_settings.load(shop).segments)
        except segments.SegmentError as exc:
            raise invalid(
                (f"condition.{where}" if where != "segment" else "condition", _(words))
                for where, words in exc.problems.items()
            ) from exc
        if found is None:
            raise invalid([("condition", _("Write the segment's conditions, or its name."))])
        return {"count": segments.count(db, shop.id, found[1], datetime.now(UTC))}


# --- a condition in words ----------------------------------------------------------------

#: how each operator reads, with the field's label and the value in words
_PHRASES: dict[segments.Op, str] = {
    segments.Op.IN: "{label} is one of {value}",
    segments.Op.NOT_IN: "{label} is none of {value}",
    segments.Op.ANY_OF: "{label}: any of {value}",
    segments.Op.ALL_OF: "{label}: all of {value}",
    segments.Op.NONE_OF: "{label}: none of {value}",
    segments.Op.BEFORE: "{label} before {value}",
    segments.Op.AFTER: "{label} after {value}",
    segments.Op.WITHIN_DAYS: "{label} within the last {value} days",
    segments.Op.MORE_THAN_DAYS_AGO: "{label} more than {value} days ago",
    segments.Op.EQ: "{label} is {value}",
    segments.Op.NE: "{label} is not {value}",
    segments.Op.GT: "{label} is more than {value}",
    segments.Op.GTE: "{label} is at least {value}",
    segments.Op.LT: "{label} is less than {value}",
    segments.Op.LTE: "{label} is at most {value}",
}
_MONEY_FIELDS = (segments.Field.TOTAL_SPENT, segments.Field.AVERAGE_ORDER_VALUE)


def described(condition: segments.Condition, currency: str | None) -> dict[str, Any]:
    """The condition as a merchant reads it: a line, and the lines of its parts
    (``{"text": ..., "parts": [...]}``), in the merchant's language."""
    if isinstance(condition, segments.All):
        return {
            "text": _("All of these:"),
            "parts": [described(c, currency) for c in condition.items],
        }
    if isinstance(condition, segments.AnyOf):
        return {
            "text": _("Any of these:"),
            "parts": [described(c, currency) for c in condition.items],
        }
    if isinstance(condition, segments.Not):
        return {"text": _("Not this:"), "parts": [described(condition.item, currency)]}
    value = condition.value
    if isinstance(value, tuple | list):
        words = ", ".join(str(v) for v in value)
    elif condition.field in _MONEY_FIELDS:
        words = ui.money(Decimal(value), currency)
    else:
        words = ui.number(value) if isinstance(value, int) else str(value)
    text = _(_PHRASES[condition.op], label=_(segments.LABELS[condition.field]), value=words)
    if condition.within_days is not None:
        text = _("{text}, in the last {days} days", text=text, days=condition.within_days)
    return {"text": text, "parts": []}


# --- the page -----------------------------------------------------------------------------


@pages.get("/app/segments")
@merchant_required
def segments_page() -> Any:
    shop = ui.page_shop()
    with runtime_of(current_app).sessions() as db:
        listed = _listed(db, db.get_one(Shop, shop.id), datetime.now(UTC))
    flows = {flow.name: _(flow.title) for flow in registry.flows().values()}
    for item in listed:
        item["words"] = described(segments.parse(item["condition"]), shop.currency)
        item["text"] = json.dumps(item["condition"], ensure_ascii=False, indent=1)
        item["flows"] = [flows.get(name, name) for name in item["used_by"]]
    return ui.render_page("merchant/segments.html", title=_("Segments"), segments=listed)


ui.nav_item("merchant.segments_page", "Segments", 40)
