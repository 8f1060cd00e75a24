"""The catalogs' copy: complete in every language, the same placeholders, a calm and short tone.

English is the reference: every other language says the same thing in its own
words, with exactly the variables English uses, so a translation can never
leave a reader with a blank or a raw ``{{ name }}``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from decimal import Decimal

import pytest

from adapters.events import Money
from emails import i18n
from emails.content import DiscountBlock
from emails.render import TEMPLATES, render
from jobs.flows import registry
from jobs.flows.model import MessageKind
from tests.emails.test_render import LANGUAGES, full, minimal

PLACEHOLDER = re.compile(r"\{\{ ([a-z_]+) \}\}")
#: what a string shows at most, filled with a usual shop name and order number
LONGEST = {"subject": 50, "preheader": 90, "heading": 40, "body": 240, "button": 32}
SAMPLE = {
    **dict.fromkeys(i18n.COPY_VARIABLES, ""),
    "shop_name": "Nordljus & Co",
    "order_name": "#1001",
}
#: the pressure a warm email never uses (English; the translations follow English)
PUSHY = ("last chance", "hurry", "act now", "don't miss", "only today", "sell out", "selling fast")


def keys_rendering_uses(template: str) -> set[str]:
    """Every catalog key an email of ``template`` looks up, with and without a name and discount."""
    used: set[str] = set()
    lookup = i18n.raw

    def recording(language: str, key: str) -> str:
        used.add(key)
        return lookup(language, key)

    percent = full(template, "en")
    assert percent.discount is not None
    amount = replace(
        percent,
        first_name=None,
        discount=DiscountBlock(
            "TP-1", percent.discount.expires_at, amount=Money(Decimal("50.00"), "SEK")
        ),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(i18n, "raw", recording)
        for content in (percent, amount, minimal(template, "en")):
            render(content)
    return used


def catalog(language: str) -> dict[str, str]:
    return {k: v for k, v in i18n.catalogs()[language].items() if not k.startswith("_")}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_key_an_email_uses_is_written_in_every_language(template: str, language: str) -> None:
    used = keys_rendering_uses(template)
    assert {f"{template}.{field}" for field in LONGEST} <= used
    missing = sorted(key for key in used if not i18n.catalogs()[language].get(key, "").strip())
    assert not missing, f"{template} in {language} lacks {missing}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_unsubscribe_and_preferences_pages_are_written_in_every_language(
    language: str,
) -> None:
    pages = {key for key in catalog("en") if key.startswith(("page.", "category."))}
    assert {"page.invalid", "page.unsubscribe.done", "page.preferences.all"} <= pages
    marketing = {f.category for f in registry.flows().values() if f.kind == MessageKind.MARKETING}
    pages |= {f"category.{name}" for name in marketing}
    missing = sorted(key for key in pages if not catalog(language).get(key, "").strip())
    assert not missing, f"{language} lacks {missing}"


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != "en"])
def test_every_translation_keeps_exactly_the_placeholders_of_the_english(language: str) -> None:
    english = catalog("en")
    wrong = {
        key: (text, english[key])
        for key, text in catalog(language).items()
        if key in english
        and Counter(PLACEHOLDER.findall(text)) != Counter(PLACEHOLDER.findall(english[key]))
    }
    assert not wrong, wrong


@pytest.mark.parametrize("language", LANGUAGES)
def test_placeholders_are_written_the_one_way_the_renderer_reads(language: str) -> None:
    """``{{ name }}`` only: a ``{name}``, ``{{name}`` or a Jinja statement would show as typed."""
    broken = {
        key: text
        for key, text in catalog(language).items()
        if "{" in PLACEHOLDER.sub("", text) or "}" in PLACEHOLDER.sub("", text)
    }
    assert not broken, broken


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_greeting_without_a_name_reads_as_a_whole_greeting(language: str) -> None:
    greeting = catalog(language)["greeting"]
    assert not PLACEHOLDER.search(greeting)
    assert not re.search(r"\s[,.!،]", greeting)
    assert "first_name" in PLACEHOLDER.findall(catalog(language)["greeting_named"])
    line = render(minimal("welcome_1", language)).text.splitlines()[2]
    assert line == greeting


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_copy_never_shouts_or_pushes(language: str) -> None:
    for key, text in catalog(language).items():
        words = re.findall(r"\w{3,}", PLACEHOLDER.sub("", text))
        assert not [w for w in words if w.isupper()], f"{language} {key}: {text}"
        assert "!!" not in text, f"{language} {key}"
        assert text.count("!") <= 1, f"{language} {key}: one exclamation is enough"
    english = " ".join(catalog("en").values()).lower()
    assert not [phrase for phrase in PUSHY if phrase in english]


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_email_says_it_briefly(language: str) -> None:
    too_long = {}
    for template in TEMPLATES:
        for field, longest in LONGEST.items():
            text = i18n.text(language, f"{template}.{field}", SAMPLE)
            if len(text) > longest:
                too_long[f"{template}.{field}"] = len(text)
    assert not too_long, too_long


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_counted_value_is_written_in_the_language_s_own_plural_forms(language: str) -> None:
    """ "2 years", "5 лет": every language has its own words for every form a number takes."""
    own = catalog(language)
    for number in (1, 2, 3, 5, 11, 12, 21, 22, 25, 101, 111):
        form = i18n.babel_locale(language).plural_form(number)
        assert own.get(f"count.years.{form}") or own.get("count.years.other"), (language, form)
        assert str(number) in i18n.counted(language, "years", number)


def test_counted_years_read_as_each_language_says_them() -> None:
    said = {n: i18n.counted("en", "years", n) for n in (1, 2)}
    assert said == {1: "1 year", 2: "2 years"}
    russian = {n: i18n.counted("ru", "years", n) for n in (1, 2, 5, 11, 21, 22)}
    assert russian == {
        1: "1 год",
        2: "2 года",
        5: "5 лет",
        11: "11 лет",
        21: "21 год",
        22: "22 года",
    }
    content = replace(full("anniversary", "en"), values={"years": 2})
    assert render(content).subject == "2 years with Nordljus & Co"
