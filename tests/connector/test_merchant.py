"""Merchant sessions: bound to one shop, held in the store, required for the settings page."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from http.cookies import SimpleCookie

import flask
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from connector.app import create_app
from connector.merchant import auth
from jobs.merchant import sessions
from jobs.merchant.notices import clear_notice, raise_notice
from jobs.merchant.shops import mark_uninstalled
from jobs.runtime import Runtime
from jobs.store.models import HistoryImport, MerchantSession, Shop, ShopStatus, now
from tests.support import SHOPIFY_SHOP

COOKIE = "session"  # Flask's session cookie
ORIGIN = "http://127.0.0.1:8000"  # the suite's base URL


def sign_in(client: FlaskClient, shop_id: int) -> None:
    """Sign this browser in for the shop, the way the install and connect flows do."""
    with client.application.test_request_context():
        auth.login(shop_id)
        granted = dict(flask.session)
    with client.session_transaction() as cookie:
        cookie.clear()
        cookie.update(granted)


def signed_in_shop(client: FlaskClient) -> int | None:
    """The shop this browser's cookie signs it in for right now, if any."""
    with client.session_transaction() as cookie:
        held = dict(cookie)
    with client.application.test_request_context():
        flask.session.update(held)
        return auth.current_shop_id()


def csrf_of(client: FlaskClient) -> dict[str, str]:
    """The CSRF token the signed-in pages carry, as the sign-out form posts it."""
    page = client.get("/app/")
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found is not None, page.status_code
    return {"csrf_token": found.group(1)}


def cookie_of(client: FlaskClient) -> str:
    found = client.get_cookie(COOKIE)
    assert found is not None
    return found.value


def set_clock(app: Flask, at: datetime) -> None:
    app.extensions[auth.CLOCK] = lambda: at


def _shop_id(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return session.scalars(select(Shop.id).where(Shop.key == SHOPIFY_SHOP)).one()


def _sessions(runtime: Runtime) -> list[MerchantSession]:
    with runtime.sessions() as session:
        return list(session.scalars(select(MerchantSession).order_by(MerchantSession.id)))


def test_settings_page_needs_a_merchant_session(client: FlaskClient) -> None:
    response = client.get("/app/")
    assert response.status_code == 401


def test_settings_page_shows_the_sessions_shop(client: FlaskClient, runtime: Runtime) -> None:
    sign_in(client, _shop_id(runtime))
    response = client.get("/app/")
    assert response.status_code == 200
    assert SHOPIFY_SHOP in response.get_data(as_text=True)
    assert 'class="history"' not in response.get_data(as_text=True)  # no import: no progress line


def test_settings_page_says_how_far_the_history_import_is(
    client: FlaskClient, runtime: Runtime
) -> None:
    shop_id = _shop_id(runtime)
    with runtime.sessions.begin() as session:
        session.add(
            HistoryImport(
                shop_id=shop_id, since=now() - timedelta(days=730), read=41200, total=100000
            )
        )
    sign_in(client, shop_id)
    page = client.get("/app/").get_data(as_text=True)
    assert "Importing your history: 41,200 of 100,000 customers and orders (41 %)" in page


def test_a_signed_cookie_that_only_names_a_shop_signs_nobody_in(
    client: FlaskClient, runtime: Runtime
) -> None:
    with client.session_transaction() as cookie:
        cookie["shop_id"] = _shop_id(runtime)
    assert client.get("/app/").status_code == 401


def test_the_cookie_holds_a_random_id_the_store_only_its_hash(
    client: FlaskClient, runtime: Runtime
) -> None:
    shop_id = _shop_id(runtime)
    sign_in(client, shop_id)
    with client.session_transaction() as cookie:
        token = cookie[auth.SESSION_KEY]
        assert "shop_id" not in cookie
    [row] = _sessions(runtime)
    assert row.shop_id == shop_id
    assert token not in row.token_hash
    assert row.expires_at - row.created_at == sessions.LIFETIME
    assert row.revoked_at is None


def _set_cookie_header(app: Flask, shop_id: int) -> str:
    with app.test_request_context():
        auth.login(shop_id)
        response = app.make_response("")
        app.session_interface.save_session(app, flask.session, response)
    return response.headers["Set-Cookie"]


def test_the_session_cookie_is_http_only_lax_bounded_and_secure_over_https(
    runtime: Runtime, client: FlaskClient
) -> None:
    shop_id = _shop_id(runtime)
    plain = SimpleCookie(_set_cookie_header(client.application, shop_id))[COOKIE]
    assert plain["httponly"] is True
    assert plain["samesite"] == "Lax"
    assert not plain["secure"]
    lasts = parsedate_to_datetime(plain["expires"]) - now()
    assert sessions.LIFETIME - timedelta(minutes=5) < lasts <= sessions.LIFETIME

    https = dataclasses.replace(
        runtime, settings=dataclasses.replace(runtime.settings, base_url="https://tp.example.com")
    )
    secure = SimpleCookie(_set_cookie_header(create_app(runtime=https), shop_id))[COOKIE]
    assert secure["secure"] is True


def test_uninstalled_shop_ends_the_session(client: FlaskClient, runtime: Runtime) -> None:
    shop_id = _shop_id(runtime)
    sign_in(client, shop_id)
    with runtime.sessions.begin() as session:
        session.get_one(Shop, shop_id).status = ShopStatus.UNINSTALLED
    assert client.get("/app/").status_code == 401
    with client.session_transaction() as cookie:
        assert auth.SESSION_KEY not in cookie
    [row] = _sessions(runtime)
    assert row.revoked_at is not None


def test_an_uninstall_ends_every_session_of_the_shop_in_the_store(
    client: FlaskClient, runtime: Runtime
) -> None:
    shop_id = _shop_id(runtime)
    sign_in(client, shop_id)
    other = client.application.test_client()
    sign_in(other, shop_id)
    with runtime.sessions.begin() as session:
        mark_uninstalled(session.get_one(Shop, shop_id), now())
    assert all(row.revoked_at is not None for row in _sessions(runtime))
    with runtime.sessions.begin() as session:
        session.get_one(Shop, shop_id).status = ShopStatus.ACTIVE  # as if installed again
    assert client.get("/app/").status_code == 401
    assert other.get("/app/").status_code == 401


def test_logout_ends_the_session_so_a_copy_of_the_cookie_signs_nobody_in(
    client: FlaskClient, runtime: Runtime
) -> None:
    sign_in(client, _shop_id(runtime))
    copied = cookie_of(client)
    assert client.get("/app/").status_code == 200

    token = csrf_of(client)
    assert client.post("/logout", headers={"Origin": ORIGIN}).status_code == 403  # no token
    answer = client.post("/logout", headers={"Origin": ORIGIN}, data=token)
    assert answer.status_code == 200
    assert client.get("/app/").status_code == 401
    [row] = _sessions(runtime)
    assert row.revoked_at is not None

    client.set_cookie(COOKIE, copied)
    assert client.get("/app/").status_code == 401
    assert client.get("/settings/privacy/1.json").status_code == 401


def test_a_cross_site_logout_is_refused_and_the_session_stays(
    client: FlaskClient, runtime: Runtime
) -> None:
    sign_in(client, _shop_id(runtime))
    token = csrf_of(client)
    for origin in ("https://evil.example", "null", "http://127.0.0.1:8000.evil.example"):
        assert client.post("/logout", headers={"Origin": origin}, data=token).status_code == 403
    assert client.post("/logout").status_code == 403  # a form of another site has no token
    assert client.get("/app/").status_code == 200
    # a form on the settings page itself (no Origin from older browsers) signs out
    assert client.post("/logout", data=token).status_code == 200
    assert client.get("/app/").status_code == 401


def test_a_session_ends_after_its_idle_bound(client: FlaskClient, runtime: Runtime) -> None:
    start = now()
    set_clock(client.application, start)
    sign_in(client, _shop_id(runtime))
    set_clock(client.application, start + sessions.IDLE_TIMEOUT - timedelta(seconds=1))
    assert client.get("/app/").status_code == 200  # used: the idle bound starts again
    set_clock(client.application, start + 2 * sessions.IDLE_TIMEOUT - timedelta(seconds=2))
    assert client.get("/app/").status_code == 200
    set_clock(client.application, start + 3 * sessions.IDLE_TIMEOUT)
    assert client.get("/app/").status_code == 401


def test_a_session_in_constant_use_still_ends_at_its_lifetime(
    client: FlaskClient, runtime: Runtime
) -> None:
    start = now()
    set_clock(client.application, start)
    sign_in(client, _shop_id(runtime))
    at = start
    while at + sessions.TOUCH_EVERY * 30 < start + sessions.LIFETIME:
        at += sessions.TOUCH_EVERY * 30
        set_clock(client.application, at)
        assert client.get("/app/").status_code == 200, at - start
    set_clock(client.application, start + sessions.LIFETIME)
    assert client.get("/app/").status_code == 401


def test_signing_in_again_ends_the_browsers_earlier_session_and_purges_dead_ones(
    client: FlaskClient, runtime: Runtime
) -> None:
    shop_id = _shop_id(runtime)
    start = now()
    set_clock(client.application, start)
    sign_in(client, shop_id)
    first = cookie_of(client)
    with client.application.test_request_context(headers={"Cookie": f"{COOKIE}={first}"}):
        auth.login(shop_id)  # the same browser signs in again
    assert client.get("/app/").status_code == 401  # it still holds the first cookie
    assert len(_sessions(runtime)) == 1  # the ended one is gone already

    idle = client.application.test_client()
    sign_in(idle, shop_id)
    assert len(_sessions(runtime)) == 2
    set_clock(client.application, start + sessions.IDLE_TIMEOUT)
    sign_in(client, shop_id)
    [row] = _sessions(runtime)
    assert row.created_at == start + sessions.IDLE_TIMEOUT


def test_open_notices_show_until_cleared(client: FlaskClient, runtime: Runtime) -> None:
    shop_id = _shop_id(runtime)
    with runtime.sessions.begin() as session:
        raise_notice(session, shop_id, "webhook_disabled", "Your order webhook was disabled.")
        raise_notice(session, shop_id, "webhook_disabled", "Your order webhook was disabled.")
    sign_in(client, shop_id)
    page = client.get("/app/").get_data(as_text=True)
    assert "Your order webhook was disabled." in page
    assert page.count('data-code="webhook_disabled"') == 1
    with runtime.sessions.begin() as session:
        assert clear_notice(session, shop_id, "webhook_disabled")
        assert not clear_notice(session, shop_id, "webhook_disabled")
    assert "webhook was disabled" not in client.get("/app/").get_data(as_text=True)
    with runtime.sessions.begin() as session:
        notice = raise_notice(session, shop_id, "webhook_disabled", "Disabled again.")
        assert (notice.count, notice.cleared_at) == (1, None)
