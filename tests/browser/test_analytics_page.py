"""The Analytics page in a real browser, over a shop whose cart reminder earned an order."""

from __future__ import annotations

from babel.numbers import format_currency
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import Live, look, sign_in
from tests.browser.shop_data import EARNED, earned_order


def test_the_merchant_reads_what_the_cart_reminder_earned(
    live: Live, context: BrowserContext, page: Page
) -> None:
    shop = earned_order(live.runtime)
    sign_in(live, context, shop.shop_id)
    page.goto("/app/analytics")
    page.get_by_label("From", exact=True).fill("2026-03-01")
    page.get_by_label("To", exact=True).fill("2026-03-31")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(f"{live.url}/app/analytics?from=2026-03-01&to=2026-03-31&flow=")

    earned = format_currency(EARNED, "SEK", locale="en")  # SEK 499.00
    totals = page.get_by_role("region", name="In these days")
    expect(totals.get_by_role("definition").last).to_have_text(earned)
    row = page.get_by_role("row", name="Cart recovery")
    expect(row.get_by_role("cell").nth(6)).to_have_text(earned)  # its Revenue column
    expect(row.get_by_role("cell").nth(5)).to_have_text("1")  # one order
    expect(page.get_by_role("img").first).to_be_visible()  # the chart
    look(page, "analytics")

    # another flow's figures alone: nothing of the cart's order
    page.get_by_label("Flow", exact=True).select_option(label="Welcome series")
    page.get_by_role("button", name="Show").click()
    expect(totals.get_by_role("definition").last).to_have_text(
        format_currency(0, "SEK", locale="en")
    )
