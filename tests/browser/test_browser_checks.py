"""The checks every page test relies on can fail: axe-core finds a serious violation,
a page wider than a phone is caught, and nothing beyond this machine is reached."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page
from playwright.sync_api import Error as PlaywrightError

from tests.browser.conftest import Live, axe, overflowing, screenshot


@pytest.fixture
def blank(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 390, "height": 800})
    yield page
    page.close()


def test_the_accessibility_check_names_each_serious_violation_and_where(blank: Page) -> None:
    blank.set_content(
        '<!doctype html><html lang="en"><title>Form</title><main><h1>Settings</h1>'
        '<input id="delay" type="number"></main></html>'
    )
    with pytest.raises(AssertionError) as failed:
        axe(blank)
    assert "- label (critical): Form elements must have labels" in str(failed.value)
    assert "#delay" in str(failed.value)

    blank.set_content(
        '<!doctype html><html lang="en"><title>Form</title><main><h1>Settings</h1>'
        '<label for="delay">Delay</label><input id="delay" type="number"></main></html>'
    )
    axe(blank)


def test_the_width_check_finds_what_a_phone_would_scroll_sideways_for(blank: Page) -> None:
    blank.set_content(
        '<!doctype html><html lang="en"><body><p id="wide" style="width:600px">wide</p>'
        '<div style="overflow-x:auto"><table style="width:900px"><tr><td>t</td></tr></table>'
        "</div></body></html>"
    )
    assert overflowing(blank) == ["p#wide right=608"]  # the table scrolls in its own box
    assert screenshot(blank, "width-check").name == "width-check-390.png"


def test_pages_reach_nothing_beyond_this_machine(live: Live, page: Page) -> None:
    answer = page.goto("/healthz")
    assert answer is not None
    assert answer.ok
    with pytest.raises(PlaywrightError, match="ERR_INTERNET_DISCONNECTED"):
        page.goto("https://cdn.shopify.com/shopifycloud/app-bridge.js")
