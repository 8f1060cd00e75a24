"""Activity, Privacy and Connection health in a real browser, and one shop's customer
and export opened by URL from another shop's session: refused, as if they did not exist."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import responses
from playwright.sync_api import Browser, BrowserContext, Page, expect

from adapters.platform import AdminApiError
from jobs.intake import privacy
from jobs.platforms import shopify
from jobs.store.models import Shop, now
from tests.adapters.shopify_web_pixel import WebPixels
from tests.browser.conftest import Live, look, open_context, open_page, sign_in
from tests.browser.shop_data import earned_order
from tests.support import SHOPIFY_SHOP

ANNA = "anna@example.se"  # the customer whose cart reminder earned an order


@pytest.fixture
def owner(browser: Browser, live: Live) -> Iterator[tuple[int, Page]]:
    """The shop where Anna shops (its cart reminder earned her order), signed in."""
    shop_id = earned_order(live.runtime).shop_id
    context = open_context(browser, live)
    sign_in(live, context, shop_id)
    yield shop_id, open_page(context)
    context.close()


def test_the_owner_reads_a_customers_timeline(owner: tuple[int, Page]) -> None:
    _, page = owner
    page.goto("/app/activity")
    page.get_by_label("Customer's email address").fill(ANNA)
    page.get_by_role("button", name="Show the timeline").click()
    timeline = page.get_by_role("region", name=f"Timeline of {ANNA}")
    expect(timeline.locator('[data-outcome="sent"]').first).to_be_visible()
    expect(timeline.locator('[data-outcome="ordered"]')).to_have_count(1)
    look(page, "activity")


def test_another_shops_customer_and_export_are_not_found_by_url(
    live: Live, owner: tuple[int, Page], context: BrowserContext, page: Page
) -> None:
    shop_id, theirs = owner
    with live.runtime.sessions.begin() as session:
        export = privacy.merchant_export(session, session.get_one(Shop, shop_id), ANNA, now())
        assert export is not None
        export_id = export.id
    timeline_api = f"/api/v1/contacts/{ANNA}/timeline"
    # the owner reaches both (so the refusals below are about the shop, not the URL)
    assert theirs.request.get(f"/app/privacy/{export_id}.json").status == 200
    assert theirs.request.get(timeline_api).status == 200

    sign_in(live, context, live.woocommerce_id)  # another merchant, another shop
    for url in (f"/app/privacy/{export_id}.json", f"/settings/privacy/{export_id}.json"):
        answer = page.goto(url)
        assert answer is not None
        assert answer.status == 404, url
        assert ANNA not in page.content()
    look(page, "privacy-export-refused")
    refused = page.request.get(timeline_api)
    assert refused.status == 404
    assert refused.json()["error"] == "not_found"
    assert ANNA not in refused.text().replace(f"/contacts/{ANNA}/", "")

    answer = page.goto(f"/app/activity?email={ANNA}")
    assert answer is not None
    assert answer.status == 404
    expect(page.get_by_role("region", name=f"Timeline of {ANNA}")).to_have_count(0)
    expect(page.locator('[data-outcome="ordered"]')).to_have_count(0)
    look(page, "activity-not-found")


def test_the_privacy_and_health_pages(live: Live, context: BrowserContext, page: Page) -> None:
    sign_in(live, context, live.woocommerce_id)
    page.goto("/app/privacy")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    look(page, "privacy")
    page.goto("/app/health")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    look(page, "health")


def test_a_storefront_pixel_shopify_refused_is_explained_on_the_health_page(
    live: Live, context: BrowserContext, page: Page
) -> None:
    with responses.RequestsMock() as mock:
        pixels = WebPixels()
        pixels.refuse = "NO_EXTENSION"
        endpoint = (
            f"https://{SHOPIFY_SHOP}/admin/api/"
            f"{live.runtime.settings.shopify_api_version}/graphql.json"
        )
        mock.add_callback(
            responses.POST,
            endpoint,
            callback=lambda request: (
                200,
                {},
                json.dumps(pixels.answer(**json.loads(request.body))),
            ),
        )
        with live.runtime.sessions.begin() as session:
            session.get_one(Shop, live.shopify_id).access_token_enc = live.runtime.secrets.seal(
                "shpat_health"
            )
        with pytest.raises(AdminApiError):
            shopify.connect_pixel(live.runtime, live.shopify_id)
    sign_in(live, context, live.shopify_id)
    page.goto("/app/health")
    expect(page.get_by_text("could not turn on its pixel in your online store")).to_be_visible()
    expect(page.get_by_text("No extension found")).to_be_visible()
    look(page, "health-pixel-refused")
