"""The segments page in a real browser: each segment with its live count, the flow
that is for it, its conditions; at every width, accessible."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

from connector.merchant import segments as segments_page
from jobs import shop_settings
from jobs.store.models import Contact, Shop
from tests.browser.conftest import Live, look, sign_in
from tests.browser.shop_data import session_token
from tests.browser.test_merchant_access import HOST
from tests.support import SHOPIFY_SECRET, SHOPIFY_SHOP


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


def _people(live: Live) -> None:
    with live.runtime.sessions.begin() as session:
        for n, (country, tags) in enumerate(
            (("SE", "vip"), ("NO", "staff"), ("SE", None), ("DE", "vip"))
        ):
            session.add(
                Contact(
                    shop_id=live.woocommerce_id,
                    email=f"build{n}@example.se",
                    country_code=country,
                    tags=f"\n{tags}\n" if tags else None,
                )
            )


def _saved(live: Live) -> dict[str, object]:
    with live.runtime.sessions() as session:
        shop = session.get_one(Shop, live.woocommerce_id)
        return dict(shop_settings.plain(dict(shop.settings or {})).get("segments", {}))


def test_a_merchant_builds_a_segment_with_a_group_and_sees_it_counted_as_they_type(
    live: Live, context: BrowserContext, page: Page
) -> None:
    _people(live)
    sign_in(live, context, live.woocommerce_id)
    page.goto("/app/segments")
    page.get_by_role("link", name="New segment", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New segment")
    page.get_by_label("Segment name").fill("nordic-regulars")
    first = page.get_by_role("group", name="Condition 1")
    first.get_by_label("Condition", exact=True).select_option(label="Country is one of …")
    expect(first.locator("[data-hint-slot]")).to_contain_text("Two-letter country codes")
    expect(first.get_by_label("Only orders of the last … days")).to_be_hidden()
    first.get_by_label("Value").fill("SE, NO")
    counted = page.locator("[data-counted]")
    expect(counted).to_have_text("Customers matching now: 3")
    look(page, "segment-builder-new")

    # a group: "none of" these, with the focus on its first condition
    page.get_by_role("button", name="Add a group of conditions").click()
    inner = page.locator('fieldset.group[data-path="c.1"]')
    expect(inner.get_by_label("Condition", exact=True)).to_be_focused()
    expect(first.get_by_label("Value")).to_have_value("SE, NO")  # kept as typed
    inner.get_by_label("Match").select_option(label="none")
    condition = inner.get_by_label("Condition", exact=True)
    condition.select_option(label="Bought from the collection: any of …")
    expect(inner.get_by_label("Only orders of the last … days")).to_be_visible()
    condition.select_option(label="Customer tags: any of …")
    expect(inner.get_by_label("Only orders of the last … days")).to_be_hidden()
    value = inner.get_by_label("Value")
    value.fill("staff")
    expect(counted).to_have_text("Customers matching now: 2")
    value.press("Enter")  # Enter counts; it removes nothing
    expect(page.locator("li.rule")).to_have_count(2)
    look(page, "segment-builder-group")

    # a mistake is named beside its field, nothing saved; then mended and saved
    first.get_by_label("Value").fill("Sverige")
    page.get_by_role("button", name="Save segment").click()
    expect(page.locator('[data-error-for="c.0.value"]')).to_have_text(
        "must be a two-letter country code, e.g. SE"
    )
    expect(page.locator("[data-builder-message]")).to_contain_text("nothing was saved")
    assert _saved(live) == {}
    look(page, "segment-builder-error")
    page.locator('input[name="c.0.value"]').fill("SE, NO")
    page.get_by_role("button", name="Save segment").click()
    expect(page).to_have_url(re.compile(r"/app/segments#segment-nordic-regulars$"))
    card = page.get_by_role("region", name="nordic-regulars")
    expect(card.locator(".count")).to_have_text("Customers in it now: 2")
    expect(card.locator(".condition-words > li > ul > li")).to_have_text(
        ["Country is one of SE, NO", "Not this:Customer tags: any of staff"]
    )
    assert _saved(live) == {
        "nordic-regulars": {
            "all": [
                {"field": "country", "op": "in", "value": ["SE", "NO"]},
                {"not": {"field": "tags", "op": "any_of", "value": ["staff"]}},
            ]
        }
    }

    # renamed, and gone
    card.get_by_role("link", name="Change nordic-regulars").click()
    page.get_by_label("Segment name").fill("nordics")
    page.get_by_role("button", name="Remove condition 1").click()
    expect(page.locator("li.rule")).to_have_count(1)
    page.get_by_role("button", name="Save segment").click()
    card = page.get_by_role("region", name="nordics")
    expect(card.locator(".count")).to_have_text("Customers in it now: 3")
    card.get_by_text("Delete…").click()
    card.get_by_role("button", name="Delete nordics").click()
    expect(
        page.get_by_role("status").filter(has_text="Deleted the segment nordics.")
    ).to_be_visible()
    expect(page.get_by_role("region", name="nordics")).to_have_count(0)
    assert _saved(live) == {}
    look(page, "segments-after-delete")


def test_the_builder_works_without_javascript(live: Live, no_script: Page) -> None:
    _people(live)
    page = no_script
    page.goto("/app/segments/edit?from=vip")
    expect(page.locator('input[name="c.0.value"]')).to_have_value("10000")
    page.get_by_label("Segment name").fill("swedes")
    page.get_by_role("button", name="Remove condition 1").click()
    expect(page.locator("li.rule")).to_have_count(0)
    page.get_by_role("button", name="Add a condition").click()
    row = page.get_by_role("group", name="Condition 1")
    row.get_by_label("Condition", exact=True).select_option(label="Country is one of …")
    row.get_by_label("Value").fill("se")
    page.get_by_role("button", name="Count customers").click()
    expect(page.locator("[data-counted]")).to_have_text("Customers matching now: 2")
    expect(page.get_by_label("Segment name")).to_have_value("swedes")
    look(page, "segment-builder-no-script", scripts=False)
    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_role("region", name="swedes").locator(".count")).to_have_text(
        "Customers in it now: 2"
    )
    assert _saved(live) == {"swedes": {"field": "country", "op": "in", "value": ["SE"]}}


def test_the_builder_saves_inside_the_shopify_admin_by_the_session_token_alone(
    live: Live, context: BrowserContext, page: Page
) -> None:
    """In the admin's frame a page has no cookie: the builder's buttons, its count and its
    save go with App Bridge's session token (here a stand-in for Shopify's script, which
    this machine cannot load), as the admin's own pages do."""

    def app_bridge(route: Route) -> None:
        token = session_token(SHOPIFY_SECRET, SHOPIFY_SHOP)
        script = (
            f'window.shopify = {{ idToken: function () {{ return Promise.resolve("{token}"); }} }};'
        )
        route.fulfill(status=200, content_type="text/javascript", body=script)

    context.route("https://cdn.shopify.com/shopifycloud/app-bridge.js", app_bridge)
    query = urlencode(
        {
            "embedded": "1",
            "shop": SHOPIFY_SHOP,
            "host": HOST,
            "id_token": session_token(SHOPIFY_SECRET, SHOPIFY_SHOP),
        }
    )
    answer = page.goto(f"/app/segments/edit?{query}")
    assert answer is not None
    assert answer.status == 200
    context.clear_cookies()  # a frame in the admin keeps none: only the token speaks
    page.get_by_label("Segment name").fill("swedes")
    page.get_by_role("button", name="Add a condition").click()
    expect(page.locator("li.rule")).to_have_count(2)
    row = page.get_by_role("group", name="Condition 2")
    row.get_by_label("Condition", exact=True).select_option(label="Country is one of …")
    row.get_by_label("Value").fill("SE")
    expect(page.locator("[data-counted]")).to_have_text("Customers matching now: 0")
    page.get_by_role("button", name="Save segment").click()
    expect(page).to_have_url(re.compile(r"/app/segments#segment-swedes$"))
    with live.runtime.sessions() as session:
        stored = session.get_one(Shop, live.shopify_id).settings or {}
    assert shop_settings.plain(stored["segments"]) == {
        "swedes": {"field": "country", "op": "in", "value": ["SE"]}
    }


def test_counts_the_page_left_for_later_are_filled_in_by_its_script(
    live: Live, context: BrowserContext, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    _people(live)
    with live.runtime.sessions.begin() as session:
        shop = session.get_one(Shop, live.woocommerce_id)
        swedes = {"field": "country", "op": "in", "value": ["SE"]}
        shop_settings.update(session, shop, {"segments": {"swedes": swedes}})
    monkeypatch.setattr(segments_page, "PAGE_COUNT_SECONDS", 0.0)  # a shop whose counts are slow
    sign_in(live, context, live.woocommerce_id)
    page.goto("/app/segments")
    swedes_card = page.get_by_role("region", name="swedes")
    expect(swedes_card.locator(".count")).to_have_text("Customers in it now: 2")
    first = page.get_by_role("region", name="First-time buyers (one order)")
    expect(first.locator(".count")).to_have_text("Customers in it now: 0")
    expect(page.locator("[data-count-url]")).to_have_count(0)  # every count filled in
    look(page, "segments-counted-later")
