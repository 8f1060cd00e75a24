"""Signed links in emails: click tracking, open pixel, unsubscribe and preferences.

Each token is signed with a key derived from the deployment's secret and the
shop (and a salt per purpose), so a token made for one shop never verifies
for another, a click token cannot be replayed as an unsubscribe, and nobody
can make a redirect to a URL we did not put in an email: the target is inside
the signed token, not a parameter anyone could change.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from itsdangerous import BadSignature, URLSafeSerializer

from jobs.settings import Settings

CLICK, OPEN, UNSUBSCRIBE, PREFERENCES = "click", "open", "unsubscribe", "preferences"


class LinkError(ValueError):
    """A token that is forged, for another shop or purpose, or malformed."""


@dataclass(frozen=True)
class Target:
    shop_id: int
    message_id: int
    url: str | None = None


def _serializer(settings: Settings, shop_id: int, purpose: str) -> URLSafeSerializer:
    return _serializer_for(settings.secret_key, shop_id, purpose)


@lru_cache(maxsize=4096)
def _serializer_for(secret_key: str, shop_id: int, purpose: str) -> URLSafeSerializer:
    """Built once per shop and purpose: an email signs a dozen links with the same one."""
    key = hmac.new(secret_key.encode(), f"links:{shop_id}".encode(), hashlib.sha256).hexdigest()
    return URLSafeSerializer(key, salt=f"triggerpost-{purpose}")


def sign(settings: Settings, shop_id: int, purpose: str, payload: list[object]) -> str:
    return str(_serializer(settings, shop_id, purpose).dumps(payload))


def verify(settings: Settings, shop_id: int, purpose: str, token: str) -> list[object]:
    try:
        payload = _serializer(settings, shop_id, purpose).loads(token)
    except BadSignature as exc:
        raise LinkError("this link is not valid") from exc
    if not isinstance(payload, list) or not payload or not isinstance(payload[0], int):
        raise LinkError("this link is not valid")
    return payload


def with_utm(url: str, campaign: str, content: str) -> str:
    """Add our UTM parameters, keeping any the URL already has."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    have = {k for k, _ in query}
    extra = [
        (k, v)
        for k, v in (
            ("utm_source", "triggerpost"),
            ("utm_medium", "email"),
            ("utm_campaign", campaign),
            ("utm_content", content),
        )
        if k not in have
    ]
    return urlunsplit(parts._replace(query=urlencode(query + extra)))


def click_url(
    settings: Settings, shop_id: int, message_id: int, url: str, *, flow: str, step: str
) -> str:
    target = with_utm(url, flow, step)
    token = sign(settings, shop_id, CLICK, [message_id, target])
    return f"{settings.base_url}/t/c/{shop_id}/{token}"


def open_pixel_url(settings: Settings, shop_id: int, message_id: int) -> str:
    return f"{settings.base_url}/t/o/{shop_id}/{sign(settings, shop_id, OPEN, [message_id])}.gif"


def unsubscribe_url(settings: Settings, shop_id: int, message_id: int) -> str:
    return f"{settings.base_url}/u/{shop_id}/{sign(settings, shop_id, UNSUBSCRIBE, [message_id])}"


def preferences_url(settings: Settings, shop_id: int, message_id: int) -> str:
    token = sign(settings, shop_id, PREFERENCES, [message_id])
    return f"{settings.base_url}/p/{shop_id}/{token}"


def read_click(settings: Settings, shop_id: int, token: str) -> Target:
    payload = verify(settings, shop_id, CLICK, token)
    url = payload[1] if len(payload) == 2 else None
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise LinkError("this link is not valid")
    return Target(shop_id, int(payload[0]), url)  # type: ignore[call-overload]


def read(settings: Settings, shop_id: int, purpose: str, token: str) -> Target:
    payload = verify(settings, shop_id, purpose, token)
    return Target(shop_id, int(payload[0]))  # type: ignore[call-overload]


#: what a preview's unsubscribe and preferences links may stand for
PREVIEW_PURPOSES = (UNSUBSCRIBE, PREFERENCES)


def preview_url(settings: Settings, purpose: str, language: str) -> str:
    """Where a preview's (and a test email's) unsubscribe or preferences link goes: a
    page saying what the link does for a customer. It carries no message and no
    shop, so it can change nothing for anyone."""
    if purpose not in PREVIEW_PURPOSES:
        raise ValueError(f"no preview link for {purpose!r}")
    return f"{settings.base_url}/preview-link/{purpose}?{urlencode({'lang': language})}"
