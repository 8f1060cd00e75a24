"""Rendering: ``render(content) -> Rendered(subject, preheader, html, text, ...)``.

Templates are MJML with two layers of Jinja (see ``templates/layout.mjml``):
the structural layer (``[% %]``, ``[[ ]]``) is resolved when a template is
compiled, for each writing direction; the per-email layer (``{% %}``,
``{{ }}``) survives MJML inside ``<mj-raw>`` and attributes. Compiling runs
MRML (mjml-python) once per template, direction and template version (a hash
of the sources), inlines the CSS Gmail and Outlook need (MRML ignores
``<mj-style inline="inline">``) with css-inline, and keeps the result as a
compiled Jinja template with autoescape. Sending an email is then one Jinja
render: no MJML on the hot path.

Step templates put blocks from ``templates/partials.mjml`` together; a block
left out of a template costs its output nothing. ``recommended`` (other
products to offer, apart from the email's own ``products``) is a block every
marketing template places (``p.recommended_grid()``, shown when there are
any, so a flow that declares recommendations gets them in any of its emails)
and the plain-text part lists; a transactional email never shows it.

Everything a person typed (names, product titles, a merchant's copy) is
escaped; merchant copy is rendered in Jinja's sandbox with a short list of
variables and is validated before it is saved.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import css_inline
from babel.dates import format_date
from babel.numbers import format_currency, format_percent
from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    select_autoescape,
)
from mjml import mjml2html

from adapters.events import Money
from emails import i18n
from emails.content import EmailContent, MessageKind, ProductBlock, Rendered

#: what ``templates/`` holds besides step templates
_FRAMES = ("layout.mjml", "partials.mjml")


@cache
def _step_templates() -> tuple[str, ...]:
    folder = resources.files("emails").joinpath("templates")
    return tuple(
        sorted(
            entry.name.removesuffix(".mjml")
            for entry in folder.iterdir()
            if entry.name.endswith(".mjml") and entry.name not in _FRAMES
        )
    )


#: every step template, by name (a flow step names one): each ``<name>.mjml`` in
#: ``templates/``, so a new flow's template needs no change here
TEMPLATES = _step_templates()
#: what a merchant may write their own text for, per email and language
OVERRIDABLE = ("subject", "preheader", "heading", "body")
#: Gmail clips a message whose HTML is larger than about 102 KB
GMAIL_CLIP_BYTES = 102 * 1024


class TemplateCompileError(RuntimeError):
    pass


class OverrideError(ValueError):
    """A merchant's copy that cannot be used; the message says why, for the settings page."""


class _PackageLoader(BaseLoader):
    """Templates from ``emails/templates`` (inside the installed package)."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Any]:
        path = resources.files("emails").joinpath("templates", template)
        if not path.is_file():
            raise TemplateNotFound(template)
        return path.read_text("utf-8"), template, lambda: True


STRUCTURE = Environment(
    loader=_PackageLoader(),
    block_start_string="[%",
    block_end_string="%]",
    variable_start_string="[[",
    variable_end_string="]]",
    comment_start_string="[#",
    comment_end_string="#]",
    undefined=StrictUndefined,
    # builds MJML from our own files only; the per-email layer escapes everything
    autoescape=False,  # noqa: S701
    keep_trailing_newline=True,
)
EMAIL = Environment(autoescape=select_autoescape(default=True), undefined=StrictUndefined)

_JINJA_TAG = re.compile(r"\{%.*?%\}", re.S)
_PROTECTED = re.compile(r"<!--jinja:(\d+)-->")
_cache: dict[tuple[str, str, str], Template] = {}
_lock = threading.Lock()


@cache
def source_version(name: str) -> str:
    """A hash of everything a template is compiled from: a change means a recompile."""
    digest = hashlib.sha256()
    for part in ("layout.mjml", "partials.mjml", f"{name}.mjml"):
        digest.update(resources.files("emails").joinpath("templates", part).read_bytes())
    return digest.hexdigest()[:16]


def compile_html(name: str, direction: str) -> str:
    """MJML -> HTML with the per-email Jinja kept, CSS inlined. The slow part: done once."""
    if name not in TEMPLATES:
        raise TemplateCompileError(f"no template {name!r}")
    rtl = direction == "rtl"

    def css_class(cls: str) -> str:
        return f"{cls} rtl" if rtl else cls

    # per render, not a shared global: two directions may compile at once
    mjml_source = STRUCTURE.get_template(f"{name}.mjml").render(
        rtl=rtl, align="right" if rtl else "left", c=css_class
    )
    try:
        html = mjml2html(mjml_source)
    except Exception as exc:
        raise TemplateCompileError(f"{name}: MJML does not compile: {exc}") from exc
    # Jinja statements between table rows would be moved out of the table by an
    # HTML parser: hide them in comments (kept in place) while CSS is inlined.
    statements: list[str] = []

    def protect(match: re.Match[str]) -> str:
        statements.append(match.group(0))
        return f"<!--jinja:{len(statements) - 1}-->"

    html = _JINJA_TAG.sub(protect, html)
    html = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False).inline(html)
    html = _PROTECTED.sub(lambda m: statements[int(m.group(1))], html)
    # MRML marks the document (and its outer div) as of unknown language
    html = html.replace('lang="und" dir="auto"', 'lang="{{ lang }}" dir="{{ direction }}"')
    return html.replace("<body", '<body dir="{{ direction }}"', 1)


def compiled(name: str, direction: str) -> Template:
    key = (name, direction, source_version(name))
    template = _cache.get(key)
    if template is None:
        with _lock:
            template = _cache.get(key)
            if template is None:
                template = EMAIL.from_string(compile_html(name, direction))
                _cache[key] = template
    return template


# --- words and numbers ------------------------------------------------------------


def money(value: Money | None, language: str) -> str | None:
    if value is None:
        return None
    return _money(value.amount, value.currency, language)


@lru_cache(maxsize=8192)
def _money(amount: Decimal, currency: str, language: str) -> str:
    # Babel's formatting is the slowest part of an email; the same prices recur
    return format_currency(amount, currency, locale=i18n.babel_locale(language))


def discount_value(content: EmailContent, language: str) -> str | None:
    discount = content.discount
    if discount is None:
        return None
    if discount.percent is not None:
        return _percent(discount.percent, language)
    return money(discount.amount, language)


@lru_cache(maxsize=1024)
def _percent(value: Decimal, language: str) -> str:
    return format_percent(value / Decimal(100), locale=i18n.babel_locale(language))


#: what the catalog's copy may always name, empty when the email has none of it
_USUAL_VALUES = ("order_name", "points", "years")


def copy_values(content: EmailContent, language: str) -> dict[str, Any]:
    """The words' variables: the email's own values (any names), then the fixed ones.

    Values are data, possibly a person's: they fill catalog text as plain text,
    and that text is escaped where the HTML template places it.
    """
    values = {name: _shown(value, language, name) for name, value in content.values.items()}
    return {
        **dict.fromkeys(_USUAL_VALUES, ""),
        **values,
        "first_name": content.first_name or "",
        "shop_name": content.brand.shop_name,
        "discount_code": content.discount.code if content.discount else "",
        "discount_value": discount_value(content, language) or "",
    }


def _shown(value: Any, language: str, name: str = "") -> Any:
    """Money, dates and counted numbers ("2 years") as the language writes them;
    anything else as it is."""
    if name in i18n.COUNTED and isinstance(value, int) and not isinstance(value, bool):
        return i18n.counted(language, name, value)
    if isinstance(value, Money):
        return money(value, language)
    if isinstance(value, datetime):
        return _date(value, language)
    if isinstance(value, date):
        return _long_date(value, language)
    return value


def _copy(content: EmailContent, language: str, field: str, values: Mapping[str, Any]) -> str:
    override = (content.copy_overrides.get(language) or {}).get(field)
    if override:
        return i18n.fill(override, values)
    return i18n.text(language, f"{content.template}.{field}", values)


def validate_override(field: str, text: str) -> None:
    """Refuse copy that would break or leak: unknown fields, bad Jinja, unknown variables."""
    if field not in (*OVERRIDABLE, "button"):
        raise OverrideError(f"{field!r} cannot be changed (only {', '.join(OVERRIDABLE)})")
    if len(text) > 5000:
        raise OverrideError("the text is longer than 5000 characters")
    sample = dict.fromkeys(i18n.COPY_VARIABLES, "x")
    try:
        i18n.fill(text, sample)
    except TemplateError as exc:
        allowed = ", ".join("{{ " + name + " }}" for name in i18n.COPY_VARIABLES)
        raise OverrideError(
            f"this text cannot be used: {exc.message}. You may use {allowed}."
        ) from exc


# --- the email -----------------------------------------------------------------------


def render(content: EmailContent) -> Rendered:
    language = i18n.resolve_locale(content.locale, content.brand.default_locale)
    direction = i18n.direction(language)
    values = copy_values(content, language)
    subject = _copy(content, language, "subject", values)
    preheader = _copy(content, language, "preheader", values)
    heading = _copy(content, language, "heading", values)
    body = [p.strip() for p in _copy(content, language, "body", values).split("\n\n") if p.strip()]
    greeting = i18n.text(language, "greeting_named" if content.first_name else "greeting", values)
    button_label = i18n.text(language, f"{content.template}.button", values)
    marketing = content.kind == MessageKind.MARKETING
    products = _products(content.products, language)
    # offers are marketing: an email the customer gets about her own order only
    # (transactional) never carries them, whatever it was given
    recommended = _products(content.recommended, language) if marketing else []
    discount = None
    if content.discount is not None:
        label_key = (
            "discount_percent" if content.discount.percent is not None else "discount_amount"
        )
        discount = {
            "code": content.discount.code,
            "label": i18n.text(language, label_key, {"value": values["discount_value"]}),
            "expires": i18n.text(
                language,
                "discount_expires",
                {"date": _date(content.discount.expires_at, language)},
            ),
        }
    labels = {
        key: i18n.text(language, key, values)
        for key in ("why_marketing", "unsubscribe", "preferences", "quantity", "recommended")
    }
    context = {
        "lang": language,
        "direction": direction,
        "subject": subject,
        "preheader": preheader,
        "heading": heading,
        "greeting": greeting,
        "body": body,
        "button_label": button_label,
        "action_url": content.action_url,
        "products": products,
        "recommended": recommended,
        "values": values,
        "discount": discount,
        "brand": content.brand,
        "labels": labels,
        "link": content.link,
        "unsubscribe_url": content.unsubscribe_url if marketing else None,
        "preferences_url": content.preferences_url if marketing else None,
        "open_pixel_url": content.open_pixel_url,
    }
    html = compiled(content.template, direction).render(**context)
    text = _text(context)
    return Rendered(subject, preheader, html, text, language, direction)


def _products(blocks: tuple[ProductBlock, ...], language: str) -> list[dict[str, Any]]:
    return [
        {
            "title": p.title,
            "url": p.url,
            "image_url": p.image_url,
            "price": money(p.price, language),
            "quantity": p.quantity,
            "variant": p.variant,
        }
        for p in blocks
    ]


def _date(value: datetime, language: str) -> str:
    return _long_date(value.date(), language)


@lru_cache(maxsize=4096)
def _long_date(value: date, language: str) -> str:
    return format_date(value, format="long", locale=i18n.babel_locale(language))


def _text(context: Mapping[str, Any]) -> str:
    """The plain-text part, from the same words and links as the HTML."""
    link = context["link"]
    lines = [context["heading"], "", context["greeting"], ""]
    for paragraph in context["body"]:
        lines += [paragraph, ""]
    for product in context["products"]:
        details = [product["title"]]
        if product["variant"]:
            details.append(product["variant"])
        if product["quantity"] and product["quantity"] > 1:
            details.append(f"{context['labels']['quantity']} {product['quantity']}")
        if product["price"]:
            details.append(product["price"])
        lines += ["- " + " · ".join(details), "  " + link(product["url"])]
    if context["products"]:
        lines.append("")
    if context["recommended"]:
        lines += [context["labels"]["recommended"], ""]
        for product in context["recommended"]:
            details = [product["title"]] + ([product["price"]] if product["price"] else [])
            lines += ["- " + " · ".join(details), "  " + link(product["url"])]
        lines.append("")
    discount = context["discount"]
    if discount:
        lines += [discount["label"], f"    {discount['code']}", discount["expires"], ""]
    if context["action_url"]:
        lines += [f"{context['button_label']}: {link(context['action_url'])}", ""]
    brand = context["brand"]
    lines += [
        "--",
        brand.shop_name + (f" · {brand.postal_address}" if brand.postal_address else ""),
    ]
    if context["unsubscribe_url"]:
        labels = context["labels"]
        lines += [labels["why_marketing"], f"{labels['unsubscribe']}: {context['unsubscribe_url']}"]
        if context["preferences_url"]:
            lines.append(f"{labels['preferences']}: {context['preferences_url']}")
    return "\n".join(lines).strip() + "\n"
