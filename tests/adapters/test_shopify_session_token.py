"""Shopify's session tokens: only a genuine, current token for this app names a shop."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.shopify import session_token
from adapters.shopify.session_token import SessionTokenError, verify

API_KEY = "a1b2c3d4e5f6client"
SECRET = "shpss_current-app-secret"
PREVIOUS = "shpss_previous-app-secret"
SHOP = "nordljus-test.myshopify.com"
AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(shop: str = SHOP, at: datetime = AT, **changes: Any) -> dict[str, Any]:
    """The documented payload of a token issued at ``at`` (Shopify's shape)."""
    issued = int(at.timestamp())
    payload = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": API_KEY,
        "sub": "42",
        "exp": issued + 60,
        "nbf": issued,
        "iat": issued,
        "jti": "f8912129-1af6-4cad-9ca3-76b0f7621087",
        "sid": "aaea182f2732d44c23057c0fea584021a4485b2bd25d3eb7fd349313ad24c685",
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def mint(payload: dict[str, Any], secret: str = SECRET, alg: str = "HS256") -> str:
    """A token signed as App Bridge's are (or with the algorithm given)."""
    head = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload).encode())
    signing = f"{head}.{body}".encode()
    if alg == "none":
        return f"{head}.{body}."
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    return f"{head}.{body}.{_b64(hmac.new(secret.encode(), signing, digest).digest())}"


def check(token: object, at: datetime = AT) -> session_token.SessionToken:
    return verify(token, API_KEY, [SECRET, PREVIOUS], at=at)


def test_a_genuine_token_names_its_shop_and_user() -> None:
    found = check(mint(claims()))
    assert found.shop == SHOP
    assert found.user == "42"
    assert found.expires_at == AT + timedelta(seconds=60)


def test_a_token_signed_with_the_secret_being_rotated_out_still_passes() -> None:
    assert check(mint(claims(), secret=PREVIOUS)).shop == SHOP


def test_the_clocks_may_differ_by_a_few_seconds() -> None:
    token = mint(claims())
    assert check(token, at=AT + timedelta(seconds=62)).shop == SHOP  # just expired
    assert check(token, at=AT - timedelta(seconds=3)).shop == SHOP  # from our future


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (mint(claims(), secret="someone-elses-secret"), "signature"),
        (mint(claims()), "expired"),  # judged a minute and more later, below
        (mint(claims(aud="another-apps-client-id")), "another app"),
        (mint(claims(aud=[API_KEY, "x"])), "another app"),
        (mint(claims(aud=None)), "aud"),
        (mint(claims(exp=None)), "exp"),
        (mint(claims(nbf=None)), "nbf"),
        (mint(claims(dest=None)), "dest"),
        (mint(claims(exp="tomorrow")), "time"),
        (mint(claims(dest=f"http://{SHOP}", iss=f"http://{SHOP}/admin")), "https"),
        (mint(claims(dest="https://evil.example", iss="https://evil.example/admin")), "shop"),
        (mint(claims(dest=f"https://{SHOP}/path", iss=f"https://{SHOP}/path/admin")), "myshopify"),
        (mint(claims(iss="https://other-shop.myshopify.com/admin")), "iss"),
        (mint(claims(iss=f"https://{SHOP}")), "iss"),
        (mint(claims(), alg="none"), "HS256"),
        (mint(claims(), alg="HS512"), "HS256"),
        ("not.a.token", "JWT"),
        ("garbage", "JWT"),
        ("", "no token"),
        (None, "no token"),
        (b"bytes.are.no-token", "no token"),
        ("a" * (session_token.MAX_LENGTH + 1), "characters long"),
        (mint(claims(padding="x" * session_token.MAX_LENGTH)), "characters long"),
    ],
)
def test_anything_but_a_genuine_current_token_for_this_app_is_refused(
    token: object, why: str
) -> None:
    at = AT + timedelta(minutes=5) if why == "expired" else AT
    with pytest.raises(SessionTokenError, match=why):
        check(token, at=at)


def test_a_token_not_valid_yet_is_refused() -> None:
    token = mint(claims(nbf=int(AT.timestamp()) + 30))
    with pytest.raises(SessionTokenError, match="not valid yet"):
        check(token)


def test_without_a_configured_secret_or_key_nothing_passes() -> None:
    token = mint(claims())
    with pytest.raises(SessionTokenError, match="not configured"):
        verify(token, API_KEY, [None, ""], at=AT)
    with pytest.raises(SessionTokenError, match="not configured"):
        verify(token, "", [SECRET], at=AT)


def test_a_hs256_header_over_a_tampered_payload_is_refused() -> None:
    genuine = mint(claims()).split(".")
    other = mint(claims(shop="other-shop.myshopify.com")).split(".")
    with pytest.raises(SessionTokenError, match="signature"):
        check(".".join([genuine[0], other[1], genuine[2]]))
