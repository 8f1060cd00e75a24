"""What every merchant page shares: the navigation, the layout's context, the
merchant's language, and times and money as the merchant reads them.

The merchant UI speaks English and Swedish. Strings are written in English
where they are used, ``_("{count} emails sent", count=n)`` in a template or
a module, and Swedish lives in ``catalogs/sv/<area>.json`` (English text →
Swedish text), one file per area of the app so that each area keeps its own.
A string without a Swedish entry shows in English
(``tests/connector/merchant/test_ui.py`` finds every one).

The UI's language is the shop's email language (``branding.language``) when
the UI has it, else its store locale's, else English.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from flask import current_app, g, render_template, request

from connector.merchant.auth import current_shop_id
from connector.runtime import runtime_of
from jobs import shop_settings
from jobs.store.models import Shop

log = logging.getLogger(__name__)

#: the UI's languages; English is the source
LANGUAGES = ("en", "sv")
SOURCE = "en"


@cache
def catalog(language: str) -> Mapping[str, str]:
    """English → ``language`` for every area, merged (an area's file may add, never clash)."""
    merged: dict[str, str] = {}
    if language == SOURCE:
        return merged
    folder = resources.files("connector.merchant") / "catalogs" / language
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".json"):
            continue
        for english, translated in json.loads(entry.read_text("utf-8")).items():
            if merged.get(english, translated) != translated:
                raise ValueError(f"{entry.name}: {english!r} translated twice, differently")
            merged[english] = translated
    return merged


def language() -> str:
    """This request's UI language (English outside a request)."""
    try:
        chosen: str | None = g.get("ui_language")
    except RuntimeError:
        return SOURCE
    return chosen or SOURCE


def translate(text: str, /, **values: Any) -> str:
    """``text`` in the UI's language, with ``{name}`` filled from ``values``."""
    found = catalog(language()).get(text, text)
    if not values:
        return found
    try:
        return found.format_map(values)
    except (KeyError, IndexError, ValueError):
        log.warning("UI string %r could not be filled with %s", found, sorted(values))
        return text.format_map(values)


#: the name templates and modules use
_ = translate


def choose_language(shop: Shop, settings: shop_settings.ShopSettings) -> str:
    wanted = settings.branding.language
    if wanted == shop_settings.STORE_LANGUAGE:
        wanted = (shop.locale or "").split("-")[0].split("_")[0].lower()
    return wanted if wanted in LANGUAGES else SOURCE


# --- navigation --------------------------------------------------------------------------


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    label: str  # English: translated when shown
    order: int


NAV: list[NavItem] = []


def nav_item(endpoint: str, label: str, order: int) -> None:
    """Put a page in the app's navigation (called by each area at import)."""
    if any(item.endpoint == endpoint for item in NAV):
        return
    NAV.append(NavItem(endpoint, label, order))
    NAV.sort(key=lambda item: item.order)


# --- the shop as the merchant sees it ----------------------------------------------------


def shop_zone(shop: Shop) -> ZoneInfo:
    try:
        return ZoneInfo(shop.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(value: datetime | None, shop: Shop) -> str:
    """A moment as the merchant reads it: in the shop's zone, in the UI's language."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    zone = shop_zone(shop)
    return format_datetime(value.astimezone(zone), "medium", locale=language())


def local_date(value: datetime, shop: Shop) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return format_date(value.astimezone(shop_zone(shop)), "medium", locale=language())


def money(amount: Decimal | None, currency: str | None) -> str:
    if amount is None:
        return ""
    if not currency:
        return format_decimal(amount, locale=language())
    return format_currency(amount, currency, locale=language())


def number(value: int | Decimal) -> str:
    return format_decimal(value, locale=language())


# --- rendering ---------------------------------------------------------------------------


def page_shop() -> Shop:
    """The signed-in shop, loaded once per request (with its settings and UI language)."""
    shop: Shop | None = g.get("merchant_shop")
    if shop is None:
        runtime = runtime_of(current_app)
        with runtime.sessions() as db:
            shop = db.get_one(Shop, current_shop_id())
            db.expunge(shop)
        settings = shop_settings.load(shop)
        g.merchant_shop = shop
        g.merchant_settings = settings
        g.ui_language = choose_language(shop, settings)
    return shop


def page_settings() -> shop_settings.ShopSettings:
    page_shop()
    settings: shop_settings.ShopSettings = g.merchant_settings
    return settings


def render_page(template: str, *, title: str, **context: Any) -> str:
    """A merchant page in the layout: the shop, the navigation, the language."""
    shop = page_shop()
    return render_template(
        template,
        title=title,
        shop=shop,
        nav=NAV,
        ui_language=language(),
        active=request.endpoint,
        **context,
    )


def init_app(app: Any) -> None:
    """The helpers every template may call."""
    app.jinja_env.globals.update(_=translate, ui_language=language)
    app.jinja_env.filters.update(
        local_time=local_time,
        local_date=local_date,
        money=money,
        number=number,
    )
