"""The flow editor and the shop settings page in a real browser: a delay changed and
saved, a delay out of range refused with its message and nothing saved."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import BrowserContext, Page, expect

from jobs import shop_settings
from jobs.flows import registry
from jobs.store.models import Shop
from tests.browser.conftest import Live, look, sign_in

FIRST = "First reminder after (hours)"
SECOND = "Second reminder after (hours)"


def saved_options(live: Live, shop_id: int, flow: str) -> dict[str, Any]:
    with live.runtime.sessions() as session:
        settings = shop_settings.load(session.get_one(Shop, shop_id))
    return dict(settings.flow(registry.flows()[flow]))


def test_a_merchant_changes_a_delay_and_it_is_saved(
    live: Live, context: BrowserContext, page: Page
) -> None:
    sign_in(live, context, live.woocommerce_id)
    page.goto("/app/flows/cart_recovery")
    look(page, "editor")
    page.get_by_label(FIRST).fill("3")
    page.get_by_role("button", name="Save", exact=True).click()
    options = page.get_by_role("region", name="Options")
    expect(options.get_by_role("status")).to_have_text("Saved")
    assert saved_options(live, live.woocommerce_id, "cart_recovery")["delay_1_hours"] == 3

    page.reload()
    expect(page.get_by_label(FIRST)).to_have_value("3")


def test_a_delay_out_of_range_is_refused_with_its_message_and_nothing_saved(
    live: Live, context: BrowserContext, page: Page
) -> None:
    sign_in(live, context, live.woocommerce_id)
    before = saved_options(live, live.woocommerce_id, "cart_recovery")
    page.goto("/app/flows/cart_recovery")
    page.get_by_label(SECOND).fill("5")  # good, but goes with the bad one or not at all
    first = page.get_by_label(FIRST)
    first.fill("200")
    page.get_by_role("button", name="Save", exact=True).click()
    error = page.locator('[data-error-for="options.delay_1_hours"]')
    expect(error).not_to_be_empty()
    expect(first).to_have_attribute("aria-invalid", "true")
    expect(page.locator('[data-error-for="options.delay_2_hours"]')).to_be_empty()
    assert saved_options(live, live.woocommerce_id, "cart_recovery") == before
    look(page, "editor-refused")

    first.fill("-1")  # below the least
    page.get_by_role("button", name="Save", exact=True).click()
    expect(error).not_to_be_empty()
    assert saved_options(live, live.woocommerce_id, "cart_recovery") == before

    page.reload()  # the stored values, as they were
    expect(page.get_by_label(FIRST)).to_have_value(str(before["delay_1_hours"]))
    expect(page.get_by_label(SECOND)).to_have_value(str(before["delay_2_hours"]))


def test_the_shop_settings_page(live: Live, context: BrowserContext, page: Page) -> None:
    sign_in(live, context, live.woocommerce_id)
    page.goto("/app/settings")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    look(page, "settings")


def test_without_scripts_a_bad_delay_comes_back_with_its_message_and_nothing_saved(
    live: Live, no_script: Page
) -> None:
    page = no_script
    before = saved_options(live, live.woocommerce_id, "cart_recovery")
    page.goto("/app/flows/cart_recovery")
    page.get_by_label(FIRST).fill("200")
    with page.expect_navigation() as posted:
        page.get_by_role("button", name="Save", exact=True).click()
    assert posted.value is not None
    assert posted.value.status == 400
    expect(page.locator('[data-error-for="options.delay_1_hours"]')).not_to_be_empty()
    expect(page.get_by_label(FIRST)).to_have_value("200")  # shown back as entered
    expect(page.get_by_role("alert")).to_be_visible()
    assert saved_options(live, live.woocommerce_id, "cart_recovery") == before
    look(page, "editor-refused-no-script", scripts=False)

    page.get_by_label(FIRST).fill("4")
    with page.expect_navigation():  # the post's answer, before the store is read
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_label(FIRST)).to_have_value("4")
    assert saved_options(live, live.woocommerce_id, "cart_recovery")["delay_1_hours"] == 4


def test_the_browse_abandonment_editor_draws_its_options_in_english_and_swedish(
    live: Live, context: BrowserContext, page: Page
) -> None:
    sign_in(live, context, live.woocommerce_id)
    page.goto("/app/flows/browse_abandonment")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Browse abandonment")
    expect(page.get_by_label("Send after (hours)")).to_have_value("4")
    expect(page.get_by_label("Other products to suggest")).to_have_value("3")
    expect(page.get_by_label("At most once every (days)")).to_have_value("7")
    look(page, "editor-browse-abandonment")

    with live.runtime.sessions.begin() as session:
        session.get_one(Shop, live.woocommerce_id).locale = "sv-SE"  # the store's language
    page.goto("/app/flows/browse_abandonment")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Påminnelse om visade produkter")
    page.get_by_label("Skicka efter (timmar)").fill("6")
    page.get_by_role("button", name="Spara", exact=True).click()
    options = page.get_by_role("region", name="Alternativ")
    expect(options.get_by_role("status")).to_have_text("Sparat")
    assert saved_options(live, live.woocommerce_id, "browse_abandonment")["delay_hours"] == 6
    look(page, "editor-browse-abandonment-sv")


def test_a_merchant_makes_a_flow_only_for_a_segment_and_a_bad_one_is_refused_in_place(
    live: Live, context: BrowserContext, page: Page
) -> None:
    sign_in(live, context, live.woocommerce_id)
    page.goto("/app/flows/cart_recovery")
    only_for = page.get_by_label("Only for")
    only_for.fill('{"field": "country", "op": "in", "value": ["Sverige"]}')
    page.get_by_role("button", name="Save", exact=True).click()
    error = page.locator('[data-error-for="options.audience"]')
    expect(error).to_have_text("value[0]: must be a two-letter country code, e.g. SE")
    expect(only_for).to_have_attribute("aria-invalid", "true")
    assert saved_options(live, live.woocommerce_id, "cart_recovery")["audience"] is None
    look(page, "editor-segment-refused")

    only_for.fill("repeat-buyers")
    page.get_by_role("button", name="Save", exact=True).click()
    options = page.get_by_role("region", name="Options")
    expect(options.get_by_role("status")).to_have_text("Saved")
    assert saved_options(live, live.woocommerce_id, "cart_recovery")["audience"] == "repeat-buyers"
    page.reload()
    expect(page.get_by_label("Only for")).to_have_value("repeat-buyers")
    look(page, "editor-segment")
