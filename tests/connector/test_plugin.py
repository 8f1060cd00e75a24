"""The shop's plugin speaking to us: signed with its connection code's secret, or refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from jobs.merchant import storefront
from jobs.runtime import Runtime
from jobs.store.models import Shop, ShopStatus
from tests.support import STORE


def connection(
    client: FlaskClient, runtime: Runtime, platform: str = "woocommerce"
) -> dict[str, Any]:
    """What the merchant pastes into the plugin, decoded as the plugin does."""
    with runtime.sessions.begin() as session:
        shop = session.scalars(
            select(Shop).where(Shop.platform == platform).order_by(Shop.id)
        ).first()
        assert shop is not None
        code = storefront.connection_code(runtime.settings.base_url, shop, runtime.secrets)
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(code + "=" * (-len(code) % 4)))
    return decoded


def signed(
    client: FlaskClient,
    action: str,
    code: dict[str, Any],
    *,
    at: float | None = None,
    nonce: str | None = None,
    secret: str | None = None,
    key: str | None = None,
    platform: str = "woocommerce",
) -> Any:
    body = json.dumps(
        {
            "key": key or code["key"],
            "at": int(time.time() if at is None else at),
            "nonce": nonce or secrets.token_urlsafe(16),
        }
    ).encode()
    digest = hmac.new((secret or code["secret"]).encode(), body, hashlib.sha256).digest()
    return client.post(
        f"/plugin/{platform}/{action}",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Triggerpost-Signature": base64.b64encode(digest).decode(),
        },
    )


def test_the_connection_code_holds_what_the_plugin_needs(
    client: FlaskClient, runtime: Runtime
) -> None:
    code = connection(client, runtime)
    assert code["v"] == 1
    assert code["url"] == runtime.settings.base_url
    assert code["platform"] == "woocommerce"
    assert code["key"].startswith("pk_")
    assert len(code["secret"]) == 43
    # asked again, the same secret (it is made once, then kept sealed)
    assert connection(client, runtime)["secret"] == code["secret"]
    with runtime.sessions() as session:
        sealed = session.scalars(
            select(Shop.plugin_secret_enc).where(Shop.platform == "woocommerce")
        ).one()
    assert sealed is not None
    assert code["secret"] not in sealed


def test_a_signed_status_request_tells_the_plugin_it_is_connected(
    client: FlaskClient, runtime: Runtime
) -> None:
    code = connection(client, runtime)
    response = signed(client, "status", code)
    assert response.status_code == 200
    assert response.json == {
        "shop": "butik.example.se",
        "connected": True,
        "events_last_24h": 0,
        "last_event_at": None,
        "app_url": f"{runtime.settings.base_url}/app/",
    }


def test_status_counts_the_storefront_events_of_the_last_day(
    client: FlaskClient, runtime: Runtime
) -> None:
    code = connection(client, runtime)
    body = json.dumps(
        {
            "visitor": "v_0123456789abcdefXYZ",
            "events": [
                {
                    "id": f"ev-0000000{n}",
                    "type": "product_viewed",
                    "at": "2026-12-07T10:00:00Z",
                    "data": {"product": {"id": "17"}},
                }
                for n in range(3)
            ],
        }
    ).encode()
    sent = client.post(
        f"/events/woocommerce/{code['key']}",
        data=body,
        headers={"Origin": STORE.rstrip("/"), "User-Agent": "Mozilla/5.0 Firefox/133.0"},
    )
    assert sent.status_code == 202
    answer = signed(client, "status", code).json
    assert answer["events_last_24h"] == 3
    assert answer["last_event_at"].endswith("Z")


def test_a_signed_login_link_request_gets_a_link_that_signs_the_merchant_in_once(
    client: FlaskClient, runtime: Runtime
) -> None:
    code = connection(client, runtime)
    response = signed(client, "login-link", code)
    assert response.status_code == 200
    url = response.json["url"]
    assert url.startswith(f"{runtime.settings.base_url}/login/")
    path = url.removeprefix(runtime.settings.base_url)
    first = client.get(path)
    assert first.status_code in (302, 303)
    assert client.get("/api/v1/settings").status_code == 200
    with client.session_transaction() as cookie:
        cookie.clear()
    again = client.get(path)
    assert again.status_code not in (302, 303)


def test_a_forged_signature_is_401(client: FlaskClient, runtime: Runtime) -> None:
    code = connection(client, runtime)
    assert signed(client, "status", code, secret="x" * 43).status_code == 401
    response = client.post(
        "/plugin/woocommerce/status",
        data=json.dumps({"key": code["key"], "at": int(time.time()), "nonce": "n" * 16}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 401
    assert signed(client, "login-link", code, secret="y" * 43).status_code == 401


def test_a_body_changed_after_signing_is_401(client: FlaskClient, runtime: Runtime) -> None:
    code = connection(client, runtime)
    body = json.dumps({"key": code["key"], "at": int(time.time()), "nonce": "a" * 16}).encode()
    digest = hmac.new(code["secret"].encode(), body, hashlib.sha256).digest()
    response = client.post(
        "/plugin/woocommerce/status",
        data=body.replace(b"a" * 16, b"b" * 16),
        headers={"X-Triggerpost-Signature": base64.b64encode(digest).decode()},
    )
    assert response.status_code == 401


@pytest.mark.parametrize("off", [-301, 301, -3600])
def test_an_expired_or_future_request_is_401(
    client: FlaskClient, runtime: Runtime, off: int
) -> None:
    code = connection(client, runtime)
    assert signed(client, "status", code, at=time.time() + off).status_code == 401
    assert signed(client, "status", code, at=time.time() - 250).status_code == 200


def test_a_replayed_request_is_401(client: FlaskClient, runtime: Runtime) -> None:
    code = connection(client, runtime)
    nonce = secrets.token_urlsafe(16)
    assert signed(client, "login-link", code, nonce=nonce).status_code == 200
    assert signed(client, "login-link", code, nonce=nonce).status_code == 401
    assert signed(client, "status", code, nonce=nonce).status_code == 401


def test_another_shops_secret_does_not_sign_for_this_shop(
    client: FlaskClient, runtime: Runtime
) -> None:
    from jobs.merchant.shops import add_shop

    code = connection(client, runtime)
    with runtime.sessions.begin() as session:
        add_shop(
            session,
            runtime.secrets,
            "woocommerce",
            "https://annan.example.se",
            webhook_secret="another-secret-123",
        )
        other = session.scalars(select(Shop).where(Shop.key == "annan.example.se")).one()
        other_secret = storefront.plugin_secret(other, runtime.secrets)
        other_key = other.storefront_key
    assert signed(client, "status", code, secret=other_secret).status_code == 401
    assert signed(client, "status", code, key=other_key).status_code == 401
    assert signed(client, "status", code, key=other_key, secret=other_secret).json["shop"] == (
        "annan.example.se"
    )


def test_a_new_secret_ends_the_old_one(client: FlaskClient, runtime: Runtime) -> None:
    code = connection(client, runtime)
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.platform == "woocommerce")).one()
        new = storefront.rotate_plugin_secret(shop, runtime.secrets)
    assert signed(client, "status", code).status_code == 401
    assert signed(client, "status", code, secret=new).status_code == 200


def test_an_unknown_key_is_404(client: FlaskClient, runtime: Runtime) -> None:
    code = connection(client, runtime)
    assert signed(client, "status", code, key="pk_" + "c" * 26).status_code == 404


def test_a_platform_without_a_plugin_is_404(client: FlaskClient, runtime: Runtime) -> None:
    code = connection(client, runtime, platform="shopify")
    assert signed(client, "status", code, platform="shopify").status_code == 404
    # a WooCommerce key named under another platform is unknown there too
    woo = connection(client, runtime)
    assert signed(client, "status", woo, platform="shopify").status_code == 404


def test_an_uninstalled_shops_plugin_is_404(client: FlaskClient, runtime: Runtime) -> None:
    code = connection(client, runtime)
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.platform == "woocommerce")).one()
        shop.status = ShopStatus.UNINSTALLED
    assert signed(client, "login-link", code).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"key": 1, "at": 1, "nonce": "x"}',
        b'{"key": "k", "at": "now", "nonce": "aaaaaaaaaaaaaaaa"}',
        b'{"key": "k", "at": 1, "nonce": "short"}',
    ],
)
def test_a_malformed_body_is_400(client: FlaskClient, runtime: Runtime, body: bytes) -> None:
    response = client.post(
        "/plugin/woocommerce/status", data=body, headers={"X-Triggerpost-Signature": "x"}
    )
    assert response.status_code == 400
    assert "error" in response.json


def test_an_oversized_body_is_413(client: FlaskClient, runtime: Runtime) -> None:
    response = client.post("/plugin/woocommerce/status", data=b"{" + b" " * 5000 + b"}")
    assert response.status_code == 413
