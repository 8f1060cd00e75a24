"""Shopify's authorization code grant, and the token exchange of an embedded app.

The query HMAC is computed over the raw ``key=value`` pairs exactly as they
arrived (``hmac`` and the legacy ``signature`` removed, sorted by key, joined
with ``&``, hex HMAC-SHA256 with the app's client secret). Decoding and
re-encoding the values first, as some libraries do, can make a genuine
request fail or a crafted one pass.

Tokens are expiring offline tokens (``expiring=1``): an access token for about
an hour and a refresh token that rotates on every use.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote_plus, urlencode

from adapters.http import ApiSession
from adapters.platform import AdminApiError
from adapters.shopify.webhooks import SHOP_DOMAIN

#: how far a request's ``timestamp`` may be from our clock (Shopify's own library allows 90 s)
TIMESTAMP_TOLERANCE = timedelta(minutes=5)


class OAuthError(ValueError):
    """An install or callback request we must refuse; the message says why."""


def _raw_pairs(query_string: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query_string.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((key, value))
    return pairs


def query_message(query_string: str) -> str:
    """The signed message: raw pairs without ``hmac``/``signature``, sorted by key."""
    kept = [(k, v) for k, v in _raw_pairs(query_string) if k not in ("hmac", "signature")]
    return "&".join(f"{k}={v}" for k, v in sorted(kept, key=lambda pair: pair[0]))


def query_hmac(secret: str, query_string: str) -> str:
    message = query_message(query_string).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify_query(query_string: str, secrets: Iterable[str]) -> bool:
    """Constant-time check of the query's ``hmac`` against every valid secret."""
    given = [unquote_plus(v) for k, v in _raw_pairs(query_string) if k == "hmac"]
    if len(given) != 1:
        return False
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(query_hmac(secret, query_string), given[0].lower())
    return ok


@dataclass(frozen=True)
class SignedRequest:
    """An install or callback request whose signature, shop and time were checked."""

    shop: str
    params: dict[str, str]


def check_request(
    query_string: str, secrets: Iterable[str], at: datetime | None = None
) -> SignedRequest:
    """Verify a request Shopify sent the merchant's browser with; OAuthError if not genuine.

    The shop domain is validated before anything else may use it, so no
    outbound call is ever made to a host that did not pass the pattern.
    """
    secrets = [s for s in secrets if s]
    if not secrets:
        raise OAuthError("the Shopify app is not configured (TRIGGERPOST_SHOPIFY_API_SECRET)")
    if not verify_query(query_string, secrets):
        raise OAuthError("the request's hmac does not match: it did not come from Shopify")
    params: dict[str, str] = {}
    for key, value in _raw_pairs(query_string):
        params[unquote_plus(key)] = unquote_plus(value)
    shop = params.get("shop", "").strip().lower()
    if not SHOP_DOMAIN.match(shop):
        raise OAuthError(f"{params.get('shop')!r} is not a myshopify.com shop domain")
    try:
        stamp = datetime.fromtimestamp(int(params.get("timestamp", "")), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise OAuthError("the request has no valid timestamp") from exc
    if abs((at or datetime.now(UTC)) - stamp) > TIMESTAMP_TOLERANCE:
        raise OAuthError("the request is too old (or from the future); start the install again")
    return SignedRequest(shop=shop, params=params)


def authorize_url(shop: str, client_id: str, scopes: str, redirect_uri: str, state: str) -> str:
    """Where the merchant grants our scopes (an offline token: no per-user grant option)."""
    if not SHOP_DOMAIN.match(shop):
        raise OAuthError(f"{shop!r} is not a myshopify.com shop domain")
    query = urlencode(
        {"client_id": client_id, "scope": scopes, "redirect_uri": redirect_uri, "state": state}
    )
    return f"https://{shop}/admin/oauth/authorize?{query}"


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    scopes: frozenset[str]
    #: None for a non-expiring token (apps created before expiring tokens existed)
    expires_at: datetime | None
    refresh_token: str | None
    refresh_expires_at: datetime | None


def _grant(body: object, at: datetime) -> TokenGrant:
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise AdminApiError("Shopify's token answer has no access_token", transient=False)

    def after(key: str) -> datetime | None:
        seconds = body.get(key)
        return at + timedelta(seconds=int(seconds)) if isinstance(seconds, int) else None

    return TokenGrant(
        access_token=body["access_token"],
        scopes=frozenset(s.strip() for s in str(body.get("scope", "")).split(",") if s.strip()),
        expires_at=after("expires_in"),
        refresh_token=body.get("refresh_token")
        if isinstance(body.get("refresh_token"), str)
        else None,
        refresh_expires_at=after("refresh_token_expires_in"),
    )


def _token_call(http: ApiSession, shop: str, form: dict[str, str]) -> TokenGrant:
    if not SHOP_DOMAIN.match(shop):
        raise OAuthError(f"{shop!r} is not a myshopify.com shop domain")
    at = datetime.now(UTC)
    response = http.request(
        "POST",
        f"https://{shop}/admin/oauth/access_token",
        data=form,
        headers={"Accept": "application/json"},
    )
    try:
        body = response.json()
    except ValueError as exc:
        raise AdminApiError("Shopify's token answer is not JSON", transient=False) from exc
    return _grant(body, at)


def exchange_code(
    http: ApiSession, shop: str, client_id: str, client_secret: str, code: str
) -> TokenGrant:
    """Trade the callback's code for an expiring offline token and its refresh token."""
    return _token_call(
        http,
        shop,
        {"client_id": client_id, "client_secret": client_secret, "code": code, "expiring": "1"},
    )


#: token exchange (RFC 8693) as Shopify takes it for embedded apps
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (names, not secrets)
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105
OFFLINE_TOKEN_TYPE = "urn:shopify:params:oauth:token-type:offline-access-token"  # noqa: S105


def exchange_id_token(
    http: ApiSession, shop: str, client_id: str, client_secret: str, id_token: str
) -> TokenGrant:
    """An embedded app's install: App Bridge's session token (already verified, for
    this shop) traded for an expiring offline token, no grant screen in between
    (Shopify installs the app with the scopes of shopify.app.toml)."""
    return _token_call(
        http,
        shop,
        {
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": id_token,
            "subject_token_type": ID_TOKEN_TYPE,
            "requested_token_type": OFFLINE_TOKEN_TYPE,
            "expiring": "1",
        },
    )


def refresh(
    http: ApiSession, shop: str, client_id: str, client_secret: str, refresh_token: str
) -> TokenGrant:
    """A new access token; the refresh token rotates, so the answer's one must be kept."""
    return _token_call(
        http,
        shop,
        {
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        },
    )


def missing_scopes(granted: frozenset[str], wanted: str) -> list[str]:
    """Scopes we asked for and did not get (a write scope implies its read scope)."""
    implied = set(granted) | {
        "read_" + s[len("write_") :] for s in granted if s.startswith("write_")
    }
    return sorted(s.strip() for s in wanted.split(",") if s.strip() and s.strip() not in implied)
