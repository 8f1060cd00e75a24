"""A platform the code has never heard of, registered in the three registries only,
receives signed webhooks end to end through the generic paths."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from flask import Blueprint
from flask.testing import FlaskClient
from sqlalchemy import select

from adapters import events as ev
from adapters import registry as adapters_registry
from adapters.platform import (
    AdminClient,
    ShopContext,
    Translator,
    WebhookError,
    WebhookHeaders,
    WebhookSigner,
    hmac_sha256_base64,
    verify_base64_hmac,
)
from connector.app import create_app
from connector.platforms import registry as connector_registry
from connector.platforms.common import ConnectorPlatform
from jobs.intake import deliveries
from jobs.merchant.shops import ShopError, add_shop
from jobs.platforms import registry as jobs_registry
from jobs.platforms.server import PlatformServer
from jobs.reports.decisions import find_shop
from jobs.runtime import Runtime
from jobs.store.models import Checkout, Delivery, Enrollment, Shop
from tests.support import dumps

SECRET = "acme-signing-secret"
AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _checkout(payload: Mapping[str, Any], shop: ShopContext) -> list[ev.Event]:
    updated = datetime.fromisoformat(payload["updated"])
    checkout = ev.Checkout(
        token=str(payload["id"]),
        customer=None,
        email=payload["email"],
        recovery_url=f"{shop.base_url}/cart/{payload['id']}",
        total=ev.Money(Decimal(payload["total"]), "EUR"),
        line_items=(),
        updated_at=updated,
    )
    return [ev.CheckoutUpdated(occurred_at=updated, checkout=checkout)]


@dataclass(frozen=True)
class Acme:
    name: str = "acme"
    label: str = "Acme Commerce"
    sample_address: str = "https://store.acme.test"
    header_prefixes: tuple[str, ...] = ("x-acme-",)
    webhook_signer: WebhookSigner = WebhookSigner.SHOP
    checkout_is_pending_order: bool = False
    restores_deleted_products: bool = False
    topic_handlers: Mapping[str, Translator] = field(
        default_factory=lambda: {"checkout.updated": _checkout}
    )
    ignored_topics: frozenset[str] = frozenset({"store.pinged"})

    def read_headers(self, headers: Mapping[str, str]) -> WebhookHeaders:
        lower = {k.lower(): v for k, v in headers.items()}
        if not lower.get("x-acme-signature"):
            raise WebhookError(401, "missing X-Acme-Signature")
        return WebhookHeaders(
            shop_key=self.shop_key(lower.get("x-acme-store", "")),
            topic=lower.get("x-acme-topic", ""),
            delivery_id=lower.get("x-acme-delivery") or None,
            signature=lower["x-acme-signature"],
        )

    def is_ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return False

    def verify(self, body: bytes, signature: str, secrets: Iterable[str]) -> bool:
        return verify_base64_hmac(body, signature, secrets)

    def shop_key(self, address: str) -> str:
        key = address.strip().lower().removeprefix("https://").rstrip("/")
        if not key.endswith(".acme.test"):
            raise WebhookError(401, f"{address!r} is not an Acme store")
        return key

    def storefront_url(self, address: str, *, allow_http: bool) -> str:
        return f"https://{self.shop_key(address)}"

    def storefront_cart_link(self, shop: ShopContext, cart_token: str) -> str | None:
        return None


def _no_client(runtime: Runtime, shop: Shop, http: Any) -> AdminClient | None:
    return None


blueprint = Blueprint("acme", __name__, url_prefix="/acme")


@blueprint.get("/connect")
def connect() -> str:
    return "connect your Acme store"


@pytest.fixture
def acme(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> Iterator[FlaskClient]:
    """The three registry lines a new platform adds, then an app built with them."""
    monkeypatch.setitem(adapters_registry.PLATFORMS, "acme", Acme())
    monkeypatch.setitem(jobs_registry.SERVERS, "acme", PlatformServer("acme", _no_client))
    monkeypatch.setitem(connector_registry.CONNECTORS, "acme", ConnectorPlatform("acme", blueprint))
    with create_app(runtime=runtime).test_client() as client:
        yield client


def _headers(body: bytes, *, topic: str = "checkout.updated", secret: str = SECRET) -> dict:
    return {
        "Content-Type": "application/json",
        "X-Acme-Store": "https://Butik.Acme.test/",
        "X-Acme-Topic": topic,
        "X-Acme-Delivery": "d-1",
        "X-Acme-Signature": hmac_sha256_base64(secret, body),
        "X-Other": "not kept",
    }


def _add_shop(runtime: Runtime) -> int:
    with runtime.sessions.begin() as session:
        return add_shop(
            session, runtime.secrets, "acme", "butik.acme.test", webhook_secret=SECRET
        ).id


def test_a_third_platform_needs_its_shops_own_secret(runtime: Runtime, acme: FlaskClient) -> None:
    with runtime.sessions.begin() as session, pytest.raises(ShopError, match="Acme Commerce"):
        add_shop(session, runtime.secrets, "acme", "butik.acme.test")


def test_a_third_platforms_signed_checkout_becomes_an_enrolment(
    runtime: Runtime, acme: FlaskClient
) -> None:
    shop_id = _add_shop(runtime)
    body = dumps(
        {"id": 77, "email": "kund@example.se", "total": "25.00", "updated": AT.isoformat()}
    )

    forged = acme.post("/webhooks/acme", data=body, headers=_headers(body, secret="guess"))
    assert forged.status_code == 401
    answer = acme.post("/webhooks/acme", data=body, headers=_headers(body))
    assert answer.status_code == 200
    assert answer.json == {"status": "stored"}
    ignored = acme.post("/webhooks/acme", data=b"{}", headers=_headers(b"{}", topic="store.pinged"))
    assert ignored.json == {"status": "ignored"}

    assert deliveries.drain(runtime, shop_id) == 1
    with runtime.sessions() as session:
        [delivery] = session.scalars(select(Delivery)).all()
        assert set(delivery.headers) == {
            "X-Acme-Store",
            "X-Acme-Topic",
            "X-Acme-Delivery",
            "X-Acme-Signature",
        }
        checkout = session.scalar(select(Checkout).where(Checkout.shop_id == shop_id))
        assert checkout is not None
        assert checkout.token == "77"
        assert checkout.recovery_url == "https://butik.acme.test/cart/77"
        enrolled = session.scalars(select(Enrollment.flow).where(Enrollment.shop_id == shop_id))
        assert "cart_recovery" in set(enrolled)
        # found by any way of writing its address, as the CLI's ``why`` does
        found = find_shop(session, "https://BUTIK.acme.test")
        assert found is not None
        assert found.id == shop_id


def test_a_third_platforms_own_pages_are_served(acme: FlaskClient) -> None:
    assert acme.get("/acme/connect").text == "connect your Acme store"
