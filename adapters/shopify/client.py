"""The Shopify Admin API client: GraphQL only, one configured API version.

Rate limits come two ways. An HTTP 429 (or 5xx) is retried by
:class:`adapters.http.ApiSession`, honouring ``Retry-After``. The GraphQL cost
throttle answers 200 with a ``THROTTLED`` error and the bucket's state in
``extensions.cost.throttleStatus``; we wait exactly as long as the bucket
needs to refill for the query's requested cost, then ask again, within the
session's retry policy as for a ``Retry-After``: no longer than its cap, no
more often than its attempts (a send's best-effort questions use a quick one).

A 401 means the access token expired or was revoked: the token source is
asked once for a fresh token (an expiring offline token is refreshed), and if
it has none the call fails as permanent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from adapters.events import Product
from adapters.http import ApiSession, excerpt
from adapters.payload import Fields, clean_text
from adapters.platform import (
    AdminApiError,
    DiscountRequest,
    LiveOrderState,
    WebhookError,
)

#: ids per ``nodes`` query (it takes up to 250): a product of PRODUCTS costs about 28
#: points (its first 20 variants count), and no query may cost more than 1,000
PRODUCTS_PER_QUERY = 25
#: cost-throttle waits longer than this fail as transient (the job retries later)
MAX_THROTTLE_WAIT = 20.0
THROTTLE_ATTEMPTS = 4


class TokenSource(Protocol):
    """Where the client gets the shop's access token (the store, refreshing as needed)."""

    def access_token(self) -> str: ...

    def after_rejection(self, rejected: str) -> str | None:
        """A token to try instead of one the API rejected with 401, or None."""
        ...


def gid(kind: str, value: str) -> str:
    """``("Order", "450789469")`` -> ``gid://shopify/Order/450789469`` (a GID stays one)."""
    return value if value.startswith("gid://") else f"gid://shopify/{kind}/{value}"


def legacy_id(value: str) -> str:
    return value.rsplit("/", 1)[-1]


def version_at_least(version: str, floor: str) -> bool:
    return version == "unstable" or version >= floor


def topic_enum(topic: str) -> str:
    """``app/uninstalled`` -> ``APP_UNINSTALLED`` (the GraphQL topic enum)."""
    return topic.replace("/", "_").upper()


@dataclass(frozen=True)
class ShopDetails:
    name: str | None
    currency: str | None
    timezone: str | None
    #: the primary domain customers shop on (links in emails go there)
    storefront_url: str | None


class RemoteSubscription(NamedTuple):
    """A webhook subscription as the shop lists it."""

    topic: str  # the GraphQL enum name, ORDERS_CREATE
    remote_id: str
    address: str
    namespaces: tuple[str, ...]


class GraphQLError(AdminApiError):
    """The API answered with GraphQL errors or user errors."""


class WebPixelError(GraphQLError):
    """Shopify refused to create or update the app's web pixel (its user errors, in words)."""


@dataclass(frozen=True)
class WebPixel:
    """The app's web pixel in a shop: its GID and the settings it runs with."""

    remote_id: str
    settings: dict[str, Any]


def _messages(errors: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(str(e.get("message", e)) for e in errors)


@dataclass
class ShopifyAdmin:
    shop: str  # the validated myshopify domain
    tokens: TokenSource
    api_version: str
    http: ApiSession = field(default_factory=ApiSession)
    sleep: Callable[[float], None] = time.sleep

    @property
    def endpoint(self) -> str:
        return f"https://{self.shop}/admin/api/{self.api_version}/graphql.json"

    # --- transport -------------------------------------------------------------

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The query's ``data``; AdminApiError (transient or not) on any failure."""
        attempts = min(THROTTLE_ATTEMPTS, self.http.retry.attempts)
        longest = min(MAX_THROTTLE_WAIT, self.http.retry.cap)
        for attempt in range(attempts):
            body = self._post({"query": query, "variables": dict(variables or {})})
            errors = body.get("errors")
            if not errors:
                data = body.get("data")
                if not isinstance(data, dict):
                    raise GraphQLError("Shopify answered without data", transient=False)
                return data
            if not isinstance(errors, list):
                raise GraphQLError(f"Shopify: {errors}", transient=False)
            codes = {(e.get("extensions") or {}).get("code") for e in errors}
            if "THROTTLED" in codes:
                wait = _throttle_wait(body)
                if wait > longest or attempt == attempts - 1:
                    raise GraphQLError(
                        f"Shopify's cost throttle: {wait:.1f} s to refill", transient=True
                    )
                self.sleep(wait)
                continue
            transient = bool(codes & {"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"})
            raise GraphQLError(f"Shopify: {_messages(errors)}", transient=transient)
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        token = self.tokens.access_token()
        response = self._send(token, payload)
        if response.status_code == 401:
            fresh = self.tokens.after_rejection(token)
            if fresh is None:
                raise AdminApiError(
                    f"{self.shop} rejected our access token (uninstalled, or the grant expired)",
                    transient=False,
                    status=401,
                )
            response = self._send(fresh, payload)
            if response.status_code == 401:
                raise AdminApiError(
                    f"{self.shop} rejected a freshly refreshed token: {excerpt(response)}",
                    transient=False,
                    status=401,
                )
        try:
            body = response.json()
        except ValueError as exc:
            raise AdminApiError(f"{self.shop}: GraphQL answer is not JSON", transient=True) from exc
        if not isinstance(body, dict):
            raise AdminApiError(f"{self.shop}: GraphQL answer is not an object", transient=False)
        return body

    def _send(self, token: str, payload: dict[str, Any]) -> Any:
        return self.http.request(
            "POST",
            self.endpoint,
            json=payload,
            headers={"X-Shopify-Access-Token": token},
            expect=lambda r: r.ok or r.status_code == 401,
        )

    # --- discount codes --------------------------------------------------------

    def create_discount(self, request: DiscountRequest) -> str:
        data = self.graphql(DISCOUNT_CREATE, {"basicCodeDiscount": self._discount_input(request)})[
            "discountCodeBasicCreate"
        ]
        errors = data.get("userErrors") or []
        if not errors and data.get("codeDiscountNode"):
            return str(data["codeDiscountNode"]["id"])
        if any(e.get("code") == "TAKEN" for e in errors):
            # our codes are derived from the message, so "taken" means we made it before
            found = self.graphql(DISCOUNT_BY_CODE, {"code": request.code})
            node = found.get("codeDiscountNodeByCode")
            if node:
                return str(node["id"])
        raise GraphQLError(f"discount {request.code}: {_messages(errors)}", transient=False)

    def _discount_input(self, request: DiscountRequest) -> dict[str, Any]:
        if request.percent is not None:
            value: dict[str, Any] = {"percentage": float(request.percent / Decimal(100))}
        elif request.amount is not None:
            value = {
                "discountAmount": {"amount": str(request.amount.amount), "appliesOnEachItem": False}
            }
        else:
            raise ValueError("a discount needs a percent or an amount")
        customers = (
            {"customers": {"add": [gid("Customer", request.customer_id)]}}
            if request.customer_id
            else None
        )
        fields: dict[str, Any] = {
            "title": request.title,
            "code": request.code,
            "startsAt": datetime.now(UTC).isoformat(),
            "endsAt": request.expires_at.isoformat(),
            "customerGets": {"value": value, "items": {"all": True}},
            "appliesOncePerCustomer": True,
            "usageLimit": 1,
        }
        # ``context`` replaced ``customerSelection`` (which still works, deprecated)
        if version_at_least(self.api_version, "2025-04"):
            fields["context"] = customers or {"all": "ALL"}
        else:
            fields["customerSelection"] = customers or {"all": True}
        if request.minimum_subtotal is not None:
            fields["minimumRequirement"] = {
                "subtotal": {"greaterThanOrEqualToSubtotal": str(request.minimum_subtotal.amount)}
            }
        return fields

    # --- live state ------------------------------------------------------------

    def order_state(self, order_id: str) -> LiveOrderState | None:
        order = self.graphql(ORDER_STATE, {"id": gid("Order", order_id)}).get("order")
        return _order_state(order) if order else None

    def ordered_since(self, email: str, since: datetime) -> LiveOrderState | None:
        """The customer's first order since ``since``, through the ``orders`` search
        (``email`` and ``created_at`` filters of Shopify's search syntax; needs
        read_orders). Test and cancelled orders are passed over, as in our store."""
        search = f"email:{_quoted(email)} created_at:>={_quoted(since.astimezone(UTC).isoformat())}"
        found = self.graphql(ORDERED_SINCE, {"query": search}).get("orders") or {}
        for order in found.get("nodes") or []:
            if order and order.get("id") and not order.get("test") and not order.get("cancelledAt"):
                return _order_state(order)
        return None

    def products(self, product_ids: Iterable[str]) -> list[Product]:
        """The products Shopify has of these ids: ``nodes`` answers null for an id that
        names no product (a deleted one: Shopify keeps nothing of it)."""
        ids = [gid("Product", p) for p in product_ids]
        found: list[Product] = []
        for start in range(0, len(ids), PRODUCTS_PER_QUERY):
            data = self.graphql(PRODUCTS, {"ids": ids[start : start + PRODUCTS_PER_QUERY]})
            nodes = data.get("nodes")
            if not isinstance(nodes, list):
                raise GraphQLError("Shopify answered without the products' nodes", transient=False)
            found += [_product(node) for node in nodes if node]
        return found

    def shop_details(self) -> ShopDetails:
        shop = self.graphql(SHOP_DETAILS)["shop"]
        domain = shop.get("primaryDomain") or {}
        return ShopDetails(
            name=shop.get("name"),
            currency=shop.get("currencyCode"),
            timezone=shop.get("ianaTimezone"),
            storefront_url=(domain.get("url") or "").rstrip("/") or None,
        )

    # --- webhook subscriptions -------------------------------------------------

    @property
    def _uses_uri(self) -> bool:
        # ``uri`` replaced ``callbackUrl`` in 2025-10
        return version_at_least(self.api_version, "2025-10")

    def subscription_list(self) -> list[RemoteSubscription]:
        """Every webhook subscription of the app in the shop, at any address."""
        query = LIST_SUBSCRIPTIONS_URI if self._uses_uri else LIST_SUBSCRIPTIONS_CALLBACK
        found: list[RemoteSubscription] = []
        after: str | None = None
        while True:
            page = self.graphql(query, {"after": after})["webhookSubscriptions"]
            for node in page.get("nodes") or []:
                address = node.get("uri") or (node.get("endpoint") or {}).get("callbackUrl") or ""
                namespaces = tuple(str(n) for n in node.get("metafieldNamespaces") or ())
                found.append(
                    RemoteSubscription(str(node["topic"]), str(node["id"]), address, namespaces)
                )
            info = page.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return found
            after = info.get("endCursor")

    def webhook_subscriptions(self) -> dict[str, tuple[str, str, tuple[str, ...]]]:
        """Our existing subscriptions: topic enum name -> (GID, address, metafield namespaces)
        (of several to one topic, the last listed)."""
        return {s.topic: (s.remote_id, s.address, s.namespaces) for s in self.subscription_list()}

    def subscribe(self, topic: str, address: str, namespaces: Sequence[str] = ()) -> str:
        """Create the subscription for ``topic`` (as ``checkouts/update``); returns its GID.
        ``namespaces``: the metafield namespaces its payloads are to carry."""
        target = {"uri": address} if self._uses_uri else {"callbackUrl": address}
        extra = {"metafieldNamespaces": list(namespaces)} if namespaces else {}
        data = self.graphql(
            SUBSCRIBE,
            {
                "topic": topic_enum(topic),
                "webhookSubscription": {**target, "format": "JSON", **extra},
            },
        )["webhookSubscriptionCreate"]
        errors = data.get("userErrors") or []
        if errors or not data.get("webhookSubscription"):
            raise GraphQLError(f"subscribing to {topic}: {_messages(errors)}", transient=False)
        return str(data["webhookSubscription"]["id"])

    def _ask_for_namespaces(self, topic: str, sid: str, namespaces: Sequence[str]) -> None:
        """An existing subscription's payloads carry these metafield namespaces from now on."""
        data = self.graphql(
            UPDATE_SUBSCRIPTION,
            {"id": sid, "webhookSubscription": {"metafieldNamespaces": list(namespaces)}},
        )["webhookSubscriptionUpdate"]
        errors = data.get("userErrors") or []
        if errors or not data.get("webhookSubscription"):
            raise GraphQLError(f"updating {topic}: {_messages(errors)}", transient=False)

    def ensure_subscriptions(
        self,
        topics: Iterable[str],
        address: str,
        namespaces: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, str]:
        """Every topic subscribed at ``address`` (existing ones kept): topic -> GID.

        ``namespaces``: topic -> the metafield namespaces its payloads must carry
        (the birthday's, for customer topics); an existing subscription without
        one of them is updated to ask for it.

        A subscription to the same topic at another address (an old deployment
        URL) is left alone: Shopify delivers to each, and intake deduplicates.
        """
        wanted = namespaces or {}
        existing = {
            s.topic: (s.remote_id, s.namespaces)
            for s in self.subscription_list()
            if s.address == address
        }
        made: dict[str, str] = {}
        for topic in topics:
            asked = tuple(wanted.get(topic, ()))
            known = existing.get(topic_enum(topic))
            if known is None:
                made[topic] = self.subscribe(topic, address, asked)
                continue
            sid, has = known
            if not set(asked) <= set(has):
                self._ask_for_namespaces(topic, sid, sorted(set(has) | set(asked)))
            made[topic] = sid
        return made

    # --- the web pixel ---------------------------------------------------------

    def ensure_web_pixel(self, settings: Mapping[str, str]) -> WebPixel:
        """The app's web pixel on in the shop with exactly these settings (the fields
        extensions/triggerpost-pixel/shopify.extension.toml declares).

        An app has at most one web pixel per shop: creating a second answers the
        user error ``TAKEN``, and then the existing one is read and updated when
        its settings differ. Any other user error (settings the deployed extension
        does not declare, no extension deployed) is a :class:`WebPixelError`.
        """
        wanted = dict(settings)
        data = self.graphql(WEB_PIXEL_CREATE, {"webPixel": {"settings": wanted}})
        made = data.get("webPixelCreate") or {}
        errors = made.get("userErrors") or []
        if not errors and made.get("webPixel"):
            return _web_pixel(made["webPixel"])
        if not errors or any(e.get("code") != "TAKEN" for e in errors):
            raise WebPixelError(f"Shopify answered {_pixel_errors(errors)}", transient=False)
        found = self.graphql(WEB_PIXEL).get("webPixel")
        if not found:
            raise WebPixelError("Shopify says the web pixel exists but shows none", transient=True)
        current = _web_pixel(found)
        if current.settings == wanted:
            return current
        data = self.graphql(
            WEB_PIXEL_UPDATE, {"id": current.remote_id, "webPixel": {"settings": wanted}}
        )
        updated = data.get("webPixelUpdate") or {}
        errors = updated.get("userErrors") or []
        if errors or not updated.get("webPixel"):
            raise WebPixelError(
                f"Shopify answered {_pixel_errors(errors)} to new settings", transient=False
            )
        return _web_pixel(updated["webPixel"])


PAID_STATUSES = frozenset({"PAID", "PARTIALLY_REFUNDED", "REFUNDED"})


def _web_pixel(node: Mapping[str, Any]) -> WebPixel:
    """A ``WebPixel`` node; its ``settings`` (JSON) may come as an object or as JSON text."""
    raw = node.get("settings")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    if not node.get("id") or not isinstance(raw, dict):
        raise GraphQLError("Shopify's web pixel answer has no id or settings", transient=False)
    return WebPixel(remote_id=str(node["id"]), settings=raw)


def _pixel_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """User errors in words, each with its code (INVALID_SETTINGS, NO_EXTENSION, ...)."""
    found = []
    for error in errors:
        message = str(error.get("message") or "?").rstrip(". ")
        found.append(f'"{message}" ({error["code"]})' if error.get("code") else f'"{message}"')
    return "; ".join(found) or "without the pixel"


def _order_state(order: Mapping[str, Any]) -> LiveOrderState:
    financial = order.get("displayFinancialStatus")
    return LiveOrderState(
        order_id=legacy_id(str(order["id"])),
        paid=financial in PAID_STATUSES,
        cancelled=order.get("cancelledAt") is not None,
        refunded=financial == "REFUNDED",
        financial_status=financial.lower() if financial else None,
        fulfillment_status=(order.get("displayFulfillmentStatus") or "").lower() or None,
    )


def _quoted(value: str) -> str:
    """A search syntax value in double quotes (dates must be quoted; an email may hold
    characters the syntax treats as special)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _throttle_wait(body: Mapping[str, Any]) -> float:
    cost = (body.get("extensions") or {}).get("cost") or {}
    status = cost.get("throttleStatus") or {}
    try:
        needed = float(cost.get("requestedQueryCost", 0)) - float(status["currentlyAvailable"])
        rate = float(status["restoreRate"])
    except (KeyError, TypeError, ValueError):
        return 1.0
    return max(0.5, needed / rate) if rate > 0 else 1.0


def _product(node: Any) -> Product:
    """A ``Product`` node in the common model, its status in the webhooks' lower case;
    available when a variant (of its first 20) can be sold, unknown when none says."""
    try:
        f = Fields.root(node, "product")
        media = f.child("featuredMedia")
        preview = media.child("preview") if media else None
        image = preview.child("image") if preview else None
        prices = f.child("priceRangeV2")
        lowest = prices.child("minVariantPrice") if prices else None
        variants = f.child("variants")
        sellable = [
            flag
            for variant in (variants.children("nodes") if variants else [])
            if (flag := variant.flag("availableForSale")) is not None
        ]
        status = f.text("status")
        tags = f.data.get("tags") or []
        if not isinstance(tags, list):
            raise f.error("tags", "must be a JSON array")
        return Product(
            product_id=legacy_id(f.require(f.text("id"), "id")),
            title=f.require(f.text("title"), "title"),
            updated_at=f.require(f.time("updatedAt"), "updatedAt"),
            handle=f.text("handle"),
            url=f.text("onlineStoreUrl"),
            image_url=image.text("url") if image else None,
            price=lowest.money("amount", lowest.text("currencyCode")) if lowest else None,
            status=status.lower() if status else None,
            available=any(sellable) if sellable else None,
            tags=tuple(tag for tag in map(clean_text, tags) if tag),
        )
    except WebhookError as exc:
        raise GraphQLError(f"Shopify's product answer: {exc.message}", transient=False) from None


DISCOUNT_CREATE = """
mutation DiscountCreate($basicCodeDiscount: DiscountCodeBasicInput!) {
  discountCodeBasicCreate(basicCodeDiscount: $basicCodeDiscount) {
    codeDiscountNode { id }
    userErrors { field code message }
  }
}"""

DISCOUNT_BY_CODE = """
query DiscountByCode($code: String!) {
  codeDiscountNodeByCode(code: $code) { id }
}"""

SHOP_DETAILS = """
query ShopDetails {
  shop { name currencyCode ianaTimezone primaryDomain { url } }
}"""

ORDER_STATE = """
query OrderState($id: ID!) {
  order(id: $id) { id cancelledAt displayFinancialStatus displayFulfillmentStatus }
}"""

#: ``orders`` with a search ``query`` (shopify.dev/docs/api/admin-graphql/latest/queries/orders,
#: filters ``email`` and ``created_at``; syntax: shopify.dev/docs/api/usage/search-syntax)
ORDERED_SINCE = """
query OrderedSince($query: String!) {
  orders(first: 10, sortKey: CREATED_AT, query: $query) {
    nodes { id createdAt test cancelledAt displayFinancialStatus displayFulfillmentStatus }
  }
}"""

#: ``nodes`` with the Product fields an email shows
#: (shopify.dev/docs/api/admin-graphql/latest/queries/nodes, objects/Product)
PRODUCTS = """
query Products($ids: [ID!]!) {
  nodes(ids: $ids) {
    ... on Product {
      id title handle status onlineStoreUrl updatedAt tags
      featuredMedia { preview { image { url } } }
      priceRangeV2 { minVariantPrice { amount currencyCode } }
      variants(first: 20) { nodes { availableForSale } }
    }
  }
}"""

SUBSCRIBE = """
mutation Subscribe(
  $topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!
) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id }
    userErrors { field message }
  }
}"""

UPDATE_SUBSCRIPTION = """
mutation UpdateSubscription($id: ID!, $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionUpdate(id: $id, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id metafieldNamespaces }
    userErrors { field message }
  }
}"""

LIST_SUBSCRIPTIONS_URI = """
query Subscriptions($after: String) {
  webhookSubscriptions(first: 100, after: $after) {
    nodes { id topic uri metafieldNamespaces }
    pageInfo { hasNextPage endCursor }
  }
}"""

LIST_SUBSCRIPTIONS_CALLBACK = """
query Subscriptions($after: String) {
  webhookSubscriptions(first: 100, after: $after) {
    nodes { id topic metafieldNamespaces endpoint { ... on WebhookHttpEndpoint { callbackUrl } } }
    pageInfo { hasNextPage endCursor }
  }
}"""

#: the app's web pixel (shopify.dev/docs/api/admin-graphql/latest/mutations/webPixelCreate,
#: webPixelUpdate, queries/webPixel: without an id, the app's own); write_pixels and
#: read_customer_events scopes
WEB_PIXEL_CREATE = """
mutation WebPixelCreate($webPixel: WebPixelInput!) {
  webPixelCreate(webPixel: $webPixel) {
    webPixel { id settings }
    userErrors { field code message }
  }
}"""

WEB_PIXEL = """
query WebPixel {
  webPixel { id settings }
}"""

WEB_PIXEL_UPDATE = """
mutation WebPixelUpdate($id: ID!, $webPixel: WebPixelInput!) {
  webPixelUpdate(id: $id, webPixel: $webPixel) {
    webPixel { id settings }
    userErrors { field code message }
  }
}"""
