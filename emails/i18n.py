"""Languages: one JSON catalog per language in ``emails/catalogs``.

A translator extends a catalog, or adds a language, by editing or adding a
file (``de.json``); the language is then offered as it is. A key missing in
a language falls back to English, never to a blank or to the key itself.
Strings may use a few variables (``{{ first_name }}``, ``{{ shop_name }}``,
``{{ order_name }}``, ...), rendered in Jinja's sandbox. Right-to-left comes
from Babel's locale data, so Persian (and any later Arabic or Hebrew) is laid
out right to left without a list here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.numbers import format_decimal
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

FALLBACK = "en"
#: forms a contact's locale arrives in that name a catalog under another code
ALIASES = {"no": "nb", "nn": "nb", "nb-no": "nb", "per": "fa", "pes": "fa"}

#: what copy (catalog strings and a merchant's overrides) may refer to
COPY_VARIABLES = (
    "first_name",
    "shop_name",
    "order_name",
    "discount_code",
    "discount_value",
    "points",
    "years",
)

#: values the copy names with their number in the language's plural form ("2 years",
#: "2 года", "۲ سال"): each written from the catalog's ``count.<name>.<form>``
#: strings (Babel's plural forms: ``one``, ``few``, ``many``, ``other``, ...)
COUNTED = ("years",)

# plain text out: the HTML template escapes it where it is placed
SANDBOX = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class CatalogError(LookupError):
    pass


@cache
def catalogs() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for entry in resources.files("emails").joinpath("catalogs").iterdir():
        if entry.name.endswith(".json"):
            found[entry.name.removesuffix(".json")] = json.loads(entry.read_text("utf-8"))
    if FALLBACK not in found:
        raise CatalogError("the English catalog is missing")
    return found


def languages() -> tuple[str, ...]:
    return tuple(sorted(catalogs()))


def resolve_locale(locale: str | None, default: str | None = None) -> str:
    """The catalog for a contact's locale ("sv-SE", "nb_NO", "fa-IR"), else the shop's.

    English when neither names a language we have.
    """
    for candidate in (locale, default):
        if not candidate:
            continue
        tag = candidate.strip().replace("_", "-").lower()
        for form in (tag, ALIASES.get(tag), tag.split("-")[0], ALIASES.get(tag.split("-")[0])):
            if form and form in catalogs():
                return form
    return FALLBACK


@cache
def babel_locale(language: str) -> Locale:
    try:
        return Locale.parse(language)
    except (UnknownLocaleError, ValueError):
        return Locale.parse(FALLBACK)


def direction(language: str) -> str:
    return "rtl" if babel_locale(language).character_order == "right-to-left" else "ltr"


def raw(language: str, key: str) -> str:
    """The string for ``key`` in ``language``, or in English; a key English lacks is a bug."""
    text = catalogs().get(language, {}).get(key)
    if text:
        return text
    try:
        return catalogs()[FALLBACK][key]
    except KeyError as exc:
        raise CatalogError(f"no English text for {key!r}") from exc


_SIMPLE = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


@cache
def _compiled(text: str) -> Any:
    """Plain text, a list of literal and variable parts, or (anything else) a sandboxed template.

    Nearly every catalog string is plain or only names variables; those skip
    Jinja entirely, which is most of the cost of an email's words.
    """
    if "{%" not in text and "{#" not in text:
        rest = _SIMPLE.sub("", text)
        if "{{" not in rest:
            pieces = _SIMPLE.split(text)  # literal, name, literal, name, ...
            return tuple(pieces)
    return SANDBOX.from_string(text)


def fill(text: str, values: Mapping[str, Any]) -> str:
    compiled = _compiled(text)
    if isinstance(compiled, tuple):
        out = []
        for index, piece in enumerate(compiled):
            if index % 2 == 0:
                out.append(piece)
            elif piece in values:
                out.append(str(values[piece]))
            else:  # the same refusal the sandbox gives an unknown name
                SANDBOX.from_string("{{ " + piece + " }}").render(**values)
        return "".join(out).strip()
    return str(compiled.render(**values)).strip()


def text(language: str, key: str, values: Mapping[str, Any]) -> str:
    try:
        return fill(raw(language, key), values)
    except TemplateError as exc:
        raise CatalogError(f"{language} {key}: {exc}") from exc


def counted(language: str, name: str, number: int) -> str:
    """``number`` of ``name`` as the language writes it ("1 year", "2 years", "5 лет").

    The language's own string for the number's plural form, else its ``other``
    form; a language without either falls back to English, like any string.
    """
    for lang in (language, FALLBACK):
        own = catalogs().get(lang, {})
        form = babel_locale(lang).plural_form(number)
        for key in (f"count.{name}.{form}", f"count.{name}.other"):
            if own.get(key):
                shown = format_decimal(number, locale=babel_locale(lang))
                return text(lang, key, {"count": shown})
    raise CatalogError(f"no English text for count.{name}")
