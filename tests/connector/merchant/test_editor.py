"""The flow editor and the shop settings page: every declared option drawn and
checked, the merchant's own text per language, the dry run, in English and Swedish."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import select
from werkzeug.test import TestResponse

from connector.merchant import editor
from emails import i18n
from jobs import shop_settings
from jobs.audience.segments import BUILT_IN, BUILT_IN_TITLES, MAX_NAME
from jobs.flows import registry
from jobs.flows.model import MessageKind
from jobs.runtime import Runtime
from jobs.store.models import Shop
from tests.connector.merchant.conftest import Merchant
from tests.jobs.test_dry_run import LoggedShop
from tests.support import SHOPIFY_SHOP

FLOWS = sorted(registry.built_in())
LANGUAGES = i18n.languages()


def shop_id(runtime: Runtime, platform: str = "shopify") -> int:
    with runtime.sessions() as session:
        return session.scalars(select(Shop.id).where(Shop.platform == platform)).one()


def stored(runtime: Runtime, platform: str = "shopify") -> Any:
    """The shop's settings as stored (what "nothing changed" compares)."""
    with runtime.sessions() as session:
        return session.scalars(select(Shop.settings).where(Shop.platform == platform)).one()


def loaded(runtime: Runtime, platform: str = "shopify") -> shop_settings.ShopSettings:
    with runtime.sessions() as session:
        shop = session.scalars(select(Shop).where(Shop.platform == platform)).one()
        return shop_settings.load(shop)


def post(merchant: Merchant, url: str, form: dict[str, Any]) -> TestResponse:
    """A plain form post, as a browser without JavaScript sends it (with the page's token)."""
    return merchant.client.post(url, data={"csrf_token": merchant.csrf, **form})


def open_page(merchant: Merchant, url: str) -> str:
    answer = merchant.client.get(url)
    assert answer.status_code == 200, answer.status_code
    return answer.get_data(as_text=True)


def fields_of(answer: Any) -> dict[str, str]:
    assert answer.status_code == 400, answer.get_data(as_text=True)
    return {item["field"]: item["message"] for item in answer.get_json()["fields"]}


def error_beside(page: str, name: str) -> str:
    """The message the page shows beside the field ``name``."""
    found = re.search(r'data-error-for="' + re.escape(name) + r'"[^>]*>([^<]*)<', page)
    assert found is not None, name
    return html.unescape(found.group(1)).strip()


def value_of(page: str, name: str) -> str:
    found = re.search(r'name="' + re.escape(name) + r'" value="([^"]*)"', page)
    assert found is not None, name
    return html.unescape(found.group(1))


# --- every flow's editor, from its declaration ----------------------------------------------


@pytest.mark.parametrize("name", FLOWS)
def test_every_flow_s_editor_shows_every_option_it_declares(merchant: Merchant, name: str) -> None:
    flow = registry.flows()[name]
    page = open_page(merchant, f"/app/flows/{name}")
    for option in flow.all_options:
        field = "enabled" if option.name == "enabled" else f"options.{option.name}"
        if option.name == "consent" and flow.kind == MessageKind.TRANSACTIONAL:
            # order emails go whatever the policy: no choice to offer
            assert f'name="{field}"' not in page
            continue
        assert f'name="{field}"' in page, field
        assert str(escape(option.label)) in page, option.label
        assert f'data-error-for="{field}"' in page
    for template in editor.flow_templates(flow):
        for language in LANGUAGES:
            for part in ("subject", "preheader", "heading", "body"):
                assert f'name="copy.{template}.{language}.{part}"' in page
    # Persian is written right to left in its own boxes
    persian = re.findall(r'<(?:input|textarea)[^>]*lang="fa"[^>]*>', page)
    assert persian
    assert all('dir="rtl"' in box for box in persian)
    assert all('dir="ltr"' in box for box in re.findall(r'<input[^>]*lang="sv"[^>]*>', page))


def test_each_option_kind_gets_its_input(merchant: Merchant) -> None:
    page = open_page(merchant, "/app/flows/cart_recovery")
    delay = re.search(r'<input type="number"[^>]*name="options.delay_1_hours"[^>]*>', page)
    assert delay is not None
    assert 'min="0"' in delay.group(0)
    assert 'max="168"' in delay.group(0)
    assert re.search(r'type="checkbox"[^>]*name="options.email_3"', page)
    assert re.search(r'<select[^>]*name="options.consent"', page)
    assert "Subscribed or customer" in page
    review = open_page(merchant, "/app/flows/review_request")
    # a text option shows the placeholders it allows
    assert "<code>{url}</code>" in review
    assert "<code>{product_id}</code>" in review
    loyalty = open_page(merchant, "/app/flows/loyalty")
    assert value_of(loyalty, "options.milestones") == "3, 5, 10"


def test_a_flow_registered_later_gets_its_editor_without_code(
    merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = registry.flows()["thank_you"]
    from dataclasses import replace

    from jobs.flows.model import Days, Option

    extra = Option("pause_days", Days(3, max=9), label="Pause (days)", help="A made-up pause.")
    flow = replace(base, name="made_up", title="Made-up flow", options=(*base.options, extra))
    monkeypatch.setitem(registry.flows(), "made_up", flow)
    page = open_page(merchant, "/app/flows/made_up")
    assert 'name="options.pause_days"' in page
    assert "Pause (days)" in page
    answer = merchant.api("PATCH", "/flows/made_up", {"options": {"pause_days": 10}})
    assert fields_of(answer) == {"options.pause_days": "must be between 0 and 9"}


def test_an_unknown_flow_is_not_found(merchant: Merchant) -> None:
    assert merchant.client.get("/app/flows/no_such_flow").status_code == 404
    answer = merchant.api("PATCH", "/flows/no_such_flow/copy", {"copy": {}})
    assert answer.status_code == 404
    assert answer.get_json()["error"] == "not_found"


# --- options through the API -----------------------------------------------------------


def test_good_values_of_every_kind_are_saved(merchant: Merchant, runtime: Runtime) -> None:
    changes = {
        "cart_recovery": {
            "delay_1_hours": 2,  # Hours
            "email_3": False,  # Switch
            "discount_percent": 15,  # Percent
            "consent": "subscribed_or_customer",  # Choice
        },
        "loyalty": {"milestones": [2, 4, 8]},  # Numbers
        "review_request": {"review_url": "https://reviews.example/write?p={product_id}"},  # Text
        "new_product": {"most_products": 3},  # Count
        "welcome": {"wait_days": 5},  # Days
    }
    for name, options in changes.items():
        answer = merchant.api("PATCH", f"/flows/{name}", {"options": options})
        assert answer.status_code == 200, answer.get_json()
    settings = loaded(runtime)
    cart = settings.flows["cart_recovery"]
    assert cart["delay_1_hours"] == 2
    assert cart["email_3"] is False
    assert cart["discount_percent"] == 15
    assert cart["consent"] == "subscribed_or_customer"
    assert tuple(settings.flows["loyalty"]["milestones"]) == (2, 4, 8)
    assert settings.flows["review_request"]["review_url"].endswith("{product_id}")
    assert settings.flows["new_product"]["most_products"] == 3
    assert settings.flows["welcome"]["wait_days"] == 5


BAD_OPTIONS = [
    ("cart_recovery", "delay_1_hours", 169, "must be between 0 and 168"),
    ("cart_recovery", "delay_1_hours", -1, "must be between 0 and 168"),
    ("cart_recovery", "delay_1_hours", "soon", "must be a whole number"),
    ("cart_recovery", "delay_1_hours", 1.5, "must be a whole number"),
    ("cart_recovery", "email_3", "yes", "must be true or false"),
    ("cart_recovery", "discount_percent", 95, "must be between 1 and 90"),
    ("cart_recovery", "consent", "everyone", "must be one of: subscribed, subscribed_or_customer"),
    ("cart_recovery", "no_such_option", 1, "unknown setting"),
    ("welcome", "wait_days", 0, "must be between 1 and 30"),
    ("new_product", "most_products", 7, "must be between 1 and 6"),
    ("loyalty", "milestones", [3, "x"], "must be whole numbers, e.g. 3, 5, 10"),
    ("loyalty", "milestones", [0], "each must be between 1 and 1000"),
    ("loyalty", "milestones", list(range(1, 12)), "at most 10 numbers"),
    (
        "review_request",
        "review_url",
        "{url}?sku={sku}",
        "unknown placeholder (you may use: {url}, {handle}, {product_id})",
    ),
    ("review_request", "review_url", "x" * 501, "must be at most 500 characters"),
    ("review_request", "review_url", 42, "must be text"),
]


@pytest.mark.parametrize(("flow", "option", "value", "message"), BAD_OPTIONS)
def test_every_option_kind_refuses_bad_values_and_saves_nothing(
    merchant: Merchant, runtime: Runtime, flow: str, option: str, value: Any, message: str
) -> None:
    before = stored(runtime)
    body = {"enabled": False, "options": {option: value, "expires_hours": 30}}
    answer = merchant.api("PATCH", f"/flows/{flow}", body)
    assert fields_of(answer) == {f"options.{option}": message}
    # the good values beside the bad one were not saved either
    assert stored(runtime) == before
    assert loaded(runtime).flows[flow]["enabled"] is registry.flows()[flow].defaults["enabled"]


# --- the merchant's own text -----------------------------------------------------------


def test_own_text_per_language_is_saved_and_emptied_back_to_the_built_in(
    merchant: Merchant, runtime: Runtime
) -> None:
    body = {
        "copy": {
            "cart_recovery_1": {
                "sv": {
                    "subject": "{{ first_name }}, din korg väntar",
                    "preheader": "Bara för dig",
                    "heading": "Glömde du något?",
                    "body": "Hej!\n\nDin korg finns kvar hos {{ shop_name }}.",
                },
                "fa": {"subject": "سبد شما منتظر است"},
            },
            "cart_recovery_3": {"en": {"subject": "Last call, {{ first_name }}"}},
        }
    }
    answer = merchant.api("PATCH", "/flows/cart_recovery/copy", body)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["copy"]["cart_recovery_1"]["fa"] == {"subject": "سبد شما منتظر است"}
    copy = loaded(runtime).copy
    assert copy["cart_recovery_1"]["sv"]["preheader"] == "Bara för dig"
    assert copy["cart_recovery_3"]["en"]["subject"] == "Last call, {{ first_name }}"

    page = open_page(merchant, "/app/flows/cart_recovery")
    assert value_of(page, "copy.cart_recovery_1.fa.subject") == "سبد شما منتظر است"

    emptied = {"copy": {"cart_recovery_1": {"sv": {"subject": "", "preheader": None}}}}
    assert merchant.api("PATCH", "/flows/cart_recovery/copy", emptied).status_code == 200
    swedish = loaded(runtime).copy["cart_recovery_1"]["sv"]
    assert "subject" not in swedish
    assert "preheader" not in swedish
    assert swedish["heading"] == "Glömde du något?"


BAD_COPY = [
    (
        {"cart_recovery_1": {"sv": {"subject": "Hej {{ coupon }}"}}},
        "copy.cart_recovery_1.sv.subject",
        "You may use {{ first_name }}",
    ),
    (
        {"cart_recovery_1": {"sv": {"body": "Hej {{ first_name"}}},
        "copy.cart_recovery_1.sv.body",
        "this text cannot be used",
    ),
    (
        {"cart_recovery_1": {"sv": {"body": "x" * 5001}}},
        "copy.cart_recovery_1.sv.body",
        "must be at most 5000 characters",
    ),
    (
        {"cart_recovery_1": {"sv": {"subject": 7}}},
        "copy.cart_recovery_1.sv.subject",
        "must be text",
    ),
    (
        {"cart_recovery_1": {"sv": {"footer": "x"}}},
        "copy.cart_recovery_1.sv.footer",
        "Unknown field.",
    ),
    (
        {"cart_recovery_1": {"de": {"subject": "x"}}},
        "copy.cart_recovery_1.de",
        "unknown language (one of: en, fa, nb, ru, sv)",
    ),
    (  # another flow's email is not this flow's to change
        {"birthday": {"sv": {"subject": "x"}}},
        "copy.birthday",
        "must be one of: cart_recovery_1, cart_recovery_2, cart_recovery_3",
    ),
    ({"cart_recovery_1": "x"}, "copy.cart_recovery_1", shop_settings.NOT_A_GROUP),
]


@pytest.mark.parametrize(("copy", "where", "message"), BAD_COPY)
def test_bad_own_text_is_refused_with_the_words_and_saves_nothing(
    merchant: Merchant, runtime: Runtime, copy: dict[str, Any], where: str, message: str
) -> None:
    good = {"cart_recovery_2": {"en": {"subject": "Still there?"}}}
    before = stored(runtime)
    answer = merchant.api("PATCH", "/flows/cart_recovery/copy", {"copy": {**good, **copy}})
    found = fields_of(answer)
    assert list(found) == [where]
    assert message in found[where]
    assert stored(runtime) == before


def test_the_copy_body_must_be_json_with_copy(merchant: Merchant, runtime: Runtime) -> None:
    before = stored(runtime)
    answer = merchant.client.patch(
        "/api/v1/flows/cart_recovery/copy",
        data="copy=x",
        headers={"X-CSRF-Token": merchant.csrf, "Content-Type": "text/plain"},
    )
    assert answer.status_code == 415
    assert "copy" in fields_of(merchant.api("PATCH", "/flows/cart_recovery/copy", {}))
    assert "shop_id" in fields_of(
        merchant.api("PATCH", "/flows/cart_recovery/copy", {"copy": {}, "shop_id": 2})
    )
    assert stored(runtime) == before


# --- without JavaScript: the plain form posts --------------------------------------------


def test_the_options_form_saves_without_javascript(merchant: Merchant, runtime: Runtime) -> None:
    answer = post(
        merchant,
        "/app/flows/cart_recovery",
        {
            "enabled": "false",
            "options.delay_1_hours": " 3 ",
            "options.email_2": "false",  # the hidden value of an unchecked box
            "options.email_3": "false",
            "options.consent": "subscribed",
            "options.discount_percent": "20",
        },
    )
    assert answer.status_code == 302
    options = loaded(runtime).flows["cart_recovery"]
    assert options["enabled"] is False
    assert options["delay_1_hours"] == 3
    assert options["email_2"] is False
    assert options["discount_percent"] == 20
    # a checked box sends its hidden "false" and then "true": the last one counts
    form = {"options.email_2": ["false", "true"], "csrf_token": merchant.csrf}
    assert merchant.client.post("/app/flows/cart_recovery", data=form).status_code == 302
    assert loaded(runtime).flows["cart_recovery"]["email_2"] is True


def test_a_bad_form_post_shows_each_message_beside_its_field_and_saves_nothing(
    merchant: Merchant, runtime: Runtime
) -> None:
    before = stored(runtime)
    answer = post(
        merchant,
        "/app/flows/cart_recovery",
        {
            "enabled": "false",
            "options.delay_1_hours": "soon",
            "options.delay_2_hours": "999",
            "options.discount_percent": "25",
        },
    )
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert error_beside(page, "options.delay_1_hours") == "must be a whole number"
    assert error_beside(page, "options.delay_2_hours") == "must be between 0 and 168"
    assert error_beside(page, "options.discount_percent") == ""
    # the merchant's own entries stay in the form, the good ones too
    assert value_of(page, "options.delay_1_hours") == "soon"
    assert value_of(page, "options.delay_2_hours") == "999"
    assert value_of(page, "options.discount_percent") == "25"
    assert "nothing was saved" in page
    assert stored(runtime) == before


def test_the_copy_form_saves_or_names_the_unknown_placeholder(
    merchant: Merchant, runtime: Runtime
) -> None:
    name = "copy.welcome_1.nb.subject"
    before = stored(runtime)
    answer = post(
        merchant,
        "/app/flows/welcome/copy",
        {name: "Velkommen {{ fornavn }}", "copy.welcome_1.sv.subject": "Välkommen!"},
    )
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert "{{ first_name }}" in error_beside(page, name)
    assert value_of(page, name) == "Velkommen {{ fornavn }}"
    assert stored(runtime) == before

    answer = post(merchant, "/app/flows/welcome/copy", {name: "Velkommen, {{ first_name }}"})
    assert answer.status_code == 302
    assert loaded(runtime).copy["welcome_1"]["nb"]["subject"] == "Velkommen, {{ first_name }}"


# --- the settings page -------------------------------------------------------------------


def test_the_settings_page_shows_every_shop_wide_group_by_type(merchant: Merchant) -> None:
    page = open_page(merchant, "/app/settings")
    for name in ("branding.logo_url", "branding.colour", "sender.address", "engine.quiet_end"):
        assert f'name="{name}"' in page
    assert re.search(r'<input type="email"[^>]*name="sender.reply_to"', page)
    assert re.search(r'<input type="url"[^>]*name="branding.logo_url"', page)
    assert re.search(r'<input type="time"[^>]*name="engine.quiet_start"', page)
    assert re.search(r'<select[^>]*name="branding.language"', page)
    assert re.search(r'type="checkbox"[^>]*name="engine.open_tracking"', page)
    assert re.search(r'<textarea[^>]*name="branding.postal_address"', page)
    # what only a store without consent or birthday fields reads is not a Shopify shop's
    assert 'name="consent.meta_key"' not in page
    assert 'name="birthday.meta_key"' not in page
    assert 'name="birthday.metafield"' in page
    # no flow and no copy here: they have the flow editor
    assert 'name="flows.' not in page
    assert 'name="copy' not in page
    # the store's own facts are shown, not edited
    assert "SEK" in page
    assert 'name="currency"' not in page


def test_a_store_without_a_consent_field_gets_its_consent_settings(
    woo_merchant: Merchant,
) -> None:
    shown = open_page(woo_merchant, "/app/settings")
    assert 'name="consent.meta_key"' in shown
    assert 'name="consent.when_absent"' in shown
    assert 'name="birthday.meta_key"' in shown
    assert 'name="birthday.metafield"' not in shown


def test_settings_saved_by_the_api_and_by_the_form(merchant: Merchant, runtime: Runtime) -> None:
    body = {
        "branding": {"colour": "#aa3300", "postal_address": "Storgatan 1, 111 22 Stockholm"},
        "sender": {"name": "Nordljus", "reply_to": "hej@nordljus.example"},
        "engine": {"quiet_start": "20:30", "min_gap_hours": 12, "open_tracking": True},
    }
    assert merchant.api("PATCH", "/settings", body).status_code == 200
    settings = loaded(runtime)
    assert settings.branding.colour == "#aa3300"
    assert settings.sender.reply_to == "hej@nordljus.example"
    assert settings.engine.min_gap_hours == 12
    assert settings.engine.open_tracking is True

    answer = post(
        merchant,
        "/app/settings",
        {
            "branding.colour": "#112233",
            "branding.logo_url": "",  # emptied: back to the shop's name
            "sender.reply_to": "",
            "engine.quiet_start": "21:15",
            "engine.open_tracking": "false",
        },
    )
    assert answer.status_code == 302
    settings = loaded(runtime)
    assert settings.branding.colour == "#112233"
    assert settings.sender.reply_to is None
    assert settings.engine.quiet_start.isoformat() == "21:15:00"
    assert settings.engine.open_tracking is False
    assert settings.sender.name == "Nordljus"  # not in the form: untouched


BAD_SETTINGS = [
    ("branding", "colour", "red", "not a colour (#rrggbb)"),
    ("branding", "logo_url", "ftp://x.example/logo.png", "not a web address (https://...)"),
    ("branding", "language", "de", "must be one of: store, en, fa, nb, ru, sv"),
    ("branding", "postal_address", "x" * 501, "must be at most 500 characters"),
    ("sender", "address", "not-an-address", "not an email address"),
    ("engine", "quiet_end", "25:00", "not a time (HH:MM)"),
    ("engine", "marketing_per_window", 0, "must be between 1 and 1000"),
    ("engine", "window_days", "a week", "must be a whole number"),
    ("engine", "open_tracking", "yes", "must be true or false"),
    ("engine", "no_such_rule", 1, "unknown setting"),
    ("birthday", "metafield", "birthday", "not a metafield (namespace.key)"),
]


@pytest.mark.parametrize(("group", "name", "value", "message"), BAD_SETTINGS)
def test_every_settings_field_refuses_bad_values_and_saves_nothing(
    merchant: Merchant, runtime: Runtime, group: str, name: str, value: Any, message: str
) -> None:
    before = stored(runtime)
    body = (
        {group: {name: value}, "sender": {"name": "Changed"}}
        if group != "sender"
        else {group: {name: value, "name": "Changed"}}
    )
    answer = merchant.api("PATCH", "/settings", body)
    assert fields_of(answer) == {f"{group}.{name}": message}
    assert stored(runtime) == before


def test_a_bad_settings_form_shows_the_messages_and_keeps_the_entries(
    merchant: Merchant, runtime: Runtime
) -> None:
    before = stored(runtime)
    answer = post(
        merchant,
        "/app/settings",
        {
            "branding.colour": "blue",
            "engine.min_gap_hours": "200",
            "sender.name": "A good name",
        },
    )
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert error_beside(page, "branding.colour") == "not a colour (#rrggbb)"
    assert error_beside(page, "engine.min_gap_hours") == "must be between 0 and 168"
    assert value_of(page, "branding.colour") == "blue"
    assert value_of(page, "sender.name") == "A good name"
    assert stored(runtime) == before


# --- who may ---------------------------------------------------------------------------


def test_without_a_session_pages_and_the_api_answer_401(
    client: FlaskClient, runtime: Runtime
) -> None:
    before = stored(runtime)
    for url in ("/app/flows/cart_recovery", "/app/settings"):
        assert client.get(url).status_code == 401
    # a request that names credentials is judged by them alone (no CSRF token needed):
    # a session token that is not one is no session
    forged = {"Authorization": "Bearer not-a-session-token"}
    for method, url, body in (
        ("PATCH", "/api/v1/flows/cart_recovery/copy", {"copy": {}}),
        ("POST", "/api/v1/flows/cart_recovery/dry-run", {}),
        ("PATCH", "/api/v1/settings", {"branding": {"colour": "#000000"}}),
    ):
        answer = client.open(url, method=method, json=body, headers=forged)
        assert answer.status_code == 401, url
        assert answer.get_json()["error"] == "unauthorized"
    # without a cookie, a form post is refused before anything is read
    for url in ("/app/flows/cart_recovery", "/app/flows/cart_recovery/copy", "/app/settings"):
        assert client.post(url, data={"options.delay_1_hours": "5"}).status_code in (401, 403)
    assert stored(runtime) == before


def test_a_cookie_without_the_csrf_token_is_refused_and_changes_nothing(
    merchant: Merchant, runtime: Runtime
) -> None:
    before = stored(runtime)
    client = merchant.client
    body = {"copy": {"cart_recovery_1": {"sv": {"subject": "Hej"}}}}
    answer = client.patch("/api/v1/flows/cart_recovery/copy", json=body)
    assert answer.status_code == 403
    answer = client.patch(
        "/api/v1/flows/cart_recovery/copy", json=body, headers={"X-CSRF-Token": "forged"}
    )
    assert answer.status_code == 403
    assert client.post("/api/v1/flows/cart_recovery/dry-run", json={}).status_code == 403
    form = {"options.delay_1_hours": "5"}
    assert client.post("/app/flows/cart_recovery", data=form).status_code == 403
    form = {"copy.cart_recovery_1.sv.subject": "Hej"}
    assert client.post("/app/flows/cart_recovery/copy", data=form).status_code == 403
    form = {"options.delay_1_hours": "5", "csrf_token": "forged"}
    assert client.post("/app/flows/cart_recovery/dry-run", data=form).status_code == 403
    assert client.post("/app/settings", data={"branding.colour": "#000000"}).status_code == 403
    assert stored(runtime) == before


def test_a_session_changes_only_its_own_shop(woo_merchant: Merchant, runtime: Runtime) -> None:
    other_before = stored(runtime, "shopify")
    woo = woo_merchant
    assert woo.api("PATCH", "/settings", {"branding": {"colour": "#123456"}}).status_code == 200
    body = {"copy": {"cart_recovery_1": {"sv": {"subject": "Hej"}}}}
    assert woo.api("PATCH", "/flows/cart_recovery/copy", body).status_code == 200
    assert post(woo, "/app/flows/cart_recovery", {"options.delay_1_hours": "7"}).status_code == 302
    assert loaded(runtime, "woocommerce").branding.colour == "#123456"
    assert loaded(runtime, "woocommerce").flows["cart_recovery"]["delay_1_hours"] == 7
    # the other shop is named nowhere a request could change: its settings are as they were
    assert stored(runtime, "shopify") == other_before
    # and a body cannot name another shop
    answer = woo.api("PATCH", "/settings", {"shop": SHOPIFY_SHOP, "branding": {}})
    assert "shop" in fields_of(answer)


# --- "Only for": a segment chosen from a list ----------------------------------------------

SWEDES = {"field": "country", "op": "in", "value": ["SE"]}
WRITTEN = {
    "all": [
        {"field": "country", "op": "in", "value": ["SE", "NO"]},
        {"not": {"field": "total_spent", "op": "gte", "value": "1000"}},
    ]
}
AUDIENCE = "options.audience"


class _Select(HTMLParser):
    """The options of one ``<select>``: (its group's label or None, value, text, selected)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.inside = False
        self.group: str | None = None
        self.options: list[tuple[str | None, str, str, bool]] = []
        self.select: dict[str, str | None] | None = None
        self._option: tuple[str, bool] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "select" and found.get("name") == self.name:
            self.inside = True
            self.select = found
        elif self.inside and tag == "optgroup":
            self.group = found.get("label")
        elif self.inside and tag == "option":
            self._option = (found.get("value") or "", "selected" in found)
            self._text = ""

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "option" and self._option is not None:
            value, selected = self._option
            self.options.append((self.group, value, self._text.strip(), selected))
            self._option = None
        elif tag == "optgroup":
            self.group = None
        elif tag == "select":
            self.inside = False


def only_for(page: str) -> _Select:
    found = _Select(AUDIENCE)
    found.feed(page)
    assert found.select is not None, "no select for the flow's audience"
    return found


def chosen(page: str) -> tuple[str, str]:
    """The selected option's value and text (exactly one is selected)."""
    selected = [(value, text) for _group, value, text, on in only_for(page).options if on]
    assert len(selected) == 1, selected
    return selected[0]


def save_segment(merchant: Merchant, name: str, condition: Any) -> None:
    answer = merchant.api("PUT", f"/segments/{name}", {"condition": condition})
    assert answer.status_code == 200, answer.get_data(as_text=True)


def no_segment(name: str) -> str:
    return f"no segment is named {name!r} (yours, or one of: " + ", ".join(BUILT_IN) + ")"


def test_only_for_lists_everyone_the_shop_s_segments_and_the_built_ins(
    merchant: Merchant,
) -> None:
    save_segment(merchant, "swedes", SWEDES)
    save_segment(merchant, "vip", {"field": "total_spent", "op": "gte", "value": "500"})
    save_segment(merchant, "a-team", {"field": "tags", "op": "any_of", "value": ["staff"]})
    page = open_page(merchant, "/app/flows/cart_recovery")
    select = only_for(page)
    assert select.select is not None
    assert select.select["data-type"] == "choice"  # merchant.js sends its value as text
    assert select.select["id"] == "f-options-audience"
    assert re.search(r'<label for="f-options-audience">Only for</label>', page)
    built_ins = [
        ("Built in", name, BUILT_IN_TITLES[name], False) for name in BUILT_IN if name != "vip"
    ]
    assert select.options == [
        (None, "", "Everyone", True),
        # the shop's own by name; its "vip" replaces the built-in one, shown once
        ("Your segments", "a-team", "a-team", False),
        ("Your segments", "swedes", "swedes", False),
        ("Your segments", "vip", "vip", False),
        *built_ins,
    ]
    # beside it, where segments are made, and the option's help as it is
    assert re.search(r'</select>\s*<a href="/app/segments">Make or change segments</a>', page)
    assert str(escape(_help_of("audience"))) in page
    assert 'name="options.audience" value=' not in page  # no text box to type into


def _help_of(option: str) -> str:
    return next(o.help for o in registry.flows()["cart_recovery"].all_options if o.name == option)


def test_a_segment_chosen_without_javascript_is_saved_and_shown_chosen(
    merchant: Merchant, runtime: Runtime
) -> None:
    save_segment(merchant, "swedes", SWEDES)
    answer = post(merchant, "/app/flows/cart_recovery", {AUDIENCE: "swedes"})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert loaded(runtime).flows["cart_recovery"]["audience"] == "swedes"
    assert chosen(open_page(merchant, "/app/flows/cart_recovery")) == ("swedes", "swedes")

    assert (
        post(merchant, "/app/flows/cart_recovery", {AUDIENCE: "repeat-buyers"}).status_code == 302
    )
    assert loaded(runtime).flows["cart_recovery"]["audience"] == "repeat-buyers"
    assert chosen(open_page(merchant, "/app/flows/cart_recovery")) == (
        "repeat-buyers",
        BUILT_IN_TITLES["repeat-buyers"],
    )
    # "Everyone" sends an empty value: the flow is for everyone again
    assert post(merchant, "/app/flows/cart_recovery", {AUDIENCE: ""}).status_code == 302
    assert loaded(runtime).flows["cart_recovery"]["audience"] is None
    assert chosen(open_page(merchant, "/app/flows/cart_recovery")) == ("", "Everyone")


def test_what_merchant_js_sends_for_the_list_is_saved(merchant: Merchant, runtime: Runtime) -> None:
    # collect() sends a select of data-type "choice" as its value, a string
    save_segment(merchant, "swedes", SWEDES)
    answer = merchant.api("PATCH", "/flows/cart_recovery", {"options": {"audience": "swedes"}})
    assert answer.status_code == 200, answer.get_json()
    assert loaded(runtime).flows["cart_recovery"]["audience"] == "swedes"
    answer = merchant.api("PATCH", "/flows/cart_recovery", {"options": {"audience": ""}})
    assert answer.status_code == 200, answer.get_json()
    assert loaded(runtime).flows["cart_recovery"]["audience"] is None


def test_conditions_written_for_the_flow_are_offered_in_words_and_kept_by_a_save(
    merchant: Merchant, runtime: Runtime
) -> None:
    save_segment(merchant, "swedes", SWEDES)
    body = {"options": {"audience": WRITTEN}}
    assert merchant.api("PATCH", "/flows/cart_recovery", body).status_code == 200
    page = open_page(merchant, "/app/flows/cart_recovery")
    value, text = chosen(page)
    assert text == "The conditions written for this flow"
    assert json.loads(value) == WRITTEN
    # beneath, the conditions in words, with the amount in the shop's currency
    words = re.search(
        r'<div class="written-conditions" id="f-options-audience-written">(.*?)</div>', page, re.S
    )
    assert words is not None
    lines = [html.unescape(line).strip() for line in re.findall(r"<li>([^<]*)", words.group(1))]
    assert lines[0] == "All of these:"
    assert lines[1] == "Country is one of SE, NO"
    assert lines[2] == "Not this:"
    assert lines[3].startswith("Total spent is at least ")
    assert "1,000" in lines[3]
    select = only_for(page).select
    assert select is not None
    assert "f-options-audience-written" in (select.get("aria-describedby") or "").split()

    # the form saved as it is (another option changed) keeps the conditions unchanged
    answer = post(
        merchant, "/app/flows/cart_recovery", {AUDIENCE: value, "options.delay_1_hours": "5"}
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)
    options = loaded(runtime).flows["cart_recovery"]
    assert shop_settings.plain(options["audience"]) == WRITTEN
    assert options["delay_1_hours"] == 5
    # and so does what merchant.js sends: the option's value, the JSON text
    body = {"options": {"audience": value, "delay_1_hours": 6}}
    assert merchant.api("PATCH", "/flows/cart_recovery", body).status_code == 200
    assert shop_settings.plain(loaded(runtime).flows["cart_recovery"]["audience"]) == WRITTEN

    # a post refused for another field shows the written conditions still chosen
    answer = post(
        merchant, "/app/flows/cart_recovery", {AUDIENCE: value, "options.delay_1_hours": "soon"}
    )
    assert answer.status_code == 400
    assert chosen(answer.get_data(as_text=True)) == (value, "The conditions written for this flow")

    # a segment chosen instead replaces them; the written option is gone then
    assert post(merchant, "/app/flows/cart_recovery", {AUDIENCE: "swedes"}).status_code == 302
    after = open_page(merchant, "/app/flows/cart_recovery")
    assert chosen(after) == ("swedes", "swedes")
    assert "The conditions written for this flow" not in after


def test_a_choice_comes_back_chosen_after_a_refused_post(
    merchant: Merchant, runtime: Runtime
) -> None:
    save_segment(merchant, "swedes", SWEDES)
    before = stored(runtime)
    answer = post(
        merchant, "/app/flows/cart_recovery", {AUDIENCE: "swedes", "options.delay_1_hours": "999"}
    )
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert chosen(page) == ("swedes", "swedes")
    assert error_beside(page, AUDIENCE) == ""
    assert stored(runtime) == before


NOT_JSON = "must be a segment's name or its conditions (JSON)"
#: what a forged form may send as the audience, where the API names the problem, and what
FORGED = [
    ("no-such", AUDIENCE, no_segment("no-such")),
    (
        "Not A Name!",
        AUDIENCE,
        (
            f"a name is at most {MAX_NAME} small letters, digits, - and _ "
            "(starting with a letter or digit)"
        ),
    ),
    ("{oops", AUDIENCE, NOT_JSON),
    ('{"a": ' * 3000 + "1" + "}" * 3000, AUDIENCE, NOT_JSON),  # past the parser's stack
    (
        '{"field": "country", "op": "in", "value": ["Sverige"]}',
        f"{AUDIENCE}.value[0]",
        "must be a two-letter country code, e.g. SE",
    ),
]


@pytest.mark.parametrize(("value", "where", "message"), FORGED)
def test_a_forged_value_is_refused_beside_the_list_and_nothing_saved(
    merchant: Merchant, runtime: Runtime, value: str, where: str, message: str
) -> None:
    before = stored(runtime)
    answer = post(
        merchant, "/app/flows/cart_recovery", {AUDIENCE: value, "options.delay_1_hours": "5"}
    )
    assert answer.status_code == 400, answer.status_code
    page = answer.get_data(as_text=True)
    inside = where[len(AUDIENCE) + 1 :]  # a problem inside the conditions: said where
    assert error_beside(page, AUDIENCE) == (f"{inside}: {message}" if inside else message)
    assert chosen(page)[0] == value  # shown as sent, selected, so the merchant sees it
    assert stored(runtime) == before
    # the API (merchant.js's way) refuses it the same
    body = {"options": {"audience": value, "delay_1_hours": 5}}
    assert fields_of(merchant.api("PATCH", "/flows/cart_recovery", body)) == {where: message}
    assert stored(runtime) == before


def test_a_name_forged_into_the_list_is_marked_as_no_segment(merchant: Merchant) -> None:
    answer = post(merchant, "/app/flows/cart_recovery", {AUDIENCE: "no-such"})
    assert chosen(answer.get_data(as_text=True)) == ("no-such", "no-such (not a segment)")


def test_another_shop_s_segment_is_neither_offered_nor_accepted(
    merchant: Merchant, woo_merchant: Merchant, runtime: Runtime
) -> None:
    save_segment(woo_merchant, "wholesale", {"field": "tags", "op": "any_of", "value": ["b2b"]})
    assert (
        post(woo_merchant, "/app/flows/cart_recovery", {AUDIENCE: "wholesale"}).status_code == 302
    )
    assert "wholesale" in [
        v for _g, v, _t, _s in only_for(open_page(woo_merchant, "/app/flows/cart_recovery")).options
    ]

    page = open_page(merchant, "/app/flows/cart_recovery")
    assert "wholesale" not in [value for _group, value, _text, _on in only_for(page).options]
    assert "wholesale" not in page
    before = stored(runtime, "shopify")
    answer = post(merchant, "/app/flows/cart_recovery", {AUDIENCE: "wholesale"})
    assert answer.status_code == 400
    assert error_beside(answer.get_data(as_text=True), AUDIENCE) == no_segment("wholesale")
    refused = merchant.api("PATCH", "/flows/cart_recovery", {"options": {"audience": "wholesale"}})
    assert fields_of(refused) == {AUDIENCE: no_segment("wholesale")}
    assert stored(runtime, "shopify") == before
    assert loaded(runtime, "woocommerce").flows["cart_recovery"]["audience"] == "wholesale"


def test_a_segment_gone_from_the_store_shows_as_deleted_and_a_save_refuses_it(
    merchant: Merchant, runtime: Runtime
) -> None:
    # what the store holds when a segment went away under a flow that was for it
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, merchant.shop_id)
        raw = dict(shop.settings or {})
        raw["flows"] = {**(raw.get("flows") or {}), "cart_recovery": {"audience": "gone"}}
        shop.settings = raw
    assert loaded(runtime).flows["cart_recovery"]["audience"] == shop_settings.UNUSABLE_AUDIENCE
    page = open_page(merchant, "/app/flows/cart_recovery")
    assert chosen(page) == ("gone", "gone (deleted)")
    answer = post(merchant, "/app/flows/cart_recovery", {AUDIENCE: "gone"})
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert error_beside(page, AUDIENCE) == no_segment("gone")
    assert chosen(page) == ("gone", "gone (deleted)")
    # choosing another one mends it
    assert post(merchant, "/app/flows/cart_recovery", {AUDIENCE: "vip"}).status_code == 302
    assert loaded(runtime).flows["cart_recovery"]["audience"] == "vip"

    # conditions the store holds that no longer read: the flow is for nobody, and says so
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, merchant.shop_id)
        raw = dict(shop.settings or {})
        raw["flows"] = {"cart_recovery": {"audience": {"field": "shoe_size", "op": "eq"}}}
        shop.settings = raw
        shop.settings_valid = None
    assert loaded(runtime).flows["cart_recovery"]["audience"] == shop_settings.UNUSABLE_AUDIENCE
    page = open_page(merchant, "/app/flows/cart_recovery")
    assert chosen(page) == (
        shop_settings.UNUSABLE_AUDIENCE,
        "Nobody: what was stored here could not be read",
    )
    assert post(merchant, "/app/flows/cart_recovery", {AUDIENCE: ""}).status_code == 302
    assert loaded(runtime).flows["cart_recovery"]["audience"] is None


def test_only_for_in_swedish(merchant: Merchant, runtime: Runtime) -> None:
    assert merchant.api("PATCH", "/settings", {"branding": {"language": "sv"}}).status_code == 200
    save_segment(merchant, "swedes", SWEDES)
    page = open_page(merchant, "/app/flows/cart_recovery")
    groups = {group for group, _value, _text, _on in only_for(page).options}
    assert groups == {None, "Dina segment", "Inbyggda"}
    assert chosen(page) == ("", "Alla")
    assert ("Inbyggda", "repeat-buyers", "Återkommande köpare (två order eller fler)", False) in (
        only_for(page).options
    )
    assert "Skapa eller ändra segment" in page
    answer = post(merchant, "/app/flows/cart_recovery", {AUDIENCE: "no-such"})
    beside = error_beside(answer.get_data(as_text=True), AUDIENCE)
    assert beside.startswith("inget segment heter 'no-such' (dina egna, eller något av: ")
    refused = merchant.api("PATCH", "/flows/cart_recovery", {"options": {"audience": "{oops"}})
    assert fields_of(refused) == {
        AUDIENCE: "måste vara ett segments namn eller dess villkor (JSON)"
    }
    body = {"options": {"audience": WRITTEN}}
    assert merchant.api("PATCH", "/flows/cart_recovery", body).status_code == 200
    page = open_page(merchant, "/app/flows/cart_recovery")
    assert chosen(page)[1] == "Villkoren som skrivits för det här flödet"
    assert "Land är något av SE, NO" in page


# --- the dry run -----------------------------------------------------------------------


@pytest.fixture
def history(client: FlaskClient, runtime: Runtime) -> LoggedShop:
    """The Shopify shop with the log real webhooks leave: two carts left lately."""
    shop = LoggedShop(client, runtime)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    shop.checkout(1, now - timedelta(days=10))
    shop.checkout(2, now - timedelta(days=6))
    shop.drain()
    return shop


def test_the_dry_run_counts_what_the_flow_would_have_sent(
    merchant: Merchant, runtime: Runtime, history: LoggedShop
) -> None:
    # switched off: the dry run shows it switched on, before the merchant does
    merchant.api("PATCH", "/flows/cart_recovery", {"enabled": False})
    before = stored(runtime)

    answer = merchant.api("POST", "/flows/cart_recovery/dry-run", {})
    assert answer.status_code == 200, answer.get_json()
    result = answer.get_json()
    steps = {step["step"]: step["sent"] for step in result["steps"]}
    assert steps == {"email_1": 2, "email_2": 2, "email_3": 2}
    assert result["sent_total"] == 6
    assert result["sent_total_words"] == "6 emails would have been sent."
    assert result["days"] == 30
    assert result["contacts_reached"] == 2
    assert all(item["words"] for item in result["deferred"] + result["not_sent"])

    fewer = merchant.api("POST", "/flows/cart_recovery/dry-run", {"options": {"email_3": False}})
    assert {s["step"]: s["sent"] for s in fewer.get_json()["steps"]}["email_3"] == 0
    assert fewer.get_json()["proposed"] is True
    # nothing of it was saved
    assert stored(runtime) == before


def test_the_dry_run_refuses_bad_values_and_too_long_windows(
    merchant: Merchant, runtime: Runtime, history: LoggedShop, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "/flows/cart_recovery/dry-run"
    bad = merchant.api("POST", url, {"options": {"delay_1_hours": 500}})
    assert fields_of(bad) == {"options.delay_1_hours": "must be between 0 and 168"}
    assert "days" in fields_of(merchant.api("POST", url, {"days": 31}))
    assert "days" in fields_of(merchant.api("POST", url, {"days": "30"}))
    assert "options.enabled" in fields_of(
        merchant.api("POST", url, {"options": {"enabled": False}})
    )

    monkeypatch.setattr(editor, "MAX_EVENTS", 1)
    too_big = merchant.api("POST", url, {})
    assert too_big.status_code == 422
    assert "triggerpost simulate --shop" in too_big.get_json()["message"]
    monkeypatch.setattr(editor, "MAX_EVENTS", 3_000)

    # one at a time per shop
    runtime.redis.set(f"triggerpost:dry-run:{shop_id(runtime)}", "1")
    busy = merchant.api("POST", url, {})
    assert busy.status_code == 409
    assert "already running" in busy.get_json()["message"]


def test_the_dry_run_takes_the_only_for_list_s_values(
    merchant: Merchant, runtime: Runtime, history: LoggedShop
) -> None:
    # the dry-run button sends the same form: a saved segment, or the written conditions
    save_segment(merchant, "swedes", SWEDES)
    url = "/flows/cart_recovery/dry-run"
    for value in ("swedes", json.dumps(WRITTEN), ""):
        answer = merchant.api("POST", url, {"options": {"audience": value}, "days": 30})
        assert answer.status_code == 200, (value, answer.get_json())
    refused = merchant.api("POST", url, {"options": {"audience": "no-such"}})
    assert fields_of(refused) == {AUDIENCE: no_segment("no-such")}
    answer = post(merchant, "/app/flows/cart_recovery/dry-run", {AUDIENCE: "no-such"})
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert error_beside(page, AUDIENCE) == no_segment("no-such")
    assert chosen(page) == ("no-such", "no-such (not a segment)")


def test_the_dry_run_without_javascript(merchant: Merchant, history: LoggedShop) -> None:
    answer = post(
        merchant,
        "/app/flows/cart_recovery/dry-run",
        {"enabled": "true", "options.delay_1_hours": "1", "options.email_3": "false"},
    )
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/app/flows/cart_recovery#dry-run")
    page = open_page(merchant, "/app/flows/cart_recovery")
    assert "4 emails would have been sent." in page
    assert re.search(r'data-step="email_3"><th scope="row">Email 3</th><td>0</td>', page)
    # the values it ran with are still in the form, and shown once only
    assert not re.search(r'name="options.email_3"[^>]*checked', page)
    assert "emails would have been sent" not in open_page(merchant, "/app/flows/cart_recovery")

    bad = post(merchant, "/app/flows/cart_recovery/dry-run", {"options.delay_1_hours": "x"})
    assert bad.status_code == 400
    assert error_beside(bad.get_data(as_text=True), "options.delay_1_hours") == (
        "must be a whole number"
    )


# --- Swedish -------------------------------------------------------------------------------


def test_every_declared_text_has_a_swedish_translation() -> None:
    """A new option (or group, unit, choice) without Swedish fails here, named."""
    swedish = editor_catalog()
    missing = [text for text in editor.declared_strings() if text not in swedish]
    assert missing == []


def test_the_editor_s_own_words_have_swedish_translations() -> None:
    swedish = editor_catalog()
    own = [
        *editor.REASON_WORDS.values(),
        *editor.STATE_WORDS.values(),
        *editor.COPY_LABELS.values(),
        *editor.MESSAGES,
    ]
    assert [text for text in own if text not in swedish] == []


def editor_catalog() -> dict[str, str]:
    from connector.merchant import ui

    return dict(ui.catalog("sv"))


def test_a_swedish_shop_edits_in_swedish(merchant: Merchant, runtime: Runtime) -> None:
    assert merchant.api("PATCH", "/settings", {"branding": {"language": "sv"}}).status_code == 200
    page = open_page(merchant, "/app/flows/cart_recovery")
    assert "Första påminnelsen efter (timmar)" in page
    assert "Prenumerant eller tidigare kund" in page
    answer = post(merchant, "/app/flows/cart_recovery", {"options.delay_1_hours": "200"})
    assert error_beside(answer.get_data(as_text=True), "options.delay_1_hours") == (
        "måste vara mellan 0 och 168"
    )
    assert "Vissa värden godtogs inte; inget sparades." in answer.get_data(as_text=True)
    settings = open_page(merchant, "/app/settings")
    assert "Varumärkesfärg" in settings
    copy = {"copy": {"cart_recovery_1": {"sv": {"subject": "{{ kupong }}"}}}}
    refused = merchant.api("PATCH", "/flows/cart_recovery/copy", copy)
    assert fields_of(refused)["copy.cart_recovery_1.sv.subject"].startswith(
        "texten kan inte användas"
    )
    # the options and settings the page sends to the API are refused in Swedish too
    refused = merchant.api("PATCH", "/flows/cart_recovery", {"options": {"email_3": "ja"}})
    assert fields_of(refused) == {"options.email_3": "måste vara sant eller falskt"}
    assert refused.get_json()["message"] == "Vissa värden godtogs inte; inget sparades."
    refused = merchant.api("PATCH", "/settings", {"branding": {"colour": "röd"}})
    assert fields_of(refused) == {"branding.colour": "inte en färg (#rrggbb)"}


def test_messages_are_matched_with_their_values() -> None:
    from flask import Flask, g

    app = Flask(__name__)
    with app.test_request_context():
        g.ui_language = "sv"
        assert editor.message_text("must be between 0 and 168") == "måste vara mellan 0 och 168"
        assert editor.message_text("at most 10 numbers") == "högst 10 tal"
        assert editor.message_text("something new") == "something new"
        g.ui_language = "en"
        assert editor.message_text("must be between 0 and 168") == "must be between 0 and 168"
