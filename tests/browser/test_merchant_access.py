"""Who gets in, in a real browser: a WooCommerce merchant by a login link (once), a
Shopify merchant by the admin's session token, and nobody by a forged, expired or
other shop's token; the pages still work when Shopify's App Bridge cannot load."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect

from adapters.shopify import oauth
from jobs.store.models import now
from tests.browser.conftest import Live, login_link, look, open_context, open_page, saved_switch
from tests.browser.shop_data import session_token
from tests.support import SHOPIFY_SECRET, SHOPIFY_SHOP

#: the admin's host parameter (base64 of the shop's admin path), as Shopify sends it
HOST = "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvbm9yZGxqdXMtdGVzdA"
#: a Shopify shop that never installed triggerpost here
STRANGER = "grannbutiken.myshopify.com"


def embedded(token: str, shop: str = SHOPIFY_SHOP) -> str:
    """The merchant app's address as the Shopify admin loads it in its frame."""
    return "/app/?" + urlencode({"embedded": "1", "shop": shop, "host": HOST, "id_token": token})


def test_a_merchant_signs_in_by_a_login_link_once_and_signs_out(
    live: Live, browser: Browser, page: Page
) -> None:
    link = login_link(live, "butik.example.se")
    page.goto(link)
    assert page.url == f"{live.url}/app/"
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    expect(page.get_by_text("butik.example.se", exact=True)).to_be_visible()

    # the same link again, in another browser (forwarded, or found in a chat log)
    other = open_context(browser, live)
    try:
        again = open_page(other)
        answer = again.goto(link)
        assert answer is not None
        assert answer.status == 410
        expect(
            again.get_by_text("This sign-in link has expired or was used already")
        ).to_be_visible()
        look(again, "login-link-used")
        assert again.goto("/app/").status == 401  # type: ignore[union-attr]
    finally:
        other.close()

    page.get_by_role("button", name="Sign out").click()
    # the sign-out's own answer first: a navigation now would cut its POST short
    expect(page.get_by_role("heading", level=1)).to_have_text("Signed out")
    answer = page.goto("/app/")
    assert answer is not None
    assert answer.status == 401
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    expect(page.get_by_text("butik.example.se")).to_have_count(0)
    look(page, "signed-out")


REFUSED: dict[str, Callable[[], str]] = {
    "forged": lambda: session_token("a guessed secret", SHOPIFY_SHOP),
    "expired": lambda: session_token(
        SHOPIFY_SECRET, SHOPIFY_SHOP, at=now() - timedelta(minutes=10)
    ),
    "another app's": lambda: session_token(SHOPIFY_SECRET, SHOPIFY_SHOP, audience="other-app"),
    "other shop's": lambda: session_token(SHOPIFY_SECRET, STRANGER),
}


@pytest.mark.parametrize("kind", list(REFUSED))
def test_an_embedded_load_with_a_refused_session_token_shows_nothing_of_the_shop(
    live: Live, page: Page, kind: str
) -> None:
    answer = page.goto(embedded(REFUSED[kind]()))
    assert answer is not None
    assert answer.status == 401
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    expect(page.get_by_role("switch")).to_have_count(0)
    assert SHOPIFY_SHOP not in page.content()
    if kind == "forged":
        look(page, "embedded-refused")


def test_an_admin_load_for_one_shop_with_another_shops_token_is_refused(
    live: Live, page: Page
) -> None:
    """The admin's signed install URL names nordljus; the token in it speaks for a
    neighbour's shop (genuinely signed): neither is signed in."""
    query = urlencode(
        {
            "embedded": "1",
            "host": HOST,
            "id_token": session_token(SHOPIFY_SECRET, STRANGER),
            "shop": SHOPIFY_SHOP,
            "timestamp": str(int(time.time())),
        }
    )
    answer = page.goto(f"/shopify/install?{query}&hmac={oauth.query_hmac(SHOPIFY_SECRET, query)}")
    assert answer is not None
    assert answer.status == 401
    expect(page.get_by_role("switch")).to_have_count(0)
    assert page.goto("/app/").status == 401  # type: ignore[union-attr]


def test_the_app_works_in_the_admin_when_app_bridge_cannot_load(
    live: Live, context: BrowserContext, page: Page
) -> None:
    """A merchant signed in by a login link opens the app from the Shopify admin on a
    machine that cannot reach Shopify's CDN: App Bridge fails to load, the page is
    whole, and its switch saves through the cookie session."""
    page.goto(login_link(live, SHOPIFY_SHOP))
    failed: list[str] = []

    def on_failed(request: Request) -> None:
        failed.append(request.url)

    page.on("requestfailed", on_failed)
    answer = page.goto(embedded(session_token(SHOPIFY_SECRET, SHOPIFY_SHOP)))
    assert answer is not None
    assert answer.status == 200
    assert failed == ["https://cdn.shopify.com/shopifycloud/app-bridge.js"]
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    look(page, "overview-embedded-offline")

    switch = page.get_by_role("switch", name="Win-back")
    switch.click()
    expect(page.locator('[data-flow="win_back"]').get_by_role("status")).to_have_text("Saved")
    expect(switch).to_have_attribute("aria-checked", "false")
    assert saved_switch(live, live.shopify_id, "win_back") is False


def test_an_email_previews_in_the_admin_without_app_bridge_or_a_cookie(
    live: Live, page: Page
) -> None:
    """The preview page loaded in the admin by its session token alone, in a browser that
    never signed in: its email frames show (they carry a pass of their own, as the
    admin's frame sends no cookie)."""
    token = session_token(SHOPIFY_SECRET, SHOPIFY_SHOP)
    answer = page.goto(embedded(token).replace("/app/?", "/app/flows/cart_recovery/preview?"))
    assert answer is not None
    assert answer.status == 200
    page.locator("iframe").first.scroll_into_view_if_needed()  # the frames load lazily
    email = page.frame_locator("iframe").first
    expect(email.locator("html")).to_have_attribute("lang", "en")
    expect(email.get_by_role("link").first).to_be_visible()
    look(page, "preview-embedded-offline")
