"""The settings page's storefront events: key, endpoint, origins, and the plugin's code."""

from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy import select

from jobs.runtime import Runtime
from jobs.store.models import Shop
from tests.connector.merchant.conftest import Merchant


def decoded(code: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(base64.urlsafe_b64decode(code + "=" * (-len(code) % 4)))
    return document


def test_a_shopify_merchant_sees_the_key_endpoint_and_origins_but_no_plugin_code(
    merchant: Merchant, runtime: Runtime
) -> None:
    answer = merchant.api("GET", "/storefront").json
    assert answer["key"].startswith("pk_")
    assert answer["endpoint"] == f"{runtime.settings.base_url}/events/shopify/{answer['key']}"
    assert answer["own_origins"] == ["https://nordljus-test.myshopify.com"]
    assert answer["extra_origins"] == []
    assert answer["plugin"] is False
    assert answer["connection_code"] is None
    page = merchant.client.get("/app/settings")
    assert page.status_code == 200
    assert answer["key"] in page.text
    assert answer["endpoint"] in page.text
    assert "Connection code" not in page.text
    assert merchant.api("POST", "/storefront/plugin-secret").status_code == 404


def test_a_woocommerce_merchant_gets_the_connection_code_and_can_replace_its_secret(
    woo_merchant: Merchant, runtime: Runtime
) -> None:
    first = woo_merchant.api("GET", "/storefront").json
    assert first["plugin"] is True
    code = decoded(first["connection_code"])
    assert code["platform"] == "woocommerce"
    assert code["key"] == first["key"]
    assert code["url"] == runtime.settings.base_url
    assert len(code["secret"]) == 43
    page = woo_merchant.client.get("/app/settings")
    assert first["connection_code"] in page.text
    renewed = woo_merchant.api("POST", "/storefront/plugin-secret").json
    assert decoded(renewed["connection_code"])["secret"] != code["secret"]
    assert renewed["key"] == first["key"]  # the public key stays


def test_extra_origins_are_saved_as_https_origins_or_refused_whole(
    merchant: Merchant, runtime: Runtime
) -> None:
    saved = merchant.api(
        "PATCH",
        "/storefront",
        {"extra_origins": ["https://www.Nordljus.se/", "https://nordljus.se"]},
    )
    assert saved.status_code == 200
    assert saved.json["extra_origins"] == ["https://www.nordljus.se", "https://nordljus.se"]
    for bad in (
        ["http://nordljus.se"],
        ["https://nordljus.se/kampanj"],
        ["nordljus.se"],
        [7],
        ["https://x.se"] * 1 + [f"https://{n}.se" for n in range(25)],
    ):
        refused = merchant.api("PATCH", "/storefront", {"extra_origins": bad})
        assert refused.status_code == 400, bad
        assert refused.json["fields"][0]["field"] == "extra_origins"
    with runtime.sessions() as session:
        kept = session.scalars(select(Shop.storefront_origins).where(Shop.id == merchant.shop_id))
        assert kept.one() == ["https://www.nordljus.se", "https://nordljus.se"]


def test_the_origins_form_works_without_javascript(merchant: Merchant, runtime: Runtime) -> None:
    sent = merchant.client.post(
        "/app/settings/storefront",
        data={
            "csrf_token": merchant.csrf,
            "extra_origins": "https://a.example\n\nhttps://b.example\n",
        },
    )
    assert sent.status_code in (302, 303)
    assert merchant.api("GET", "/storefront").json["extra_origins"] == [
        "https://a.example",
        "https://b.example",
    ]
    refused = merchant.client.post(
        "/app/settings/storefront",
        data={"csrf_token": merchant.csrf, "extra_origins": "http://c.example"},
        follow_redirects=True,
    )
    assert "https address" in refused.text
    assert merchant.api("GET", "/storefront").json["extra_origins"] == [
        "https://a.example",
        "https://b.example",
    ]


def test_a_new_code_without_javascript_replaces_the_old_one(
    woo_merchant: Merchant, runtime: Runtime
) -> None:
    before = woo_merchant.api("GET", "/storefront").json["connection_code"]
    sent = woo_merchant.client.post(
        "/app/settings/storefront/secret", data={"csrf_token": woo_merchant.csrf}
    )
    assert sent.status_code in (302, 303)
    assert woo_merchant.api("GET", "/storefront").json["connection_code"] != before


def test_the_forms_need_the_pages_csrf_token(woo_merchant: Merchant) -> None:
    before = woo_merchant.api("GET", "/storefront").json["connection_code"]
    assert woo_merchant.client.post("/app/settings/storefront/secret").status_code == 403
    assert woo_merchant.api("POST", "/storefront/plugin-secret", csrf=False).status_code in (
        400,
        403,
    )
    assert woo_merchant.api("GET", "/storefront").json["connection_code"] == before


def test_the_section_speaks_swedish_to_a_swedish_shop(merchant: Merchant, runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, merchant.shop_id)
        shop.settings = {"branding": {"language": "sv"}}
    page = merchant.client.get("/app/settings")
    assert "Butikshändelser" in page.text
    assert "Publik nyckel" in page.text
