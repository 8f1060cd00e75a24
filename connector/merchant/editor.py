"""The flow editor (``/app/flows/<flow>``) and the shop settings page (``/app/settings``).

Both forms are drawn from the settings schema's own description
(:func:`jobs.shop_settings.describe`): a flow's page shows the options its
declaration lists, each by its kind (a number with its unit and range, a
switch, a choice, a text with the placeholders it allows, a list of whole
numbers, a segment chosen from the shop's own and the built-in ones, never
typed), so a flow added later gets its editor with no code here. A field's
form name is its path in the API's terms (``options.delay_1_hours``,
``engine.quiet_start``, ``copy.cart_recovery_1.sv.subject``), so the page's
plain form post and the JSON API name a bad field the same way.

Writes go through the same functions as the API (:mod:`connector.merchant.overview`
for options and the shop-wide groups; :func:`update_copy` here for the
merchant's own text): validated whole, nothing saved when one field is bad.
Without JavaScript a bad post renders the page again with the merchant's
entered values and a message beside each field.

API: ``PATCH /api/v1/flows/<name>/copy`` (template → language → field → text;
null or empty gives back the built-in text) and ``POST
/api/v1/flows/<name>/dry-run`` (what the flow with the proposed options would
have sent over the last days, from :mod:`jobs.dry_run`). A dry run replays the
shop's whole event log in a scratch store; it takes seconds on a big shop, so
it is bounded: at most :data:`MAX_DAYS` days, at most :data:`MAX_EVENTS`
logged events (a bigger shop is told to run ``triggerpost simulate --shop``),
and one at a time per shop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from babel import Locale, UnknownLocaleError
from flask import (
    Response,
    abort,
    current_app,
    flash,
    g,
    has_request_context,
    redirect,
    request,
    session,
    url_for,
)
from marshmallow import Schema, ValidationError, fields, validates_schema
from marshmallow import validate as rules
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from adapters import registry as adapter_registry
from connector.merchant import overview, storefront_events, ui
from connector.merchant.api import ApiError, api_route, invalid
from connector.merchant.api import blueprint as api
from connector.merchant.auth import current_shop_id, merchant_required
from connector.merchant.pages import blueprint as pages
from connector.merchant.segment_words import described
from connector.merchant.ui import _
from connector.runtime import runtime_of
from emails import i18n
from emails.render import OVERRIDABLE
from jobs import dry_run as dry_runs
from jobs import shop_settings
from jobs.audience import segments
from jobs.flows import registry
from jobs.flows.model import Flow, MessageKind
from jobs.platforms import registry as platforms
from jobs.shop_settings import Problem, SettingsError
from jobs.store.models import Shop, StoredEvent

#: the longest window the editor's dry run replays (the CLI goes up to a year)
MAX_DAYS = 30
#: the most logged events (the whole log: the past before the window is replayed
#: too) a dry run replays in a request. Measured with bench/dry_run.py on SQLite
#: on a busy 2-CPU machine: 2,000 events in 17 s, 10,000 in 142 s (70 to 120
#: events a second); so at most about half a minute here, and a bigger shop is
#: pointed to ``triggerpost simulate --shop``
MAX_EVENTS = 3_000
#: how long one shop's dry run holds its lock at most (a crashed one frees it then)
LOCK_SECONDS = 300
#: the most characters of one text of copy (``emails.render.validate_override`` agrees)
LONGEST_COPY = 5000
#: the form fields of the copy of each email
COPY_FIELDS = OVERRIDABLE
#: each one's label
COPY_LABELS = {
    "subject": "Subject",
    "preheader": "Preview line",
    "heading": "Heading",
    "body": "Body",
}


# --- the words: a declaration's English, a code's words, the schema's messages --------


def humanized(code: str) -> str:
    """``subscribed_or_customer`` → ``Subscribed or customer``: a code as words."""
    words = code.replace("_", " ").replace(":", " ").strip()
    return words[:1].upper() + words[1:]


#: choices whose code says too little as words
CHOICE_WORDS = {"store": "Your store's language"}


def choice_text(value: str) -> str:
    """A choice as the merchant reads it: a language by its name, else its words."""
    if value in i18n.languages():
        try:
            name = Locale.parse(value).get_display_name(ui.language())
        except (UnknownLocaleError, ValueError):
            name = None
        if name:
            return f"{name[:1].upper()}{name[1:]} ({value})"
    return _(CHOICE_WORDS.get(value) or humanized(value))


#: why an email was held back or not sent (jobs.engine.guards, the flows' exits), in words
REASON_WORDS: dict[str, str] = {
    "quiet_hours": "outside the sending hours",
    "cap:gap": "too soon after another marketing email",
    "cap:weekly": "the customer's limit of marketing emails was reached",
    "cap:priority": "another flow's email went first",
    "cap:flow_repeat": "this flow emailed the customer lately",
    "holdout": "in the hold-out group",
    "contact_redacted": "the customer's data was erased",
    "no_email": "no valid email address",
    "no_consent": "never subscribed to marketing emails",
    "unsubscribed": "unsubscribed",
    "suppressed:marketing": "unsubscribed from marketing emails",
    "suppressed:all": "on the do-not-email list (bounced or complained)",
    "shop_inactive": "the app was uninstalled",
    "already_customer": "already a customer",
    "anniversary_passed": "the day had passed where the customer lives",
    "birthday_passed": "the day had passed where the customer lives",
    "announced_with_another": "announced together with another product",
    "checkout_completed": "the customer completed the purchase",
    "in_welcome_series": "the welcome series was still under way",
    "items_unavailable": "the products were no longer available",
    "order_cancelled": "the order was cancelled",
    "order_placed": "the customer placed an order",
    "order_refunded": "the order was refunded",
    "ordered": "the customer ordered",
    "product_unavailable": "the product was no longer available",
    "rewarded": "a loyalty reward was sent instead",
    "welcomed": "the welcome series covered it",
    "interested": "no recent interest in a product not yet bought",
    "checkout_started": "the customer started a checkout",
    "added_to_cart": "the customer added to a cart",
    "cart_reminder": "a cart reminder was sent instead",
    "product_bought": "the customer bought the product",
}

#: what became of an email not sent (a message's state), in words
STATE_WORDS: dict[str, str] = {
    "skipped": "Not sent",
    "exited": "Ended before sending",
    "expired": "Held back too long",
    "cancelled": "Cancelled",
    "failed": "Failed",
}


def reason_text(reason: str) -> str:
    english = REASON_WORDS.get(reason)
    if english is None and reason.startswith("suppressed:"):
        english = REASON_WORDS["suppressed:all"]
    return _(english) if english is not None else humanized(reason)


#: the validation messages of the schema (jobs.shop_settings) and marshmallow, as
#: patterns: ``{name}`` stands for any text, filled into the Swedish the same way
MESSAGES = (
    "must be between {min} and {max}",
    "must be a whole number",
    "must be true or false",
    "must be at most {max} characters",
    "not a web address (https://...)",
    "not an email address",
    "not a colour (#rrggbb)",
    "must not be empty",
    "must be text",
    "not a time (HH:MM)",
    "must be one of: {choices}",
    "must be whole numbers, e.g. 3, 5, 10",
    "each must be between {min} and {max}",
    "at most {most} numbers",
    "unknown setting",
    "unknown setting (one of: {names})",
    "unknown flow",
    "unknown email",
    "unknown language (one of: {names})",
    "must be a group of settings (a JSON object)",
    "unknown placeholder (you may use: {names})",
    "not a metafield (namespace.key)",
    "not a meta key (letters, digits, _ - . :)",
    "the text is longer than 5000 characters",
    "this text cannot be used: {reason}. You may use {names}.",
    "{field!r} cannot be changed (only {names})",
    "no segment is named {name} (yours, or one of: {names})",
    "must be a segment's name or its conditions (JSON)",
    "a name is at most {max} small letters, digits, - and _ (starting with a letter or digit)",
    "Unknown field.",
    "Not a valid string.",
    "Not a valid boolean.",
    "Not a valid integer.",
    "Not a valid mapping type.",
    "Field may not be null.",
    "Missing data for required field.",
    "Must be one of: {choices}.",
    "Length must be between {min} and {max}.",
    "Longer than maximum length {max}.",
    "Must be greater than or equal to {min} and less than or equal to {max}.",
    "Use the flow's switch (enabled).",
    "The dry run shows the flow switched on.",
)


@cache
def _patterns() -> tuple[tuple[re.Pattern[str], str], ...]:
    found = []
    for english in MESSAGES:
        parts = re.split(r"(\{[a-z_]+(?:![a-z])?\})", english)
        regex = "".join(
            f"(?P<{part[1:-1].split('!')[0]}>.+?)" if part.startswith("{") else re.escape(part)
            for part in parts
        )
        found.append((re.compile(rf"\A{regex}\Z", re.S), english))
    return tuple(found)


def _language() -> str:
    """The UI's language, chosen for the signed-in shop also on an API request (which
    renders no page that would have chosen it)."""
    if has_request_context() and g.get("ui_language") is None and current_shop_id() is not None:
        ui.page_shop()
    return ui.language()


def message_text(message: str) -> str:
    """A validation message in the UI's language (a message no pattern knows stays as it is)."""
    language = _language()
    if language == ui.SOURCE:
        return message
    exact = ui.catalog(language).get(message)
    if exact is not None:
        return exact
    for pattern, english in _patterns():
        matched = pattern.match(message)
        if matched is None:
            continue
        translated = ui.catalog(language).get(english)
        if translated is None:
            return message
        return _filled(translated, matched.groupdict())
    return message


def _filled(text: str, values: Mapping[str, str]) -> str:
    """``{name}`` (or ``{name!r}``) in ``text`` replaced by its value; others kept."""
    return re.sub(r"\{([a-z_]+)(?:![a-z])?\}", lambda m: values.get(m.group(1), m.group(0)), text)


def translated_fields(problems: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(where, message_text(message)) for where, message in problems]


@api.after_request
def _refusal_in_words(response: Response) -> Response:
    """Every API refusal's messages in the merchant's language (the API's views say them
    in English, as the schema and marshmallow do), once the view's transaction is over."""
    if response.status_code != 400 or not response.is_json:
        return response
    body = response.get_json(silent=True)
    if not isinstance(body, dict) or _language() == ui.SOURCE:
        return response
    if isinstance(body.get("message"), str):
        body["message"] = _(body["message"])
    for item in body.get("fields") or ():
        if isinstance(item, dict) and isinstance(item.get("message"), str):
            item["message"] = message_text(item["message"])
    response.set_data(json.dumps(body))
    return response


def declared_strings() -> list[str]:
    """Every English text of the settings' declarations a merchant reads on these pages:
    groups' and fields' labels, helps and units, and each choice's words."""
    found: list[str] = []
    for group in shop_settings.describe():
        found += [group["label"], group["help"]]
        for field in group["fields"]:
            found += [field["label"], field["help"]]
            if field.get("unit"):
                found.append(field["unit"])
            if field["type"] == "choice":
                found += [
                    CHOICE_WORDS.get(choice) or humanized(choice)
                    for choice in field["choices"]
                    if choice not in i18n.languages()
                ]
    return list(dict.fromkeys(found))


# --- fields as the form shows them -----------------------------------------------------


def _form_value(field: Mapping[str, Any], value: Any) -> str:
    """A stored value as the form's text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):  # a segment's conditions (a flow's audience), as JSON
        return json.dumps(shop_settings.plain(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return str(value)


def _view(
    field: Mapping[str, Any], name: str, value: Any, errors: Mapping[str, str], entered: Any
) -> dict[str, Any]:
    """One field of the form: its declaration, its form name, its value and its message."""
    shown = entered.get(name) if entered is not None and name in entered else None
    if shown is None:
        shown = _form_value(field, value)
    choices = [(choice, choice_text(choice)) for choice in field.get("choices") or ()]
    return {
        **field,
        "key": field["name"],
        "name": name,
        "id": "f-" + name.replace(".", "-"),
        "value": shown,
        "checked": shown in ("true", "on", True),
        "error": errors.get(name),
        "label": _(field["label"]),
        "help": _(field["help"]),
        "unit": _(field["unit"]) if field.get("unit") else None,
        "choices": choices,
    }


def _as_stored(shop: Shop | None, flow: Flow, option: str) -> Any:
    """A flow's option as the store holds it (the settings read may have set it aside)."""
    tree: Any = shop.settings if shop is not None else None
    for key in ("flows", flow.name, option):
        if not isinstance(tree, Mapping):
            return None
        tree = tree.get(key)
    return tree


def _segment_choice(
    view: dict[str, Any],
    stored: Any,
    settings: shop_settings.ShopSettings,
    currency: str | None,
    kept: Any = None,
) -> dict[str, Any]:
    """A flow's "Only for" as a list: everyone, the shop's saved segments by name, the
    built-ins by their titles (a saved one of a built-in's name replaces it), and the
    conditions written for this flow when it has them (their JSON text the option's
    value, so a save leaves them as they are; shown in words beneath).

    A value no segment has any more or that a forged form sent is listed too,
    selected and marked, so the merchant sees it and the save refuses it with the
    schema's message. A segment deleted since leaves the settings read with no usable
    audience (the flow is for nobody, :data:`jobs.shop_settings.UNUSABLE_AUDIENCE`):
    ``kept``, the name the store still holds, is shown then."""
    shown = view["value"]
    kept_name = kept.strip() if isinstance(kept, str) else ""
    if shown == shop_settings.UNUSABLE_AUDIENCE and kept_name:
        shown = kept_name
    saved = sorted(settings.segments)
    built_in = [name for name in segments.BUILT_IN if name not in settings.segments]
    written = None
    if shown.lstrip().startswith("{"):
        written = shown  # as entered, after a refused post
    elif isinstance(stored, Mapping):
        written = _form_value(view, stored)
    known = {"", *saved, *built_in}
    unknown = None
    if written is None and shown not in known:
        if shown == shop_settings.UNUSABLE_AUDIENCE:
            text = _("Nobody: what was stored here could not be read")
        elif shown in (stored, kept_name):
            text = _("{name} (deleted)", name=shown)
        else:
            text = _("{name} (not a segment)", name=shown)
        unknown = (shown, text)
    words = None
    if written is not None:
        try:
            words = described(segments.parse(json.loads(written)), currency)
        except (ValueError, RecursionError, segments.SegmentError):
            words = None  # a forged text: the save names what is wrong with it
    return {
        **view,
        "value": shown,
        "everyone": _("Everyone"),
        "saved": [(name, name) for name in saved],
        "built_in": [(name, _(segments.BUILT_IN_TITLES[name])) for name in built_in],
        "written": (written, _("The conditions written for this flow")) if written else None,
        "words": words,
        "unknown": unknown,
    }


def _group(path: str) -> dict[str, Any]:
    for group in shop_settings.describe():
        if group["path"] == path:
            return group
    raise LookupError(path)


def _flow_or_404(name: str) -> Flow:
    flow = registry.get(name)
    if flow is None:
        abort(404)
    return flow


def _step_switches(flow: Flow) -> dict[str, int]:
    """The options that switch a step on or off, and the step's place (1, 2, 3 ...)."""
    return {
        send.option: number
        for number, send in enumerate(flow.sends, start=1)
        if send.option is not None
    }


def flow_form(
    flow: Flow,
    settings: shop_settings.ShopSettings,
    errors: Mapping[str, str] | None = None,
    entered: MultiDict[str, str] | None = None,
    shop: Shop | None = None,
) -> dict[str, Any]:
    """The editor's fields: the switch, each step's switch, the other options.

    The consent policy is left out of a transactional flow: order emails go
    whatever the policy, so a choice there would mean nothing. A segment (the
    flow's "Only for") is chosen from the shop's segments (:func:`_segment_choice`;
    ``shop`` gives the currency of amounts in written conditions, and what the store
    holds when the settings read set it aside).
    """
    errors = errors or {}
    values = dict(settings.flow(flow))
    group = _group(f"flows.{flow.name}")
    steps = _step_switches(flow)
    switch = None
    step_fields = []
    options = []
    for field in group["fields"]:
        name = field["name"]
        if name == "enabled":
            switch = _view(field, "enabled", values.get(name), errors, entered)
            continue
        if name == "consent" and flow.kind == MessageKind.TRANSACTIONAL:
            continue
        view = _view(field, f"options.{name}", values.get(name), errors, entered)
        if field["type"] == "segment":
            view = _segment_choice(
                view,
                values.get(name),
                settings,
                shop.currency if shop is not None else None,
                _as_stored(shop, flow, name),
            )
        if name in steps:
            view["step"] = steps[name]
            step_fields.append(view)
        else:
            options.append(view)
    return {"switch": switch, "steps": step_fields, "options": options}


def flow_templates(flow: Flow) -> list[str]:
    """The flow's email templates, in the order its steps send them, once each."""
    return list(dict.fromkeys(send.template for send in flow.sends))


def copy_form(
    flow: Flow,
    settings: shop_settings.ShopSettings,
    errors: Mapping[str, str] | None = None,
    entered: MultiDict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Per template and language: subject, preheader, heading and body, with the
    built-in text shown as the placeholder."""
    errors = errors or {}
    catalogs = i18n.catalogs()
    emails = []
    for number, template in enumerate(flow_templates(flow), start=1):
        languages = []
        stored = settings.copy.get(template) or {}
        for language in i18n.languages():
            texts = stored.get(language) or {}
            boxes = []
            for field in COPY_FIELDS:
                name = f"copy.{template}.{language}.{field}"
                value = texts.get(field, "")
                if entered is not None and name in entered:
                    value = entered[name]
                builtin = catalogs[language].get(f"{template}.{field}") or catalogs[
                    i18n.FALLBACK
                ].get(f"{template}.{field}", "")
                boxes.append(
                    {
                        "field": field,
                        "label": _(COPY_LABELS.get(field, humanized(field))),
                        "name": name,
                        "id": "c-" + name.replace(".", "-"),
                        "value": value,
                        "builtin": builtin,
                        "error": errors.get(name),
                        "long": field == "body",
                    }
                )
            languages.append(
                {
                    "code": language,
                    "name": choice_text(language),
                    "dir": i18n.direction(language),
                    "fields": boxes,
                    "changed": any(texts.get(field) for field in COPY_FIELDS),
                }
            )
        emails.append({"template": template, "number": number, "languages": languages})
    return emails


def settings_form(
    shop: Shop,
    settings: shop_settings.ShopSettings,
    errors: Mapping[str, str] | None = None,
    entered: MultiDict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every shop-wide group, each field by its type; a setting only some platform
    reads (``PlatformServer.settings``) only for that platform's shops."""
    errors = errors or {}
    plain = overview.shop_groups(settings)
    claimed: dict[str, set[str]] = {}
    for server in platforms.SERVERS.values():
        for path in server.settings:
            claimed.setdefault(path, set()).add(server.name)
    groups = []
    for group in shop_settings.describe():
        if group["path"] not in overview.SHOP_GROUPS:
            continue
        shown = []
        for field in group["fields"]:
            owners = claimed.get(field["path"]) or claimed.get(group["path"])
            if owners is not None and shop.platform not in owners:
                continue
            value = plain[group["path"]].get(field["name"])
            shown.append(_view(field, field["path"], value, errors, entered))
        if shown:
            groups.append(
                {
                    "path": group["path"],
                    "label": _(group["label"]),
                    "help": _(group["help"]),
                    "fields": shown,
                }
            )
    return groups


# --- the plain form post, read as the API's body ---------------------------------------


_WHOLE = re.compile(r"[+-]?\d+")


def _typed(field: Mapping[str, Any], form: MultiDict[str, str], name: str) -> Any:
    """A form field as the API would have it: a switch's last value (a hidden "false"
    before the checkbox), a whole number when it is one (else the text, which the
    schema names as wrong), an empty optional field as null (its default)."""
    values = form.getlist(name)
    if field["type"] == "boolean":
        return bool(values) and values[-1] in ("true", "on")
    text = (values[-1] if values else "").strip()
    if text == "" and field.get("optional"):
        return None
    if field["type"] == "integer" and _WHOLE.fullmatch(text):
        return int(text)
    return text


def flow_patch(flow: Flow, form: MultiDict[str, str]) -> dict[str, Any]:
    patch: dict[str, Any] = {"options": {}}
    for field in _group(f"flows.{flow.name}")["fields"]:
        name = field["name"]
        if name == "enabled":
            if "enabled" in form:
                patch["enabled"] = _typed(field, form, "enabled")
        elif f"options.{name}" in form:
            patch["options"][name] = _typed(field, form, f"options.{name}")
    return patch


def settings_patch(shop: Shop, form: MultiDict[str, str]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for group in settings_form(shop, shop_settings.load(shop)):
        for field in group["fields"]:
            if field["path"] in form:
                patch.setdefault(group["path"], {})[field["key"]] = _typed(
                    field, form, field["path"]
                )
    return patch


def copy_patch(flow: Flow, form: MultiDict[str, str]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for template in flow_templates(flow):
        for language in i18n.languages():
            for field in COPY_FIELDS:
                name = f"copy.{template}.{language}.{field}"
                if name in form:
                    text = form[name].strip()
                    patch.setdefault(template, {}).setdefault(language, {})[field] = text or None
    return patch


# --- the merchant's own text -----------------------------------------------------------


class CopyBody(Schema):
    """For the OpenAPI document; each flow's own templates are checked when it is used."""

    copy = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(),
        required=True,
        metadata={
            "description": "template → language → subject|preheader|heading|body → text; "
            "null or empty gives back the built-in text"
        },
    )


class CopyAnswer(Schema):
    name = fields.String(required=True)
    copy = fields.Dict(metadata={"description": "the flow's templates' own text, per language"})


def _copy_problems(flow: Flow, body: Any) -> list[tuple[str, str]]:
    """Every key of the body that is not one of the flow's templates, languages and
    fields, or a value that is not text, as (path, message)."""
    problems: list[tuple[str, str]] = []
    templates = flow_templates(flow)
    languages = i18n.languages()
    if not isinstance(body, Mapping):
        return [("copy", shop_settings.NOT_A_GROUP)]
    for template, by_language in body.items():
        where = f"copy.{template}"
        if template not in templates:
            problems.append((where, f"must be one of: {', '.join(templates)}"))
        elif not isinstance(by_language, Mapping):
            problems.append((where, shop_settings.NOT_A_GROUP))
        else:
            for language, texts in by_language.items():
                here = f"{where}.{language}"
                if language not in languages:
                    problems.append((here, f"unknown language (one of: {', '.join(languages)})"))
                elif not isinstance(texts, Mapping):
                    problems.append((here, shop_settings.NOT_A_GROUP))
                else:
                    for field, text in texts.items():
                        if field not in COPY_FIELDS:
                            problems.append((f"{here}.{field}", "Unknown field."))
                        elif text is not None and not isinstance(text, str):
                            problems.append((f"{here}.{field}", "must be text"))
                        elif isinstance(text, str) and len(text) > LONGEST_COPY:
                            problems.append(
                                (f"{here}.{field}", f"must be at most {LONGEST_COPY} characters")
                            )
    return problems


def _blank_is_builtin(body: Mapping[str, Any]) -> dict[str, Any]:
    """Empty text gives back the built-in text: null, which removes the key."""
    return {
        template: {
            language: {
                field: (text if isinstance(text, str) and text.strip() else None)
                for field, text in texts.items()
            }
            for language, texts in by_language.items()
        }
        for template, by_language in body.items()
    }


def flow_copy(flow: Flow, settings: shop_settings.ShopSettings) -> dict[str, Any]:
    return {
        template: shop_settings.plain(settings.copy.get(template) or {})
        for template in flow_templates(flow)
    }


def update_copy(shop_id: int, flow: Flow, body: Any) -> dict[str, Any]:
    """Change the flow's emails' own text in one write, or nothing (400 per field,
    an unknown ``{{ placeholder }}`` named with the ones allowed)."""
    problems = _copy_problems(flow, body)
    if problems:
        raise invalid(translated_fields(problems))
    runtime = runtime_of(current_app)
    refused: SettingsError | None = None
    with runtime.sessions.begin() as db:
        shop = db.get_one(Shop, shop_id)
        try:
            settings = shop_settings.update(db, shop, {"copy": _blank_is_builtin(body)})
        except SettingsError as exc:
            refused = exc
        else:
            return {"name": flow.name, "copy": flow_copy(flow, settings)}
    assert refused is not None
    # put in words after the transaction: choosing the language reads the shop
    raise invalid(translated_fields((p.where, p.message) for p in refused.problems))


@api_route(
    "/flows/<name>/copy",
    methods=("PATCH",),
    summary="Change the text of a flow's emails, per language (all or nothing)",
    body=CopyBody,
    answer=CopyAnswer,
)
def patch_copy(shop_id: int, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return update_copy(shop_id, overview.known_flow(name), body["copy"])


# --- the dry run -----------------------------------------------------------------------


class DryRunBody(Schema):
    options = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(allow_none=True),
        load_default=dict,
        metadata={"description": "proposed options (not saved); the stored ones otherwise"},
    )
    days = fields.Integer(
        strict=True,
        load_default=MAX_DAYS,
        validate=rules.Range(1, MAX_DAYS, error="must be between {min} and {max}"),
        error_messages={"invalid": "must be a whole number"},
    )

    @validates_schema
    def _no_switch(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if "enabled" in data.get("options", {}):
            raise ValidationError(
                "The dry run shows the flow switched on.", field_name="options.enabled"
            )


class StepAnswer(Schema):
    step = fields.String(required=True)
    label = fields.String(required=True)
    sent = fields.Integer(required=True, metadata={"description": "sent within the window"})
    after = fields.Integer(required=True, metadata={"description": "due after the window"})


class ReasonAnswer(Schema):
    reason = fields.String(required=True)
    words = fields.String(required=True)
    count = fields.Integer(required=True)
    state = fields.String(metadata={"description": "skipped, exited, expired, ..."})
    state_words = fields.String()


class DryRunAnswer(Schema):
    flow = fields.String(required=True)
    days = fields.Integer(required=True)
    start = fields.String(required=True)
    until = fields.String(required=True)
    proposed = fields.Boolean(required=True)
    sent_total = fields.Integer(required=True)
    sent_total_words = fields.String(metadata={"description": "the total, in words"})
    steps = fields.List(fields.Nested(StepAnswer))
    deferred = fields.List(fields.Nested(ReasonAnswer))
    not_sent = fields.List(fields.Nested(ReasonAnswer))
    contacts_reached = fields.Integer(metadata={"description": "by all flows together"})
    most_to_one_contact = fields.Integer(metadata={"description": "by all flows together"})
    events = fields.Integer(metadata={"description": "logged events replayed"})


def _event_count(shop_id: int) -> int:
    with runtime_of(current_app).reads() as db:
        counted = db.scalar(
            select(func.count()).select_from(StoredEvent).where(StoredEvent.shop_id == shop_id)
        )
    return int(counted or 0)


def flow_dry_run(
    shop_id: int, flow: Flow, options: Mapping[str, Any] | None, days: int = MAX_DAYS
) -> dict[str, Any]:
    """What ``flow``, switched on with ``options`` merged onto the stored ones, would
    have sent over the last ``days`` days (other flows as they are stored)."""
    if not 1 <= days <= MAX_DAYS:
        raise invalid([("days", message_text(f"must be between 1 and {MAX_DAYS}"))])
    events = _event_count(shop_id)
    if events > MAX_EVENTS:
        raise ApiError(
            422,
            "too_big",
            _(
                "Your shop's history is too long to replay here ({events} events, at most "
                "{most}). Run `triggerpost simulate --shop` on the server instead.",
                events=ui.number(events),
                most=ui.number(MAX_EVENTS),
            ),
        )
    runtime = runtime_of(current_app)
    lock = f"triggerpost:dry-run:{shop_id}"
    if not runtime.redis.set(lock, "1", nx=True, ex=LOCK_SECONDS):
        raise ApiError(
            409, "busy", _("A dry run for your shop is already running; try again in a minute.")
        )
    proposal = {"flows": {flow.name: {**(options or {}), "enabled": True}}}
    try:
        result = dry_runs.dry_run(runtime.reads, shop_id, days=days, settings=proposal)
    except SettingsError as exc:
        raise invalid(
            translated_fields(overview_fields(exc.problems, flow)),
            _("Some values were not accepted; nothing was replayed."),
        ) from exc
    finally:
        runtime.redis.delete(lock)
    return dry_run_summary(flow, result, days, proposed=bool(options))


def overview_fields(problems: Iterable[Problem], flow: Flow) -> list[tuple[str, str]]:
    """``flows.<name>.x`` → ``options.x``: a problem named as the form and API name it."""
    prefix = ("flows", flow.name)
    return [
        (".".join(("options", *p.path[2:])) if p.path[:2] == prefix else p.where, p.message)
        for p in problems
    ]


def dry_run_summary(
    flow: Flow, result: dry_runs.DryRun, days: int, *, proposed: bool
) -> dict[str, Any]:
    sent = {s.step: s.count for s in result.sent if s.flow == flow.name}
    after = {s.step: s.count for s in result.after if s.flow == flow.name}
    steps = [
        {
            "step": send.name,
            "label": _("Email {number}", number=number),
            "sent": sent.get(send.name, 0),
            "after": after.get(send.name, 0),
        }
        for number, send in enumerate(flow.sends, start=1)
    ]
    deferred = [
        {"reason": reason, "words": reason_text(reason), "count": count}
        for reason, count in sorted((result.deferred_by_flow.get(flow.name) or {}).items())
    ]
    not_sent = [
        {
            "state": str(state),
            "state_words": _(STATE_WORDS.get(str(state), humanized(str(state)))),
            "reason": reason,
            "words": reason_text(reason),
            "count": count,
        }
        for state, reasons in sorted((result.not_sent_by_flow.get(flow.name) or {}).items())
        for reason, count in sorted(reasons.items())
    ]
    return {
        "flow": flow.name,
        "days": days,
        "start": result.start.isoformat(),
        "until": result.until.isoformat(),
        "proposed": proposed,
        "sent_total": sum(sent.values()),
        "sent_total_words": _(
            "{count} emails would have been sent.", count=ui.number(sum(sent.values()))
        ),
        "steps": steps,
        "deferred": deferred,
        "not_sent": not_sent,
        "contacts_reached": result.contacts_reached,
        "most_to_one_contact": result.most_to_one_contact,
        "events": result.events_before + result.events_in_window,
    }


@api_route(
    "/flows/<name>/dry-run",
    methods=("POST",),
    summary="What the flow, switched on with these options, would have sent lately "
    "(nothing is saved or sent)",
    body=DryRunBody,
    answer=DryRunAnswer,
)
def post_dry_run(shop_id: int, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return flow_dry_run(shop_id, overview.known_flow(name), body["options"], body["days"])


# --- the pages ---------------------------------------------------------------------------


def _unplaced(errors: Mapping[str, str], shown: set[str]) -> list[str]:
    """Messages about no field of the form (a whole group, say): listed with the alert."""
    return [f"{where}: {message}" for where, message in errors.items() if where not in shown]


def _beside_fields(errors: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """A problem inside a field's value (``options.audience.all[0].value``) shown beside
    that field, with where inside it (as merchant.js places it)."""
    known = set(names)
    placed: dict[str, str] = {}
    for where, message in errors.items():
        name = where
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name not in known or name == where:
            placed.setdefault(where, message)
            continue
        words = f"{where[len(name) + 1 :]}: {message}"
        placed[name] = f"{placed[name]} {words}" if name in placed else words
    return placed


def _errors(exc: ApiError) -> dict[str, str]:
    found: dict[str, str] = {}
    for where, message in exc.fields:
        found.setdefault(where, message_text(message))
    return found


def _editor(
    flow: Flow,
    *,
    errors: Mapping[str, str] | None = None,
    entered: MultiDict[str, str] | None = None,
    copy_errors: Mapping[str, str] | None = None,
    copy_entered: MultiDict[str, str] | None = None,
    message: str | None = None,
    dry_run: Mapping[str, Any] | None = None,
    status: int = 200,
) -> Any:
    settings = ui.page_settings()
    if errors:
        fields = _group(f"flows.{flow.name}")["fields"]
        errors = _beside_fields(errors, [f"options.{f['name']}" for f in fields] + ["enabled"])
    form = flow_form(flow, settings, errors, entered, ui.page_shop())
    emails = copy_form(flow, settings, copy_errors, copy_entered)
    shown = {f["name"] for f in [form["switch"] or {}, *form["steps"], *form["options"]] if f}
    shown |= {
        box["name"]
        for email in emails
        for language in email["languages"]
        for box in language["fields"]
    }
    return (
        ui.render_page(
            "merchant/editor_flow.html",
            title=_(flow.title),
            flow=flow,
            summary=_(flow.summary) if flow.summary else "",
            transactional=flow.kind == MessageKind.TRANSACTIONAL,
            form=form,
            emails=emails,
            unplaced=_unplaced({**(errors or {}), **(copy_errors or {})}, shown),
            copy_help=_(_group("copy")["fields"][0]["help"]),
            message=message,
            dry_run=dry_run,
            max_days=MAX_DAYS,
        ),
        status,
    )


@pages.get("/app/flows/<flow>")
@merchant_required
def flow_editor(flow: str) -> Any:
    found = _flow_or_404(flow)
    kept = session.pop("dry_run", None)
    result = kept.get("result") if isinstance(kept, dict) and kept.get("flow") == flow else None
    entered = None
    if result is not None and isinstance(kept.get("entered"), dict):
        entered = MultiDict(kept["entered"])
    return _editor(found, dry_run=result, entered=entered)


@pages.post("/app/flows/<flow>")
@merchant_required
def save_flow(flow: str) -> Any:
    """The options form without JavaScript: saved whole, or shown again with each
    message beside its field and the values as entered."""
    found = _flow_or_404(flow)
    try:
        overview.update_flow(ui.page_shop().id, found, flow_patch(found, request.form))
    except ApiError as exc:
        return _editor(
            found,
            errors=_errors(exc),
            entered=request.form,
            message=message_text(exc.message),
            status=400,
        )
    flash(_("Saved"), "done")
    return redirect(url_for("merchant.flow_editor", flow=flow))


@pages.post("/app/flows/<flow>/copy")
@merchant_required
def save_copy(flow: str) -> Any:
    found = _flow_or_404(flow)
    try:
        update_copy(ui.page_shop().id, found, copy_patch(found, request.form))
    except ApiError as exc:
        return _editor(
            found,
            copy_errors=_errors(exc),
            copy_entered=request.form,
            message=message_text(exc.message),
            status=400,
        )
    flash(_("Saved"), "done")
    return redirect(url_for("merchant.flow_editor", flow=flow) + "#copy")


@pages.post("/app/flows/<flow>/dry-run")
@merchant_required
def dry_run_page(flow: str) -> Any:
    """The dry run without JavaScript: the options form's values as entered (not saved),
    then back to the editor with the result (post, redirect, get)."""
    found = _flow_or_404(flow)
    patch = flow_patch(found, request.form)
    try:
        result = flow_dry_run(ui.page_shop().id, found, patch["options"])
    except ApiError as exc:
        return _editor(
            found,
            errors=_errors(exc),
            entered=request.form,
            message=message_text(exc.message),
            status=exc.status,
        )
    entered = {key: value for key, value in request.form.items() if key != "csrf_token"}
    session["dry_run"] = {"flow": flow, "result": result, "entered": entered}
    return redirect(url_for("merchant.flow_editor", flow=flow) + "#dry-run")


def _platform_label(name: str) -> str:
    try:
        return adapter_registry.platform(name).label
    except LookupError:
        return name


def _settings_page(
    *,
    errors: Mapping[str, str] | None = None,
    entered: MultiDict[str, str] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Any:
    shop = ui.page_shop()
    groups = settings_form(shop, ui.page_settings(), errors, entered)
    shown = {field["name"] for group in groups for field in group["fields"]}
    return (
        ui.render_page(
            "merchant/editor_settings.html",
            title=_("Settings"),
            groups=groups,
            message=message,
            unplaced=_unplaced(errors or {}, shown),
            storefront=storefront_events.view(shop.id),
            store={
                "timezone": shop.timezone,
                "currency": shop.currency,
                "locale": shop.locale,
                "platform": _platform_label(shop.platform),
            },
        ),
        status,
    )


@pages.get("/app/settings")
@merchant_required
def settings_editor() -> Any:
    return _settings_page()


@pages.post("/app/settings")
@merchant_required
def save_settings_editor() -> Any:
    shop = ui.page_shop()
    try:
        overview.update_settings(shop.id, settings_patch(shop, request.form))
    except SettingsError as exc:
        found: dict[str, str] = {}
        for problem in exc.problems:
            found.setdefault(problem.where, message_text(problem.message))
        return _settings_page(
            errors=found,
            entered=request.form,
            message=_("Some values were not accepted; nothing was saved."),
            status=400,
        )
    flash(_("Saved"), "done")
    return redirect(url_for("merchant.settings_editor"))


ui.nav_item("merchant.settings_editor", "Settings", 80)
