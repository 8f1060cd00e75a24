"""The segments page in a real browser: each segment with its live count, the flow
that is for it, its conditions; at every width, accessible."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Page, expect

from jobs import shop_settings
from jobs.store.models import Contact, Shop
from tests.browser.conftest import Live, look, sign_in


def test_a_merchant_sees_each_segment_with_its_count_and_the_flows_for_it(
    live: Live, context: BrowserContext, page: Page
) -> None:
    with live.runtime.sessions.begin() as session:
        shop = session.get_one(Shop, live.woocommerce_id)
        shop_settings.update(
            session,
            shop,
            {
                "segments": {"swedes": {"field": "country", "op": "in", "value": ["SE"]}},
                "flows": {"cart_recovery": {"audience": "swedes"}},
            },
        )
        for n, country in enumerate(("SE", "SE", "NO")):
            session.add(Contact(shop_id=shop.id, email=f"seg{n}@example.se", country_code=country))
    sign_in(live, context, live.woocommerce_id)
    page.goto("/app/segments")
    expect(page.get_by_role("heading", level=1)).to_have_text("Segments")
    swedes = page.get_by_role("region", name="swedes")
    expect(swedes.locator(".count")).to_have_text("Customers in it now: 2")
    expect(swedes).to_contain_text("Used by: Cart recovery.")
    repeat = page.get_by_role("region", name="Repeat buyers (two orders or more)")
    expect(repeat.locator(".count")).to_have_text("Customers in it now: 0")
    expect(swedes.locator(".condition-words")).to_have_text("Country is one of SE")
    lapsing = page.get_by_role("region", name="Lapsing customers (last order 90 to 365 days ago)")
    expect(lapsing.locator(".condition-words > li > ul > li")).to_have_text(
        [
            "Number of orders is at least 1",
            "Days since last order is at least 90",
            "Days since last order is less than 365",
        ]
    )
    swedes.get_by_text("As data").click()
    expect(swedes.locator("pre.condition")).to_contain_text('"country"')
    look(page, "segments")
