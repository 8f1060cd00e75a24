"""The preview page in a real browser: an email in Swedish and in Persian (right to
left), and a test of it sent to the merchant through a real SMTP server on loopback."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import Live, look, sign_in

PAGE = "/app/flows/cart_recovery/preview"


def show(page: Page, locale: str) -> None:
    page.get_by_label("Language of the email").select_option(locale)
    with page.expect_navigation():  # the chosen preview's page, not the one before
        page.get_by_role("button", name="Show the preview").click()
    page.locator("iframe").first.scroll_into_view_if_needed()  # the frames load lazily


def test_a_step_previews_in_swedish_and_in_persian_right_to_left(
    live: Live, context: BrowserContext, page: Page
) -> None:
    sign_in(live, context, live.shopify_id)
    page.goto(PAGE)
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    head = page.get_by_role("region", name="How it looks")
    email = page.frame_locator("iframe").first.locator("html")

    show(page, "sv")
    expect(head).to_have_attribute("lang", "sv")
    expect(head).to_have_attribute("dir", "ltr")
    expect(email).to_have_attribute("lang", "sv")
    expect(email).not_to_have_attribute("dir", "rtl")
    look(page, "preview-sv")

    show(page, "fa")
    expect(head).to_have_attribute("lang", "fa")
    expect(head).to_have_attribute("dir", "rtl")
    expect(email).to_have_attribute("lang", "fa")
    expect(email).to_have_attribute("dir", "rtl")
    subject = head.locator(".preview-subject").inner_text()
    assert any("\u0600" <= char <= "\u06ff" for char in subject), subject  # Persian letters
    look(page, "preview-fa")


def test_a_test_send_reaches_the_merchants_inbox_marked_as_a_test(
    live: Live, context: BrowserContext, page: Page
) -> None:
    sign_in(live, context, live.shopify_id)
    page.goto(PAGE)
    page.get_by_label("Send to").fill("owner@nordljus.example")
    page.get_by_role("button", name="Send me a test").click()
    test_form = page.get_by_role("region", name="Send me a test")
    expect(test_form.get_by_role("status")).to_have_text(
        "A test was sent to owner@nordljus.example."
    )
    [mail] = live.inbox.messages
    assert mail["To"] == "owner@nordljus.example"
    assert str(mail["Subject"]).startswith("[Test]")
    look(page, "preview-test-sent")
