"""Security headers on every answer, and the pages still working under them in a real browser.

The browser part drives Debian's headless Chromium through the DevTools
protocol on a pipe (``--remote-debugging-pipe``: no extra package, no browser
download), against the app served on loopback. It collects what the console
reports, where Chromium writes every Content-Security-Policy violation, and
saves screenshots to var/test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import json
import os
import queue
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import flask
import pytest
from flask import Flask, render_template_string
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.serving import make_server

from connector.app import create_app
from connector.merchant import auth as merchant_auth
from jobs.runtime import Runtime
from jobs.sending import links
from jobs.settings import Mode
from jobs.store.models import MessageState, PrivacyRequest, Shop, Suppression, now
from tests.connector.test_merchant import sign_in
from tests.emails.test_screenshots import ARTIFACTS, CHROMIUM
from tests.jobs.engine_support import T0, Harness, checkout, customer
from tests.support import SHOPIFY_SHOP, dumps, shopify_headers


@pytest.fixture
def shop(runtime: Runtime, client: FlaskClient) -> Harness:
    harness = Harness(runtime)
    harness.at(T0, checkout("tok-1", T0, customer()))
    return harness


def _path(url: str) -> str:
    return urlsplit(url).path


def _sign_in(client: FlaskClient, runtime: Runtime) -> int:
    with runtime.sessions() as session:
        shop_id = session.scalars(select(Shop.id).where(Shop.key == SHOPIFY_SHOP)).one()
    sign_in(client, shop_id)
    return shop_id


def _policy(header: str) -> dict[str, str]:
    return {
        part.split(" ", 1)[0]: part.partition(" ")[2]
        for part in (piece.strip() for piece in header.split(";"))
        if part
    }


# ---------------------------------------------------------------- the headers


def _answers(client: FlaskClient, runtime: Runtime, shop: Harness) -> dict[str, Any]:
    """One answer of every kind the service gives, by name."""
    message = shop.messages()[0]
    settings = runtime.settings
    unsubscribe = _path(links.unsubscribe_url(settings, shop.shop_id, message.id))
    click = links.click_url(
        settings, shop.shop_id, message.id, "https://nordljus.example/", flow="f", step="s"
    )
    answers = {
        "unsubscribe page": client.get(unsubscribe),
        "preferences page": client.get(
            _path(links.preferences_url(settings, shop.shop_id, message.id))
        ),
        "invalid link page": client.get(unsubscribe[:-3] + "abc"),
        "click redirect": client.get(_path(click)),
        "open pixel": client.get(_path(links.open_pixel_url(settings, shop.shop_id, message.id))),
        "health": client.get("/healthz"),
        "refused webhook": client.post(
            "/webhooks/shopify",
            data=dumps({"id": 1}),
            headers=shopify_headers(
                "orders/create", dumps({"id": 1}), "wrong secret", SHOPIFY_SHOP, "w-1"
            ),
        ),
        "not found": client.get("/nowhere"),
        "method not allowed": client.delete("/healthz"),
        "signed-out settings": client.get("/app/"),
    }
    _sign_in(client, runtime)
    answers["settings page"] = client.get("/app/")
    return answers


def test_every_answer_is_neither_sniffed_nor_framed(
    client: FlaskClient, runtime: Runtime, shop: Harness
) -> None:
    for name, response in _answers(client, runtime, shop).items():
        headers = response.headers
        assert headers.get("X-Content-Type-Options") == "nosniff", name
        assert headers.get("X-Frame-Options") == "DENY", name
        policy = _policy(headers.get("Content-Security-Policy", ""))
        assert policy.get("frame-ancestors") == "'none'", name
        assert policy.get("default-src") == "'none'", name
        assert policy.get("base-uri") == "'none'", name
        assert "Strict-Transport-Security" not in headers, name  # development: plain http


def test_pages_allow_their_own_styles_and_forms_and_nothing_else_does(
    client: FlaskClient, runtime: Runtime, shop: Harness
) -> None:
    pages = {"unsubscribe page", "preferences page", "invalid link page", "settings page"}
    for name, response in _answers(client, runtime, shop).items():
        policy = _policy(response.headers["Content-Security-Policy"])
        if name in pages:
            assert response.status_code in (200, 400), name
            nonce = re.search(r'<style nonce="([^"]+)">', response.get_data(as_text=True))
            if name == "settings page":  # its styles are its stylesheet; the nonce is unused
                nonce = re.search(r"'nonce-([^']+)'", policy["style-src"])
            assert nonce, name
            expected = {
                "default-src": "'none'",
                "style-src": f"'nonce-{nonce.group(1)}'",
                "form-action": "'self'",
                "base-uri": "'none'",
                "frame-ancestors": "'none'",
            }
            if name == "settings page":  # the merchant app: its own script and stylesheet too
                expected.update(
                    {
                        "style-src": f"'self' 'nonce-{nonce.group(1)}'",
                        "script-src": "'self'",
                        "img-src": "'self' https: data:",
                        "connect-src": "'self'",
                        "frame-src": "'self'",
                    }
                )
            assert policy == expected, name
        else:
            assert "style-src" not in policy, name
            assert policy["form-action"] == "'none'", name


def test_a_page_gets_a_fresh_nonce_each_time(
    client: FlaskClient, runtime: Runtime, shop: Harness
) -> None:
    url = _path(links.unsubscribe_url(runtime.settings, shop.shop_id, shop.messages()[0].id))
    first, second = (
        _policy(client.get(url).headers["Content-Security-Policy"])["style-src"] for _ in range(2)
    )
    assert first != second


def test_links_with_a_token_never_pass_it_on_as_a_referrer(
    client: FlaskClient, runtime: Runtime, shop: Harness
) -> None:
    token_urls = {
        "unsubscribe page",
        "preferences page",
        "invalid link page",
        "click redirect",
        "open pixel",
    }
    for name, response in _answers(client, runtime, shop).items():
        expected = "no-referrer" if name in token_urls else "same-origin"
        assert response.headers.get("Referrer-Policy") == expected, name


def test_a_view_that_sets_its_own_policy_keeps_it(runtime: Runtime) -> None:
    app = create_app(runtime=runtime)
    own = "default-src 'self'; frame-ancestors 'none'"
    app.add_url_rule(
        "/own", "own", lambda: ("x", 200, {"Content-Security-Policy": own, "X-Frame-Options": "x"})
    )
    headers = app.test_client().get("/own").headers
    assert headers.get_all("Content-Security-Policy") == [own]
    assert headers.get_all("X-Frame-Options") == ["x"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_production_asks_browsers_for_https_only(runtime: Runtime) -> None:
    production = dataclasses.replace(
        runtime.settings, mode=Mode.PRODUCTION, base_url="https://tp.example"
    )
    app = create_app(runtime=dataclasses.replace(runtime, settings=production))
    for path in ("/healthz", "/nowhere", "/app/"):
        headers = app.test_client().get(path).headers
        assert headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
        assert headers["X-Content-Type-Options"] == "nosniff"


# ---------------------------------------------------------------- the browser


class BrowserError(RuntimeError):
    """Chromium answered a DevTools command with an error, or not at all."""


def _above_4(fd: int) -> int:
    """The same pipe end on a number the child's fds 3 and 4 cannot overwrite (bash, not
    dash: dash takes single-digit fd numbers only)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Browser:
    """Headless Chromium driven over its DevTools pipe (JSON messages ended by NUL)."""

    FLAGS = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--remote-debugging-pipe",
    ]
    #: a bound for a page that never loads (a hang guard, not a speed check)
    WAIT = 30.0

    def __init__(self, profile: Path) -> None:
        if not Path(CHROMIUM).exists():
            pytest.fail("Chromium is missing: `make test` installs it (apt-get install chromium)")
        commands, self._to_browser = os.pipe()
        self._from_browser, answers = os.pipe()
        commands, answers = _above_4(commands), _above_4(answers)
        # Chromium reads commands on fd 3 and writes answers on fd 4
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{commands} 4>&{answers}', CHROMIUM,
             *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(commands, answers),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(commands)
        os.close(answers)
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._from_browser, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for message in messages:
                    self._inbox.put(json.loads(message))
        self._inbox.put(None)  # the browser is gone

    def _receive(self, waiting_for: str) -> dict[str, Any]:
        try:
            message = self._inbox.get(timeout=self.WAIT)
        except queue.Empty as exc:
            raise BrowserError(f"no {waiting_for} within {self.WAIT:.0f} s") from exc
        if message is None:
            raise BrowserError("Chromium exited")
        return message

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            command["sessionId"] = session
        os.write(self._to_browser, json.dumps(command).encode() + b"\0")
        while True:
            message = self._receive(f"answer to {method}")
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        for index, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(index)
        while True:
            message = self._receive(method)
            if message.get("method") == method and message.get("sessionId") == session:
                return message
            self.events.append(message)

    def close(self) -> None:
        with contextlib.suppress(BrowserError):
            self.call("Browser.close")
        try:
            self.process.wait(self.WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        self._reader.join(self.WAIT)


@dataclasses.dataclass
class Tab:
    """One page in the browser, with what its console said."""

    browser: Browser
    session: str

    def open(self, url: str) -> None:
        self.browser.call("Page.navigate", self.session, url=url)
        self.browser.wait_for("Page.loadEventFired", self.session)

    def submit(self) -> None:
        """Press the page's button, as a person would, and wait for the answer page."""
        self.browser.call(
            "Runtime.evaluate", self.session, expression="document.querySelector('button').click()"
        )
        try:
            self.browser.wait_for("Page.loadEventFired", self.session)
        except BrowserError as exc:  # a refused form post never loads a page: say why
            raise BrowserError(f"{exc}; the console said {self.console()}") from exc

    def console(self) -> list[str]:
        """What the console said since the last time it was asked."""
        said, others = [], []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                others.append(event)
                continue
            params = event.get("params", {})
            if event.get("method") == "Log.entryAdded":
                said.append(f"{params['entry']['level']}: {params['entry']['text']}")
            elif event.get("method") == "Runtime.consoleAPICalled":
                said.append(f"{params['type']}: {params['args']}")
            elif event.get("method") == "Runtime.exceptionThrown":
                said.append(f"exception: {params['exceptionDetails']}")
        self.browser.events = others
        return said

    def text(self) -> str:
        found = self.browser.call(
            "Runtime.evaluate", self.session, expression="document.body.innerText"
        )
        return str(found["result"].get("value", ""))

    def overflowing(self) -> list[str]:
        """The elements whose content is wider than they are (text cut off at the edge)."""
        found = self.browser.call(
            "Runtime.evaluate",
            self.session,
            expression="[...document.querySelectorAll('*')]"
            ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.tagName).join(' ')",
        )
        return str(found["result"]["value"]).split()

    def screenshot(self, name: str) -> Path:
        shot = self.browser.call("Page.captureScreenshot", self.session, format="png")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        assert path.stat().st_size > 5_000, f"{name}: an empty picture"
        return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    chromium = Browser(tmp_path / "profile")
    yield chromium
    chromium.close()


def tab(browser: Browser, width: int, height: int) -> Tab:
    target = browser.call("Target.createTarget", url="about:blank")["targetId"]
    session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Log", "Runtime"):
        browser.call(f"{domain}.enable", session)
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=width < 600,
    )
    return Tab(browser, session)


@pytest.fixture
def served(runtime: Runtime, client: FlaskClient) -> Iterator[tuple[Flask, str]]:
    """The app on a loopback port, as a browser reaches it."""
    app = create_app(runtime=runtime)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()
    server.server_close()


@pytest.mark.slow
def test_the_browser_reports_a_style_the_policy_refuses(
    runtime: Runtime, browser: Browser, tmp_path: Path
) -> None:
    """The check below can fail: a page styled without the nonce is reported."""
    app = create_app(runtime=runtime)
    app.add_url_rule(
        "/unstyled", "unstyled", lambda: render_template_string("<style>p{color:red}</style>x")
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = tab(browser, 400, 300)
        page.open(f"http://127.0.0.1:{server.server_port}/unstyled")
        said = page.console()
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    assert any("Content Security Policy" in line for line in said), said


@pytest.mark.slow
def test_email_link_pages_work_under_their_policy_in_a_browser(
    runtime: Runtime, shop: Harness, served: tuple[Flask, str], browser: Browser
) -> None:
    _, base = served
    message = shop.messages()[0]
    settings = runtime.settings
    unsubscribe = base + _path(links.unsubscribe_url(settings, shop.shop_id, message.id))
    preferences = base + _path(links.preferences_url(settings, shop.shop_id, message.id))

    with runtime.sessions.begin() as session:  # a name longer than a phone is wide
        session.get_one(
            Shop, shop.shop_id
        ).name = "nordljus-handgjorda-ljus-och-lyktor.myshopify.com"
    page = tab(browser, 390, 844)  # a phone: where customers open their email
    page.open(preferences)
    assert "anna@example.se" in page.text()
    page.screenshot("email-link-preferences")
    assert page.console() == []
    assert page.overflowing() == []  # a long shop name wraps on a phone

    page.open(unsubscribe[:-3] + "abc")
    assert "not valid" in page.text()
    page.screenshot("email-link-invalid")
    said = page.console()  # the page's own 400, and nothing refused
    assert len(said) == 1, said
    assert "status of 400" in said[0]

    page.open(unsubscribe)
    assert {m.state for m in shop.messages()} == {MessageState.PLANNED}
    page.screenshot("email-link-unsubscribe")
    assert page.console() == []

    page.submit()  # the form posts back to us: form-action 'self'
    page.screenshot("email-link-unsubscribed")
    assert page.console() == []
    with runtime.sessions() as session:
        assert session.scalars(select(Suppression.scope)).all() == ["marketing"]
    assert {m.state for m in shop.messages()} == {MessageState.CANCELLED}


@pytest.mark.slow
def test_the_settings_page_works_under_its_policy_in_a_browser(
    runtime: Runtime, served: tuple[Flask, str], browser: Browser
) -> None:
    app, base = served
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOPIFY_SHOP)).one()
        shop_id = shop.id
        session.add(
            PrivacyRequest(
                shop_id=shop_id,
                kind="data_request",
                reference="42",
                received_at=now(),
                export={"email": "anna@example.se"},
                detail={},
            )
        )
    cookie = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    with app.test_request_context():  # signed in the way the install and connect flows do
        merchant_auth.login(shop_id)
        granted = dict(flask.session)
    page = tab(browser, 1024, 768)
    page.browser.call(
        "Network.setCookie",
        page.session,
        name=app.config["SESSION_COOKIE_NAME"],
        value=cookie.dumps(granted),
        url=base,
    )
    page.open(f"{base}/app/privacy")
    assert "Download the export" in page.text()
    page.screenshot("settings-page")
    assert page.console() == []
