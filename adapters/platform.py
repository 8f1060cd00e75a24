"""What every platform adapter provides.

A platform is one sub-package of ``adapters`` exposing a ``PLATFORM`` object
that satisfies :class:`Platform`, listed in :mod:`adapters.registry`. Code
outside a platform's folders asks the protocol (its members below), never
the platform's name: what differs between platforms is declared here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from adapters.events import ConsentState, Event, Money, Product

log = logging.getLogger(__name__)


class WebhookError(ValueError):
    """A delivery we cannot accept; ``status`` is the HTTP answer to give."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class WebhookHeaders:
    """What the intake needs from a delivery's headers, before the body is trusted."""

    shop_key: str  # normalised identity of the shop (myshopify domain, store URL)
    topic: str
    delivery_id: str | None  # the platform's per-delivery id, None if it sent none
    signature: str
    triggered_at: datetime | None = None
    api_version: str | None = None
    #: False when the platform may give two different deliveries the same id
    #: (WooCommerce: the webhook id and the current second); the body's digest
    #: then joins the delivery's identity, so neither is taken for a replay
    delivery_id_unique: bool = True


#: the order or customer meta key a store's opt-in checkbox writes (documented in the README)
DEFAULT_CONSENT_META_KEY = "_triggerpost_marketing_consent"


@dataclass(frozen=True)
class ConsentRule:
    """Where a platform without a consent field finds it (WooCommerce: a meta key).

    ``read_from`` is "order", "customer" or "both"; ``when_absent`` is what a
    payload without the key means: "not_subscribed" (the default: nothing is
    claimed) or "subscribed" (the shop collects consent elsewhere and says so).
    """

    meta_key: str = DEFAULT_CONSENT_META_KEY
    read_from: str = "both"
    when_absent: str = ConsentState.NOT_SUBSCRIBED

    def __post_init__(self) -> None:
        if not self.meta_key.strip():
            raise ValueError("the consent meta key must not be empty")
        if self.read_from not in ("order", "customer", "both"):
            raise ValueError("consent read_from must be order, customer or both")
        if self.when_absent not in (ConsentState.NOT_SUBSCRIBED, ConsentState.SUBSCRIBED):
            raise ValueError("consent when_absent must be not_subscribed or subscribed")

    @classmethod
    def from_settings(cls, blob: Any) -> ConsentRule:
        """The shop's ``settings["consent"]``; the defaults when unset."""
        if not isinstance(blob, Mapping):
            return cls()
        known = {
            k: str(v) for k, v in blob.items() if k in ("meta_key", "read_from", "when_absent")
        }
        return cls(**known)


#: the standard metafield definition of a customer's birth date (type ``date``)
DEFAULT_BIRTHDAY_METAFIELD = "facts.birth_date"

_METAFIELD = re.compile(r"[A-Za-z0-9_-]{2,255}\.[A-Za-z0-9_-]{2,64}")
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DMY_DATE = re.compile(r"(\d{2})/(\d{2})/(\d{4})")
#: earlier birthdays are refused, as a contact import refuses them: the year 1904
#: stands for "year unknown" on a stored birthday (jobs/intake/contacts_import.py)
_EARLIEST_BIRTH_YEAR = 1905


@dataclass(frozen=True)
class BirthdayRule:
    """Where a customer's birthday is in a platform's payload.

    ``metafield``: for platforms with customer metafields, one as
    ``namespace.key`` (the standard ``facts.birth_date`` by default).
    ``meta_key``: for platforms with meta keys, a customer or order meta key;
    None when the store keeps no birthday (there is no standard one to assume).
    """

    metafield: str = DEFAULT_BIRTHDAY_METAFIELD
    meta_key: str | None = None

    def __post_init__(self) -> None:
        if not _METAFIELD.fullmatch(self.metafield):
            raise ValueError("the birthday metafield must be namespace.key")

    @property
    def metafield_namespace(self) -> str:
        return self.metafield.split(".", 1)[0]

    @property
    def metafield_key(self) -> str:
        return self.metafield.split(".", 1)[1]


def birth_date(value: Any, today: date, where: str) -> date | None:
    """A birthday as stores write it: ``YYYY-MM-DD`` (a metafield's ``date`` type) or
    ``DD/MM/YYYY``. Anything else, an impossible date, one before 1905 or one after
    ``today`` is left out and logged: a bad birthday never fails a delivery."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = (value.strip() if isinstance(value, str) else repr(value))[:80]
    iso, dmy = _ISO_DATE.fullmatch(text), _DMY_DATE.fullmatch(text)
    if iso:
        year, month, day = (int(part) for part in iso.groups())
    elif dmy:
        day, month, year = (int(part) for part in dmy.groups())
    else:
        # the value itself is personal data: never in the log
        log.warning("%s: a birthday that is not a date (YYYY-MM-DD or DD/MM/YYYY), left out", where)
        return None
    try:
        born = date(year, month, day)
    except ValueError:
        log.warning("%s: a birthday that is not a day of the calendar, left out", where)
        return None
    if born.year < _EARLIEST_BIRTH_YEAR or born > today:
        log.warning("%s: a birthday before 1905 or in the future, left out", where)
        return None
    return born


@dataclass(frozen=True)
class ShopContext:
    """What translation may need to know about the shop a payload came from."""

    domain: str
    currency: str | None = None
    base_url: str | None = None  # the storefront, for product links
    # when we received the delivery: the time of last resort for payloads that carry none
    received_at: datetime | None = None
    #: for platforms without a consent field (WooCommerce)
    consent: ConsentRule = ConsentRule()
    #: where customers' birthdays are in the payloads
    birthday: BirthdayRule = BirthdayRule()

    @property
    def today(self) -> date:
        """The day the delivery came (today when unknown): a birthday after it is no birthday."""
        return (self.received_at or datetime.now(UTC)).date()


Translator = Callable[[Mapping[str, Any], ShopContext], list[Event]]


class WebhookSigner(StrEnum):
    """Whose secret signs a platform's webhooks."""

    #: our app's client secret signs every shop's deliveries (the app's
    #: secrets come from the server's configuration, rotation included)
    APP = "app"
    #: each shop signs with its own secret, given when the shop is connected
    SHOP = "shop"


class Platform(Protocol):
    @property
    def name(self) -> str:
        """The name in URLs (``/webhooks/<name>``) and in the store's ``platform`` columns."""
        ...

    @property
    def label(self) -> str:
        """The name as merchants and operators read it."""
        ...

    @property
    def sample_address(self) -> str:
        """A made-up shop address of the shape this platform's shops have (help texts, demos)."""
        ...

    @property
    def header_prefixes(self) -> tuple[str, ...]:
        """Lower-case prefixes of the platform's own delivery headers (kept with a delivery)."""
        ...

    @property
    def webhook_signer(self) -> WebhookSigner:
        """Whether the app's secret or a per-shop secret signs the webhooks."""
        ...

    @property
    def checkout_is_pending_order(self) -> bool:
        """An abandoned checkout is an unpaid order the store can be asked about.

        Its checkout token is then the order's id, so the re-check before a
        send can learn that it got paid even if no webhook said so.
        """
        ...

    @property
    def restores_deleted_products(self) -> bool:
        """A product the platform said it deleted can come back under the same id (a
        trash it is restored from). False: a deletion is final, and any later word of
        that product (a late or reordered update) is stale."""
        ...

    @property
    def topic_handlers(self) -> Mapping[str, Translator]:
        """topic -> translator; any other topic is either ignored or unsupported."""
        ...

    @property
    def ignored_topics(self) -> frozenset[str]:
        """Topics we receive but deliberately do nothing with."""
        ...

    def read_headers(self, headers: Mapping[str, str]) -> WebhookHeaders:
        """Pull the delivery's identity out of its headers; raise WebhookError."""
        ...

    def is_ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """True for an unsigned liveness ping that must simply be answered 200."""
        ...

    def verify(self, body: bytes, signature: str, secrets: Iterable[str]) -> bool:
        """Check the signature over the raw bytes exactly as received."""
        ...

    def shop_key(self, address: str) -> str:
        """The key the webhooks name the shop by, from any way of writing its address.

        Raises :class:`WebhookError` for what cannot be one of this platform's shops.
        """
        ...

    def storefront_url(self, address: str, *, allow_http: bool) -> str:
        """The shop's own web address, as we link to and call it; ValueError with a reason."""
        ...

    def storefront_cart_link(self, shop: ShopContext, cart_token: str) -> str | None:
        """The link that brings back the storefront cart ``cart_token`` (as its storefront
        events name it), when such a cart is a checkout to recover once we know whose it
        is; None where checkouts come from the platform's own webhooks instead (a
        storefront cart then stays a ``CartUpdated``)."""
        ...


class AdminApiError(RuntimeError):
    """An outbound call to a shop's API failed; ``transient`` says whether a retry may help.

    The message is fit to show a merchant: it never quotes the remote body (a
    store's address is the merchant's to choose, so its answer could be
    anything, an internal page included) nor a credential. ``detail`` holds
    the start of the body, for logs.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        status: int | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class DiscountRequest:
    """A personal, single-use discount code the engine wants to exist in the shop.

    The engine chooses ``code`` itself (derived from the message it belongs to),
    so creating it is idempotent: a client asked again for a code that already
    exists answers as if it had just created it, never with a second code.
    Exactly one of ``percent`` and ``amount`` is set.
    """

    code: str
    title: str
    expires_at: datetime
    percent: Decimal | None = None
    amount: Money | None = None
    #: restrict use to this customer (Shopify) or billing email (WooCommerce)
    email: str | None = None
    customer_id: str | None = None
    minimum_subtotal: Money | None = None


@dataclass(frozen=True)
class LiveOrderState:
    """An order as the platform sees it right now (the re-check before a send)."""

    order_id: str
    paid: bool
    cancelled: bool
    refunded: bool
    financial_status: str | None = None
    fulfillment_status: str | None = None


@dataclass(frozen=True)
class LiveQuestion:
    """What the re-check right before a send asks a shop's API (a flow's ``live_check``).

    ``order_id``: that order's state, where paid, cancelled or refunded ends the
    enrollment (a checkout that is a pending order). ``email`` with ``since``:
    whether that customer placed an order at or after ``since`` (a checkout
    that becomes a separate order when it completes).
    """

    order_id: str | None = None
    email: str | None = None
    since: datetime | None = None

    def __post_init__(self) -> None:
        if (self.order_id is None) == (self.email is None):
            raise ValueError("a live question asks about an order or a customer, one of them")
        if self.email is not None and (self.since is None or self.since.tzinfo is None):
            raise ValueError("a customer's orders are asked since an aware time")


class AdminClient(Protocol):
    """The outbound calls the engine makes to one shop (one per platform).

    Every method raises :class:`AdminApiError` on failure, after the client's
    own retries for rate limits and server errors.
    """

    def create_discount(self, request: DiscountRequest) -> str:
        """Make sure ``request.code`` exists; returns the platform's id for it."""
        ...

    def order_state(self, order_id: str) -> LiveOrderState | None:
        """The order's current state, or None if the platform no longer has it."""
        ...

    def ordered_since(self, email: str, since: datetime) -> LiveOrderState | None:
        """The customer's first order placed at or after ``since`` that counts (not a
        test, not cancelled), or None if there is none."""
        ...

    def products(self, product_ids: Iterable[str]) -> list[Product]:
        """The products the platform has of these ids, as they are now (title, handle,
        URL, image, price, status, availability). One it leaves out does not exist
        there: deleted (or, where deleted products can come back, in the trash)."""
        ...


def translate(platform: Platform, topic: str, payload: Any, shop: ShopContext) -> list[Event]:
    """Events for one delivery; an unknown or ignored topic yields none."""
    handler = platform.topic_handlers.get(topic)
    if handler is None:
        return []
    if not isinstance(payload, Mapping):
        raise WebhookError(400, f"{topic} payload must be a JSON object")
    return handler(payload, shop)


def hmac_sha256_base64(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_base64_hmac(body: bytes, signature: str, secrets: Iterable[str]) -> bool:
    """Constant-time check of ``base64(HMAC-SHA256(secret, body))`` against any secret."""
    given = signature.strip().encode("ascii", "replace")
    ok = False
    for secret in secrets:
        expected = hmac_sha256_base64(secret, body).encode("ascii")
        # no early exit: every secret is tried, so timing says nothing about which matched
        ok |= hmac.compare_digest(expected, given)
    return ok
