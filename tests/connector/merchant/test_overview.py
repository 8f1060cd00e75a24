"""The Overview and the flows and settings API: switch, options, settings, all or nothing."""

from __future__ import annotations

from html import unescape
from typing import Any

from flask.testing import FlaskClient

from jobs import shop_settings
from jobs.flows import registry
from jobs.runtime import Runtime
from jobs.store.models import Shop
from tests.connector.merchant.conftest import Merchant


def stored(runtime: Runtime, shop_id: int) -> dict[str, Any]:
    with runtime.sessions() as session:
        return dict(session.get_one(Shop, shop_id).settings or {})


def effective(runtime: Runtime, shop_id: int) -> shop_settings.ShopSettings:
    with runtime.sessions() as session:
        return shop_settings.load(session.get_one(Shop, shop_id))


def test_the_flows_api_lists_every_flow_with_its_options_and_their_schema(
    merchant: Merchant,
) -> None:
    answer = merchant.api("GET", "/flows")
    assert answer.status_code == 200
    flows = {flow["name"]: flow for flow in answer.json["flows"]}
    assert set(flows) == set(registry.flows())
    cart = flows["cart_recovery"]
    assert cart["title"] == "Cart recovery"
    assert cart["summary"]
    assert cart["enabled"] is True
    assert cart["options"]["delay_1_hours"] == 1
    delay = next(field for field in cart["schema"] if field["name"] == "delay_1_hours")
    assert delay["type"] == "integer"
    assert (delay["min"], delay["max"]) == (0, 168)
    assert flows["delivered_notice"]["enabled"] is False  # transactional, off by default
    assert flows["delivered_notice"]["kind"] == "transactional"


def test_a_flow_is_switched_off_and_on_and_its_options_saved(
    merchant: Merchant, runtime: Runtime
) -> None:
    off = merchant.api("PATCH", "/flows/cart_recovery", {"enabled": False})
    assert off.status_code == 200, off.json
    assert off.json["enabled"] is False
    assert effective(runtime, merchant.shop_id).flows["cart_recovery"]["enabled"] is False
    changed = merchant.api(
        "PATCH", "/flows/cart_recovery", {"enabled": True, "options": {"delay_1_hours": 3}}
    )
    assert changed.status_code == 200, changed.json
    flow = effective(runtime, merchant.shop_id).flows["cart_recovery"]
    assert (flow["enabled"], flow["delay_1_hours"]) == (True, 3)
    back = merchant.api("PATCH", "/flows/cart_recovery", {"options": {"delay_1_hours": None}})
    assert back.json["options"]["delay_1_hours"] == 1  # null: the default again


def test_bad_values_are_refused_field_by_field_and_nothing_is_saved(
    merchant: Merchant, runtime: Runtime
) -> None:
    before = stored(runtime, merchant.shop_id)
    answer = merchant.api(
        "PATCH",
        "/flows/cart_recovery",
        {"enabled": "maybe", "options": {"delay_1_hours": 500, "delay_2_hours": 30, "nope": 1}},
    )
    assert answer.status_code == 400
    problems = {item["field"]: item["message"] for item in answer.json["fields"]}
    assert "options.delay_1_hours" in problems
    assert "options.nope" in problems
    assert "enabled" in problems
    assert stored(runtime, merchant.shop_id) == before
    again = merchant.api("PATCH", "/flows/cart_recovery", {"options": {"delay_1_hours": 500}})
    assert again.status_code == 400
    assert [item["field"] for item in again.json["fields"]] == ["options.delay_1_hours"]
    assert "168" in again.json["fields"][0]["message"]
    assert stored(runtime, merchant.shop_id) == before


def test_malformed_requests_are_4xx_with_words(merchant: Merchant) -> None:
    assert merchant.api("PATCH", "/flows/nope", {"enabled": False}).status_code == 404
    not_json = merchant.client.patch(
        "/api/v1/flows/cart_recovery",
        data="enabled=false",
        headers={"X-CSRF-Token": merchant.csrf, "Content-Type": "text/plain"},
    )
    assert not_json.status_code == 415
    assert not_json.json["error"] == "unsupported_media_type"
    broken = merchant.client.patch(
        "/api/v1/flows/cart_recovery",
        data="{not json",
        headers={"X-CSRF-Token": merchant.csrf, "Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    listed = merchant.api("PATCH", "/flows/cart_recovery", [1, 2])
    assert listed.status_code == 400
    unknown = merchant.api("PATCH", "/flows/cart_recovery", {"colour": "red"})
    assert unknown.status_code == 400
    assert unknown.json["fields"][0]["field"] == "colour"
    huge = merchant.api("PATCH", "/flows/cart_recovery", {"options": {"x" * 50: "y" * 2_000_000}})
    assert huge.status_code == 413
    assert huge.is_json


def test_the_api_needs_a_session_and_a_cookie_session_needs_the_csrf_token(
    merchant: Merchant, client: FlaskClient, runtime: Runtime
) -> None:
    before = stored(runtime, merchant.shop_id)
    refused = merchant.api("PATCH", "/flows/cart_recovery", {"enabled": False}, csrf=False)
    assert refused.status_code == 403
    assert refused.is_json
    forged = merchant.api(
        "PATCH",
        "/flows/cart_recovery",
        {"enabled": False},
        csrf=False,
        headers={"X-CSRF-Token": "forged"},
    )
    assert forged.status_code == 403
    assert stored(runtime, merchant.shop_id) == before
    with client.application.test_client() as stranger:
        answer = stranger.get("/api/v1/flows")
        assert answer.status_code == 401
        assert answer.json["error"] == "unauthorized"
        assert stranger.patch("/api/v1/flows/cart_recovery", json={}).status_code in (401, 403)
    # credentials named in the request are judged alone: the cookie does not stand in
    bearer = merchant.api("GET", "/flows", headers={"Authorization": "Bearer nonsense"})
    assert bearer.status_code == 401


def test_another_merchant_changes_only_their_own_shop(
    merchant: Merchant, woo_merchant: Merchant, runtime: Runtime
) -> None:
    answer = woo_merchant.api("PATCH", "/flows/welcome", {"enabled": False})
    assert answer.status_code == 200
    assert effective(runtime, woo_merchant.shop_id).flows["welcome"]["enabled"] is False
    assert effective(runtime, merchant.shop_id).flows["welcome"]["enabled"] is True
    # one browser's CSRF token is worthless in another's session
    crossed = merchant.api(
        "PATCH",
        "/flows/welcome",
        {"enabled": False},
        csrf=False,
        headers={"X-CSRF-Token": woo_merchant.csrf},
    )
    assert crossed.status_code == 403
    assert effective(runtime, merchant.shop_id).flows["welcome"]["enabled"] is True


def test_the_settings_api_reads_and_writes_the_shop_wide_groups(
    merchant: Merchant, runtime: Runtime
) -> None:
    answer = merchant.api("GET", "/settings")
    assert answer.status_code == 200
    assert set(answer.json) >= {"branding", "sender", "engine", "consent", "birthday", "schema"}
    assert "flows" not in answer.json
    saved = merchant.api(
        "PATCH",
        "/settings",
        {"sender": {"name": "Nordljus", "address": "hej@nordljus.se"}},
    )
    assert saved.status_code == 200, saved.json
    assert effective(runtime, merchant.shop_id).sender.address == "hej@nordljus.se"
    before = stored(runtime, merchant.shop_id)
    bad = merchant.api(
        "PATCH",
        "/settings",
        {"sender": {"address": "not an address"}, "engine": {"quiet_start": "25:00"}},
    )
    assert bad.status_code == 400
    assert {item["field"] for item in bad.json["fields"]} == {
        "sender.address",
        "engine.quiet_start",
    }
    assert stored(runtime, merchant.shop_id) == before
    flows = merchant.api("PATCH", "/settings", {"flows": {"welcome": {"enabled": False}}})
    assert flows.status_code == 400  # flows have their own route


def test_the_overview_lists_every_flow_with_a_switch_that_works_without_javascript(
    merchant: Merchant, runtime: Runtime
) -> None:
    page = merchant.client.get("/app/")
    assert page.status_code == 200
    for flow in registry.flows().values():
        assert f'data-flow="{flow.name}"' in page.text
        assert flow.summary, f"{flow.name} has no summary for the merchant"
        assert flow.summary in unescape(page.text)
    assert 'role="switch"' in page.text
    posted = merchant.client.post(
        "/app/flows/review_request/switch",
        data={"enabled": "false", "csrf_token": merchant.csrf},
    )
    assert posted.status_code == 302
    assert effective(runtime, merchant.shop_id).flows["review_request"]["enabled"] is False
    after = merchant.client.get("/app/")
    assert "Review request is off." in after.text
    no_token = merchant.client.post("/app/flows/review_request/switch", data={"enabled": "true"})
    assert no_token.status_code == 403
    assert effective(runtime, merchant.shop_id).flows["review_request"]["enabled"] is False
    assert (
        merchant.client.post(
            "/app/flows/nope/switch", data={"enabled": "true", "csrf_token": merchant.csrf}
        ).status_code
        == 404
    )


def test_the_overview_speaks_swedish_to_a_swedish_shop(
    merchant: Merchant, runtime: Runtime
) -> None:
    with runtime.sessions.begin() as session:
        shop_settings.update(
            session, session.get_one(Shop, merchant.shop_id), {"branding": {"language": "sv"}}
        )
    page = merchant.client.get("/app/")
    assert '<html lang="sv"' in page.text
    assert "Påminnelse om varukorgen" in page.text
    assert "Logga ut" in page.text


def test_merchant_pages_load_only_our_own_script_and_styles(merchant: Merchant) -> None:
    page = merchant.client.get("/app/")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    for asset in ("merchant.js", "merchant.css"):
        served = merchant.client.get(f"/static/merchant/{asset}")
        assert served.status_code == 200
        assert served.data  # read, so the file is closed
        served.close()


def test_the_openapi_document_describes_every_route(client: FlaskClient) -> None:
    answer = client.get("/api/v1/openapi.json")
    assert answer.status_code == 200
    document = answer.json
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert set(paths["/api/v1/flows/{name}"]) == {"patch"}
    assert set(paths["/api/v1/settings"]) == {"get", "patch"}
    patch = paths["/api/v1/flows/{name}"]["patch"]
    assert "requestBody" in patch
    assert "400" in patch["responses"]
    assert "FlowPatch" in document["components"]["schemas"]


def test_the_old_landing_page_leads_to_the_overview_and_signing_out_says_so_in_words(
    merchant: Merchant, client: FlaskClient
) -> None:
    moved = merchant.client.get("/settings")
    assert moved.status_code == 302
    assert moved.headers["Location"] == "/app/"
    out = merchant.client.post(
        "/logout", data={"csrf_token": merchant.csrf}, headers={"Accept": "text/html"}
    )
    assert out.status_code == 200
    assert out.mimetype == "text/html"
    assert "You are signed out" in out.text
    assert merchant.client.get("/settings").status_code == 401
