"""The real web server: requests reach a thread only once they have arrived.

`triggerpost web` as it runs in production (gunicorn, one process of
:data:`connector.web.THREADS` threads) on loopback: slow clients hold no
thread and are cut; chunked, pipelined and 100-continue requests are served;
over-size bodies are 413. Outcomes only, each waited for with a bound.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from connector.web import READ_DEADLINE, THREADS
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.store.models import Delivery
from tests.support import SHOPIFY_SECRET, SHOPIFY_SHOP, dumps, shopify_headers

pytestmark = pytest.mark.slow

#: more than the server has threads, in two kinds
SLOW_CLIENTS = 3 * THREADS
#: how long anything here is waited for, at most
BOUND = 4 * READ_DEADLINE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(settings: Settings, runtime: Runtime, tmp_path: Path) -> Iterator[str]:
    """``triggerpost web`` with one process, on the test database and Redis."""
    with runtime.sessions.begin() as session:
        add_shop(session, runtime.secrets, "shopify", SHOPIFY_SHOP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERPOST_")} | {
        "TRIGGERPOST_DATA_DIR": str(settings.data_dir),
        "TRIGGERPOST_DATABASE_URL": settings.database_url,
        "TRIGGERPOST_REDIS_URL": settings.redis_url,
        "TRIGGERPOST_SECRET_KEY": settings.secret_key,
        "TRIGGERPOST_SHOPIFY_API_SECRET": SHOPIFY_SECRET,
    }
    port = free_port()
    log = (tmp_path / "web.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "web", "--port", str(port), "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + BOUND
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass  # not listening yet, or no worker booted yet
            assert process.poll() is None, (tmp_path / "web.log").read_text()
            assert time.monotonic() < deadline, "the web server never answered"
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def slow_client(base: str, n: int) -> socket.socket:
    """A client that promises a signed-looking delivery and then sends nothing more:
    even ones with all their headers sent, odd ones stopped half-way through them."""
    host, port = base.removeprefix("http://").split(":")
    head = (
        "\r\n".join(
            [
                "POST /webhooks/shopify HTTP/1.1",
                f"Host: {host}:{port}",
                "Content-Type: application/json",
                "Content-Length: 100000",
                "X-Shopify-Topic: orders/create",
                f"X-Shopify-Shop-Domain: {SHOPIFY_SHOP}",  # a shop that exists
                "X-Shopify-Hmac-Sha256: " + "A" * 43 + "=",
                f"X-Shopify-Webhook-Id: slow-{n}",
            ]
        ).encode()
        + b"\r\n\r\n{"
    )
    sock = socket.create_connection((host, int(port)), timeout=BOUND)
    sock.sendall(head if n % 2 == 0 else head[: len(head) // 2])
    return sock


def cut(sock: socket.socket) -> bool:
    """Whether the server answered 408 or closed the connection (within the bound)."""
    try:
        answer = sock.recv(64)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return answer == b"" or answer.startswith(b"HTTP/1.1 408")


def test_a_genuine_webhook_is_stored_while_more_slow_clients_than_threads_wait_and_they_are_cut(
    server: str, runtime: Runtime
) -> None:
    slow = [slow_client(server, n) for n in range(SLOW_CLIENTS)]
    try:
        body = dumps({"id": 7001, "email": "kund@example.se", "addresses": []})
        headers = shopify_headers("customers/create", body, SHOPIFY_SECRET, SHOPIFY_SHOP, "real")
        response = requests.post(
            f"{server}/webhooks/shopify", data=body, headers=headers, timeout=BOUND
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "stored"}
        with runtime.sessions() as session:
            assert session.scalars(select(Delivery.delivery_key)).all() == ["real"]

        assert [n for n, sock in enumerate(slow) if not cut(sock)] == []
    finally:
        for sock in slow:
            sock.close()
    with runtime.sessions() as session:  # nothing of theirs got in
        assert session.scalars(select(Delivery.delivery_key)).all() == ["real"]


def exchange(base: str, request: bytes) -> bytes:
    """Send raw bytes on one connection; everything the server answers until it closes."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=BOUND) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(request)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(65536):
                answer += data
    return answer


def raw(
    body: bytes, webhook_id: str, *, chunk: int = 0, close: bool = True, expect: bool = False
) -> bytes:
    """A signed delivery as bytes on the wire; ``chunk``: chunked, that many bytes a chunk."""
    headers = shopify_headers("customers/create", body, SHOPIFY_SECRET, SHOPIFY_SHOP, webhook_id)
    lines = ["POST /webhooks/shopify HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("Connection: close" if close else "Connection: keep-alive")
    if expect:
        lines.append("Expect: 100-continue")
    if chunk:
        lines.append("Transfer-Encoding: chunked")
        pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        wire = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + wire


def statuses(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def stored(runtime: Runtime) -> list[str]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Delivery.delivery_key).order_by(Delivery.id)))


def test_chunked_pipelined_and_100_continue_deliveries_are_served(
    server: str, runtime: Runtime
) -> None:
    body = dumps({"id": 7001, "email": "kund@example.se", "addresses": []})
    assert statuses(exchange(server, raw(body, "chunked", chunk=7))) == [200]
    pipelined = raw(body, "first", close=False) + raw(body, "second", chunk=5, close=False)
    assert statuses(exchange(server, pipelined + raw(body, "third"))) == [200, 200, 200]
    assert statuses(exchange(server, raw(body, "expecting", expect=True))) == [100, 200]
    assert stored(runtime) == ["chunked", "first", "second", "third", "expecting"]


def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_stored(
    server: str, runtime: Runtime
) -> None:
    limit = runtime.settings.max_webhook_bytes
    body = dumps({"id": 7001, "email": "kund@example.se", "note": "a" * limit})
    assert statuses(exchange(server, raw(body, "chunked", chunk=64 * 1024))) == [413]
    assert statuses(exchange(server, raw(body, "declared"))) == [413]
    assert stored(runtime) == []
    # and the limit itself is no error
    fits = dumps({"id": 7001, "email": "kund@example.se", "note": ""})
    fits = dumps({"id": 7001, "email": "kund@example.se", "note": "a" * (limit - len(fits))})
    assert len(fits) == limit
    assert statuses(exchange(server, raw(fits, "fits", chunk=64 * 1024))) == [200]
    assert stored(runtime) == ["fits"]
