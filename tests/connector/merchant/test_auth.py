"""Who is asking: a cookie session from a login link, or Shopify's session token inside the
admin; one shop per request, nothing across shops, every refusal logged."""

from __future__ import annotations

import dataclasses
import html
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select

from connector import cli
from connector.app import create_app
from connector.merchant import auth
from jobs.merchant import login_links
from jobs.merchant.shops import add_shop, mark_uninstalled
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.store.models import LoginLink, Shop, Subscription, now
from tests.adapters.test_shopify_session_token import claims, mint
from tests.connector.merchant.conftest import CSRF_META
from tests.connector.merchant.test_overview import effective, stored
from tests.connector.test_merchant import set_clock, sign_in, signed_in_shop
from tests.connector.test_shopify_install import (
    API_KEY,
    GRANTED,
    SHOP,
    TOKEN_URL,
    FakeShopify,
    shopify,  # noqa: F401 (the fixture)
    signed,
)
from tests.support import SHOPIFY_SECRET, SHOPIFY_SHOP

OTHER = "grannbutiken.myshopify.com"
#: a page behind merchant_required: the merchant app's overview
PAGE = "/app/"
HOST = "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZmphbGxidXRpaw"
ADMIN = "https://admin.shopify.com"
APP_BRIDGE = "https://cdn.shopify.com/shopifycloud/app-bridge.js"
#: what a browser's navigation accepts
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings, with the Shopify app's client id configured."""
    return dataclasses.replace(settings, shopify_api_key=API_KEY)


def _installed(runtime: Runtime, domain: str) -> int:
    """A shop installed through us: token held, scopes granted, webhooks subscribed."""
    with runtime.sessions.begin() as session:
        shop = add_shop(session, runtime.secrets, "shopify", domain, name=domain.split(".")[0])
        shop.access_token_enc = runtime.secrets.seal("shpat_held")
        shop.scopes = GRANTED
        session.flush()
        session.add(
            Subscription(
                shop_id=shop.id,
                topic="orders/create",
                remote_id="gid://shopify/WebhookSubscription/1",
                address="http://127.0.0.1:8000/webhooks/shopify",
                checked_at=now(),
            )
        )
        return shop.id


@pytest.fixture
def shops(runtime: Runtime) -> dict[str, int]:
    return {SHOP: _installed(runtime, SHOP), OTHER: _installed(runtime, OTHER)}


@pytest.fixture
def web(runtime: Runtime, shops: dict[str, int]) -> Iterator[FlaskClient]:
    with create_app(runtime=runtime).test_client() as client:
        yield client


def token(shop: str = SHOP, at: datetime | None = None, **changes: Any) -> str:
    """A session token as App Bridge gets it from Shopify for this app."""
    payload = claims(shop, at=at or datetime.now(UTC), **{"aud": API_KEY, **changes})
    return mint(payload, secret=SHOPIFY_SECRET)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]


# --- session tokens ----------------------------------------------------------------------


def test_a_genuine_session_token_signs_the_request_in_for_its_shop(
    web: FlaskClient, shops: dict[str, int]
) -> None:
    answer = web.get("/api/v1/flows", headers=bearer(token()))
    assert answer.status_code == 200
    assert answer.json["flows"]
    assert web.get_cookie("session") is None  # nothing for the browser to keep


def test_the_request_records_how_it_was_signed_in(
    web: FlaskClient, runtime: Runtime, shops: dict[str, int]
) -> None:
    app = web.application
    with app.test_request_context(PAGE, headers=bearer(token())):
        assert auth.current_shop_id() == shops[SHOP]
        assert auth.g.merchant_via == auth.Via.TOKEN
        assert auth.embedded() is None  # an API call, not a page load
    with app.test_request_context(PAGE):
        auth.login(shops[OTHER])
        assert auth.g.merchant_via == auth.Via.COOKIE


def _expired() -> str:
    return token(at=datetime.now(UTC) - timedelta(minutes=5))


def _not_yet() -> str:
    return token(nbf=int(datetime.now(UTC).timestamp()) + 120)


REFUSED = {
    "forged": lambda: token().rsplit(".", 1)[0] + ".AAAA",
    "other secret": lambda: mint(claims(SHOP, at=datetime.now(UTC), aud=API_KEY), "not-ours"),
    "expired": _expired,
    "not yet valid": _not_yet,
    "wrong audience": lambda: token(aud="another-apps-client-id"),
    "alg none": lambda: mint(claims(SHOP, at=datetime.now(UTC), aud=API_KEY), alg="none"),
    "garbage": lambda: "garbage",
    "empty": lambda: "",
    "oversized": lambda: token(padding="x" * 5000),
    "not installed": lambda: token("nobody-here.myshopify.com"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_refused_token_signs_nobody_in_and_is_logged(
    web: FlaskClient, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.WARNING)
    answer = web.get(PAGE, headers=bearer(REFUSED[kind]()))
    assert answer.status_code == 401
    assert refusals(caplog)


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer ", "Bearer a b c", "bearer " + "x" * 20_000, "Bearer \x00"]
)
def test_a_malformed_authorization_header_is_refused(
    web: FlaskClient, caplog: pytest.LogCaptureFixture, header: str
) -> None:
    caplog.set_level(logging.WARNING)
    assert web.get(PAGE, headers={"Authorization": header}).status_code == 401
    assert refusals(caplog)


def test_a_token_of_an_uninstalled_shop_signs_nobody_in(
    web: FlaskClient, runtime: Runtime, shops: dict[str, int]
) -> None:
    with runtime.sessions.begin() as session:
        mark_uninstalled(session.get_one(Shop, shops[SHOP]), now())
    assert web.get(PAGE, headers=bearer(token())).status_code == 401


def test_another_shops_token_changes_that_shop_never_this_browsers(
    web: FlaskClient, runtime: Runtime, shops: dict[str, int]
) -> None:
    sign_in(web, shops[SHOP])
    answer = web.patch(
        "/api/v1/flows/welcome", json={"enabled": False}, headers=bearer(token(OTHER))
    )
    assert answer.status_code == 200
    assert effective(runtime, shops[OTHER]).flows["welcome"]["enabled"] is False
    assert effective(runtime, shops[SHOP]).flows["welcome"]["enabled"] is True
    page = web.get(PAGE, headers=bearer(token(OTHER))).get_data(as_text=True)
    assert "grannbutiken" in page
    assert "fjallbutik" not in page


def test_a_bearer_request_needs_no_csrf_token_and_a_cookie_one_does(
    web: FlaskClient, runtime: Runtime, shops: dict[str, int]
) -> None:
    sign_in(web, shops[SHOP])
    before = stored(runtime, shops[SHOP])
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"X-CSRF-Token": "forged"}):
        refused = web.patch("/api/v1/flows/welcome", json={"enabled": False}, headers=headers)
        assert refused.status_code == 403, headers
        assert refused.is_json
    assert stored(runtime, shops[SHOP]) == before
    answer = web.patch("/api/v1/flows/welcome", json={"enabled": False}, headers=bearer(token()))
    assert answer.status_code == 200
    assert effective(runtime, shops[SHOP]).flows["welcome"]["enabled"] is False


def test_a_csrf_token_from_another_session_is_refused(
    web: FlaskClient, runtime: Runtime, shops: dict[str, int]
) -> None:
    other = create_app(runtime=runtime).test_client()
    sign_in(other, shops[OTHER])
    found = CSRF_META.search(other.get(PAGE).get_data(as_text=True))
    assert found is not None
    sign_in(web, shops[SHOP])
    before = stored(runtime, shops[SHOP])
    crossed = web.patch(
        "/api/v1/flows/welcome", json={"enabled": False}, headers={"X-CSRF-Token": found[1]}
    )
    assert crossed.status_code == 403
    assert stored(runtime, shops[SHOP]) == before


def test_signing_out_takes_the_pages_csrf_token_and_our_origin(
    web: FlaskClient, shops: dict[str, int]
) -> None:
    sign_in(web, shops[SHOP])
    found = CSRF_META.search(web.get(PAGE).get_data(as_text=True))
    assert found is not None
    assert web.post("/logout").status_code == 403
    assert signed_in_shop(web) == shops[SHOP]
    elsewhere = web.post(
        "/logout", data={"csrf_token": found[1]}, headers={"Origin": "https://evil.example"}
    )
    assert elsewhere.status_code == 403
    assert signed_in_shop(web) == shops[SHOP]
    assert web.post("/logout", data={"csrf_token": found[1]}).status_code == 200
    assert signed_in_shop(web) is None


def test_a_refused_token_is_not_rescued_by_the_cookie_it_comes_with(
    web: FlaskClient, shops: dict[str, int]
) -> None:
    sign_in(web, shops[SHOP])
    assert web.get(PAGE, headers=bearer(_expired())).status_code == 401
    assert web.get(PAGE, headers={"Authorization": "Bearer"}).status_code == 401
    assert web.get(PAGE).status_code == 200  # the session itself lives on


def test_another_authorization_scheme_is_not_ours_and_the_cookie_decides(
    web: FlaskClient, shops: dict[str, int]
) -> None:
    """A proxy's Basic credentials in front of a staging site sign nobody out."""
    sign_in(web, shops[SHOP])
    assert web.get(PAGE, headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 200


# --- the embedded app: opened in the Shopify admin ------------------------------------------


def embedded_query(shop: str = SHOP, id_token: str | None = None) -> str:
    return signed(
        {"embedded": "1", "host": HOST, "id_token": id_token or token(shop), "shop": shop}
    )


def test_an_embedded_open_goes_to_the_app_with_the_token_and_sets_no_cookie(
    web: FlaskClient,
) -> None:
    answer = web.get(f"/shopify/install?{embedded_query()}")
    assert answer.status_code == 302
    target = urlsplit(answer.headers["Location"])
    assert target.path == auth.HOME
    query = parse_qs(target.query)
    assert query["embedded"] == ["1"]
    assert query["shop"] == [SHOP]
    assert query["host"] == [HOST]
    assert query["id_token"]
    assert "Set-Cookie" not in answer.headers
    assert web.get_cookie("session") is None


def test_an_embedded_open_without_a_token_is_sent_for_one(web: FlaskClient) -> None:
    opened = web.get(f"/shopify/install?{signed({'embedded': '1', 'host': HOST, 'shop': SHOP})}")
    assert opened.status_code == 302
    assert urlsplit(opened.headers["Location"]).path == auth.HOME
    bounced = web.get(opened.headers["Location"])
    assert bounced.status_code == 302
    assert urlsplit(bounced.headers["Location"]).path == "/shopify/session-token-bounce"
    assert web.get_cookie("session") is None


def test_an_embedded_page_load_is_signed_in_by_its_token_and_framed_by_its_admin_only(
    web: FlaskClient,
) -> None:
    answer = web.get(
        PAGE, query_string={"embedded": "1", "shop": SHOP, "host": HOST, "id_token": token()}
    )
    assert answer.status_code == 200
    policy = answer.headers["Content-Security-Policy"]
    assert f"frame-ancestors https://{SHOP} {ADMIN}" in policy
    assert OTHER not in policy
    assert "X-Frame-Options" not in answer.headers
    assert f"script-src {APP_BRIDGE} 'self'" in policy
    head = answer.get_data(as_text=True).split("</head>")[0]
    assert f'<meta name="shopify-api-key" content="{API_KEY}">' in head
    assert head.index("<script") == head.index(f'<script src="{APP_BRIDGE}"')  # the first


def test_an_embedded_page_keeps_its_markers_on_links_never_the_token(web: FlaskClient) -> None:
    page = web.get(
        PAGE, query_string={"embedded": "1", "shop": SHOP, "host": HOST, "id_token": token()}
    ).get_data(as_text=True)
    assert f"/app/?embedded=1&amp;shop={SHOP}&amp;host={HOST}" in page
    assert "id_token" not in page.split("</head>")[1]
    assert "Sign out" not in page  # a session token has nothing to sign out of


def test_an_embedded_pages_links_name_the_tokens_shop_not_the_urls(web: FlaskClient) -> None:
    answer = web.get(
        PAGE, query_string={"embedded": "1", "shop": OTHER, "host": HOST, "id_token": token()}
    )
    page = answer.get_data(as_text=True)
    assert f"shop={SHOP}" in page
    assert f"shop={OTHER}" not in page
    assert OTHER not in answer.headers["Content-Security-Policy"]


def test_the_admins_open_ends_on_the_overview_with_app_bridge(web: FlaskClient) -> None:
    opened = web.get(f"/shopify/install?{embedded_query()}")
    page = web.get(opened.headers["Location"])
    assert page.status_code == 200
    assert APP_BRIDGE in page.get_data(as_text=True).split("</head>")[0]
    assert "fjallbutik" in page.get_data(as_text=True)


def test_a_page_outside_the_admin_has_no_app_bridge(
    web: FlaskClient, shops: dict[str, int]
) -> None:
    sign_in(web, shops[SHOP])
    page = web.get(PAGE)
    assert page.status_code == 200
    assert APP_BRIDGE not in page.get_data(as_text=True)
    assert "shopify-api-key" not in page.get_data(as_text=True)


def test_every_other_answer_stays_unframable(web: FlaskClient, shops: dict[str, int]) -> None:
    sign_in(web, shops[SHOP])
    for answer in (web.get(PAGE), web.get("/healthz"), web.get(PAGE, headers=bearer(token()))):
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert APP_BRIDGE not in answer.headers["Content-Security-Policy"]


@pytest.mark.parametrize("kind", ["forged", "expired", "wrong audience", "alg none"])
def test_an_embedded_open_with_a_bad_token_is_refused_and_logged(
    web: FlaskClient, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.WARNING)
    answer = web.get(f"/shopify/install?{embedded_query(id_token=REFUSED[kind]())}")
    assert answer.status_code == 401
    assert refusals(caplog)
    assert web.get_cookie("session") is None
    # the refusal shows in the admin's frame, never framed by a shop's own origin
    assert f"frame-ancestors {ADMIN}" in answer.headers["Content-Security-Policy"]


def test_an_embedded_open_with_another_shops_token_is_refused(
    web: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    answer = web.get(f"/shopify/install?{embedded_query(SHOP, id_token=token(OTHER))}")
    assert answer.status_code == 401
    assert any(OTHER in message for message in refusals(caplog))


@pytest.mark.parametrize("kind", ["forged", "expired", "wrong audience"])
def test_an_embedded_page_load_with_a_bad_token_is_refused(
    web: FlaskClient, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.WARNING)
    answer = web.get(
        PAGE,
        query_string={"embedded": "1", "shop": SHOP, "host": HOST, "id_token": REFUSED[kind]()},
    )
    assert answer.status_code == 401
    assert refusals(caplog)


def test_a_token_in_the_query_of_a_post_signs_nothing_in(web: FlaskClient) -> None:
    answer = web.post(f"/logout?id_token={token()}")
    assert auth.ID_TOKEN not in (answer.headers.get("Location") or "")
    with web.application.test_request_context(f"{PAGE}?id_token={token()}", method="POST"):
        assert auth.current_shop_id() is None


def test_a_page_load_inside_the_admin_without_a_token_goes_through_the_bounce_page(
    web: FlaskClient,
) -> None:
    answer = web.get(PAGE, query_string={"embedded": "1", "shop": SHOP, "host": HOST})
    assert answer.status_code == 302
    target = urlsplit(answer.headers["Location"])
    assert target.path == "/shopify/session-token-bounce"
    query = parse_qs(target.query)
    assert query["shop"] == [SHOP]
    assert query["host"] == [HOST]
    back = urlsplit(query["shopify-reload"][0])
    assert (back.scheme, back.netloc, back.path) == ("http", "127.0.0.1:8000", PAGE)
    assert parse_qs(back.query) == {"embedded": ["1"], "shop": [SHOP], "host": [HOST]}

    bounce = web.get(answer.headers["Location"])
    assert bounce.status_code == 200
    page = bounce.get_data(as_text=True)
    head = page.split("</head>")[0]
    assert f'<meta name="shopify-api-key" content="{API_KEY}">' in head
    assert f'<script src="{APP_BRIDGE}"></script>' in head
    assert head.index("<script") == head.index(f'<script src="{APP_BRIDGE}"')  # the first
    assert "open triggerpost again from your Shopify admin" in page  # without App Bridge
    policy = bounce.headers["Content-Security-Policy"]
    assert f"frame-ancestors https://{SHOP} {ADMIN}" in policy
    assert f"script-src {APP_BRIDGE}" in policy
    assert "X-Frame-Options" not in bounce.headers


def test_a_stale_token_on_a_followed_link_is_left_behind_by_the_bounce(
    web: FlaskClient,
) -> None:
    """The frame says where it is (Sec-Fetch-Dest) even when a link dropped the markers."""
    answer = web.get(PAGE, headers={"Sec-Fetch-Dest": "iframe"})
    assert answer.status_code == 302
    assert urlsplit(answer.headers["Location"]).path == "/shopify/session-token-bounce"


def test_without_an_embedded_app_configured_a_frame_gets_401_not_a_bounce(
    runtime: Runtime, shops: dict[str, int]
) -> None:
    plain = dataclasses.replace(
        runtime, settings=dataclasses.replace(runtime.settings, shopify_api_key=None)
    )
    web = create_app(runtime=plain).test_client()
    assert web.get(PAGE, headers={"Sec-Fetch-Dest": "iframe"}).status_code == 401


@pytest.mark.parametrize(
    "reload",
    [
        "https://evil.example/app/",
        "//evil.example/app/",
        "/app/",
        "http://127.0.0.1:8000@evil.example/",
        "javascript:alert(1)",
    ],
)
def test_the_bounce_page_only_reloads_our_own_pages(web: FlaskClient, reload: str) -> None:
    answer = web.get(
        "/shopify/session-token-bounce",
        query_string={"shop": SHOP, "host": HOST, "shopify-reload": reload},
    )
    assert answer.status_code == 400


def test_the_bounce_page_is_framed_by_the_admin_only_for_a_shop_it_cannot_read(
    web: FlaskClient,
) -> None:
    answer = web.get(
        "/shopify/session-token-bounce",
        query_string={"shop": "evil.example", "shopify-reload": "http://127.0.0.1:8000/app/"},
    )
    assert answer.status_code == 200
    assert "evil.example" not in answer.headers["Content-Security-Policy"]
    assert f"frame-ancestors {ADMIN}" in answer.headers["Content-Security-Policy"]


def test_a_browser_outside_the_admin_without_a_session_gets_401(web: FlaskClient) -> None:
    assert web.get(PAGE).status_code == 401


def test_the_first_embedded_open_installs_the_shop_by_token_exchange(
    runtime: Runtime,
    shopify: FakeShopify,  # noqa: F811 (the fixture)
) -> None:
    web = create_app(runtime=runtime).test_client()
    id_token = token()
    answer = web.get(f"/shopify/install?{embedded_query(id_token=id_token)}")
    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert urlsplit(answer.headers["Location"]).path == auth.HOME

    [exchange] = shopify.calls_to(TOKEN_URL)
    form = parse_qs(str(exchange.request.body))
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:token-exchange"]
    assert form["subject_token"] == [id_token]
    assert form["subject_token_type"] == ["urn:ietf:params:oauth:token-type:id_token"]
    assert form["requested_token_type"] == [
        "urn:shopify:params:oauth:token-type:offline-access-token"
    ]
    assert form["expiring"] == ["1"]
    with runtime.sessions() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOP)).one()
        assert runtime.secrets.open(shop.access_token_enc or "") == "shpat_first"
        assert shop.name == "Fjällbutiken"  # subscribed and described, as an OAuth install
        assert session.scalars(select(Subscription).where(Subscription.shop_id == shop.id)).all()
    # opened again: installed, so no second exchange
    web.get(f"/shopify/install?{embedded_query()}")
    assert len(shopify.calls_to(TOKEN_URL)) == 1


def test_a_first_embedded_open_with_a_forged_token_never_reaches_shopify(
    runtime: Runtime,
    shopify: FakeShopify,  # noqa: F811 (the fixture)
) -> None:
    web = create_app(runtime=runtime).test_client()
    forged = mint(claims(SHOP, at=datetime.now(UTC), aud=API_KEY), secret="not-ours")
    assert web.get(f"/shopify/install?{embedded_query(id_token=forged)}").status_code == 401
    assert shopify.calls_to(TOKEN_URL) == []


# --- login links -------------------------------------------------------------------------


def _link(runtime: Runtime, shop_id: int, minutes: int = 15) -> str:
    with runtime.sessions.begin() as session:
        return login_links.issue(session, shop_id, now(), timedelta(minutes=minutes))


def test_a_login_link_signs_in_once_and_lands_in_the_app(
    web: FlaskClient, runtime: Runtime, shops: dict[str, int]
) -> None:
    link = f"/login/{_link(runtime, shops[SHOP])}"
    answer = web.get(link)
    assert answer.status_code == 303
    assert answer.headers["Location"] == auth.HOME
    assert signed_in_shop(web) == shops[SHOP]

    replayer = web.application.test_client()
    replayed = replayer.get(link, headers=BROWSER)
    assert replayed.status_code == 410
    assert "This sign-in link has expired or was used already" in replayed.get_data(as_text=True)
    assert signed_in_shop(replayer) is None


def test_a_head_request_spends_no_login_link(
    web: FlaskClient, runtime: Runtime, shops: dict[str, int]
) -> None:
    link = f"/login/{_link(runtime, shops[SHOP])}"
    assert web.head(link).status_code == 200
    assert signed_in_shop(web) is None
    assert web.get(link).status_code == 303
    assert signed_in_shop(web) == shops[SHOP]


def test_an_expired_login_link_signs_nobody_in(
    web: FlaskClient, runtime: Runtime, shops: dict[str, int]
) -> None:
    link = f"/login/{_link(runtime, shops[SHOP], minutes=5)}"
    set_clock(web.application, now() + timedelta(minutes=6))
    answer = web.get(link)
    assert answer.status_code == 410
    assert signed_in_shop(web) is None


def test_a_login_link_of_an_uninstalled_shop_signs_nobody_in(
    web: FlaskClient, runtime: Runtime, shops: dict[str, int]
) -> None:
    link = f"/login/{_link(runtime, shops[SHOP])}"
    with runtime.sessions.begin() as session:
        mark_uninstalled(session.get_one(Shop, shops[SHOP]), now())
    assert web.get(link).status_code == 410
    assert signed_in_shop(web) is None


@pytest.mark.parametrize("made_up", ["x", "A" * 43, "%00", "a" * 4000])
def test_a_made_up_login_link_signs_nobody_in(
    web: FlaskClient, caplog: pytest.LogCaptureFixture, made_up: str
) -> None:
    caplog.set_level(logging.WARNING)
    answer = web.get(f"/login/{made_up}")
    assert answer.status_code in (404, 410)
    assert signed_in_shop(web) is None


def test_a_login_link_ends_the_browsers_earlier_session(
    web: FlaskClient, runtime: Runtime, shops: dict[str, int]
) -> None:
    sign_in(web, shops[OTHER])
    web.get(f"/login/{_link(runtime, shops[SHOP])}")
    assert signed_in_shop(web) == shops[SHOP]


def test_the_cli_prints_a_login_link_that_works(
    web: FlaskClient,
    runtime: Runtime,
    settings: Settings,
    shops: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "TRIGGERPOST_DATA_DIR": str(settings.data_dir),
        "TRIGGERPOST_DATABASE_URL": settings.database_url,
        "TRIGGERPOST_REDIS_URL": settings.redis_url,
        "TRIGGERPOST_SECRET_KEY": settings.secret_key,
        "TRIGGERPOST_BASE_URL": settings.base_url,
    }.items():
        monkeypatch.setenv(name, value)
    printed = CliRunner().invoke(cli.main, ["shop", "login-link", OTHER, "--minutes", "30"])
    assert printed.exit_code == 0, printed.output
    url = printed.output.strip()
    assert url.startswith("http://127.0.0.1:8000/login/")
    with runtime.sessions() as session:
        [row] = session.scalars(select(LoginLink)).all()
        assert row.expires_at - row.created_at == timedelta(minutes=30)
        assert row.shop_id == shops[OTHER]
    assert web.get(urlsplit(url).path).status_code == 303
    assert signed_in_shop(web) == shops[OTHER]

    unknown = CliRunner().invoke(cli.main, ["shop", "login-link", "nowhere.example"])
    assert unknown.exit_code != 0
    assert "no shop" in unknown.output
    too_long = CliRunner().invoke(cli.main, ["shop", "login-link", OTHER, "--minutes", "5000"])
    assert too_long.exit_code != 0


# --- the cookie ---------------------------------------------------------------------------


def test_the_session_cookie_after_a_login_link_is_http_only_lax_and_bounded(
    web: FlaskClient, runtime: Runtime, shops: dict[str, int]
) -> None:
    answer = web.get(f"/login/{_link(runtime, shops[SHOP])}")
    cookie = SimpleCookie(answer.headers["Set-Cookie"])["session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert not cookie["secure"]  # the suite's base URL is http; https: test_merchant.py
    assert cookie["expires"]


def test_shopify_shop_in_the_suite_is_not_signed_in_by_anything_here(
    client: FlaskClient, runtime: Runtime
) -> None:
    with runtime.sessions() as session:
        shop_id = session.scalars(select(Shop.id).where(Shop.key == SHOPIFY_SHOP)).one()
    assert signed_in_shop(client) is None
    sign_in(client, shop_id)
    assert signed_in_shop(client) == shop_id


# --- errors: a page for a browser, JSON for machines ---------------------------------------


def test_a_swedish_shops_merchant_reads_errors_in_english_outside_the_app(
    web: FlaskClient,
) -> None:
    """Before anyone is signed in the shop, and so its language, is unknown."""
    answer = web.get("/login/nothing", headers=BROWSER)
    assert '<html lang="en"' in answer.get_data(as_text=True)


def test_a_browser_without_a_session_reads_a_sign_in_page(web: FlaskClient) -> None:
    answer = web.get(PAGE, headers=BROWSER)
    assert answer.status_code == 401
    assert answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    assert "<h1>Please sign in</h1>" in page
    assert "Sign in through your shop&#39;s admin" in page
    assert answer.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    ("method", "path", "code", "title"),
    [
        ("GET", "/no-such-page", 404, "Page not found"),
        ("GET", "/logout", 405, "Not possible this way"),
        ("GET", "/settings/privacy/999999.json", 401, "Please sign in"),
        ("GET", "/login/no-such-link", 410, "No longer here"),
        ("POST", "/logout", 403, "Not allowed"),  # no CSRF token
    ],
)
def test_every_error_is_a_page_for_a_browser_and_json_otherwise(
    web: FlaskClient, method: str, path: str, code: int, title: str
) -> None:
    page = web.open(path, method=method, headers=BROWSER)
    assert page.status_code == code
    assert f"<h1>{title}</h1>" in page.get_data(as_text=True)
    machine = web.open(path, method=method)
    assert machine.status_code == code
    assert machine.is_json
    assert machine.get_json()["error"]


def test_the_api_answers_a_browser_without_a_session_with_json(web: FlaskClient) -> None:
    answer = web.get("/api/v1/flows", headers=BROWSER)
    assert answer.status_code == 401
    assert answer.is_json


def test_a_body_too_large_is_a_page_for_a_browser(web: FlaskClient, settings: Settings) -> None:
    answer = web.post(
        "/woocommerce/connect",
        data={"store_url": "x" * (settings.max_webhook_bytes + 1)},
        headers=BROWSER,
    )
    assert answer.status_code == 413
    assert "<h1>Too large</h1>" in answer.get_data(as_text=True)


@pytest.mark.parametrize(
    "path", ["/webhooks/shopify", "/webhooks/email/postmark/x", "/api/v1/nothing-here"]
)
def test_machine_routes_answer_json_even_to_a_browser(web: FlaskClient, path: str) -> None:
    answer = web.post(path, data=b"{}", headers=BROWSER)
    assert answer.status_code >= 400
    assert answer.is_json


def test_a_failure_shows_a_page_without_its_details(runtime: Runtime) -> None:
    app = create_app(runtime=runtime)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret detail of the failure")

    answer = app.test_client().get("/boom", headers=BROWSER)
    assert answer.status_code == 500
    page = answer.get_data(as_text=True)
    assert "<h1>Something went wrong</h1>" in page
    assert "secret detail" not in page


# --- email previews inside the admin: the page's frames get a pass ---------------------------

FRAME = re.compile(r'<iframe src="([^"]+)"')


def embedded_page(web: FlaskClient, path: str, shop: str = SHOP) -> str:
    answer = web.get(
        path,
        query_string={"embedded": "1", "shop": shop, "host": HOST, "id_token": token(shop)},
    )
    assert answer.status_code == 200, answer.status_code
    return answer.get_data(as_text=True)


def frames(page: str) -> list[str]:
    return [html.unescape(src) for src in FRAME.findall(page)]


def test_an_embedded_preview_frames_the_email_with_a_pass_no_cookie_needed(
    web: FlaskClient,
) -> None:
    page = embedded_page(web, "/app/flows/cart_recovery/preview")
    found = frames(page)
    assert found, "the preview page frames its email"
    assert all("frame=" in src and "id_token" not in src for src in found)
    web.delete_cookie("session")
    email = web.get(found[0], headers={"Sec-Fetch-Dest": "iframe"})
    assert email.status_code == 200
    assert email.mimetype == "text/html"
    policy = email.headers["Content-Security-Policy"]
    assert f"frame-ancestors 'self' https://{SHOP} {ADMIN}" in policy
    assert "script-src" not in policy
    assert "X-Frame-Options" not in email.headers


def test_a_frames_pass_is_for_its_flow_and_shop_only_and_cannot_be_forged(
    web: FlaskClient,
) -> None:
    src = frames(embedded_page(web, "/app/flows/cart_recovery/preview"))[0]
    web.delete_cookie("session")
    other_flow = src.replace("/flows/cart_recovery/", "/flows/welcome/")
    assert web.get(other_flow).status_code == 404
    forged = re.sub(r"frame=[^&]+", "frame=eyJzaG9wIjoxfQ.forged.sig", src)
    assert web.get(forged).status_code == 401
    path, _, query = src.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query) if k != "frame"]
    bounced = web.get(f"{path}?{urlencode(kept)}")  # inside the admin: sent for a token
    assert bounced.status_code == 302
    assert "session-token-bounce" in bounced.headers["Location"]
    assert web.get(path).status_code == 401  # anywhere else: refused


def test_a_frames_pass_expires(web: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    src = frames(embedded_page(web, "/app/flows/cart_recovery/preview"))[0]
    web.delete_cookie("session")
    later = time.time() + 16 * 60

    class Clock:
        @staticmethod
        def time() -> float:
            return later

    monkeypatch.setattr("itsdangerous.timed.time", Clock)
    assert web.get(src).status_code == 401


def test_a_cookie_session_frames_without_a_pass(web: FlaskClient, shops: dict[str, Any]) -> None:
    sign_in(web, shops[OTHER])
    page = web.get("/app/flows/cart_recovery/preview").get_data(as_text=True)
    found = frames(page)
    assert found
    assert all("frame=" not in src for src in found)
    email = web.get(found[0])
    assert email.status_code == 200
    assert email.headers["X-Frame-Options"] == "SAMEORIGIN"
