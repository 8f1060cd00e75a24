"""Activity, Privacy and Connection health: what happened to one customer and why,
a customer's data exported or erased, and whether the shop's connection works.

Activity (``/app/activity?email=``, ``GET /api/v1/contacts/<email>/timeline``) is
the timeline ``triggerpost why`` prints (:func:`jobs.reports.decisions.explain`:
decisions, legal bases, flows that did not start, clicks, credited orders), each
row in words and in the shop's time zone as well as UTC.

Privacy (``/app/privacy``, ``POST /api/v1/privacy/exports`` and ``/erasures``)
gives every platform what Shopify's privacy webhooks do: one customer's export
and one customer's erasure, recorded as privacy requests
(:mod:`jobs.intake.privacy`). An erasure asks for the address twice.

Connection health (``/app/health``, ``GET /api/v1/health``) reads
:mod:`jobs.merchant.health`.

An address is looked up as the intake stores it (trimmed, lower case), only
among the signed-in shop's contacts: another shop's customer is never found.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from itertools import groupby
from typing import Any

from babel.dates import format_date, format_time
from flask import Response, abort, current_app, flash, jsonify, redirect, request, url_for
from marshmallow import Schema, fields
from sqlalchemy import select

from connector.merchant import ui
from connector.merchant.api import ApiError, api_route, invalid
from connector.merchant.auth import merchant_required
from connector.merchant.pages import blueprint as pages
from connector.merchant.ui import _
from connector.runtime import runtime_of
from jobs.engine import schedule
from jobs.flows import registry
from jobs.intake import privacy
from jobs.intake.apply import stored_email
from jobs.merchant import health
from jobs.reports import decisions
from jobs.store.models import Contact, PrivacyRequest, PrivacyRequestKind, Shop, now

#: privacy requests listed on the page, newest first
LISTED_REQUESTS = 50


# --- an address from outside -------------------------------------------------------------


def address_of(text: str | None, field: str = "email") -> str:
    """The address as the intake stores it, or a 400 naming ``field`` (nothing looked up)."""
    if not text or not text.strip():
        raise invalid([(field, _("Enter the customer's email address."))])
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise invalid([(field, _("That is not an email address."))])
    address = stored_email(text)
    if address is None:
        raise invalid([(field, _("That is not an email address."))])
    return address


def _contact(db: Any, shop_id: int, address: str) -> Contact:
    contact = decisions.find_contact(db, shop_id, address)
    if contact is None:
        raise ApiError(404, "not_found", _("No customer with that address is known to this shop."))
    return contact


# --- Activity: a customer's timeline -----------------------------------------------------


def consent_words(state: str | None) -> str:
    """A contact's email marketing consent as the merchant reads it."""
    words = {
        "subscribed": _("subscribed"),
        "not_subscribed": _("not subscribed"),
        "unsubscribed": _("unsubscribed"),
        "pending": _("waiting for her confirmation"),
        "redacted": _("erased"),
        "invalid": _("not a valid address"),
    }
    return words.get(state or "", _("not known"))


def _flow_title(name: str) -> str:
    flow = registry.get(name)
    return _(flow.title) if flow is not None else name


def _local(text: str | None, shop: Shop) -> datetime | None:
    return datetime.fromisoformat(text).astimezone(ui.shop_zone(shop)) if text else None


def timeline(shop_id: int, email: str) -> dict[str, Any]:
    """A contact's timeline as data: each row in UTC and the shop's zone, in words."""
    address = address_of(email)
    with runtime_of(current_app).sessions() as db:
        shop = db.get_one(Shop, shop_id)
        contact = _contact(db, shop_id, address)
        rows = decisions.explain(db, shop_id, contact.id)
        zone = ui.shop_zone(shop)
        answer_rows = []
        for row in rows:
            at = _local(row["at"], shop)
            until = _local(row["until"], shop)
            answer_rows.append(
                {
                    **row,
                    "at_local": at.isoformat() if at else None,
                    "until_local": until.isoformat() if until else None,
                    "day": at.date().isoformat() if at else None,
                    "flow_title": _flow_title(row["flow"]),
                }
            )
        return {
            "email": contact.email,
            "consent": contact.consent_state,
            "orders_count": contact.orders_count,
            "timezone": zone.key,
            "rows": answer_rows,
        }


class TimelineRow(Schema):
    at = fields.String(metadata={"description": "when, UTC (ISO 8601)"})
    at_local = fields.String(metadata={"description": "when, in the shop's time zone"})
    day = fields.String(metadata={"description": "the day in the shop's time zone"})
    flow = fields.String()
    flow_title = fields.String()
    step = fields.String(allow_none=True)
    outcome = fields.String(
        metadata={"description": "sent, skipped, deferred, exited, not_started, clicked, ..."}
    )
    reason = fields.String(allow_none=True, metadata={"description": "the reason code"})
    until = fields.String(allow_none=True, metadata={"description": "a deferral's new time, UTC"})
    until_local = fields.String(allow_none=True)
    words = fields.String(metadata={"description": "what happened and why, in words"})
    legal_basis = fields.Dict(allow_none=True)
    order = fields.String(metadata={"description": "a credited order's name"})
    revenue = fields.String(metadata={"description": "a credited order's amount (decimal)"})
    currency = fields.String()


class TimelineAnswer(Schema):
    email = fields.String()
    consent = fields.String(allow_none=True)
    orders_count = fields.Integer()
    timezone = fields.String(metadata={"description": "the shop's time zone"})
    rows = fields.List(fields.Nested(TimelineRow))


@api_route(
    "/contacts/<email>/timeline",
    summary="A customer's timeline: every decision and why, clicks, credited orders",
    answer=TimelineAnswer,
)
def contact_timeline(shop_id: int, email: str) -> dict[str, Any]:
    return timeline(shop_id, email)


def _days(rows: list[dict[str, Any]], shop: Shop) -> list[tuple[str, list[dict[str, Any]]]]:
    """Newest day first, each day's rows in order, with their times as the merchant
    reads them (the shop's zone, the UI's language)."""
    days = []
    for day, items in groupby(rows, key=lambda row: row["day"]):
        shown = [
            {
                **row,
                "time": format_time(
                    datetime.fromisoformat(row["at_local"]), "short", locale=ui.language()
                ),
                "until_shown": ui.local_time(datetime.fromisoformat(row["until"]), shop)
                if row["until"]
                else None,
                "amount": ui.money(Decimal(row["revenue"]), row.get("currency"))
                if row.get("revenue")
                else None,
            }
            for row in items
        ]
        days.append((format_date(date.fromisoformat(day), "full", locale=ui.language()), shown))
    return days[::-1]


@pages.get("/app/activity")
@merchant_required
def activity_page() -> Any:
    shop = ui.page_shop()
    email = request.args.get("email", "")
    found: dict[str, Any] | None = None
    problem = None
    status = 200
    if email.strip():
        try:
            found = timeline(shop.id, email)
        except ApiError as exc:
            problem = exc.fields[0][1] if exc.fields else exc.message
            status = exc.status
    days = _days(found["rows"], shop) if found else []
    return ui.render_page(
        "merchant/activity_activity.html",
        title=_("Activity"),
        email=email[:320],
        found=found,
        problem=problem,
        consent=consent_words(found["consent"]) if found else None,
        days=days,
    ), status


# --- Privacy -----------------------------------------------------------------------------


def export(shop_id: int, email: str) -> PrivacyRequest:
    """One customer's data export, kept as a privacy request (404: not this shop's)."""
    address = address_of(email)
    with runtime_of(current_app).sessions.begin() as db:
        shop = db.get_one(Shop, shop_id)
        row = privacy.merchant_export(db, shop, address, now())
        if row is None:
            raise ApiError(
                404, "not_found", _("No customer with that address is known to this shop.")
            )
        db.expunge(row)
        return row


def erase(shop_id: int, email: str, confirm: str | None) -> dict[str, Any]:
    """Erase one customer, as Shopify's customers/redact does, once the address was
    typed twice: what was erased, and the privacy request that records it (404: not
    this shop's)."""
    address = address_of(email)
    if not confirm or stored_email(confirm) != address:
        raise invalid(
            [("confirm", _("Type the customer's email address again to confirm."))],
            _("The erasure was not confirmed; nothing was erased."),
        )
    runtime = runtime_of(current_app)
    with schedule.unit_of_work(runtime) as db:
        shop = db.get_one(Shop, shop_id)
        done = privacy.merchant_erase(db, shop, address, now())
        if done is None:
            raise ApiError(
                404, "not_found", _("No customer with that address is known to this shop.")
            )
        counts, recorded = done
        answer = {"erased": counts, "request": recorded.id}
    privacy.scrub_erased(runtime, db)  # and the files keep nothing it erased
    return answer


def _download(row: PrivacyRequest) -> Response:
    response = jsonify(row.export)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="data-request-{row.reference or row.id}.json"'
    )
    return response


class EmailBody(Schema):
    email = fields.String(required=True, metadata={"description": "the customer's address"})


class ErasureBody(Schema):
    email = fields.String(required=True, metadata={"description": "the customer's address"})
    confirm = fields.String(
        required=True, metadata={"description": "the same address again, typed by the merchant"}
    )


class ErasureAnswer(Schema):
    erased = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "how many rows of each kind were erased"},
    )
    request = fields.Integer(metadata={"description": "the privacy request that records it"})


@api_route(
    "/privacy/exports",
    methods=("POST",),
    summary="Export everything held about one customer (kept as a privacy request)",
    body=EmailBody,
)
def api_export(shop_id: int, body: Mapping[str, Any]) -> Any:
    return export(shop_id, body["email"]).export


@api_route(
    "/privacy/erasures",
    methods=("POST",),
    summary="Erase one customer's data (the address typed twice)",
    body=ErasureBody,
    answer=ErasureAnswer,
)
def api_erase(shop_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
    return erase(shop_id, body["email"], body["confirm"])


def _requests(shop_id: int) -> list[PrivacyRequest]:
    with runtime_of(current_app).sessions() as db:
        rows = list(
            db.scalars(
                select(PrivacyRequest)
                .where(PrivacyRequest.shop_id == shop_id)
                .order_by(PrivacyRequest.received_at.desc(), PrivacyRequest.id.desc())
                .limit(LISTED_REQUESTS)
            )
        )
        db.expunge_all()
        return rows


def _privacy_page(status: int = 200, **context: Any) -> Any:
    shop = ui.page_shop()
    return ui.render_page(
        "merchant/activity_privacy.html",
        title=_("Privacy"),
        requests=_requests(shop.id),
        **context,
    ), status


@pages.get("/app/privacy")
@merchant_required
def privacy_page() -> Any:
    return _privacy_page()


@pages.post("/app/privacy/export")
@merchant_required
def privacy_export_form() -> Any:
    """The export without JavaScript: the form posts, the answer is the download."""
    try:
        row = export(ui.page_shop().id, request.form.get("email", ""))
    except ApiError as exc:
        return _privacy_page(exc.status, export_error=_field_error(exc), export_email=_form_email())
    return _download(row)


@pages.post("/app/privacy/erase")
@merchant_required
def privacy_erase_form() -> Any:
    """Two steps: the address, then the page asks for it again; only then erased."""
    email = _form_email()
    if "confirm" not in request.form:
        try:
            address = address_of(email)
            shop_id = ui.page_shop().id
            with runtime_of(current_app).sessions() as db:
                _contact(db, shop_id, address)
        except ApiError as exc:
            return _privacy_page(exc.status, erase_error=_field_error(exc), erase_email=email)
        return ui.render_page(
            "merchant/activity_erase.html", title=_("Erase a customer's data"), email=address
        )
    try:
        done = erase(ui.page_shop().id, email, request.form.get("confirm"))
    except ApiError as exc:
        if exc.status == 400 and any(name == "confirm" for name, _words in exc.fields):
            return ui.render_page(
                "merchant/activity_erase.html",
                title=_("Erase a customer's data"),
                email=email,
                confirm_error=_field_error(exc),
            ), 400
        return _privacy_page(exc.status, erase_error=_field_error(exc), erase_email=email)
    flash(
        _("The customer's data was erased ({rows} records).", rows=sum(done["erased"].values())),
        "done",
    )
    return redirect(url_for("merchant.privacy_page"))


def _form_email() -> str:
    return request.form.get("email", "")[:320]


def _field_error(exc: ApiError) -> str:
    return exc.fields[0][1] if exc.fields else exc.message


@pages.get("/app/privacy/<int:request_id>.json")
@pages.get("/settings/privacy/<int:request_id>.json", endpoint="privacy_export")
@merchant_required
def privacy_download(request_id: int) -> Any:
    """A customer's data export, for the merchant to send on (only their own shop's);
    also at its old address, which exports the merchant passed on may link to."""
    shop_id = ui.page_shop().id  # before the session: SQLite has one writer at a time
    with runtime_of(current_app).sessions() as db:
        found = db.get(PrivacyRequest, request_id)
        if (
            found is None
            or found.shop_id != shop_id
            or found.kind != PrivacyRequestKind.DATA_REQUEST
        ):
            abort(404)
        if found.export is None:
            abort(410, "this export was erased when the customer's data was redacted")
        return _download(found)


# --- Connection health -------------------------------------------------------------------


class HealthAnswer(Schema):
    at = fields.String()
    healthy = fields.Boolean(metadata={"description": "nothing below needs the merchant"})
    webhooks = fields.List(
        fields.Dict(), metadata={"description": "per topic: count and last time, last 24 h"}
    )
    deliveries = fields.Dict(
        metadata={"description": "failed and waiting deliveries, the last errors in words"}
    )
    cursors = fields.List(
        fields.Dict(), metadata={"description": "how far each reconciliation read, when it ran"}
    )
    subscriptions = fields.List(fields.Dict(), metadata={"description": "webhooks we made"})
    notices = fields.List(fields.Dict(), metadata={"description": "open notices, in words"})


def _health(shop_id: int) -> health.Report:
    with runtime_of(current_app).sessions() as db:
        return health.report(db, shop_id, now())


@api_route("/health", summary="The shop's connection health", answer=HealthAnswer)
def api_health(shop_id: int) -> dict[str, Any]:
    return _health(shop_id).as_dict()


@pages.get("/app/health")
@merchant_required
def health_page() -> Any:
    return ui.render_page(
        "merchant/activity_health.html",
        title=_("Connection health"),
        report=_health(ui.page_shop().id),
    )


ui.nav_item("merchant.activity_page", "Activity", 50)
ui.nav_item("merchant.privacy_page", "Privacy", 80)
ui.nav_item("merchant.health_page", "Connection health", 90)
