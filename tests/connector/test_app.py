"""The app as a whole: ids in URLs beyond what the store can hold are not found."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from connector.app import ID_MAX
from jobs.runtime import Runtime
from jobs.store.models import Shop
from tests.connector.test_merchant import sign_in
from tests.support import SHOPIFY_SHOP

INT_PART = re.compile(r"<int(?:\([^)]*\))?:(\w+)>")
OTHER_PART = re.compile(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>")


def _with_id(rule: str, digits: str) -> str:
    """The rule's URL with every integer part set to ``digits`` and any other part to ``x``."""
    return OTHER_PART.sub("x", INT_PART.sub(digits, rule))


def _routes_with_ids(app: Flask) -> list[tuple[str, str]]:
    """(rule, method) for every route with an integer in its URL, HEAD included."""
    return [
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if INT_PART.search(rule.rule)
        for method in sorted((rule.methods or set()) - {"OPTIONS"})
    ]


@pytest.fixture
def merchant(client: FlaskClient, runtime: Runtime) -> FlaskClient:
    """Signed in, so that merchant routes answer past their session check."""
    with runtime.sessions() as session:
        shop_id = session.scalars(select(Shop.id).where(Shop.key == SHOPIFY_SHOP)).one()
    sign_in(client, shop_id)
    return client


def test_every_route_with_an_id_is_checked(merchant: FlaskClient) -> None:
    rules = {rule for rule, _ in _routes_with_ids(merchant.application)}
    assert {
        "/t/c/<int:shop_id>/<token>",
        "/t/o/<int:shop_id>/<token>.gif",
        "/u/<int:shop_id>/<token>",
        "/p/<int:shop_id>/<token>",
        "/settings/privacy/<int:request_id>.json",
    } <= rules


@pytest.mark.parametrize(
    "digits",
    [str(2**70), str(ID_MAX + 1), "9" * 5000],  # the last is beyond Python's own int() limit
    ids=["2**70", "2**63", "5000 digits"],
)
def test_an_id_the_store_cannot_hold_is_not_found(merchant: FlaskClient, digits: str) -> None:
    for rule, method in _routes_with_ids(merchant.application):
        response = merchant.open(_with_id(rule, digits), method=method)
        assert response.status_code == 404, (rule, method, response.status_code)


def test_the_largest_id_the_store_holds_is_looked_up(merchant: FlaskClient) -> None:
    for rule, method in _routes_with_ids(merchant.application):
        response = merchant.open(_with_id(rule, str(ID_MAX)), method=method)
        # not there, or a token that does not fit: an answer, never a crash
        assert response.status_code in (200, 400, 404), (rule, method, response.status_code)
