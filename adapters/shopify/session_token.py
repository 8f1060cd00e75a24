"""Shopify's session tokens: the JWT App Bridge hands an embedded app's pages.

Inside the Shopify admin our pages live in an iframe, where browsers block
third-party cookies; every request instead carries a token App Bridge gets
from Shopify (``Authorization: Bearer ...`` on fetches, ``id_token=`` in the
query of a document load). Its payload (shopify.dev, "About session tokens"):

==========  ==============================================================
``iss``     ``https://{shop}.myshopify.com/admin``
``dest``    ``https://{shop}.myshopify.com``: the shop the token speaks for
``aud``     the app's client id (API key): a token minted for another app
            signed with another secret, but never trust that alone
``sub``     the staff member's user id
``exp``     one minute after ``iat``; ``nbf`` at issue
``iat``, ``jti``, ``sid``  issue time, token id, the admin session
==========  ==============================================================

Signed HS256 with the app's client secret, which rotates: the previous secret
is tried too while ``TRIGGERPOST_SHOPIFY_API_SECRET_PREVIOUS`` is set. Only
HS256 is accepted (``none`` and every other algorithm refused before any
signature check), and the times are judged against a clock passed in.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from adapters.shopify.webhooks import SHOP_DOMAIN

#: Shopify's tokens are well under a kilobyte; anything far larger is not one of
#: them, and is refused before it is decoded
MAX_LENGTH = 4096
#: our clock and Shopify's may differ by a few seconds either way
LEEWAY = timedelta(seconds=5)
ALGORITHM = "HS256"
#: claims every genuine token carries
REQUIRED = ("iss", "dest", "aud", "exp", "nbf")


class SessionTokenError(ValueError):
    """A session token we must refuse; the message says why (for the log, not the page)."""


@dataclass(frozen=True)
class SessionToken:
    """A verified token: the shop it speaks for, and who at that shop."""

    shop: str
    user: str | None
    expires_at: datetime


def _decode(token: str, secret: str) -> dict[str, Any]:
    with warnings.catch_warnings():
        # the secret's length is the app's, given by Shopify: not ours to refuse
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        payload: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            # times and audience are checked below, against the clock we are given
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "require": list(REQUIRED),
            },
        )
    return payload


def _moment(payload: dict[str, Any], claim: str) -> datetime:
    value = payload.get(claim)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SessionTokenError(f"the token's {claim} is not a time")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise SessionTokenError(f"the token's {claim} is out of range") from exc


def verify(
    token: object, api_key: str, secrets: Iterable[str | None], at: datetime | None = None
) -> SessionToken:
    """The shop and user a genuine, current token for this app speaks for (else an error)."""
    keys = [secret for secret in secrets if secret]
    if not keys or not api_key:
        raise SessionTokenError("the Shopify app is not configured (API key and secret)")
    if not isinstance(token, str) or not token:
        raise SessionTokenError("no token")
    if len(token) > MAX_LENGTH:
        raise SessionTokenError(f"the token is {len(token)} characters long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise SessionTokenError(f"not a JWT: {exc}") from exc
    if header.get("alg") != ALGORITHM:
        raise SessionTokenError(f"the token is signed with {header.get('alg')!r}, not HS256")
    payload: dict[str, Any] | None = None
    refused = "the signature does not match the app's secret"
    for secret in keys:
        try:
            payload = _decode(token, secret)
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError as exc:
            refused = str(exc)
            break
    if payload is None:
        raise SessionTokenError(refused)

    if payload.get("aud") != api_key:
        raise SessionTokenError("the token is for another app (aud)")
    now = at or datetime.now(UTC)
    expires_at = _moment(payload, "exp")
    if now >= expires_at + LEEWAY:
        raise SessionTokenError("the token has expired")
    if now + LEEWAY < _moment(payload, "nbf"):
        raise SessionTokenError("the token is not valid yet (nbf)")

    dest = payload.get("dest")
    if not isinstance(dest, str) or not dest.startswith("https://"):
        raise SessionTokenError("the token's dest is not an https shop origin")
    shop = dest.removeprefix("https://")
    if not SHOP_DOMAIN.match(shop):
        raise SessionTokenError(f"the token's dest {dest!r} is not a myshopify.com shop")
    if payload.get("iss") != f"{dest}/admin":
        raise SessionTokenError("the token's iss is not its shop's admin")
    user = payload.get("sub")
    return SessionToken(
        shop=shop, user=str(user) if user is not None else None, expires_at=expires_at
    )
