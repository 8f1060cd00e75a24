"""The WooCommerce REST v3 client: coupons, order state, products, webhooks, listings.

Authentication is HTTP Basic with the consumer key and secret, over HTTPS
only. A store reached over plain HTTP (development only) gets the keys as
query parameters instead, which WooCommerce accepts for local testing; no
error or log line ever names a URL with its query (see adapters.http).
Every call goes through :class:`adapters.http.ApiSession` (timeouts, backoff
on 429/5xx with ``Retry-After``). Lists are read page by page
(``per_page=100``) until ``X-WP-TotalPages`` says there are no more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests

from adapters.events import Product
from adapters.http import ApiSession, describe
from adapters.platform import (
    AdminApiError,
    DiscountRequest,
    LiveOrderState,
    ShopContext,
    WebhookError,
)
from adapters.woocommerce.translate import read_product

PER_PAGE = 100
#: what a WooCommerce error code looks like (the one part of an error body we repeat)
_ERROR_CODE = re.compile(r"[a-z0-9_]{1,80}")
#: a coupon code WooCommerce already has (codes are unique, matched case-insensitively)
CODE_TAKEN = "woocommerce_rest_coupon_code_already_exists"
#: order statuses in which the customer has paid
PAID_STATUSES = frozenset({"processing", "completed", "refunded"})
#: webhook topics the connector creates (the translator handles each)
WEBHOOK_TOPICS = (
    "order.created",
    "order.updated",
    "customer.created",
    "customer.updated",
    "product.created",
    "product.updated",
    "product.deleted",
    "product.restored",
)


def gmt(value: datetime) -> str:
    """WooCommerce's GMT date form: ``2026-09-14T17:12:41`` (no offset)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class RemoteWebhook:
    webhook_id: str
    topic: str
    delivery_url: str
    status: str


@dataclass(frozen=True)
class ListPage:
    """One page of a REST list: its items (as answered: not yet checked), its
    number, and the store's count of all items and pages when it sent them."""

    items: list[Any]
    number: int
    total: int | None
    pages: int | None


def _count(header: str | None) -> int | None:
    if header is None or not header.strip().isdigit():
        return None
    return int(header.strip())


@dataclass
class WooCommerceApi:
    base_url: str  # the store's home, e.g. https://butik.example.se
    consumer_key: str
    consumer_secret: str
    #: the shop's currency: WooCommerce's product prices carry none
    currency: str | None = None
    http: ApiSession = field(default_factory=ApiSession)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._https = self.base_url.startswith("https://")
        if self._https:
            self.http.http.auth = (self.consumer_key, self.consumer_secret)

    def _url(self, path: str) -> str:
        return f"{self.base_url}/wp-json/wc/v3/{path.lstrip('/')}"

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        allow: frozenset[int] = frozenset(),
    ) -> requests.Response:
        """One request; statuses in ``allow`` are returned for the caller to read."""
        query = dict(params or {})
        if not self._https:
            query.update(consumer_key=self.consumer_key, consumer_secret=self.consumer_secret)
        return self.http.request(
            method,
            self._url(path),
            params=query,
            json=json,
            expect=lambda r: r.ok or r.status_code in allow,
        )

    def page(self, path: str, number: int, params: Mapping[str, Any] | None = None) -> ListPage:
        """One page of a list endpoint, with the store's counts (``X-WP-Total``,
        ``X-WP-TotalPages``; None when absent or not numbers)."""
        response = self.call(
            "GET", path, params={"per_page": PER_PAGE, **(params or {}), "page": number}
        )
        items = _json(response)
        if not isinstance(items, list):
            raise AdminApiError(f"{path}: expected a list", transient=False)
        return ListPage(
            items=items,
            number=number,
            total=_count(response.headers.get("X-WP-Total")),
            pages=_count(response.headers.get("X-WP-TotalPages")),
        )

    def pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a list endpoint, page by page."""
        page = 1
        while True:
            response = self.call(
                "GET", path, params={**(params or {}), "per_page": PER_PAGE, "page": page}
            )
            items = _json(response)
            if not isinstance(items, list):
                raise AdminApiError(f"{path}: expected a list", transient=False)
            yield from items
            total = int(response.headers.get("X-WP-TotalPages") or page)
            if page >= total or not items:
                return
            page += 1

    # --- the connect's proof --------------------------------------------------------

    def verify_keys(self) -> None:
        """Raise unless the store accepts these keys for its webhooks (what a
        connect needs, and what made-up keys never get past: 401)."""
        answer = _json(self.call("GET", "webhooks", params={"per_page": 1}))
        if not isinstance(answer, list):
            raise AdminApiError(
                "the store's webhooks endpoint did not answer like WooCommerce", transient=False
            )

    # --- coupons -----------------------------------------------------------------

    def create_discount(self, request: DiscountRequest) -> str:
        body: dict[str, Any] = {
            "code": request.code.lower(),
            "description": request.title,
            "individual_use": True,
            "usage_limit": 1,
            "usage_limit_per_user": 1,
            "date_expires_gmt": gmt(request.expires_at),
        }
        if request.percent is not None:
            body.update(discount_type="percent", amount=_amount(request.percent))
        elif request.amount is not None:
            body.update(discount_type="fixed_cart", amount=_amount(request.amount.amount))
        else:
            raise ValueError("a discount needs a percent or an amount")
        if request.email:
            body["email_restrictions"] = [request.email]
        if request.minimum_subtotal is not None:
            body["minimum_amount"] = _amount(request.minimum_subtotal.amount)
        response = self.call("POST", "coupons", json=body, allow=frozenset({400}))
        answer = _json(response)
        if response.ok:
            return str(answer["id"])
        if isinstance(answer, dict) and answer.get("code") == CODE_TAKEN:
            # our codes are derived from the message: it is the one we made before
            found = _json(self.call("GET", "coupons", params={"code": body["code"]}))
            if isinstance(found, list) and found:
                return str(found[0]["id"])
        code = answer.get("code") if isinstance(answer, dict) else None
        message = answer.get("message") if isinstance(answer, dict) else answer
        raise AdminApiError(
            f"coupon {request.code}: the store refused it"
            + (f" ({code})" if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""),
            transient=False,
            status=400,
            detail=str(message)[:300],
        )

    # --- live state --------------------------------------------------------------

    def order_state(self, order_id: str) -> LiveOrderState | None:
        if not order_id.isdigit():
            # a cart before "Place order" (the checkout ``cart-<token>``): no order to ask of
            return None
        response = self.call("GET", f"orders/{order_id}", allow=frozenset({404}))
        if response.status_code == 404:
            return None
        return _order_state(_json(response))

    def ordered_since(self, email: str, since: datetime) -> LiveOrderState | None:
        # ``search`` matches more than the billing email, so the email is compared here;
        # only orders that went ahead count (not pending, failed, cancelled or drafts)
        params = {
            "search": email,
            "after": gmt(since),
            "dates_are_gmt": "true",
            "status": ",".join(sorted(PAID_STATUSES | {"on-hold"})),
            "orderby": "date",
            "order": "asc",
            "per_page": 20,
        }
        found = _json(self.call("GET", "orders", params=params))
        for order in found if isinstance(found, list) else []:
            billing = order.get("billing") or {}
            if str(billing.get("email") or "").strip().lower() == email.strip().lower():
                return _order_state(order)
        return None

    def products(self, product_ids: Iterable[str]) -> list[Product]:
        """The store's products of these ids, read as their webhooks are. The list's
        default ``status`` is ``any``, which leaves out the trash: a trashed product
        is answered as one the store does not have."""
        ids = [str(p) for p in product_ids]
        shop = ShopContext(
            domain=urlsplit(self.base_url).netloc, currency=self.currency, base_url=self.base_url
        )
        found: list[Product] = []
        for start in range(0, len(ids), PER_PAGE):
            chunk = ids[start : start + PER_PAGE]
            for item in self.pages("products", {"include": ",".join(chunk)}):
                try:
                    found.append(read_product(item, shop))
                except WebhookError as exc:
                    raise AdminApiError(
                        f"the store's product answer: {exc.message}", transient=False
                    ) from None
        return found

    # --- webhooks ----------------------------------------------------------------

    def webhooks(self) -> list[RemoteWebhook]:
        return [
            RemoteWebhook(
                webhook_id=str(item["id"]),
                topic=str(item.get("topic") or ""),
                delivery_url=str(item.get("delivery_url") or ""),
                status=str(item.get("status") or ""),
            )
            for item in self.pages("webhooks")
        ]

    def create_webhook(
        self, topic: str, delivery_url: str, secret: str, name: str
    ) -> RemoteWebhook:
        answer = _json(
            self.call(
                "POST",
                "webhooks",
                json={
                    "name": name,
                    "topic": topic,
                    "delivery_url": delivery_url,
                    "secret": secret,
                    "status": "active",
                },
            )
        )
        return RemoteWebhook(str(answer["id"]), topic, delivery_url, str(answer.get("status")))

    def update_webhook(self, webhook_id: str, **fields: str) -> RemoteWebhook:
        answer = _json(self.call("PUT", f"webhooks/{webhook_id}", json=fields))
        return RemoteWebhook(
            str(answer["id"]),
            str(answer.get("topic") or ""),
            str(answer.get("delivery_url") or ""),
            str(answer.get("status") or ""),
        )

    # --- reconciliation listings -------------------------------------------------

    def orders_modified_after(self, since: datetime) -> Iterator[dict[str, Any]]:
        return self.pages("orders", {"modified_after": gmt(since), "dates_are_gmt": "true"})

    def history_customers(self, number: int) -> ListPage:
        """A page of every customer, oldest account first: paging in id order stays
        stable while new customers register (they come last). Older stores' customer
        listing has no date filter, so all of them are read."""
        params = {"orderby": "id", "order": "asc", "role": "all"}
        return self.page("customers", number, params)

    def history_orders(self, since: datetime, number: int, per_page: int = PER_PAGE) -> ListPage:
        """A page of the orders created since ``since``, in id order (new ones come
        last); ``per_page=1`` asks only for their count."""
        params = {
            "after": gmt(since),
            "dates_are_gmt": "true",
            "orderby": "id",
            "order": "asc",
            "per_page": per_page,
        }
        return self.page("orders", number, params)

    def customers_newest_first(self) -> Iterator[dict[str, Any]]:
        # the customers endpoint has no modified_after: newest registrations first
        return self.pages(
            "customers", {"orderby": "registered_date", "order": "desc", "role": "all"}
        )


def _order_state(order: Mapping[str, Any]) -> LiveOrderState:
    status = str(order.get("status") or "")
    return LiveOrderState(
        order_id=str(order["id"]),
        paid=status in PAID_STATUSES or bool(order.get("date_paid_gmt")),
        cancelled=status == "cancelled",
        refunded=status == "refunded",
        financial_status=status or None,
        fulfillment_status="fulfilled" if status == "completed" else None,
    )


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError):  # not JSON, or nested past any real answer
        # described without its query: a development store's keys travel there
        raise AdminApiError(
            f"{describe(str(response.request.method), str(response.url))}: the answer is not "
            "JSON (are the store's permalinks set to plain?)",
            transient=False,
            status=response.status_code,
        ) from None


def _amount(value: Decimal) -> str:
    return format(value.normalize(), "f")
