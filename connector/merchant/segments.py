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

import contextlib
import copy
import json
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from marshmallow import Schema, fields
from sqlalchemy import func, or_, select

from adapters.events import ConsentState
from connector.merchant import segment_builder as builder
from connector.merchant import segment_words, ui
from connector.merchant.api import ApiError, api_route, invalid
from connector.merchant.auth import merchant_required
from connector.merchant.editor import message_text
from connector.merchant.pages import blueprint as pages
from connector.merchant.ui import _
from connector.runtime import runtime_of
from jobs import shop_settings
from jobs.audience import segments
from jobs.flows import registry
from jobs.shop_settings import Problem, SettingsError
from jobs.store.models import Product, ProductGroup, ProductGroupKind, Shop

log = logging.getLogger(__name__)


def _used_by(settings: shop_settings.ShopSettings, name: str) -> list[str]:
    return [
        flow.name
        for flow in registry.flows().values()
        if settings.flow(flow).get("audience") == name
    ]


#: how long the segments page counts before it leaves the rest to the page's script
#: (a big shop's count takes seconds: bench/segments.py)
PAGE_COUNT_SECONDS = 1.0


def _listed(
    session: Any,
    shop: Shop,
    at: datetime,
    only: str | None = None,
    budget: float | None = None,
) -> list[dict[str, Any]]:
    """The shop's segments (or ``only`` the one of that name), each counted: one
    SELECT COUNT each. With a ``budget`` (seconds), the segments after it ran out
    are not counted (``count`` None)."""
    settings = shop_settings.load(shop)
    found = []
    named = {**segments.BUILT_IN, **shop_settings.plain(settings.segments)}
    started = time.monotonic()
    for name, raw in named.items():
        if only is not None and name != only:
            continue
        condition = segments.parse(raw)
        counting = budget is None or time.monotonic() - started < budget
        found.append(
            {
                "name": name,
                "title": _(segments.BUILT_IN_TITLES[name])
                if name in segments.BUILT_IN and name not in settings.segments
                else name,
                "built_in": name not in settings.segments,
                "condition": segments.to_json(condition),
                "count": segments.count(session, shop.id, condition, at) if counting else None,
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
    renamed_from = fields.String(
        load_default=None,
        metadata={"description": "the saved segment this one renames (PUT only)"},
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


def save_segment(
    db: Any,
    shop: Shop,
    name: str,
    condition: Any,
    *,
    previous: str | None = None,
    new: bool = False,
) -> None:
    """Save a segment under ``name`` in the shop's settings, all or nothing.

    ``previous``: the saved segment this one was (a rename: it goes, and every flow
    that was for it is for the new name, in the same write). ``new``: refuse a
    name already taken, or a built-in's (the builder's "new segment"; the API's
    PUT replaces). Raises :class:`ApiError` naming each bad field.
    """
    problem = segments.check_name(name)
    if problem is not None:
        raise invalid([("name", _(problem))])
    raw = copy.deepcopy(shop.settings or {})
    if not isinstance(raw.get("segments"), dict):
        raw["segments"] = {}
    saved = raw["segments"]
    # a new name: a new segment, or the one it was renamed (a built-in is not renamed:
    # saved under a new name, it is a new segment and the built-in stays)
    fresh = new or (previous is not None and previous != name)
    renaming = fresh and previous in saved
    if fresh and name in saved:
        raise invalid([("name", _("You have a segment of this name already."))])
    if fresh and name in segments.BUILT_IN:
        raise invalid([("name", _("A built-in segment has this name: choose another."))])
    # stored as it reads back (codes in capitals, values once each); a bad one is left
    # to the settings' check, which names each problem
    with contextlib.suppress(segments.SegmentError):
        condition = segments.to_json(segments.parse(condition))
    saved[name] = condition
    if renaming:
        del saved[previous]
        for options in (raw.get("flows") or {}).values():
            if isinstance(options, dict) and options.get("audience") == previous:
                options["audience"] = name
    try:
        shop_settings.replace(db, shop, raw)
    except SettingsError as exc:
        raise invalid(_renamed(exc.problems, name)) from exc


def delete_saved(db: Any, shop: Shop, name: str) -> None:
    """Delete a saved segment; refused while a flow is for it (unless a built-in of the
    same name takes its place: then the flow is for the built-in again)."""
    settings = shop_settings.load(shop)
    if name not in settings.segments:
        raise ApiError(404, "not_found", _("There is no saved segment of that name."))
    used = _used_by(settings, name)
    if used and name not in segments.BUILT_IN:
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


@api_route(
    "/segments/<name>",
    methods=("PUT",),
    summary="Save a segment under a name (all or nothing: a 400 names each bad field); "
    "with renamed_from, the saved segment it was is renamed and its flows follow",
    body=SegmentBody,
    answer=SegmentAnswer,
)
def put_segment(shop_id: int, name: str, body: dict[str, Any]) -> dict[str, Any]:
    with runtime_of(current_app).sessions.begin() as db:
        shop = db.get_one(Shop, shop_id)
        previous = body.get("renamed_from")
        if previous is not None and previous not in shop_settings.load(shop).segments:
            raise invalid([("renamed_from", _("There is no saved segment of that name."))])
        save_segment(db, shop, name, body["condition"], previous=previous)
        return _listed(db, shop, datetime.now(UTC), only=name)[0]


@api_route(
    "/segments/<name>",
    methods=("DELETE",),
    summary="Delete a saved segment (refused while a flow is for it, unless it replaced "
    "a built-in segment, which then comes back)",
)
def delete_segment(shop_id: int, name: str) -> dict[str, Any]:
    with runtime_of(current_app).sessions.begin() as db:
        delete_saved(db, db.get_one(Shop, shop_id), name)
    return {"deleted": name}


@api_route(
    "/segments/<name>/count",
    summary="How many contacts a segment (saved or built in) holds now",
    answer=CountAnswer,
)
def count_segment(shop_id: int, name: str) -> dict[str, Any]:
    with runtime_of(current_app).sessions() as db:
        shop = db.get_one(Shop, shop_id)
        found = _listed(db, shop, datetime.now(UTC), only=name)
        if not found:
            raise ApiError(404, "not_found", _("There is no segment of that name."))
        return {"count": found[0]["count"]}


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


# --- the builder: a segment made and changed on the page ------------------------------

#: a group's ways to match, as the select reads after "match"
_MATCH_WORDS = {"all": "all", "any": "any", "none": "none", "notall": "not all"}
#: what each field's value is, under the value's box
_HINTS: dict[segments.Field, str] = {
    segments.Field.COUNTRY: "Two-letter country codes, e.g. SE, NO.",
    segments.Field.LANGUAGE: "Language codes, e.g. sv, en.",
    segments.Field.TAGS: "Customer tags, e.g. vip, wholesale.",
    segments.Field.CONSENT: "One or more of: {states}.",
    segments.Field.CREATED: "A number of days, e.g. 30.",
    segments.Field.ORDERS_COUNT: "A whole number, e.g. 2.",
    segments.Field.TOTAL_SPENT: "An amount in {currency}, e.g. 1000.",
    segments.Field.AVERAGE_ORDER_VALUE: "An amount in {currency}, e.g. 1000.",
    segments.Field.DAYS_SINCE_LAST_ORDER: "A number of days, e.g. 90.",
    segments.Field.BOUGHT_PRODUCT: "Product names or ids.",
    segments.Field.BOUGHT_COLLECTION: "Collection names.",
    segments.Field.BOUGHT_CATEGORY: "Category names.",
    segments.Field.BOUGHT_TAG: "Product tags.",
}
_DATE_HINT = "A date, e.g. 2026-01-31."
_SEVERAL = "Separate several with commas."
#: the builder's suggestions for a field's values, by the datalist's id
_LISTS = {
    segments.Field.CONSENT: "dl-consent",
    segments.Field.BOUGHT_PRODUCT: "dl-products",
    segments.Field.BOUGHT_COLLECTION: "dl-collections",
    segments.Field.BOUGHT_CATEGORY: "dl-collections",
    segments.Field.BOUGHT_TAG: "dl-product-tags",
}
#: the most suggestions of one kind the page carries
MAX_SUGGESTIONS = 300
PARTIAL = "X-Triggerpost-Partial"


def _hint(field: segments.Field, op: segments.Op, currency: str | None) -> str:
    if field == segments.Field.CREATED and op in (segments.Op.BEFORE, segments.Op.AFTER):
        return _(_DATE_HINT)
    text = _(
        _HINTS[field],
        states=", ".join(state.value for state in ConsentState),
        currency=currency or _("your shop's currency"),
    )
    if field in builder.LIST_FIELDS:
        text = f"{text} {_(_SEVERAL)}"
    return text


def _choices(currency: str | None) -> list[dict[str, Any]]:
    """The builder's conditions: each field's label with its operators, each with the hint
    and the suggestions for its value."""
    found = []
    for field, ops in builder.choices():
        label = _(segments.LABELS[field])
        found.append(
            {
                "label": label,
                "ops": [
                    {
                        "value": f"{field.value}:{op.value}",
                        "text": _(segment_words.PHRASES[op], label=label, value="…"),
                        "hint": _hint(field, op, currency),
                        "list": _LISTS.get(field, ""),
                        "bought": field in builder.BOUGHT,
                    }
                    for op in ops
                ],
            }
        )
    return found


def _suggestions(db: Any, shop_id: int) -> dict[str, list[tuple[str, str]]]:
    """The datalists: value and label (the shop's products, collections and product tags)."""
    products = db.execute(
        select(Product.product_id, Product.title)
        .where(Product.shop_id == shop_id)
        .order_by(Product.title)
        .limit(MAX_SUGGESTIONS)
    ).all()

    def groups(kind: str) -> list[tuple[str, str]]:
        names = db.scalars(
            select(ProductGroup.name)
            .where(ProductGroup.shop_id == shop_id, ProductGroup.kind == kind)
            .distinct()
            .order_by(ProductGroup.name)
            .limit(MAX_SUGGESTIONS)
        ).all()
        return [(name, "") for name in names]

    return {
        "dl-products": [(title, product_id) for product_id, title in products],
        "dl-collections": groups(ProductGroupKind.COLLECTION),
        "dl-product-tags": groups(ProductGroupKind.TAG),
        "dl-consent": [(state.value, "") for state in ConsentState],
    }


def _product_lookup(db: Any, shop_id: int) -> builder.ProductLookup:
    """Products a merchant names in the builder, by id or by name (every product of that
    name: a merchant means all of them); the values that name none."""

    def lookup(values: list[str]) -> tuple[list[str], list[str]]:
        if len(values) > segments.MAX_VALUES or any("\x00" in value for value in values):
            return values, []  # the condition's own check refuses so many, or a NUL
        lowered = [value.lower() for value in values]
        rows = db.execute(
            select(Product.product_id, Product.title).where(
                Product.shop_id == shop_id,
                or_(Product.product_id.in_(values), func.lower(Product.title).in_(lowered)),
            )
        ).all()
        ids = {product_id for product_id, _title in rows}
        named: dict[str, list[str]] = {}
        for product_id, title in rows:
            named.setdefault(title.lower(), []).append(product_id)
        found: list[str] = []
        unknown: list[str] = []
        for value in values:
            if value in ids:
                found.append(value)
            elif value.lower() in named:
                found += sorted(named[value.lower()])
            else:
                unknown.append(value)
        return list(dict.fromkeys(found)), unknown

    return lookup


def product_names(db: Any, shop_id: int, condition: segments.Condition) -> dict[str, str]:
    """The names of the products a condition names, where a name is the product's alone
    (so the builder shows "Ethiopia Sidamo" and reads it back as the same product)."""
    ids = sorted(_product_ids(condition))
    if not ids:
        return {}
    rows = db.execute(
        select(Product.product_id, Product.title).where(
            Product.shop_id == shop_id, Product.product_id.in_(ids)
        )
    ).all()
    titles = [title.lower() for _id, title in rows]
    shared = set(
        db.scalars(
            select(func.lower(Product.title))
            .where(Product.shop_id == shop_id, func.lower(Product.title).in_(titles))
            .group_by(func.lower(Product.title))
            .having(func.count() > 1)
        ).all()
    )
    return {product_id: title for product_id, title in rows if title.lower() not in shared}


def _product_ids(condition: segments.Condition) -> set[str]:
    if isinstance(condition, segments.All | segments.AnyOf):
        return set().union(*(_product_ids(c) for c in condition.items))
    if isinstance(condition, segments.Not):
        return _product_ids(condition.item)
    if condition.field == segments.Field.BOUGHT_PRODUCT:
        return set(condition.value)
    return set()


def _builder_page(
    db: Any,
    shop: Shop,
    tree: builder.Group,
    *,
    name: str,
    previous: str | None,
    errors: Mapping[str, str] | None = None,
    message: str | None = None,
    counted: int | None = None,
    focus: str | None = None,
    status: int = 200,
) -> Any:
    """The builder's page; to a request of the page's own script, its parts as JSON."""
    if status >= 400:
        log.info("segment builder for shop %s refused: %s %s", shop.id, message, errors)
    built_in = previous in segments.BUILT_IN and previous not in ui.page_settings().segments
    errors = dict(errors or {})
    counted_words = (
        None if counted is None else _("Customers matching now: {count}", count=ui.number(counted))
    )
    context: dict[str, Any] = {
        "tree": tree,
        "name": name,
        "previous": previous or "",
        "built_in": _(segments.BUILT_IN_TITLES[previous]) if built_in and previous else None,
        "errors": errors,
        "message": message,
        "counted": counted_words,
        "focus": focus,
        "choices": _choices(shop.currency),
        "matches": [(key, _(words)) for key, words in _MATCH_WORDS.items()],
        "max_levels": builder.MAX_LEVELS,
    }
    if request.headers.get(PARTIAL):
        return {
            "html": render_template("merchant/segment_builder.html", **context),
            "name_error": errors.get("name", ""),
            "message": message or "",
            "counted": counted_words or "",
        }, status
    title = _("Change the segment") if previous else _("New segment")
    return (
        ui.render_page(
            "merchant/segment_edit.html",
            title=title,
            suggestions=_suggestions(db, shop.id),
            **context,
        ),
        status,
    )


def _placed(exc: ApiError, draft: builder.Draft) -> dict[str, str]:
    """An API refusal's fields on the builder's form (``condition.all[0].value`` is
    ``c.0.value``)."""
    found: dict[str, str] = {}
    for where, message in exc.fields:
        place = where
        if where == "condition" or where.startswith("condition."):
            place = draft.place(where.removeprefix("condition").lstrip("."))
        elif where != "name":
            place = "c"
        found.setdefault(place, message_text(message))
    return found


@pages.get("/app/segments/edit")
@merchant_required
def segment_editor() -> Any:
    """``?name=``: change a segment (a built-in one too: saved under its name, it replaces
    it); ``?from=``: a new segment that starts as a copy; neither: a new segment."""
    shop = ui.page_shop()
    saved = ui.page_settings().segments
    name = request.args.get("name")
    source = request.args.get("from")
    wanted = name or source
    with runtime_of(current_app).sessions() as db:
        if wanted is None:
            return _builder_page(db, shop, builder.empty(), name="", previous=None)
        raw = saved.get(wanted, segments.BUILT_IN.get(wanted))
        if raw is None:
            abort(404)
        condition = segments.parse(shop_settings.plain(raw))
        tree = builder.from_condition(condition, product_names(db, shop.id, condition))
        if name:
            return _builder_page(db, shop, tree, name=name, previous=name)
        return _builder_page(db, shop, tree, name="", previous=None)


@pages.post("/app/segments/edit")
@merchant_required
def save_segment_editor() -> Any:
    """The builder's buttons: add or remove a condition or a group (the form again, as
    entered), count the customers the form describes, or save it."""
    shop = ui.page_shop()
    form = request.form
    tree = builder.from_form(form)
    name = (form.get("name") or "").strip()[: segments.MAX_NAME * 2]
    previous = (form.get("previous") or "").strip() or None
    action = form.get("action") or "save"
    runtime = runtime_of(current_app)
    if action not in ("save", "count"):
        with runtime.sessions() as db:
            focus = builder.apply(tree, action)
            return _builder_page(db, shop, tree, name=name, previous=previous, focus=focus)
    with runtime.sessions() as db:
        draft = builder.to_condition(tree, _product_lookup(db, shop.id), _)
        errors = dict(draft.problems)
        condition = None
        if not errors:
            try:
                condition = segments.parse(draft.condition)
            except segments.SegmentError as exc:
                errors = {
                    where: message_text(message)
                    for where, message in draft.form_problems(exc.problems).items()
                }
        if condition is None:
            return _builder_page(
                db, shop, tree, name=name, previous=previous, errors=errors,
                message=_("Some conditions are not complete; nothing was saved."), status=400,
            )  # fmt: skip
        if action == "count":
            counted = segments.count(db, shop.id, condition, datetime.now(UTC))
            return _builder_page(db, shop, tree, name=name, previous=previous, counted=counted)
    try:
        with runtime.sessions.begin() as db:
            save_segment(
                db, db.get_one(Shop, shop.id), name, draft.condition,
                previous=previous, new=previous is None,
            )  # fmt: skip
    except ApiError as exc:
        with runtime.sessions() as db:
            return _builder_page(
                db, shop, tree, name=name, previous=previous, errors=_placed(exc, draft),
                message=message_text(exc.message), status=400,
            )  # fmt: skip
    flash(_("Saved"), "done")
    location = url_for("merchant.segments_page") + f"#segment-{name}"
    if request.headers.get(PARTIAL):
        return {"location": location}
    return redirect(location)


@pages.post("/app/segments/delete")
@merchant_required
def delete_segment_page() -> Any:
    name = request.form.get("name") or ""
    try:
        with runtime_of(current_app).sessions.begin() as db:
            delete_saved(db, db.get_one(Shop, ui.page_shop().id), name)
    except ApiError as exc:
        flash(message_text(exc.message), "error")
    else:
        flash(_("Deleted the segment {name}.", name=name), "done")
    return redirect(url_for("merchant.segments_page"))


# --- the page -----------------------------------------------------------------------------


@pages.get("/app/segments")
@merchant_required
def segments_page() -> Any:
    shop = ui.page_shop()
    flows = {flow.name: _(flow.title) for flow in registry.flows().values()}
    with runtime_of(current_app).sessions() as db:
        budget = None if request.args.get("count") == "all" else PAGE_COUNT_SECONDS
        listed = _listed(db, db.get_one(Shop, shop.id), datetime.now(UTC), budget=budget)
        for item in listed:
            condition = segments.parse(item["condition"])
            names = product_names(db, shop.id, condition)
            item["words"] = segment_words.described(condition, shop.currency, names)
    listed.sort(key=lambda item: item["name"] in segments.BUILT_IN)  # the shop's own first
    for item in listed:
        item["replaces_built_in"] = not item["built_in"] and item["name"] in segments.BUILT_IN
        item["text"] = json.dumps(item["condition"], ensure_ascii=False, indent=1)
        item["flows"] = [flows.get(name, name) for name in item["used_by"]]
    return ui.render_page("merchant/segments.html", title=_("Segments"), segments=listed)


ui.nav_item("merchant.segments_page", "Segments", 40)
