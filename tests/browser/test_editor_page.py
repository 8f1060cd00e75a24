"""The flow editor and the shop settings page in a real browser: a delay changed and
saved, a delay out of range refused with its message and nothing saved; a flow's
"Only for" chosen from the shop's segments, with scripts and without."""

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


SWEDES = {"field": "country", "op": "in", "value": ["SE"]}
WRITTEN = {"all": [SWEDES, {"field": "orders_count", "op": "gte", "value": 2}]}


def with_settings(live: Live, changes: dict[str, Any]) -> None:
    with live.runtime.sessions.begin() as session:
        shop_settings.update(session, session.get_one(Shop, live.woocommerce_id), changes)


def test_a_merchant_chooses_a_saved_segment_from_the_list_and_it_is_saved(
    live: Live, context: BrowserContext, page: Page
) -> None:
    with_settings(live, {"segments": {"swedes": SWEDES}})
    sign_in(live, context, live.woocommerce_id)
    page.goto("/app/flows/cart_recovery")
    only_for = page.get_by_label("Only for")
    expect(only_for).to_have_value("")  # everyone
    expect(only_for.locator("option:checked")).to_have_text("Everyone")
    expect(only_for.locator('optgroup[label="Your segments"] option')).to_have_text(["swedes"])
    expect(only_for.locator('optgroup[label="Built in"] option')).to_contain_text(
        ["Repeat buyers (two orders or more)"]
    )
    only_for.select_option("swedes")
    page.get_by_role("button", name="Save", exact=True).click()
    options = page.get_by_role("region", name="Options")
    expect(options.get_by_role("status")).to_have_text("Saved")
    assert saved_options(live, live.woocommerce_id, "cart_recovery")["audience"] == "swedes"

    page.reload()
    expect(page.get_by_label("Only for")).to_have_value("swedes")
    look(page, "editor-segment")
    page.get_by_role("link", name="Make or change segments").click()
    expect(page).to_have_url(f"{live.url}/app/segments")


def test_a_name_forged_into_the_list_is_refused_beside_it_and_nothing_saved(
    live: Live, context: BrowserContext, page: Page
) -> None:
    sign_in(live, context, live.woocommerce_id)
    before = saved_options(live, live.woocommerce_id, "cart_recovery")
    page.goto("/app/flows/cart_recovery")
    only_for = page.get_by_label("Only for")
    # what a forged form sends: a name that is no segment of this shop
    only_for.evaluate("(select) => select.add(new Option('no-such', 'no-such', true, true))")
    page.get_by_label(FIRST).fill("5")  # good, but goes with the bad one or not at all
    page.get_by_role("button", name="Save", exact=True).click()
    error = page.locator('[data-error-for="options.audience"]')
    expect(error).to_contain_text("no segment is named 'no-such'")
    expect(only_for).to_have_attribute("aria-invalid", "true")
    assert saved_options(live, live.woocommerce_id, "cart_recovery") == before
    look(page, "editor-segment-refused")


def test_the_conditions_written_for_a_flow_are_shown_in_words_and_kept_by_a_save(
    live: Live, context: BrowserContext, page: Page
) -> None:
    with_settings(live, {"flows": {"cart_recovery": {"audience": WRITTEN}}})
    sign_in(live, context, live.woocommerce_id)
    page.goto("/app/flows/cart_recovery")
    only_for = page.get_by_label("Only for")
    expect(only_for.locator("option:checked")).to_have_text("The conditions written for this flow")
    expect(page.locator(".written-conditions li li")).to_have_text(
        ["Country is one of SE", "Number of orders is at least 2"]
    )
    look(page, "editor-segment-written")
    page.get_by_label(FIRST).fill("2")
    page.get_by_role("button", name="Save", exact=True).click()
    options = page.get_by_role("region", name="Options")
    expect(options.get_by_role("status")).to_have_text("Saved")
    saved = saved_options(live, live.woocommerce_id, "cart_recovery")
    assert saved["delay_1_hours"] == 2
    assert shop_settings.plain(saved["audience"]) == WRITTEN


def test_without_scripts_a_segment_chosen_is_saved_and_a_forged_one_refused(
    live: Live, no_script: Page
) -> None:
    page = no_script
    with_settings(live, {"segments": {"swedes": SWEDES}})
    page.goto("/app/flows/cart_recovery")
    page.get_by_label("Only for").select_option("repeat-buyers")
    with page.expect_navigation():
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_label("Only for")).to_have_value("repeat-buyers")
    expect(page.get_by_label("Only for").locator("option:checked")).to_have_text(
        "Repeat buyers (two orders or more)"
    )
    assert saved_options(live, live.woocommerce_id, "cart_recovery")["audience"] == (
        "repeat-buyers"
    )
    look(page, "editor-segment-no-script", scripts=False)

    # another shop's segment, or one deleted since: refused, shown back as sent
    before = saved_options(live, live.woocommerce_id, "cart_recovery")
    with_settings(live, {"segments": {"swedes": None}})  # deleted in another tab
    page.get_by_label("Only for").select_option("swedes")  # still listed: the page is older
    with page.expect_navigation() as posted:
        page.get_by_role("button", name="Save", exact=True).click()
    assert posted.value is not None
    assert posted.value.status == 400
    expect(page.locator('[data-error-for="options.audience"]')).to_contain_text(
        "no segment is named 'swedes'"
    )
    expect(page.get_by_label("Only for").locator("option:checked")).to_have_text(
        "swedes (not a segment)"
    )
    assert saved_options(live, live.woocommerce_id, "cart_recovery") == before
    look(page, "editor-segment-refused-no-script", scripts=False)
