"""Preview and test send (``/app/flows/<flow>/preview``): every email of a flow, in
every language, at a phone's and a desktop's width, with sample data or a real
customer of the shop; and "send me a test" to the merchant's own address.

API: ``GET /api/v1/flows/<name>/steps/<step>/preview?locale=&contact=`` (the
email's subject, preheader, HTML, text, language and direction) and ``POST
/api/v1/flows/<name>/steps/<step>/test-send`` (``locale``, ``to``, ``contact``).
The email itself, for the page's frames, is ``/app/flows/<flow>/steps/<step>/preview.html``:
a document of its own with its own policy (inline styles, no script, images over
https, sandboxed, framed only by our own pages). What an email says and where
its links go is :mod:`jobs.sending.previews`'s: the courier's rendering, links
that act for nobody, nothing written or counted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Response, abort, current_app, flash, g, redirect, request, url_for
from itsdangerous import BadData, URLSafeTimedSerializer
from marshmallow import Schema, fields, validate

from connector.merchant import ui
from connector.merchant.api import ApiError, api_route, error_answer
from connector.merchant.auth import embedded, merchant_required
from connector.merchant.pages import blueprint as pages
from connector.merchant.ui import _
from connector.runtime import allow_framing, runtime_of
from jobs.flows import registry
from jobs.flows.model import Flow
from jobs.sending import previews
from jobs.sending.previews import PreviewError, TestLimitError, TestSent, UnknownError
from jobs.store.models import Shop, ShopStatus

#: what the email's own document may do: its inline styles, images over https (a
#: logo, product photos), nothing else; framed by our own pages only; sandboxed
#: (no script, no forms; a link opens outside the frame, as in a mail client)
log = logging.getLogger(__name__)

EMAIL_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "font-src https: data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)
#: the frames' widths on the page: a phone's and a desktop mail client's
WIDTHS = (("phone", 390), ("desktop", 700))
#: each language by its own name (a merchant finds hers in any UI language)
LANGUAGE_NAMES = {
    "en": "English",
    "sv": "Svenska",
    "nb": "Norsk bokmål",
    "ru": "Русский",
    "fa": "فارسی",
}


# --- the refusals, in the merchant's words -------------------------------------------------


def _words(error: PreviewError) -> str:
    """The refusal in the UI's language, from its code (English as the jobs wrote it when
    the code is new here)."""
    values: Mapping[str, Any] = error.values
    code = error.code
    if code == "unknown_flow":
        return _("There is no flow called {name}.", name=values["name"])
    if code == "unknown_step":
        return _("This flow has no email called {name}.", name=values["name"])
    if code == "unknown_contact":
        return _("Your shop has no customer with the address {email}.", email=values["email"])
    if code == "unknown_language":
        return _(
            "Emails are not written in {name}; choose one of {languages}.",
            name=values["name"],
            languages=values["languages"],
        )
    if code == "no_address":
        return _("Give an email address.")
    if code == "not_an_address":
        return _("This is not an email address.")
    if code == "no_sender_address":
        return _("Your shop has no sender address yet: give the address to send the test to.")
    if code == "too_many_tests":
        return _(
            "You have sent {count} test emails in the last hour, the most there may be. "
            "Try again in {minutes} minutes.",
            count=values["count"],
            minutes=values["minutes"],
        )
    if code == "delivery_unavailable":
        return _("The email service did not answer. Try again in a few minutes.")
    if code == "delivery_refused":
        return _("The email service refused the test email ({reason}).", reason=values["reason"])
    return error.message


def _status(error: PreviewError) -> int:
    if isinstance(error, UnknownError):
        return 404
    if isinstance(error, TestLimitError):
        return 429
    if isinstance(error, previews.TestDeliveryError):
        return 503 if error.transient else 502
    return 400


def _api_error(error: PreviewError) -> ApiError:
    words = _words(error)
    codes = {404: "not_found", 429: "too_many_requests", 502: "not_sent", 503: "not_sent"}
    status = _status(error)
    return ApiError(status, codes.get(status, "invalid"), words, [(error.field, words)])


# --- the API -----------------------------------------------------------------------------


#: longer than any language code or address: refused before anything reads it
LONGEST_LOCALE, LONGEST_ADDRESS = 35, 320


def _at_most(longest: int) -> validate.Length:
    return validate.Length(max=longest, error="must be at most {max} characters")


class PreviewQuery(Schema):
    locale = fields.String(
        load_default=None,
        validate=_at_most(LONGEST_LOCALE),
        metadata={"description": "en, sv, nb, ru or fa; empty: the customer's, else the shop's"},
    )
    contact = fields.String(
        load_default=None,
        validate=_at_most(LONGEST_ADDRESS),
        metadata={"description": "a customer of the shop, by email; empty: sample data"},
    )


class PreviewAnswer(Schema):
    subject = fields.String(required=True)
    preheader = fields.String(required=True)
    html = fields.String(required=True)
    text = fields.String(required=True)
    language = fields.String(required=True)
    direction = fields.String(required=True, metadata={"description": "ltr or rtl"})


class TestSendBody(Schema):
    locale = fields.String(load_default=None, allow_none=True, validate=_at_most(LONGEST_LOCALE))
    to = fields.String(
        load_default=None,
        allow_none=True,
        validate=_at_most(LONGEST_ADDRESS),
        metadata={"description": "where the test goes; empty: the shop's sender address"},
    )
    contact = fields.String(
        load_default=None,
        allow_none=True,
        validate=_at_most(LONGEST_ADDRESS),
        metadata={"description": "a customer of the shop whose data the email shows"},
    )


class TestSendAnswer(Schema):
    to = fields.String(required=True)
    subject = fields.String(required=True)
    language = fields.String(required=True)
    message_id = fields.String(required=True)
    message = fields.String(required=True, metadata={"description": "what was done, in words"})


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def preview_of(
    shop_id: int, name: str, step: str, locale: str | None, contact: str | None
) -> previews.Preview:
    runtime = runtime_of(current_app)
    return previews.preview(runtime, shop_id, name, step, _blank(locale), _blank(contact))


def send_test(
    shop_id: int,
    name: str,
    step: str,
    locale: str | None,
    to: str | None,
    contact: str | None,
) -> TestSent:
    runtime = runtime_of(current_app)
    return previews.send_test(
        runtime, shop_id, name, step, _blank(locale), _blank(to), _blank(contact)
    )


def _sent_words(sent: TestSent) -> str:
    return _("A test was sent to {to}.", to=sent.to)


@api_route(
    "/flows/<name>/steps/<step>/preview",
    summary="One email of a flow as it would go out, with sample data or a customer's",
    query=PreviewQuery,
    answer=PreviewAnswer,
)
def api_preview(shop_id: int, name: str, step: str, query: dict[str, Any]) -> dict[str, Any]:
    try:
        return preview_of(shop_id, name, step, query["locale"], query["contact"]).as_dict()
    except PreviewError as exc:
        raise _api_error(exc) from exc


@api_route(
    "/flows/<name>/steps/<step>/test-send",
    methods=("POST",),
    summary="Send one email of a flow to the merchant, marked as a test and never counted",
    body=TestSendBody,
    answer=TestSendAnswer,
)
def api_test_send(shop_id: int, name: str, step: str, body: dict[str, Any]) -> Any:
    try:
        sent = send_test(shop_id, name, step, body["locale"], body["to"], body["contact"])
    except TestLimitError as exc:
        refused = error_answer(_api_error(exc))
        refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    except PreviewError as exc:
        raise _api_error(exc) from exc
    return {
        "to": sent.to,
        "subject": sent.subject,
        "language": sent.language,
        "message_id": sent.message_id,
        "message": _sent_words(sent),
    }


# --- the email itself, for a frame -----------------------------------------------------------


#: a frame's pass: the page signs one for its frames when it was itself signed in by a
#: platform's session token (inside the admin there is no cookie, and a frame cannot
#: carry the token), good for that shop and flow only, for a while
FRAME_SALT = "triggerpost.preview-frame"
FRAME_MAX_AGE = 15 * 60


def _passes() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=FRAME_SALT)


def frame_pass(shop_id: int, flow: str) -> str:
    """A pass for this page's frames: the shop, the flow and who may frame them."""
    ancestors = list(g.get("frame_ancestors") or ())
    return _passes().dumps({"shop": shop_id, "flow": flow, "ancestors": ancestors})


def _frame_shop(name: str) -> tuple[int, tuple[str, ...]]:
    """The shop and framing origins of a frame's pass, or 401/404."""
    try:
        held = _passes().loads(request.args.get("frame", ""), max_age=FRAME_MAX_AGE)
    except BadData:
        log.warning("refused a preview frame's pass on %s", request.path)
        abort(401, _("This preview has expired: reload the page."))
    if not isinstance(held, dict) or held.get("flow") != name:
        abort(404)
    with runtime_of(current_app).sessions() as db:
        shop = db.get(Shop, held.get("shop"))
        if shop is None or shop.status != ShopStatus.ACTIVE:
            abort(401, _("This preview has expired: reload the page."))
    return shop.id, tuple(str(origin) for origin in held.get("ancestors") or ())


@pages.get("/app/flows/<name>/steps/<step>/preview.html")
def email_document(name: str, step: str) -> Any:
    """The email's HTML as a document of its own: the page frames it at two widths.

    Signed in like any page (a cookie session), or by the frame's pass the page
    gave it (inside a platform's admin, where the page had a session token)."""
    if "frame" in request.args:
        shop_id, ancestors = _frame_shop(name)
    else:
        return _email_document_signed_in(name, step)
    return _email_document(shop_id, name, step, ancestors)


@merchant_required
def _email_document_signed_in(name: str, step: str) -> Any:
    return _email_document(ui.page_shop().id, name, step, tuple(g.get("frame_ancestors") or ()))


def _email_document(shop_id: int, name: str, step: str, ancestors: tuple[str, ...]) -> Any:
    try:
        found = preview_of(
            shop_id, name, step, request.args.get("locale"), request.args.get("contact")
        )
    except PreviewError as exc:
        abort(_status(exc), _words(exc))
    response = Response(found.rendered.html, mimetype="text/html")
    framers = " ".join(("'self'", *ancestors))
    response.headers["Content-Security-Policy"] = EMAIL_POLICY.replace(
        "frame-ancestors 'self'", f"frame-ancestors {framers}"
    )
    if ancestors:  # inside an admin, its frame-ancestors alone decide (XFO cannot name it)
        allow_framing(ancestors, ())
    else:
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "no-store, private"
    return response


# --- the page ----------------------------------------------------------------------------


def _known(name: str) -> Flow:
    flow = registry.get(name)
    if flow is None:
        abort(404, _("There is no flow called {name}.", name=name))
    return flow


@pages.get("/app/preview")
@merchant_required
def preview_start() -> Any:
    """The navigation's way in, and the page's form without JavaScript: to the chosen
    flow's preview (its first email when the step chosen is not one of its own)."""
    flows = registry.flows()
    name = request.args.get("flow") or next(iter(flows))
    flow = _known(name)
    steps = [send.name for send in flow.sends]
    step = request.args.get("step")
    wanted = {
        "step": step if step in steps else steps[0],
        "locale": request.args.get("locale") or None,
        "contact": _blank(request.args.get("contact")),
    }
    return redirect(_preview_url(flow, wanted))


def _preview_url(flow: Flow, wanted: Mapping[str, str | None]) -> str:
    """The flow's preview page with the choices made (none empty)."""
    chosen: dict[str, Any] = {key: value for key, value in wanted.items() if value}
    return url_for("merchant.flow_preview", name=flow.name, **chosen)


def _page(
    flow: Flow,
    step: str,
    locale: str | None,
    contact: str | None,
    *,
    errors: Mapping[str, str] | None = None,
    to: str = "",
    status: int = 200,
) -> Any:
    shop = ui.page_shop()
    errors = dict(errors or {})
    typed = contact or ""  # shown again in its field, even when it found nobody
    shown: previews.Preview | None = None
    steps = []
    try:
        shown = preview_of(shop.id, flow.name, step, locale, contact)
    except PreviewError as exc:
        errors.setdefault(exc.field, _words(exc))
        status = max(status, _status(exc))
        if exc.field == "contact":  # show the sample instead, and say why
            contact = None
            shown = preview_of(shop.id, flow.name, step, locale, None)
        elif exc.field == "locale":
            locale = None
            shown = preview_of(shop.id, flow.name, step, None, contact)
    for number, send in enumerate(flow.sends, start=1):
        subject = preview_of(shop.id, flow.name, send.name, locale, contact).rendered.subject
        steps.append({"name": send.name, "number": number, "subject": subject})
    subjects = [each["subject"] for each in steps]
    for each in steps:  # two emails alike (one template): their step's name tells them apart
        each["alike"] = subjects.count(each["subject"]) > 1
    query = {"locale": locale, "contact": contact}
    frame_query = {key: value for key, value in query.items() if value}
    if embedded() is not None:
        frame_query["frame"] = frame_pass(shop.id, flow.name)
    return (
        ui.render_page(
            "merchant/previews_flow.html",
            title=_("Preview: {flow}", flow=_(flow.title)),
            flow=flow,
            flows=list(registry.flows().values()),
            step=step,
            steps=steps,
            locale=locale,
            contact=contact or "",
            typed_contact=typed,
            preview=shown,
            languages=[(code, LANGUAGE_NAMES.get(code, code)) for code in previews.languages()],
            widths=WIDTHS,
            frame_query=frame_query,
            errors=errors,
            to=to,
            default_to=previews.default_address(runtime_of(current_app), shop.id) or "",
            limit=previews.TESTS_PER_HOUR,
        ),
        status,
    )


@pages.get("/app/flows/<name>/preview")
@merchant_required
def flow_preview(name: str) -> Any:
    flow = _known(name)
    step = request.args.get("step") or flow.sends[0].name
    if step not in {send.name for send in flow.sends}:
        abort(404, _("This flow has no email called {name}.", name=step))
    return _page(flow, step, request.args.get("locale"), _blank(request.args.get("contact")))


@pages.post("/app/flows/<name>/preview")
@merchant_required
def flow_test_send(name: str) -> Any:
    """Send me a test, without JavaScript: sent, then back to the same preview; or the
    page again with the refusal next to its field."""
    flow = _known(name)
    form = request.form
    step = form.get("step") or flow.sends[0].name
    locale, contact, to = form.get("locale"), _blank(form.get("contact")), form.get("to") or ""
    try:
        sent = send_test(ui.page_shop().id, flow.name, step, locale, to, contact)
    except PreviewError as exc:
        if exc.field == "step" or exc.code == "unknown_flow":
            abort(404, _words(exc))
        return _page(
            flow,
            step,
            locale if exc.field != "locale" else None,
            contact,
            errors={exc.field: _words(exc)},
            to=to,
            status=_status(exc),
        )
    flash(_sent_words(sent), "done")
    wanted = {"step": step, "locale": _blank(locale), "contact": contact}
    return redirect(_preview_url(flow, wanted))


ui.nav_item("merchant.preview_start", "Preview", 30)
