"""Per-shop settings: one typed, validated schema, read through :func:`load`.

``Shop.settings`` is the merchant's JSON, sparse (a missing key means the
default). Its sections:

============  ================================================================
branding      logo, colour, postal address and language of every email
sender        the From name and address, Reply-To
engine        the shop's policy: caps, quiet hours, attribution, open tracking
consent       where a platform without a consent field finds it (WooCommerce)
birthday      where customers' birthdays are: a customer metafield, or a meta key
copy          a merchant's own subject, heading and body per email and language
flows         each flow's options, declared by the flow (``Flow.options``) plus
              the common ones (:data:`jobs.flows.model.COMMON_OPTIONS`)
segments      the merchant's saved segments: name -> condition
              (:mod:`jobs.audience.segments`), which a flow's ``audience`` names
============  ================================================================

The schema is marshmallow's; every field carries its label and help for a
merchant, and :func:`describe` gives it as plain data to a form or an API.

A write (:func:`update`, :func:`replace`) validates the whole result and is
refused with every bad field named (:class:`SettingsError`); the stored
settings are then unchanged. Settings that went bad in the store anyway
(written before validation existed, or by hand) never stop the engine: on
:func:`load` each bad field falls back to its last valid value, kept in
``Shop.settings_valid`` (a column, not a key inside the blob, so that a hand
edit that replaces the blob cannot take the fallback with it), or to its
default when there is none; unknown keys are left out. Such problems are
logged once per process and listed on ``ShopSettings.problems``;
:func:`check` (run by the intake drain, by writes and by the CLI) raises them
as a merchant notice (:data:`NOTICE`), clears it once the settings are valid
again, and refreshes the snapshot from settings that validate. A flow's
``audience`` is the exception to the defaults: one that went bad with no
valid value before it makes the flow for nobody (:data:`UNUSABLE_AUDIENCE`),
since its default, everyone, would mail those the merchant meant to leave out.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import time
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validates_schema
from marshmallow import validate as rules
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from adapters.platform import (
    DEFAULT_BIRTHDAY_METAFIELD,
    DEFAULT_CONSENT_META_KEY,
    BirthdayRule,
    ConsentRule,
)
from emails import i18n
from emails.render import OVERRIDABLE, TEMPLATES, OverrideError, validate_override
from jobs.audience import segments
from jobs.flows import registry
from jobs.flows.model import (
    Choice,
    Count,
    Days,
    Flow,
    Hours,
    Numbers,
    Option,
    Percent,
    Segment,
    Switch,
    Text,
)
from jobs.merchant.notices import clear_notice, raise_notice
from jobs.store.models import Notice, Shop

log = logging.getLogger(__name__)

#: the merchant notice that lists what is wrong with the stored settings
NOTICE = "settings_invalid"

SECTIONS = ("branding", "sender", "engine", "consent", "birthday", "copy", "flows", "segments")

UNKNOWN_SETTING = "unknown setting"
UNKNOWN_FLOW = "unknown flow"
NOT_A_GROUP = "must be a group of settings (a JSON object)"


@dataclass(frozen=True)
class Problem:
    """One bad field: where (``("engine", "quiet_start")``) and what is wrong with it."""

    path: tuple[str, ...]
    message: str

    @property
    def where(self) -> str:
        return ".".join(self.path) or "settings"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class SettingsError(ValueError):
    """A write refused: every bad field, one per line, in ``problems``."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "the settings were not saved:\n" + "\n".join(f"  {p}" for p in self.problems)
        )


# --- the typed settings ----------------------------------------------------------------


#: the ``branding.language`` choice that means "the store's own language"
STORE_LANGUAGE = "store"


@dataclass(frozen=True)
class Branding:
    logo_url: str | None
    colour: str
    postal_address: str | None
    #: the language of an email to a customer whose own we do not know, or
    #: :data:`STORE_LANGUAGE`: the store's (``Shop.locale``), else English
    language: str = STORE_LANGUAGE


@dataclass(frozen=True)
class SenderSettings:
    name: str | None
    address: str | None
    reply_to: str | None


@dataclass(frozen=True)
class EngineSettings:
    marketing_per_window: int
    window_days: int
    min_gap_hours: int
    single_flow_days: int
    quiet_end: time
    quiet_start: time
    attribution_days: int
    attribute_opens: bool
    open_tracking: bool


Copy = Mapping[str, Mapping[str, Mapping[str, str]]]


@dataclass(frozen=True)
class ShopSettings:
    """A shop's effective settings: every field typed, defaults filled in."""

    branding: Branding
    sender: SenderSettings
    engine: EngineSettings
    consent: ConsentRule
    #: template -> language -> "subject" | "preheader" | "heading" | "body" -> the merchant's text
    copy: Copy
    #: flow name -> option name -> value, for every registered flow
    flows: Mapping[str, Mapping[str, Any]]
    #: where customers' birthdays are in the platforms' payloads
    birthday: BirthdayRule
    #: the merchant's saved segments: name -> condition (as JSON, validated)
    segments: Mapping[str, Any]
    #: what was wrong with the stored settings; those fields fell back (module docstring)
    problems: tuple[Problem, ...] = ()

    def flow(self, flow: Flow) -> Mapping[str, Any]:
        """The flow's options (its defaults, for a flow registered after this was loaded)."""
        return self.flows.get(flow.name) or flow.defaults

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (times as HH:MM), for printing and the JSON API."""
        return {
            "branding": asdict(self.branding),
            "sender": asdict(self.sender),
            "engine": plain(asdict(self.engine)),
            "consent": asdict(self.consent),
            "copy": plain(self.copy),
            "flows": plain(self.flows),
            "birthday": asdict(self.birthday),
            "segments": plain(self.segments),
        }


# --- fields ----------------------------------------------------------------------------

_HHMM = re.compile(r"\d{2}:\d{2}(:\d{2})?")
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def _hhmm(value: time) -> str:
    return value.isoformat("seconds" if value.second else "minutes")


class LocalTime(fields.Field[time]):
    """A time of day in the contact's zone, written ``HH:MM`` (or ``HH:MM:SS``)."""

    default_error_messages = {"invalid": "not a time (HH:MM)"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> time:
        if not isinstance(value, str) or not _HHMM.fullmatch(value):
            raise self.make_error("invalid")
        try:
            return time.fromisoformat(value)
        except ValueError as exc:
            raise self.make_error("invalid") from exc

    def _serialize(self, value: time | None, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else _hhmm(value)


class OneOf(fields.Field[Any]):
    """One of ``choices`` (strings); an enum member when ``enum`` is given."""

    def __init__(
        self, choices: tuple[str, ...], enum: type[StrEnum] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.choices = choices
        self.enum = enum

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or value not in self.choices:
            raise ValidationError(f"must be one of: {', '.join(self.choices)}")
        return self.enum(value) if self.enum else value


class WholeNumbers(fields.Field[tuple[int, ...]]):
    """A few whole numbers, as a JSON list or written "3, 5, 10"; kept sorted, once each."""

    def __init__(self, low: int, high: int, most: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.low, self.high, self.most = low, high, most

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[int, ...]:
        if isinstance(value, str):
            parts: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
            value = [int(part) if part.isdigit() else part for part in parts]
        if not isinstance(value, list | tuple) or not value:
            raise ValidationError("must be whole numbers, e.g. 3, 5, 10")
        if any(isinstance(n, bool) or not isinstance(n, int) for n in value):
            raise ValidationError("must be whole numbers, e.g. 3, 5, 10")
        if any(not self.low <= n <= self.high for n in value):
            raise ValidationError(f"each must be between {self.low} and {self.high}")
        numbers = tuple(sorted(set(value)))
        if len(numbers) > self.most:
            raise ValidationError(f"at most {self.most} numbers")
        return numbers

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else list(value)


class CopyOverrides(fields.Field[dict[str, Any]]):
    """template -> language -> a field of OVERRIDABLE -> text (checked like a render)."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValidationError(NOT_A_GROUP)
        errors: dict[str, Any] = {}
        loaded: dict[str, Any] = {}
        languages = i18n.languages()
        for template, by_language in value.items():
            if template not in TEMPLATES:
                errors[template] = ["unknown email"]
            elif not isinstance(by_language, Mapping):
                errors[template] = [NOT_A_GROUP]
            else:
                for language, texts in by_language.items():
                    where = errors.setdefault(template, {})
                    if language not in languages:
                        where[language] = [f"unknown language (one of: {', '.join(languages)})"]
                    elif not isinstance(texts, Mapping):
                        where[language] = [NOT_A_GROUP]
                    else:
                        for name, text in texts.items():
                            problem = _copy_problem(name, text)
                            if problem:
                                where.setdefault(language, {})[name] = [problem]
                            else:
                                loaded.setdefault(template, {}).setdefault(language, {})[name] = (
                                    text
                                )
                    if not where:
                        del errors[template]
        if errors:
            raise ValidationError(errors)
        return loaded


class SegmentCondition(fields.Field[Any]):
    """A flow's audience: a segment's name (saved, or built in), or its conditions as a
    JSON object (or that object's text, as a form sends it); empty, everyone. Stored
    as the condition reads back (:func:`jobs.audience.segments.to_json`)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and value.strip().startswith("{"):
            value = _json_text(value)
        if isinstance(value, str):
            name = value.strip()
            if not name:
                return None
            problem = segments.check_name(name)
            if problem is not None:
                raise ValidationError(problem)
            return name  # that it names a segment is checked with the saved ones
        return _condition(value)


class SavedSegments(fields.Field[dict[str, Any]]):
    """name -> condition: the merchant's own segments, each named and checked."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValidationError(NOT_A_GROUP)
        if len(value) > MAX_SAVED_SEGMENTS:
            raise ValidationError(f"at most {MAX_SAVED_SEGMENTS} segments")
        problems: dict[str, Any] = {}
        saved: dict[str, Any] = {}
        for name, raw in value.items():
            problem = segments.check_name(name)
            if problem is not None:
                problems[str(name)] = problem
                continue
            try:
                saved[name] = _condition(_json_text(raw) if isinstance(raw, str) else raw)
            except ValidationError as exc:
                problems[name] = exc.messages
        if problems:
            raise ValidationError(problems)
        return saved


#: the most segments a shop may save
MAX_SAVED_SEGMENTS = 50


def _json_text(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # nested past the parser's stack: no segment
        raise ValidationError("must be a segment's name or its conditions (JSON)") from exc


def _condition(raw: Any) -> dict[str, Any]:
    try:
        return segments.to_json(segments.parse(raw))
    except segments.SegmentError as exc:
        raise ValidationError(exc.problems) from exc


def _copy_problem(name: str, text: Any) -> str | None:
    if name not in OVERRIDABLE:
        return f"{UNKNOWN_SETTING} (one of: {', '.join(OVERRIDABLE)})"
    if not isinstance(text, str):
        return "must be text"
    try:
        validate_override(name, text)
    except OverrideError as exc:
        return str(exc)
    return None


def _about(label: str, help: str, kind: str, **more: Any) -> dict[str, Any]:
    return {"label": label, "help": help, "type": kind, **more}


def _whole(default: int, low: int, high: int, label: str, help: str, unit: str) -> fields.Field:
    return fields.Integer(
        strict=True,
        load_default=default,
        validate=rules.Range(low, high, error="must be between {min} and {max}"),
        error_messages={"invalid": "must be a whole number", "null": "must be a whole number"},
        metadata=_about(label, help, "integer", unit=unit),
    )


def _switch(default: bool, label: str, help: str) -> fields.Field:
    return fields.Boolean(
        load_default=default,
        truthy={True},
        falsy={False},
        error_messages={"invalid": "must be true or false", "null": "must be true or false"},
        metadata=_about(label, help, "boolean"),
    )


def _text(
    default: str | None,
    label: str,
    help: str,
    *,
    longest: int,
    kind: str = "text",
    shape: tuple[str, str] | None = None,
) -> fields.Field:
    """``shape``: a regular expression the whole text must match, and what to say if not."""
    checks: list[rules.Validator] = [
        rules.Length(max=longest, error="must be at most {max} characters")
    ]
    if shape is not None:
        checks.append(rules.Regexp(rf"\A(?:{shape[0]})\Z", error=shape[1]))
    if kind == "email":
        checks.append(rules.Email(error="not an email address"))
    elif kind == "url":
        checks.append(rules.URL(schemes={"https", "http"}, error="not a web address (https://...)"))
    elif kind == "colour":
        checks.append(rules.Regexp(_COLOUR, error="not a colour (#rrggbb)"))
    elif default is not None:
        checks.append(rules.Regexp(r".*\S", error="must not be empty"))
    return fields.String(
        load_default=default,
        validate=checks,
        error_messages={"invalid": "must be text", "null": "must not be empty"},
        metadata=_about(label, help, kind),
    )


def _when(default: time, label: str, help: str) -> fields.Field:
    return LocalTime(
        load_default=default,
        error_messages={"null": "not a time (HH:MM)"},
        metadata=_about(label, help, "time"),
    )


def _choice(
    default: str, choices: tuple[str, ...], label: str, help: str, enum: type[StrEnum] | None = None
) -> fields.Field:
    return OneOf(
        choices,
        enum,
        load_default=default,
        error_messages={"null": f"must be one of: {', '.join(choices)}"},
        metadata=_about(label, help, "choice"),
    )


# --- the sections --------------------------------------------------------------------------


class _Section(Schema):
    """Unknown keys are errors (a typo must not be silently ignored)."""

    class Meta:
        unknown = RAISE
        register = False

    error_messages = {"unknown": UNKNOWN_SETTING, "type": NOT_A_GROUP}

    @pre_load
    def _every_group(self, data: Any, **kwargs: Any) -> Any:
        """A missing group is an empty one, so that its defaults are filled in."""
        if not isinstance(data, Mapping):
            return data
        missing: dict[str, Any] = {
            name: {}
            for name, field in self.fields.items()
            if isinstance(field, fields.Nested) and name not in data
        }
        return {**data, **missing} if missing else data


class BrandingSchema(_Section):
    logo_url = _text(
        None,
        "Logo",
        "The web address of your logo image (https://...), shown at the top of every "
        "email. Empty: your shop's name instead.",
        longest=1000,
        kind="url",
    )
    colour = _text(
        "#1f2937",
        "Brand colour",
        "The colour of buttons, your shop's name and the discount box, as #rrggbb (e.g. #1f2937).",
        longest=7,
        kind="colour",
    )
    postal_address = _text(
        None,
        "Postal address",
        "Your business's postal address, printed at the foot of every email (the law "
        "requires one in marketing emails in many countries).",
        longest=500,
    )
    language = _choice(
        STORE_LANGUAGE,
        (STORE_LANGUAGE, *i18n.languages()),
        "Language for new customers",
        "The language of emails to a customer whose own we do not know yet (she has not "
        "shopped with you, and your store does not say): en, sv, nb, ru or fa. "
        "'store': your store's language, else English. A customer who has shopped with "
        "you gets hers.",
    )


class SenderSchema(_Section):
    name = _text(
        None,
        "Sender name",
        "The name customers see the email is from. Empty: your shop's name.",
        longest=100,
    )
    address = _text(
        None,
        "Sender address",
        "The address emails are sent from. It must be on a domain set up for "
        "sending through this service, or emails land in spam. Empty: the "
        "service's own address.",
        longest=254,
        kind="email",
    )
    reply_to = _text(
        None,
        "Reply-to address",
        "Where a customer's reply goes. Empty: the sender address.",
        longest=254,
        kind="email",
    )


class EngineSchema(_Section):
    marketing_per_window = _whole(
        3,
        1,
        1000,
        "Marketing emails per customer",
        "At most this many marketing emails to one customer within the period below, "
        "from all flows together. Order emails do not count.",
        unit="emails",
    )
    window_days = _whole(
        7,
        1,
        60,
        "Counted over (days)",
        "The period the limit above counts over.",
        unit="days",
    )
    min_gap_hours = _whole(
        16,
        0,
        24 * 7,
        "Hours between marketing emails",
        "Never two marketing emails to the same customer closer together than this.",
        unit="hours",
    )
    single_flow_days = _whole(
        7,
        0,
        365,
        "Repeat a one-email flow after (days)",
        "A flow that sends a single email sends it to the same customer at most once "
        "in this many days.",
        unit="days",
    )
    quiet_end = _when(
        time(8, 0),
        "Send from",
        "Emails go out only from this time of day, in the customer's own time zone "
        "(your shop's when theirs is unknown). HH:MM.",
    )
    quiet_start = _when(
        time(21, 0),
        "Send until",
        "Emails due later wait until the next morning's sending time. HH:MM.",
    )
    attribution_days = _whole(
        5,
        1,
        90,
        "Credit an order to an email within (days)",
        "An order placed this many days after a customer clicked an email counts as "
        "earned by that email.",
        unit="days",
    )
    attribute_opens = _switch(
        False,
        "Credit opens too",
        "Also credit orders to emails that were only opened. Off by default: privacy "
        "features such as Apple Mail open every email, so opens overstate what emails earn.",
    )
    open_tracking = _switch(
        False,
        "Track opens",
        "Add an invisible image to emails to see when they are opened. Opens are "
        "unreliable (see above), and some customers dislike being tracked.",
    )


class ConsentSchema(_Section):
    meta_key = _text(
        DEFAULT_CONSENT_META_KEY,
        "Consent field",
        "For stores whose platform has no consent field of its own: the order or "
        "customer meta key your checkout's opt-in box writes. A customer with it set "
        "to yes may receive marketing emails.",
        longest=255,
    )
    read_from = _choice(
        "both",
        ("order", "customer", "both"),
        "Read consent from",
        "Whether that key is on orders, on customers, or either.",
    )
    when_absent = _choice(
        "not_subscribed",
        ("not_subscribed", "subscribed"),
        "Without the consent field",
        "What a customer without the key means. Choose subscribed only "
        "if you collect consent another way and can show it.",
    )


class BirthdaySchema(_Section):
    metafield = _text(
        DEFAULT_BIRTHDAY_METAFIELD,
        "Birthday metafield",
        "For stores with customer metafields: the one that holds the birthday, as "
        "namespace.key. The default is the standard Birth date definition "
        "(facts.birth_date). Read when a customer is created or updated.",
        longest=320,
        shape=(r"[A-Za-z0-9_-]{2,255}\.[A-Za-z0-9_-]{2,64}", "not a metafield (namespace.key)"),
    )
    meta_key = _text(
        None,
        "Birthday field",
        "For stores whose platform has no birthday field: the customer or order meta "
        "key your birthday field writes, for example billing_birth_date or birthday "
        "(it depends on the plugin; a customer's custom fields show it). Empty: "
        "birthdays are not read. Dates as YYYY-MM-DD or DD/MM/YYYY.",
        longest=255,
        shape=(r"[A-Za-z0-9_:.-]*", "not a meta key (letters, digits, _ - . :)"),
    )


_SECTION_WORDS = {
    "branding": ("Branding", "How your emails look, and the language they speak."),
    "sender": ("Sender", "Who your emails come from."),
    "engine": (
        "Sending rules",
        "How often and when customers get emails, and what counts as earned.",
    ),
    "consent": ("Marketing consent", "Where your store records who agreed to marketing emails."),
    "birthday": ("Birthdays", "Where your store keeps customers' birthdays."),
    "copy": ("Email text", "Your own words for an email, per language."),
    "flows": ("Flows", "Each automatic email series and its options."),
    "segments": (
        "Segments",
        'Your own groups of customers, by name, for a flow\'s "Only for".',
    ),
}


def _copy_field() -> fields.Field:
    return CopyOverrides(
        load_default=dict,
        error_messages={"null": NOT_A_GROUP},
        metadata=_about(
            "Your own text",
            "Replace an email's subject, preview line, heading or body in one language. "
            "You may use "
            + ", ".join("{{ " + name + " }}" for name in i18n.COPY_VARIABLES)
            + ". Paragraphs are separated by an empty line. Empty: the built-in text.",
            "copy",
        ),
    )


def _option_field(option: Option) -> fields.Field:
    kind = option.kind
    if isinstance(kind, Hours):
        return _whole(kind.default, kind.min, kind.max, option.label, option.help, "hours")
    if isinstance(kind, Days):
        return _whole(kind.default, kind.min, kind.max, option.label, option.help, "days")
    if isinstance(kind, Percent):
        return _whole(kind.default, kind.min, kind.max, option.label, option.help, "%")
    if isinstance(kind, Count):
        return _whole(kind.default, kind.min, kind.max, option.label, option.help, kind.unit)
    if isinstance(kind, Switch):
        return _switch(kind.default, option.label, option.help)
    if isinstance(kind, Text):
        field = _text(kind.default, option.label, option.help, longest=kind.max_length)
        field.metadata = {**field.metadata, "placeholders": list(kind.placeholders)}
        field.validators.append(_only_placeholders(kind.placeholders))
        return field
    if isinstance(kind, Numbers):
        return WholeNumbers(
            kind.min,
            kind.max,
            kind.most,
            load_default=kind.default,
            error_messages={"null": "must be whole numbers, e.g. 3, 5, 10"},
            metadata=_about(
                option.label, option.help, "integers", min=kind.min, max=kind.max, most=kind.most
            ),
        )
    if isinstance(kind, Choice):
        choices = tuple(member.value for member in kind.choices)
        return _choice(kind.default, choices, option.label, option.help, kind.choices)
    if isinstance(kind, Segment):
        return SegmentCondition(
            load_default=kind.default,
            allow_none=True,
            metadata=_about(option.label, option.help, "segment", choices=list(segments.BUILT_IN)),
        )
    raise TypeError(f"option {option.name}: unknown kind {kind!r}")


def _only_placeholders(allowed: tuple[str, ...]) -> Callable[[str], None]:
    """Braces only around the names the option offers (``{handle}``), nothing else."""
    words = ", ".join("{" + name + "}" for name in allowed) or "none"

    def check(value: str) -> None:
        rest = value
        for name in allowed:
            rest = rest.replace("{" + name + "}", "")
        if "{" in rest or "}" in rest:
            raise ValidationError(f"unknown placeholder (you may use: {words})")

    return check


def _flow_schema(flow: Flow) -> type[Schema]:
    fields_ = {option.name: _option_field(option) for option in flow.all_options}
    return type(f"{flow.name}Options", (_Section,), fields_)


def _nested(schema: type[Schema], label: str, help: str) -> fields.Field:
    return fields.Nested(
        schema,
        load_default=dict,
        error_messages={"type": NOT_A_GROUP, "null": NOT_A_GROUP},
        metadata=_about(label, help, "group"),
    )


def _build(flows: tuple[Flow, ...]) -> Schema:
    flow_fields = {
        flow.name: _nested(
            _flow_schema(flow), flow.title, f"When and how the {flow.title} emails go out."
        )
        for flow in flows
    }
    flows_schema = type(
        "FlowsSchema",
        (_Section,),
        {**flow_fields, "error_messages": {"unknown": UNKNOWN_FLOW, "type": NOT_A_GROUP}},
    )
    sections = {
        "branding": BrandingSchema,
        "sender": SenderSchema,
        "engine": EngineSchema,
        "consent": ConsentSchema,
        "birthday": BirthdaySchema,
        "flows": flows_schema,
    }
    top: dict[str, Any] = {
        name: _nested(schema, *_SECTION_WORDS[name]) for name, schema in sections.items()
    }
    top["copy"] = _copy_field()
    top["segments"] = SavedSegments(
        load_default=dict,
        error_messages={"null": NOT_A_GROUP},
        metadata=_about(*_SECTION_WORDS["segments"], "segments"),
    )
    top["_segments_named"] = validates_schema(_segments_named)
    return type("ShopSettingsSchema", (_Section,), top)()


def _segments_named(self: Schema, data: Mapping[str, Any], **kwargs: Any) -> None:
    """A flow's audience that names a segment names one that exists (saved or built in)."""
    known = set(data.get("segments") or {}) | set(segments.BUILT_IN)
    problems: dict[str, Any] = {}
    for flow, options in (data.get("flows") or {}).items():
        audience = options.get("audience") if isinstance(options, Mapping) else None
        if isinstance(audience, str) and audience not in known:
            problems[flow] = {
                "audience": f"no segment is named {audience!r} (yours, or one of: "
                + ", ".join(segments.BUILT_IN)
                + ")"
            }
    if problems:
        raise ValidationError({"flows": problems})


_schemas: dict[tuple[int, ...], Schema] = {}


def _current() -> tuple[tuple[int, ...], Schema, tuple[Flow, ...]]:
    """The schema for the flows registered now (a flow registered at run time joins it)."""
    flows = tuple(registry.flows().values())
    token = tuple(id(flow) for flow in flows)
    schema = _schemas.get(token)
    if schema is None:
        schema = _schemas[token] = _build(flows)
    return token, schema, flows


# --- validating and loading ----------------------------------------------------------------


def _flatten(messages: Any, path: tuple[str, ...] = ()) -> Iterator[Problem]:
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            yield from _flatten(value, path if key == "_schema" else (*path, str(key)))
    elif isinstance(messages, list | tuple):
        for message in messages:
            yield from _flatten(message, path)
    else:
        yield Problem(path, str(messages))


def _check(schema: Schema, raw: Any) -> tuple[dict[str, Any] | None, list[Problem]]:
    if not isinstance(raw, Mapping):
        return None, [Problem((), NOT_A_GROUP)]
    try:
        return schema.load(raw), []
    except ValidationError as exc:
        return None, sorted(set(_flatten(exc.messages)), key=lambda p: (p.path, p.message))


def validate(raw: Any) -> list[Problem]:
    """Every problem with ``raw`` as a whole ``Shop.settings``; empty when it is valid."""
    _token, schema, _flows = _current()
    return _check(schema, raw)[1]


def _find(tree: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(tree, Mapping) or key not in tree:
            return False, None
        tree = tree[key]
    return True, tree


def _drop(tree: dict[str, Any], path: tuple[str, ...]) -> None:
    found, parent = _find(tree, path[:-1])
    if found and isinstance(parent, dict):
        parent.pop(path[-1], None)


def _put(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        child = tree.get(key)
        if not isinstance(child, dict):
            child = tree[key] = {}
        tree = child
    tree[path[-1]] = value


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


def plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, time):
        return _hhmm(value)
    if isinstance(value, StrEnum):
        return value.value
    return value


#: a flow's audience that went bad in the store with no valid one before it: no segment
#: can have this name (:func:`jobs.audience.segments.check_name`), so the flow is for
#: nobody until the merchant fixes it, never for everybody
UNUSABLE_AUDIENCE = "(unusable)"


def _typed(data: Mapping[str, Any], problems: list[Problem]) -> ShopSettings:
    for problem in problems:
        path = problem.path
        if len(path) >= 3 and path[0] == "flows" and path[2] == "audience":
            options = data["flows"].get(path[1])
            if isinstance(options, dict) and options.get("audience") is None:
                options["audience"] = UNUSABLE_AUDIENCE
    return ShopSettings(
        branding=Branding(**data["branding"]),
        sender=SenderSettings(**data["sender"]),
        engine=EngineSettings(**data["engine"]),
        consent=ConsentRule(**data["consent"]),
        copy=_frozen(data["copy"]),
        flows=_frozen(data["flows"]),
        birthday=BirthdayRule(**data["birthday"]),
        segments=_frozen(data["segments"]),
        problems=tuple(problems),
    )


def _effective(raw: Any, snapshot: Any, schema: Schema) -> ShopSettings:
    """The stored settings with each bad field from the snapshot, or its default."""
    data, problems = _check(schema, raw)
    if data is not None:
        return _typed(data, [])
    last_valid = snapshot if isinstance(snapshot, dict) else {}
    fixed: dict[str, Any] = copy.deepcopy(raw) if isinstance(raw, dict) else {}
    for problem in problems:
        if not problem.path:
            fixed = copy.deepcopy(last_valid)
            continue
        _drop(fixed, problem.path)
        found, value = _find(last_valid, problem.path)
        if found:
            _put(fixed, problem.path, copy.deepcopy(value))
    # the snapshot validated when it was kept, but the schema may have changed since
    for _round in range(3):
        data, still = _check(schema, fixed)
        if data is not None:
            return _typed(data, problems)
        for problem in still:
            if problem.path:
                _drop(fixed, problem.path)
            else:
                fixed = {}
    return _typed(schema.load({}), problems)


_loaded: dict[tuple[str, str, tuple[int, ...]], ShopSettings] = {}
_logged: dict[int, str] = {}


def _version(shop: Shop) -> str:
    """The stored settings as text: what a cached load and the notice are keyed on."""
    return repr(shop.settings)


def load(shop: Shop) -> ShopSettings:
    """The shop's effective settings; reading never fails (see the module docstring)."""
    token, schema, _flows = _current()
    stored = _version(shop)
    key = (stored, repr(shop.settings_valid), token)
    settings = _loaded.get(key)
    if settings is None:
        if len(_loaded) > 1024:
            _loaded.clear()
        settings = _loaded[key] = _effective(
            copy.deepcopy(shop.settings if shop.settings is not None else {}),
            copy.deepcopy(shop.settings_valid),
            schema,
        )
    if settings.problems and _logged.get(shop.id) != stored:
        if len(_logged) > 10_000:
            _logged.clear()
        _logged[shop.id] = stored
        log.warning(
            "shop %s: stored settings have problems; using the last valid values for: %s",
            shop.id,
            "; ".join(map(str, settings.problems)),
        )
    return settings


_checked: dict[int, str] = {}


def check(session: Session, shop: Shop) -> ShopSettings:
    """:func:`load`, and tell the merchant: raise or clear the notice, keep the snapshot.

    Touches the store once per process for each version of the shop's settings
    (remembered when the transaction commits); otherwise it is :func:`load`.
    """
    settings = load(shop)
    stored = _version(shop)
    if _checked.get(shop.id) == stored:
        return settings
    if settings.problems:
        message = notice_message(settings.problems)
        current = session.scalar(
            select(Notice.message).where(
                Notice.shop_id == shop.id, Notice.code == NOTICE, Notice.cleared_at.is_(None)
            )
        )
        if current != message:
            raise_notice(session, shop.id, NOTICE, message)
    else:
        clear_notice(session, shop.id, NOTICE)
        if shop.settings_valid != shop.settings:
            shop.settings_valid = copy.deepcopy(shop.settings)

    def remember(_session: Session) -> None:
        if len(_checked) > 10_000:
            _checked.clear()
        _checked[shop.id] = stored

    if not session.in_nested_transaction():  # a savepoint may yet be rolled back
        event.listen(session, "after_commit", remember, once=True)
    return settings


def notice_message(problems: tuple[Problem, ...] | list[Problem]) -> str:
    return (
        "Some settings could not be used, so the last valid values (or the defaults) "
        "apply instead: " + "; ".join(map(str, problems)) + "."
    )


# --- writing -------------------------------------------------------------------------------


def merged(
    base: Mapping[str, Any], patch: Mapping[str, Any], path: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``patch`` over ``base``, group by group; a None value removes the key (its default).
    A segment's conditions (a saved one, a flow's audience) are replaced as a whole."""
    result = dict(base)
    for key, value in patch.items():
        where = (*path, key)
        if value is None:
            result.pop(key, None)
        elif (
            isinstance(value, Mapping)
            and isinstance(result.get(key), Mapping)
            and not _a_condition(where)
        ):
            result[key] = merged(result[key], value, where)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _a_condition(path: tuple[str, ...]) -> bool:
    return (len(path) == 2 and path[0] == "segments") or (
        len(path) == 3 and path[0] == "flows" and path[2] == "audience"
    )


def update(session: Session, shop: Shop, patch: Mapping[str, Any]) -> ShopSettings:
    """Merge ``patch`` into the stored settings if the result is valid, else raise."""
    return replace(session, shop, merged(shop.settings or {}, patch))


def replace(session: Session, shop: Shop, raw: Any) -> ShopSettings:
    """Store ``raw`` as the shop's whole settings if valid; :class:`SettingsError` if not."""
    problems = validate(raw)
    if problems:
        raise SettingsError(problems)
    shop.settings = copy.deepcopy(raw)
    shop.settings_valid = copy.deepcopy(raw)
    return check(session, shop)


def set_path(patch: dict[str, Any], path: str, value: Any) -> None:
    """``engine.quiet_start`` = value, into a patch (as the CLI's --set writes it)."""
    keys = tuple(key for key in path.split(".") if key)
    if not keys:
        raise ValueError(f"{path!r} names no setting")
    _put(patch, keys, value)


# --- the schema as data --------------------------------------------------------------------


def _default(field: fields.Field) -> Any:
    default = field.load_default
    if callable(default):
        default = default()
    return plain(default)


def _field(path: str, name: str, field: fields.Field) -> dict[str, Any]:
    about = dict(field.metadata)
    described: dict[str, Any] = {
        "path": path,
        "name": name,
        "type": about.pop("type"),
        "label": about.pop("label"),
        "help": about.pop("help"),
        "default": _default(field),
        "optional": bool(field.allow_none),
        **about,
    }
    for check in field.validators:
        if isinstance(check, rules.Range):
            described["min"], described["max"] = check.min, check.max
        if isinstance(check, rules.Length) and check.max is not None:
            described["max_length"] = check.max
    if isinstance(field, OneOf):
        described["choices"] = list(field.choices)
    if isinstance(field, CopyOverrides):
        described["choices"] = list(TEMPLATES)
        described["languages"] = list(i18n.languages())
        described["fields"] = list(OVERRIDABLE)
    return described


def _group(path: str, field: fields.Field) -> dict[str, Any]:
    return {
        "path": path,
        "label": field.metadata["label"],
        "help": field.metadata["help"],
        "fields": [],
    }


def describe() -> list[dict[str, Any]]:
    """Every group of settings and its fields as plain data, for a form or an API.

    Each field: path, name, type (integer, integers, boolean, text, email, url,
    colour, time, choice, copy), label, help, default, optional, and where they apply
    min, max, max_length, unit, choices.
    """
    _token, schema, _flows = _current()
    groups: list[dict[str, Any]] = []
    for name in SECTIONS:
        field = schema.fields[name]
        if name in ("copy", "segments"):
            group = _group(name, field)
            group["fields"].append(_field(name, name, field))
            groups.append(group)
            continue
        assert isinstance(field, fields.Nested)
        section = field.schema
        if name == "flows":
            for flow_name, flow_field in section.fields.items():
                assert isinstance(flow_field, fields.Nested)
                group = _group(f"flows.{flow_name}", flow_field)
                for option, option_field in flow_field.schema.fields.items():
                    path = f"flows.{flow_name}.{option}"
                    group["fields"].append(_field(path, option, option_field))
                groups.append(group)
            continue
        group = _group(name, field)
        for key, child in section.fields.items():
            group["fields"].append(_field(f"{name}.{key}", key, child))
        groups.append(group)
    return groups
