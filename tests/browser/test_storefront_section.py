"""The settings page's storefront events section in a real browser: origins saved, a new code."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import select

from jobs.store.models import Shop
from tests.browser.conftest import SCREENSHOTS, Live, look, sign_in


def stored_origins(live: Live, shop_id: int) -> list[str] | None:
    with live.runtime.sessions() as session:
        return session.scalar(select(Shop.storefront_origins).where(Shop.id == shop_id))


def test_a_store_merchant_adds_an_origin_and_makes_a_new_connection_code(
    live: Live, context: BrowserContext, page: Page
) -> None:
    sign_in(live, context, live.woocommerce_id)
    page.goto("/app/settings#storefront")
    section = page.locator("#storefront")
    expect(section.get_by_role("heading", name="Storefront events")).to_be_visible()
    code = page.get_by_label("Connection code for the plugin")
    first = code.input_value()
    assert len(first) > 100
    look(page, "settings-storefront")

    page.get_by_label("Extra origins").fill("https://www.butik.example.se")
    section.get_by_role("button", name="Save origins").click()
    expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible()
    assert stored_origins(live, live.woocommerce_id) == ["https://www.butik.example.se"]
    expect(page.get_by_label("Extra origins")).to_have_value("https://www.butik.example.se")

    page.get_by_label("Extra origins").fill("http://insecure.example")
    section.get_by_role("button", name="Save origins").click()
    expect(page.get_by_role("alert")).to_contain_text("https address")
    assert stored_origins(live, live.woocommerce_id) == ["https://www.butik.example.se"]

    section.get_by_role("button", name="Make a new code").click()
    expect(page.get_by_role("status").filter(has_text="new code")).to_be_visible()
    assert page.get_by_label("Connection code for the plugin").input_value() != first
    look(page, "settings-storefront-new-code")
    # the section alone, for a person to look at (the page's screenshots are long)
    section.screenshot(path=SCREENSHOTS / "settings-storefront-section-woocommerce.png")


def test_a_shopify_merchant_sees_the_key_and_endpoint_and_no_plugin_code(
    live: Live, context: BrowserContext, page: Page
) -> None:
    sign_in(live, context, live.shopify_id)
    page.goto("/app/settings#storefront")
    section = page.locator("#storefront")
    expect(section.get_by_text("/events/shopify/pk_")).to_be_visible()
    expect(page.get_by_label("Connection code for the plugin")).to_have_count(0)
    look(page, "settings-storefront-shopify")
    section.screenshot(path=SCREENSHOTS / "settings-storefront-section-shopify.png")
