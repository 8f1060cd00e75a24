"""A merchant in a real browser: signs in, switches flows, and sees each page whole at
laptop and phone width, with no serious accessibility problem (see conftest.look)."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Page, expect

from jobs.store.models import Shop
from tests.browser.conftest import Live, look, saved_switch, sign_in


def test_a_merchant_switches_a_flow_off_and_on_again(
    live: Live, context: BrowserContext, page: Page
) -> None:
    sign_in(live, context, live.shopify_id)
    page.goto("/app/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    look(page, "overview")

    switch = page.get_by_role("switch", name="Cart recovery")
    form = page.locator('[data-flow="cart_recovery"]')
    expect(switch).to_have_attribute("aria-checked", "true")
    switch.click()
    expect(form.get_by_role("status")).to_have_text("Saved")
    expect(switch).to_have_attribute("aria-checked", "false")
    expect(switch).to_have_text("Off")
    assert saved_switch(live, live.shopify_id, "cart_recovery") is False
    assert saved_switch(live, live.shopify_id, "welcome") is True  # only the one switched

    page.reload()  # what the page shows is what was saved
    expect(switch).to_have_attribute("aria-checked", "false")
    switch.click()
    expect(form.get_by_role("status")).to_have_text("Saved")
    expect(switch).to_have_attribute("aria-checked", "true")
    assert saved_switch(live, live.shopify_id, "cart_recovery") is True
    answer = page.request.get("/api/v1/flows")
    flows = {flow["name"]: flow["enabled"] for flow in answer.json()["flows"]}
    assert flows["cart_recovery"] is True


def test_the_switch_works_without_javascript(live: Live, no_script: Page) -> None:
    page = no_script
    page.goto("/app/")
    switch = page.get_by_role("switch", name="Welcome series")
    switch.click()  # a plain form post, then back to the overview with a message
    expect(page.get_by_role("status").filter(has_text="Welcome series is off.")).to_be_visible()
    expect(switch).to_have_attribute("aria-checked", "false")
    assert saved_switch(live, live.woocommerce_id, "welcome") is False
    look(page, "overview-no-script", scripts=False)


def test_a_swedish_shop_gets_the_app_in_swedish(
    live: Live, context: BrowserContext, page: Page
) -> None:
    with live.runtime.sessions.begin() as session:
        session.get_one(Shop, live.woocommerce_id).locale = "sv-SE"  # the store's language
    sign_in(live, context, live.woocommerce_id)
    page.goto("/app/")
    expect(page.locator("html")).to_have_attribute("lang", "sv")
    expect(page.get_by_role("heading", level=1)).to_have_text("Översikt")
    switch = page.get_by_role("switch", name="Påminnelse om varukorgen")
    switch.click()
    expect(page.locator('[data-flow="cart_recovery"]').get_by_role("status")).to_have_text("Sparat")
    expect(switch).to_have_text("Av")
    assert saved_switch(live, live.woocommerce_id, "cart_recovery") is False
    look(page, "overview-sv")  # the longer Swedish words still fit a phone
