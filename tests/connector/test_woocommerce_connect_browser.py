"""The WooCommerce connect pages in a real headless Chromium: the form, the way to the
store's approval screen under the page's content policy, the waiting and refused pages."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug.serving import make_server

from connector.app import create_app
from jobs import runtime as runtimes
from jobs.runtime import Runtime
from tests.connector.test_security_headers import Browser, browser, tab
from tests.support import run_worker

__all__ = ["browser"]  # the fixture, used by name


class StoreAdmin:
    """A store's /wc-auth/v1/authorize screen on loopback, recording what it was asked."""

    def __init__(self) -> None:
        self.asked: list[dict[str, list[str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                asked = urlsplit(self.path)
                if asked.path == "/wc-auth/v1/authorize":  # not the browser's favicon
                    outer.asked.append(parse_qs(asked.query))
                page = b"<!doctype html><title>Approve</title><p>Approve triggerpost?</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def local(runtime: Runtime) -> Iterator[tuple[Runtime, str]]:
    """triggerpost in development with a store on this machine allowed, served on loopback."""
    allowed = Runtime.create(dataclasses.replace(runtime.settings, allow_private_hosts=True))
    runtimes.install(allowed)
    server = make_server("127.0.0.1", 0, create_app(runtime=allowed), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield allowed, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()
    server.server_close()
    runtimes.install(runtime)
    allowed.close()


@pytest.mark.slow
def test_a_merchant_connects_from_the_form_to_the_store_and_back(
    local: tuple[Runtime, str], browser: Browser
) -> None:
    runtime, base = local
    store = StoreAdmin()
    try:
        page = tab(browser, 390, 844)
        page.open(f"{base}/woocommerce/connect?store_url={store.url}")
        assert "Connect your WooCommerce store" in page.text()
        page.screenshot("woocommerce-connect-form")
        assert page.console() == []

        page.submit()  # posts to us, then on to the store: the policy lets the form go there
        assert "Approve triggerpost?" in page.text()
        assert page.console() == []
        [asked] = store.asked
        nonce = asked["user_id"][0]

        # the store's key POST arrives with keys the store will not accept (it has no
        # REST API here): the merchant waits, then learns why, in words of ours
        answer = (
            create_app(runtime=runtime)
            .test_client()
            .post(
                "/woocommerce/callback",
                json={
                    "key_id": 1,
                    "user_id": nonce,
                    "consumer_key": "ck_" + "1" * 40,
                    "consumer_secret": "cs_" + "2" * 40,
                    "key_permissions": "read_write",
                },
            )
        )
        assert answer.status_code == 200
        page.open(f"{base}/woocommerce/return?success=1&user_id={nonce}")
        assert "checking its keys" in page.text()
        page.screenshot("woocommerce-connect-waiting")

        run_worker(runtime)
        page.open(f"{base}/woocommerce/return?success=1&user_id={nonce}")
        assert "was not connected" in page.text()
        page.screenshot("woocommerce-connect-refused")
        assert page.overflowing() == []
    finally:
        store.close()
