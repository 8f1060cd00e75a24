"""Reading platform payloads: exact money, UTC times, clean text, clear errors.

Both translators read JSON the platforms wrote, so they share one helper per
concern: amounts become exact ``Decimal`` (floats through their shortest
``repr``, never binary arithmetic), times become tz-aware UTC, blank strings
become ``None``, emails are stripped and lower-cased. A missing required key
or a value of the wrong type becomes ``WebhookError(400)`` naming where it is
(``order.line_items[2].quantity``), never a bare KeyError or TypeError.

Every string handed out is text any store can hold: JSON may escape a NUL
(``\\u0000``), which PostgreSQL text refuses, and a lone surrogate
(``\\ud800``), which is no character at all and cannot be encoded as UTF-8
for either database. No platform means either, so a NUL is dropped and a lone
surrogate becomes U+FFFD, the replacement character, wherever it appears.
How long a value may be is the store's business (``jobs.intake.apply``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any, TypeVar

from adapters.events import Address, EventError, Money
from adapters.platform import ShopContext, WebhookError

__all__ = [
    "Fields",
    "clean_email",
    "clean_text",
    "exact_decimal",
    "storable",
    "storefront_url",
    "utc_time",
]

T = TypeVar("T")

#: what no store can hold: NUL, and UTF-16 surrogates left alone by a JSON escape
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT_CHARACTER = "\ufffd"


def _storable_character(found: re.Match[str]) -> str:
    return "" if found.group() == "\x00" else REPLACEMENT_CHARACTER


def storable(text: str) -> str:
    """``text`` without NUL characters and with every lone surrogate replaced."""
    if _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub(_storable_character, text)


def clean_text(value: Any) -> str | None:
    """Stripped, storable text; blank is ``None``. Integer ids become their decimal string."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"expected text, got {value!r}")
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return storable(value).strip() or None


def clean_email(value: Any) -> str | None:
    """Emails compare case-insensitively in practice, so they are stored lower case."""
    text = clean_text(value)
    return text.lower() if text is not None else None


def exact_decimal(value: Any) -> Decimal | None:
    """``"12.50"``, ``12`` or ``133.0357145`` as the exact decimal the platform meant."""
    # repr is the shortest string that reads back as this float: what PHP and Ruby
    # printed into the JSON, not the binary value's long expansion
    text = repr(value) if isinstance(value, float) else clean_text(value)
    if text is None:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount") from None
    if not amount.is_finite():
        raise ValueError(f"{text!r} is not a finite amount")
    return amount


def utc_time(value: Any, *, naive_is_utc: bool = False) -> datetime | None:
    """An ISO 8601 timestamp in UTC.

    Shopify always writes an offset, so a naive time there is an error.
    WooCommerce's ``*_gmt`` fields are UTC without saying so: pass ``naive_is_utc``.
    """
    text = clean_text(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        if not naive_is_utc:
            raise ValueError(f"{text!r} has no UTC offset")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def storefront_url(shop: ShopContext, path: str) -> str:
    """A storefront link; the shop's own domain when no storefront URL is configured."""
    base = shop.base_url.rstrip("/") if shop.base_url else f"https://{shop.domain}"
    return base + path


class Fields:
    """One JSON object of a payload, read with the path it was found at.

    Every getter returns ``None`` for a missing, null or blank value and raises
    ``WebhookError(400)`` for a value of the wrong shape; ``require`` turns a
    ``None`` into the "missing" error for keys the translation cannot do without.
    """

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self.data = data
        self.path = path

    @classmethod
    def root(cls, payload: Mapping[str, Any], what: str) -> Fields:
        if not isinstance(payload, Mapping):
            raise WebhookError(400, f"{what} payload must be a JSON object")
        return cls(payload, what)

    def error(self, key: str, problem: str) -> WebhookError:
        return WebhookError(400, f"{self.path}.{key} {problem}")

    def require(self, value: T | None, key: str) -> T:
        if value is None:
            raise self.error(key, "is missing")
        return value

    def has(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str) -> str | None:
        return self._read(key, clean_text)

    def email(self, key: str) -> str | None:
        return self._read(key, clean_email)

    def decimal(self, key: str) -> Decimal | None:
        return self._read(key, exact_decimal)

    def time(self, key: str, *, naive_is_utc: bool = False) -> datetime | None:
        return self._read(key, partial(utc_time, naive_is_utc=naive_is_utc))

    def integer(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self.error(key, f"must be a whole number, got {value!r}")

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise self.error(key, f"must be true or false, got {value!r}")

    def money(self, key: str, currency: str | None) -> Money | None:
        """The amount at ``key`` in ``currency``; an amount without a currency is an error."""
        amount = self.decimal(key)
        if amount is None:
            return None
        if currency is None:
            raise self.error(key, "is an amount with no currency")
        try:
            return Money(amount, currency)
        except EventError as exc:
            raise self.error(key, str(exc)) from None

    def child(self, key: str) -> Fields | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.error(key, "must be a JSON object")
        return Fields(value, f"{self.path}.{key}")

    def children(self, key: str) -> list[Fields]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, "must be a JSON array")
        found = []
        for index, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise self.error(f"{key}[{index}]", "must be a JSON object")
            found.append(Fields(item, f"{self.path}.{key}[{index}]"))
        return found

    def address(self, *, country: str, province: str, city: str, zip_code: str) -> Address | None:
        """This object as an Address, reading the platform's own key names; None if empty."""
        address = Address(
            country_code=self.text(country),
            province_code=self.text(province),
            city=self.text(city),
            zip=self.text(zip_code),
        )
        return None if address == Address() else address

    def _read(self, key: str, parse: Callable[[Any], T]) -> T:
        try:
            return parse(self.data.get(key))
        except (TypeError, ValueError) as exc:
            raise self.error(key, f"is not usable: {exc}") from None
