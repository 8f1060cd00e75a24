"""The outbound policy against real sockets on loopback: what a store address may reach."""

from __future__ import annotations

import socket
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from adapters.http import ApiSession, OutboundPolicy, RetryPolicy, forbidden_address
from adapters.platform import AdminApiError
from adapters.woocommerce.client import WooCommerceApi

INTERNAL_PAGE = b"internal admin page: root password hunter2"


class Server:
    """A real HTTP server on 127.0.0.1 that records every request it gets."""

    def __init__(self, status: int = 200, location: str | None = None) -> None:
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(INTERNAL_PAGE)))
                self.end_headers()
                self.wfile.write(INTERNAL_PAGE)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def internal() -> Iterator[Server]:
    server = Server()
    yield server
    server.close()


def _session(policy: OutboundPolicy | None = None) -> ApiSession:
    return ApiSession(retry=RetryPolicy(attempts=1, sleep=lambda _: None), policy=policy)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # noqa: S104 (an address under test, not a bind)
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "224.0.0.1",
    ],
)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert forbidden_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not forbidden_address(address)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "169.254.169.254", "localhost", "db.internal"],
)
def test_a_store_address_on_a_private_host_is_refused_before_any_connection(
    internal: Server, host: str
) -> None:
    url = f"http://{host}:{internal.port}/wp-json/wc/v3/orders"
    with pytest.raises(AdminApiError) as caught:
        _session().request("GET", url)
    assert not caught.value.transient
    assert internal.hits == []


def test_a_name_that_resolves_to_loopback_is_refused_where_the_socket_connects(
    internal: Server,
) -> None:
    # past the URL check: the connection itself vets the address DNS gave
    session = _session()
    with pytest.raises(requests.ConnectionError, match="non-public address"):
        session.http.get(internal.url("localhost"), timeout=5)
    assert internal.hits == []


def test_development_may_allow_private_hosts_explicitly(internal: Server) -> None:
    answer = _session(OutboundPolicy(allow_private=True)).request("GET", internal.url() + "/x")
    assert answer.content == INTERNAL_PAGE
    assert internal.hits == ["/x"]


def test_production_calls_only_https(internal: Server) -> None:
    with pytest.raises(AdminApiError, match="https"):
        _session(OutboundPolicy(allow_private=True, https_only=True)).request("GET", internal.url())
    assert internal.hits == []


@pytest.mark.parametrize("url", ["https://", "https://:443/x", "https://a:abc/", "/relative"])
def test_a_url_without_a_usable_host_is_refused(url: str) -> None:
    with pytest.raises(AdminApiError):
        _session().request("GET", url)


def test_a_redirect_is_an_answer_not_an_instruction(internal: Server) -> None:
    redirector = Server(status=302, location=internal.url() + "/latest/meta-data/")
    try:
        with pytest.raises(AdminApiError) as caught:
            _session(OutboundPolicy(allow_private=True)).request("GET", redirector.url() + "/a")
    finally:
        redirector.close()
    assert "redirect" in str(caught.value)
    assert internal.hits == []  # the target was never fetched


def test_a_refused_answer_never_puts_the_remote_body_in_the_message(internal: Server) -> None:
    teller = Server(status=403)
    try:
        with pytest.raises(AdminApiError) as caught:
            _session(OutboundPolicy(allow_private=True)).request("GET", teller.url())
    finally:
        teller.close()
    assert caught.value.status == 403
    assert b"hunter2" not in str(caught.value).encode()
    assert "hunter2" in (caught.value.detail or "")  # kept for the log


def test_proxies_from_the_environment_are_ignored(
    internal: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    answer = _session(OutboundPolicy(allow_private=True)).request("GET", internal.url())
    assert answer.status_code == 200


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_store_that_cannot_be_reached_leaves_no_key_in_the_error_or_its_traceback() -> None:
    store = WooCommerceApi(
        f"http://127.0.0.1:{_closed_port()}",
        "ck_5f8e0c1d2b3a4f5e6d7c8b9a0f1e2d3c4b5a6978",
        "cs_0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8091",
        http=_session(OutboundPolicy(allow_private=True)),
    )
    with pytest.raises(AdminApiError) as caught:
        store.order_state("5")
    printed = "".join(traceback.format_exception(caught.value))
    assert "no answer" in printed
    assert "cs_0a1b2c3d" not in printed
    assert "ck_5f8e0c1d" not in printed
