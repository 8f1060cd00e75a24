"""Every template, every language, full and minimal data: it renders, reads right, stays small."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from adapters.events import Money
from emails import i18n
from emails.content import Brand, DiscountBlock, EmailContent, MessageKind, ProductBlock
from emails.render import (
    GMAIL_CLIP_BYTES,
    TEMPLATES,
    OverrideError,
    compile_html,
    render,
    validate_override,
)

LANGUAGES = ("en", "sv", "nb", "ru", "fa")
#: steps whose email shows no products of its own (a greeting, a code, a question), or
#: only other products to offer (the welcome's favourites, ideas for a first order)
WITHOUT_PRODUCTS = {
    "welcome_1",
    "welcome_2",
    "welcome_related",
    "re_engagement",
    "birthday",
    "loyalty",
    "anniversary",
}
GOLDEN = Path(__file__).parent / "compiled_templates.json"

BRAND = Brand(
    shop_name="Nordljus & Co",
    storefront_url="https://nordljus.example",
    sender_name="Nordljus",
    logo_url="https://cdn.example/logo.png",
    colour="#0b6e4f",
    postal_address="Storgatan 1, 903 26 Umeå",
)
PRODUCTS = tuple(
    ProductBlock(
        title=f"Ullmössa <{n}>",
        url=f"https://nordljus.example/products/{n}",
        image_url=f"https://cdn.example/{n}.jpg",
        price=Money(Decimal("499.00"), "SEK"),
        quantity=n,
        variant="Röd / M",
    )
    for n in (1, 2, 3)
)


def full(template: str, locale: str) -> EmailContent:
    return EmailContent(
        template=template,
        kind=MessageKind.MARKETING,
        brand=BRAND,
        locale=locale,
        first_name="Åsa <script>",
        products=PRODUCTS,
        action_url="https://nordljus.example/cart/recover?token=a&b=1",
        discount=DiscountBlock("TP-7KQ2M", datetime(2026, 3, 5, tzinfo=UTC), percent=Decimal(10)),
        values={"order_name": "#1001", "points": 120, "years": 1},
        unsubscribe_url="https://tp.example/u/1/tok",
        preferences_url="https://tp.example/p/1/tok",
        link=lambda url: "https://tp.example/t/c/1/" + hashlib.sha256(url.encode()).hexdigest(),
    )


def minimal(template: str, locale: str) -> EmailContent:
    return EmailContent(
        template=template,
        kind=MessageKind.TRANSACTIONAL,
        brand=Brand(shop_name="Butik", storefront_url="https://butik.example", sender_name="Butik"),
        locale=locale,
        products=(ProductBlock(title="Mössa", url="https://butik.example/m"),),
    )


OFFERED = (
    ProductBlock(
        title="Halsduk i ull",
        url="https://nordljus.example/products/halsduk",
        image_url="https://cdn.example/halsduk.jpg",
        price=Money(Decimal("349.00"), "SEK"),
    ),
)


#: the one template only ever sent about her own order (transactional mail)
TRANSACTIONAL_TEMPLATES = ("delivered_notice",)


@pytest.mark.parametrize("template", [t for t in TEMPLATES if t not in TRANSACTIONAL_TEMPLATES])
def test_every_marketing_email_shows_the_recommendations_it_is_given_and_none_without(
    template: str,
) -> None:
    """The block is in every template, so a flow that recommends gets it in any email;
    an email without recommendations has no empty heading."""
    offered = render(replace(full(template, "en"), recommended=OFFERED))
    plain = render(full(template, "en"))
    assert "Halsduk i ull" in offered.html
    assert "https://cdn.example/halsduk.jpg" in offered.html
    assert "You may also like" in offered.html
    assert "You may also like" not in plain.html
    assert "Halsduk i ull" in offered.text


@pytest.mark.parametrize("template", TEMPLATES)
def test_an_email_about_her_own_order_never_carries_offers(template: str) -> None:
    transactional = replace(full(template, "en"), kind=MessageKind.TRANSACTIONAL)
    rendered = render(replace(transactional, recommended=OFFERED))
    assert "Halsduk i ull" not in rendered.html
    assert "Halsduk i ull" not in rendered.text
    assert "You may also like" not in rendered.text


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        #: every attribute of every tag, as (tag, name, value)
        self.attributes: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes.extend((tag, name, value) for name, value in attrs)
        if tag == "img":
            self.images.append(dict(attrs))


PIXEL = "https://tp.example/t/o/1/tok"


#: the templates that list products in rows, image beside words
PRODUCT_ROWS = ("cart_recovery_1", "cart_recovery_2", "cart_recovery_3", "delivered_notice")
IMAGE_COLUMN = 'class="mj-outlook-group-fix mj-column-per-30'


@pytest.mark.parametrize("template", [*PRODUCT_ROWS, "review_request"])
def test_a_product_without_an_image_takes_the_whole_row(template: str) -> None:
    content = full(template, "sv")
    with_image, *_ = content.products
    without = replace(content.products[1], image_url=None)
    html = render(replace(content, products=(with_image, without))).html
    assert html.count(IMAGE_COLUMN) == 1  # the image's column, for the product that has one
    assert without.title.replace("<", "&lt;").replace(">", "&gt;") in html
    none = render(replace(content, products=(without,))).html
    assert IMAGE_COLUMN not in none


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template", TEMPLATES)
def test_no_attribute_renders_none_and_the_open_pixel_only_when_opens_are_tracked(
    template: str, language: str
) -> None:
    tracked = replace(full(template, language), open_pixel_url=PIXEL)
    for content in (full(template, language), minimal(template, language), tracked):
        parser = Images()
        parser.feed(render(content).html)
        wrong = [
            (tag, name, value)
            for tag, name, value in parser.attributes
            if value == "None" or (name in ("src", "href") and not value)
        ]
        assert wrong == [], content.template
        pixels = [img for img in parser.images if img.get("src") == PIXEL]
        assert len(pixels) == (1 if content is tracked else 0)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_renders_in_every_language(template: str, language: str) -> None:
    for content in (full(template, language), minimal(template, language)):
        rendered = render(content)
        assert rendered.locale == language
        assert rendered.subject
        assert "{" not in rendered.subject
        for part in (rendered.html, rendered.text):
            assert "{{" not in part
            assert "{%" not in part
            assert "[[" not in part
            assert f"{template}." not in part  # never a raw catalog key
        assert len(rendered.html.encode()) < GMAIL_CLIP_BYTES
        parser = Images()
        parser.feed(rendered.html)
        assert all(img.get("alt") is not None for img in parser.images)
        shown = content.products and template not in WITHOUT_PRODUCTS
        if shown and content.products[0].image_url:
            assert any(img.get("alt") == "Ullmössa <1>" for img in parser.images)
        if shown:
            assert content.products[0].title in rendered.text


def test_persian_is_right_to_left_and_the_others_are_not() -> None:
    persian = render(full("cart_recovery_1", "fa-IR"))
    assert persian.direction == "rtl"
    assert '<html lang="fa" dir="rtl"' in persian.html
    assert 'direction="rtl"' not in persian.html  # the MJML attribute became table order
    assert "text-align:right" in persian.html.replace(" ", "")
    swedish = render(full("cart_recovery_1", "sv-SE"))
    assert swedish.direction == "ltr"
    assert 'dir="ltr"' in swedish.html


def test_what_people_typed_is_escaped() -> None:
    rendered = render(full("cart_recovery_1", "en"))
    assert "<script>" not in rendered.html
    assert "Åsa &lt;script&gt;" in rendered.html
    assert "Ullmössa &lt;1&gt;" in rendered.html
    assert "Nordljus &amp; Co" in rendered.html


def test_greeting_works_without_a_first_name() -> None:
    assert "Hi Åsa" in render(full("welcome_1", "en")).text
    assert render(minimal("welcome_1", "en")).text.splitlines()[2] == "Hi there,"
    assert render(minimal("welcome_1", "sv")).text.splitlines()[2] == "Hej!"


def test_money_and_dates_follow_the_language() -> None:
    english = render(full("cart_recovery_3", "en")).text
    swedish = render(full("cart_recovery_3", "sv")).text
    assert "SEK499.00" in english
    assert "March 5, 2026" in english
    assert "499,00\xa0kr" in swedish
    assert "5 mars 2026" in swedish
    assert "10\xa0%" in swedish or "10 %" in swedish


def test_plain_text_has_the_same_words_and_links() -> None:
    rendered = render(full("cart_recovery_3", "en"))
    text = rendered.text
    assert "TP-7KQ2M" in text
    assert "TP-7KQ2M" in rendered.html
    assert "Use my code: https://tp.example/t/c/1/" in text
    assert "Unsubscribe: https://tp.example/u/1/tok" in text
    # every link in the HTML body goes through the tracking wrapper, except ours
    hrefs = re.findall(r'href="([^"]+)"', rendered.html)
    assert hrefs
    assert all(h.startswith("https://tp.example/") for h in hrefs)


def test_unsubscribe_links_only_on_marketing_mail() -> None:
    marketing = render(full("cart_recovery_1", "en"))
    assert "https://tp.example/u/1/tok" in marketing.html
    transactional = render(minimal("delivered_notice", "en"))
    assert "/u/" not in transactional.html
    assert "Unsubscribe" not in transactional.text


def test_unknown_locale_falls_back_to_the_shop_then_english() -> None:
    assert i18n.resolve_locale("de-DE", "sv") == "sv"
    assert i18n.resolve_locale("de-DE", None) == "en"
    assert i18n.resolve_locale("no", None) == "nb"
    assert i18n.resolve_locale("nb_NO", None) == "nb"


def test_a_key_missing_in_a_language_falls_back_to_english(monkeypatch: pytest.MonkeyPatch) -> None:
    swedish = dict(i18n.catalogs()["sv"])
    del swedish["cart_recovery_2.heading"]
    monkeypatch.setitem(i18n.catalogs(), "sv", swedish)
    rendered = render(full("cart_recovery_2", "sv"))
    assert "Your cart is still here" in rendered.html  # English, not blank, not the key
    assert rendered.subject == "Din varukorg hos Nordljus & Co väntar"


def test_every_language_has_every_key_english_has() -> None:
    english = set(i18n.catalogs()["en"])
    step_keys = {k for k in english if k.split(".")[0] in TEMPLATES}
    assert step_keys
    for language in LANGUAGES:
        # the emails' words, and the unsubscribe and preferences pages' too
        assert english <= set(i18n.catalogs()[language]), (
            language,
            sorted(english - set(i18n.catalogs()[language])),
        )


def test_merchant_copy_overrides_per_language() -> None:
    content = full("cart_recovery_1", "sv")
    content = EmailContent(
        **{
            **content.__dict__,
            "copy_overrides": {
                "sv": {"subject": "{{ first_name }}, din korg väntar på {{ shop_name }}"}
            },
        }
    )
    assert render(content).subject == "Åsa <script>, din korg väntar på Nordljus & Co"
    # the HTML <title> is escaped like everything else
    assert "<title>Åsa &lt;script&gt;, din korg" in render(content).html


def test_a_merchant_s_own_preheader_replaces_the_built_in_one() -> None:
    content = full("cart_recovery_1", "sv")
    built_in = render(content).preheader
    content = EmailContent(
        **{
            **content.__dict__,
            "copy_overrides": {"sv": {"preheader": "Bara för dig, {{ first_name }}"}},
        }
    )
    rendered = render(content)
    assert rendered.preheader == "Bara för dig, Åsa <script>"
    assert rendered.preheader != built_in
    assert "Bara för dig, Åsa &lt;script&gt;" in rendered.html
    validate_override("preheader", "Bara för dig, {{ first_name }}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Hej {{ first_name", "cannot be used"),
        ("{{ password }}", "cannot be used"),
        ("{{ ''.__class__.__mro__ }}", "cannot be used"),
    ],
)
def test_bad_overrides_are_refused_with_a_message(text: str, message: str) -> None:
    with pytest.raises(OverrideError, match=message):
        validate_override("subject", text)


def test_good_override_passes_and_unknown_fields_do_not() -> None:
    validate_override("body", "Hej {{ first_name }}!\n\nVälkommen tillbaka.")
    with pytest.raises(OverrideError):
        validate_override("footer", "x")


def test_compiled_templates_match_the_committed_output() -> None:
    """Fails when a template no longer compiles or its output changes unexpectedly.

    After an intended change: UPDATE_GOLDEN=1 pytest tests/emails/test_render.py
    """
    found = {
        f"{name}:{direction}": hashlib.sha256(compile_html(name, direction).encode()).hexdigest()
        for name in TEMPLATES
        for direction in ("ltr", "rtl")
    }
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    assert found == json.loads(GOLDEN.read_text())
