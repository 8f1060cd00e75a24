"""The merchant app in a real headless Chromium, driven by Playwright.

The app is the real one (``create_app`` over the suite's runtime: real Redis,
SQLite and PostgreSQL), served by werkzeug on a loopback port that the base URL
names, so the links it makes lead back to it. Emails go to a real SMTP server
(aiosmtpd) on loopback. One Chromium for the session, Debian's (Playwright never
downloads a browser); a fresh context per test. Nothing leaves this machine: any
request to another host is refused the way a machine without internet refuses it,
Shopify's App Bridge script included.

``look(page, name)`` is what every page test ends a step with: the page at laptop
and phone width, a screenshot of each in var/test-artifacts/merchant/ (not
committed, for a person to look at), and axe-core's accessibility check (vendored
from its npm package by ``make``) with no serious or critical violation.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import flask
import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Route,
    sync_playwright,
)
from werkzeug.serving import make_server

from connector.app import create_app
from connector.cli import main
from connector.merchant import auth
from jobs import runtime as runtimes
from jobs import shop_settings
from jobs.flows import registry
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.store.models import Shop
from tests.browser.shop_data import API_KEY
from tests.emails.test_delivery import Inbox, free_port
from tests.emails.test_screenshots import ARTIFACTS, CHROMIUM
from tests.support import SHOPIFY_SHOP, STORE, WOO_SECRET

SCREENSHOTS = ARTIFACTS / "merchant"
AXE = Path(__file__).parents[2] / "var" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
#: a laptop and a phone (an iPhone's CSS width)
WIDTHS = (1280, 390)
HEIGHT = 900
#: axe-core's impact levels that fail a page
FAILING = ("serious", "critical")
#: a bound for a page or an element that never comes (a hang guard, not a speed check)
WAIT_MS = 15_000


@dataclasses.dataclass
class Live:
    """The app on loopback: its runtime, its URL, the SMTP inbox its emails reach."""

    runtime: Runtime
    url: str
    inbox: Inbox
    shopify_id: int
    woocommerce_id: int


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def live(runtime: Runtime, smtp: tuple[Inbox, int]) -> Iterator[Live]:
    """triggerpost served on a free loopback port, with a Shopify shop and a WooCommerce
    store (SEK), sending through the loopback SMTP server."""
    inbox, smtp_port = smtp
    server = make_server("127.0.0.1", 0, app=None, threaded=True)  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{server.server_port}"
    settings = dataclasses.replace(
        runtime.settings,
        base_url=url,
        email_url=f"smtp://127.0.0.1:{smtp_port}",
        shopify_api_key=API_KEY,
    )
    # a runtime of its own: its email backend's connection closes with it, before the
    # SMTP server stops
    served = Runtime.create(settings)
    runtimes.install(served)  # the jobs a test's worker runs send through it too
    with served.sessions.begin() as session:
        shopify = add_shop(session, served.secrets, "shopify", SHOPIFY_SHOP, currency="SEK")
        woocommerce = add_shop(
            session, served.secrets, "woocommerce", STORE, webhook_secret=WOO_SECRET, currency="SEK"
        )
        session.flush()
        ids = shopify.id, woocommerce.id
    server.app = create_app(runtime=served)  # now that the URL it names is known
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield Live(served, url, inbox, *ids)
    server.shutdown()
    thread.join()
    server.server_close()
    runtimes.install(runtime)
    served.close()


# once for this folder's tests, and gone before the rest of the suite runs (Chromium's
# memory, and Playwright's event loop on the main thread)
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, one for all the browser tests (``make test`` installs it)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs it (apt-get install chromium)")
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )
    yield chromium
    chromium.close()


def _offline(url: str) -> Any:
    """A route handler: this app's own requests go through, anything else fails as it
    would with no internet (Shopify's CDN, fonts, analytics)."""
    ours = urlsplit(url).netloc

    def route(route: Route) -> None:
        if urlsplit(route.request.url).netloc == ours:
            route.continue_()
        else:
            route.abort("internetdisconnected")

    return route


def open_context(browser: Browser, live: Live, **options: Any) -> BrowserContext:
    """A fresh browser profile (no cookies) at laptop width that reaches only the app."""
    context = browser.new_context(
        viewport={"width": WIDTHS[0], "height": HEIGHT},
        base_url=live.url,
        locale="en-GB",
        **options,
    )
    context.set_default_timeout(WAIT_MS)
    context.route("**/*", _offline(live.url))
    return context


@pytest.fixture
def context(browser: Browser, live: Live) -> Iterator[BrowserContext]:
    context = open_context(browser, live)
    yield context
    context.close()


@dataclasses.dataclass
class Watched:
    """What went wrong in a page that a person would not see: script errors, and the
    console's complaints (where Chromium reports a blocked style or script)."""

    errors: list[str] = dataclasses.field(default_factory=list)
    console: list[str] = dataclasses.field(default_factory=list)


_WATCHED: dict[Page, Watched] = {}


def open_page(context: BrowserContext) -> Page:
    """A new tab whose script errors and console errors are kept (see :func:`watched`)."""
    page = context.new_page()
    seen = _WATCHED[page] = Watched()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.console.append(message.text)

    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    page.on("console", on_console)
    page.on("close", lambda closed: _WATCHED.pop(closed, None))
    return page


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return open_page(context)


def watched(page: Page) -> Watched:
    return _WATCHED[page]


def screenshot(page: Page, name: str) -> Path:
    """The whole page as it is now, as var/test-artifacts/merchant/<name>-<width>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = (page.viewport_size or {"width": 0})["width"]
    path = SCREENSHOTS / f"{name}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe(page: Page) -> None:
    """axe-core's check of the page as it is now: no serious or critical violation.

    The script is evaluated through the DevTools protocol, which the page's content
    policy does not govern, so the page is checked under its real policy.
    """
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: `make test` installs it (npm install axe-core@4)")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    results = page.evaluate(
        "() => axe.run(document, {resultTypes: ['violations']}).then(r => r.violations)"
    )
    failing = [v for v in results if v.get("impact") in FAILING]
    assert not failing, f"{page.url}:\n" + "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>\n"
        + "\n".join(
            f"    {' '.join(node['target'])}: {node.get('failureSummary', '')}".replace("\n", " / ")
            for node in v["nodes"][:5]
        )
        for v in failing
    )


def overflowing(page: Page) -> list[str]:
    """Elements wider than the window (a phone would scroll sideways to read them)."""
    found: list[str] = page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          const wide = [];
          for (const el of document.body.querySelectorAll('*')) {
            const box = el.getBoundingClientRect();
            if (box.width > 0 && box.right > width + 1) {
              // inside something that scrolls on its own (a wide table): intended
              let scroller = el.parentElement, scrolls = false;
              while (scroller && scroller !== document.body) {
                const style = getComputedStyle(scroller);
                if (['auto', 'scroll'].includes(style.overflowX)) { scrolls = true; break; }
                scroller = scroller.parentElement;
              }
              if (!scrolls) wide.push(el.tagName.toLowerCase() +
                (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string'
                  ? '.' + el.className.trim().split(/\\s+/).join('.') : '') +
                ' right=' + Math.round(box.right));
            }
          }
          return wide.slice(0, 10);
        }"""
    )
    return found


def look(page: Page, name: str, *, scripts: bool = True) -> None:
    """The page at every width: a screenshot, the accessibility check, nothing wider than
    a phone, no script error and nothing the content policy blocked.

    ``scripts=False``: a page in a browser with scripts off, where axe-core cannot run
    (its checks wait on timers, which never fire there).
    """
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT})
        screenshot(page, name)
        if scripts:
            axe(page)
        assert overflowing(page) == [], f"{name} at {width} px"
    page.set_viewport_size({"width": WIDTHS[0], "height": HEIGHT})
    seen = watched(page)
    assert seen.errors == [], name
    blocked = [line for line in seen.console if "Content Security Policy" in line]
    assert blocked == [], name


def sign_in(live: Live, context: BrowserContext, shop_id: int) -> None:
    """This browser signed in for the shop, the way an install or a connect ends."""
    app = create_app(runtime=live.runtime)
    with app.test_request_context():
        auth.login(shop_id)
        response = app.make_response("")
        app.session_interface.save_session(app, flask.session, response)
    cookie = SimpleCookie(response.headers["Set-Cookie"])["session"]
    context.add_cookies([{"name": "session", "value": cookie.value, "url": live.url}])


def saved_switch(live: Live, shop_id: int, flow: str) -> bool:
    """The flow's switch as the store holds it (what the engine will read)."""
    with live.runtime.sessions() as session:
        settings = shop_settings.load(session.get_one(Shop, shop_id))
    return bool(settings.flow(registry.flows()[flow]).get("enabled", True))


def login_link(live: Live, shop: str) -> str:
    """``triggerpost shop login-link SHOP``, as a merchant's developer runs it."""
    settings = live.runtime.settings
    printed = CliRunner().invoke(
        main,
        ["shop", "login-link", shop],
        env={
            "TRIGGERPOST_DATA_DIR": str(settings.data_dir),
            "TRIGGERPOST_DATABASE_URL": settings.database_url,
            "TRIGGERPOST_REDIS_URL": settings.redis_url,
            "TRIGGERPOST_SECRET_KEY": settings.secret_key,
            "TRIGGERPOST_BASE_URL": live.url,
        },
    )
    assert printed.exit_code == 0, printed.output
    link = printed.output.strip()
    assert link.startswith(f"{live.url}/login/")
    return link


@pytest.fixture
def no_script(browser: Browser, live: Live) -> Iterator[Page]:
    """A WooCommerce merchant's browser with scripts off (forms post to the pages)."""
    plain = open_context(browser, live, java_script_enabled=False)
    sign_in(live, plain, live.woocommerce_id)
    yield open_page(plain)
    plain.close()
