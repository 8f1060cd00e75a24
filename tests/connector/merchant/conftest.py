"""A signed-in merchant for the merchant app's tests: a browser's cookie session and
the CSRF token its pages carry."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from connector.app import create_app
from jobs.runtime import Runtime
from jobs.store.models import Shop
from tests.connector.test_merchant import sign_in
from tests.support import SHOPIFY_SHOP, STORE

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@dataclass
class Merchant:
    """A browser signed in for one shop."""

    client: FlaskClient
    shop_id: int
    csrf: str

    def api(
        self, method: str, path: str, body: Any = None, *, csrf: bool = True, **kwargs: Any
    ) -> TestResponse:
        headers = dict(kwargs.pop("headers", {}))
        if csrf:
            headers.setdefault("X-CSRF-Token", self.csrf)
        if body is not None:
            kwargs["json"] = body
        return self.client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)


def shop_id_of(runtime: Runtime, key: str) -> int:
    with runtime.sessions() as session:
        return session.scalars(select(Shop.id).where(Shop.key.contains(key))).one()


def signed_in(client: FlaskClient, shop_id: int) -> Merchant:
    sign_in(client, shop_id)
    page = client.get("/app/")
    assert page.status_code == 200, page.text
    found = CSRF_META.search(page.text)
    assert found is not None
    return Merchant(client, shop_id, found.group(1))


@pytest.fixture
def merchant(client: FlaskClient, runtime: Runtime) -> Merchant:
    """The Shopify shop's merchant (the suite's client has a WooCommerce store too)."""
    return signed_in(client, shop_id_of(runtime, SHOPIFY_SHOP))


@pytest.fixture
def other_client(client: FlaskClient, runtime: Runtime) -> FlaskClient:
    """A second browser (another merchant's), on an app of its own: a test client kept
    open (``with client``) holds its app context, and a second client on the same app
    would share its ``g`` (and so its CSRF token), which no real server does."""
    return create_app(runtime=runtime).test_client()


@pytest.fixture
def woo_merchant(other_client: FlaskClient, runtime: Runtime) -> Merchant:
    """The WooCommerce store's merchant, in their own browser."""
    host = STORE.split("//", 1)[1].rstrip("/")
    return signed_in(other_client, shop_id_of(runtime, host))
