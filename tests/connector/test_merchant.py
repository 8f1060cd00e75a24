"""Merchant sessions: bound to one shop, required for the settings page."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select

from jobs.notices import clear_notice, raise_notice
from jobs.runtime import Runtime
from jobs.store.models import Shop, ShopStatus
from tests.support import SHOPIFY_SHOP


def _shop_id(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return session.scalars(select(Shop.id).where(Shop.key == SHOPIFY_SHOP)).one()


def test_settings_page_needs_a_merchant_session(client: FlaskClient) -> None:
    response = client.get("/settings")
    assert response.status_code == 401


def test_settings_page_shows_the_sessions_shop(client: FlaskClient, runtime: Runtime) -> None:
    with client.session_transaction() as session:
        session["shop_id"] = _shop_id(runtime)
    response = client.get("/settings")
    assert response.status_code == 200
    assert SHOPIFY_SHOP in response.get_data(as_text=True)


def test_uninstalled_shop_ends_the_session(client: FlaskClient, runtime: Runtime) -> None:
    shop_id = _shop_id(runtime)
    with runtime.sessions.begin() as session:
        session.get_one(Shop, shop_id).status = ShopStatus.UNINSTALLED
    with client.session_transaction() as session:
        session["shop_id"] = shop_id
    assert client.get("/settings").status_code == 401
    with client.session_transaction() as session:
        assert "shop_id" not in session


def test_open_notices_show_until_cleared(client: FlaskClient, runtime: Runtime) -> None:
    shop_id = _shop_id(runtime)
    with runtime.sessions.begin() as session:
        raise_notice(session, shop_id, "webhook_disabled", "Your order webhook was disabled.")
        raise_notice(session, shop_id, "webhook_disabled", "Your order webhook was disabled.")
    with client.session_transaction() as session:
        session["shop_id"] = shop_id
    page = client.get("/settings").get_data(as_text=True)
    assert "Your order webhook was disabled." in page
    assert page.count('data-code="webhook_disabled"') == 1
    with runtime.sessions.begin() as session:
        assert clear_notice(session, shop_id, "webhook_disabled")
        assert not clear_notice(session, shop_id, "webhook_disabled")
    assert "webhook was disabled" not in client.get("/settings").get_data(as_text=True)
    with runtime.sessions.begin() as session:
        notice = raise_notice(session, shop_id, "webhook_disabled", "Disabled again.")
        assert (notice.count, notice.cleared_at) == (1, None)
