"""What an email says, before it is rendered: the engine fills this, ``render`` draws it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from adapters.events import Money


class MessageKind(StrEnum):
    """Transactional mail never needs marketing consent; marketing always does."""

    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"


@dataclass(frozen=True)
class Brand:
    shop_name: str
    storefront_url: str
    sender_name: str
    logo_url: str | None = None
    colour: str = "#1f2937"
    postal_address: str | None = None
    default_locale: str = "en"
    reply_to: str | None = None


@dataclass(frozen=True)
class ProductBlock:
    title: str
    url: str
    image_url: str | None = None
    price: Money | None = None
    quantity: int | None = None
    variant: str | None = None


@dataclass(frozen=True)
class DiscountBlock:
    code: str
    expires_at: datetime
    percent: Decimal | None = None
    amount: Money | None = None


def _same(url: str) -> str:
    return url


@dataclass(frozen=True)
class EmailContent:
    template: str  # a step name, e.g. "cart_recovery_1" (see emails.render.TEMPLATES)
    kind: MessageKind
    brand: Brand
    locale: str | None = None
    first_name: str | None = None
    products: tuple[ProductBlock, ...] = ()
    #: other products the email offers, apart from what it is about (a template
    #: shows them where it has the recommended block)
    recommended: tuple[ProductBlock, ...] = ()
    action_url: str | None = None
    discount: DiscountBlock | None = None
    #: step-specific extras: order_name, order_total (Money), points, ...
    values: Mapping[str, Any] = field(default_factory=dict)
    #: the merchant's copy: locale -> {"subject"|"heading"|"body": text}
    copy_overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    unsubscribe_url: str | None = None
    preferences_url: str | None = None
    #: applied to every URL in the email (click tracking and UTM parameters)
    link: Callable[[str], str] = _same
    open_pixel_url: str | None = None


@dataclass(frozen=True)
class Rendered:
    subject: str
    preheader: str
    html: str
    text: str
    locale: str
    direction: str  # "ltr" or "rtl"
