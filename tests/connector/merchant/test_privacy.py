"""Privacy for every platform: the merchant exports or erases one customer's data, the
same export and erasure Shopify's privacy webhooks make, recorded as privacy requests;
an erasure only once the address was typed twice, with the page's CSRF token, and only
of the signed-in shop's own customer."""

from __future__ import annotations

from html import unescape
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from jobs.runtime import Runtime
from jobs.store.models import Contact, PrivacyRequest, PrivacyRequestKind
from tests.connector.merchant.conftest import Merchant
from tests.connector.test_fixture_deliveries import deliver, topic_of
from tests.connector.test_privacy import ASTRID, HISTORY, everything, send
from tests.support import FIXTURES, run_worker

ELIAS = "elias.nyberg@example.com"  # the store sends Elias.Nyberg@Example.com


def woo_history(client: FlaskClient, runtime: Runtime) -> None:
    """Elias buys at the WooCommerce store; Olga updates her account there."""
    for n, name in enumerate(
        ("order_created__processing_opted_in", "customer_updated__russian_name")
    ):
        path = FIXTURES / "woocommerce" / f"{name}.json"
        deliver(client, "woocommerce", topic_of("woocommerce", path), path.read_bytes(), f"w-{n}")
    run_worker(runtime)


def contact(runtime: Runtime, shop_id: int, email: str) -> Contact | None:
    with runtime.sessions() as session:
        return session.scalars(
            select(Contact).where(Contact.shop_id == shop_id, Contact.email == email)
        ).one_or_none()


def requests(runtime: Runtime, shop_id: int) -> list[PrivacyRequest]:
    with runtime.sessions() as session:
        return list(
            session.scalars(
                select(PrivacyRequest)
                .where(PrivacyRequest.shop_id == shop_id)
                .order_by(PrivacyRequest.id)
            )
        )


# --- export --------------------------------------------------------------------------------


def test_a_woocommerce_merchant_exports_a_customer_s_data(
    client: FlaskClient, woo_merchant: Merchant, runtime: Runtime
) -> None:
    woo_history(client, runtime)
    answer = woo_merchant.api("POST", "/privacy/exports", {"email": " Elias.Nyberg@Example.com "})
    assert answer.status_code == 200, answer.json
    export: dict[str, Any] = answer.json
    assert export["found"] is True
    [person] = export["contacts"]
    assert person["contact"]["email"] == ELIAS
    assert person["orders"]
    assert person["orders"][0]["currency"]
    assert set(person) == {
        "contact",
        "orders",
        "checkouts",
        "emails",
        "flows_not_started",
        "product_views",
        "engagements",
        "suppressions",
        "storefront_visitors",
    }
    [recorded] = requests(runtime, woo_merchant.shop_id)
    assert (recorded.kind, recorded.export, recorded.detail["asked_by"]) == (
        PrivacyRequestKind.DATA_REQUEST,
        export,
        "merchant",
    )
    download = woo_merchant.client.get(f"/app/privacy/{recorded.id}.json")
    assert download.status_code == 200
    assert download.json == export
    assert "attachment" in download.headers["Content-Disposition"]
    page = unescape(woo_merchant.client.get("/app/privacy").text)
    assert "Data export" in page
    assert ">You<" in page


def test_a_shopify_merchant_s_export_is_the_data_request_s_export(
    client: FlaskClient, merchant: Merchant, runtime: Runtime
) -> None:
    send(client, runtime, *HISTORY)
    send(client, runtime, "customers_data_request__customer", prefix="p")
    [webhook] = requests(runtime, merchant.shop_id)
    answer = merchant.api("POST", "/privacy/exports", {"email": ASTRID})
    assert answer.status_code == 200
    assert answer.json["contacts"] == (webhook.export or {})["contacts"]
    page = unescape(merchant.client.get("/app/privacy").text)
    assert "Your platform" in page
    assert ">You<" in page


def test_the_export_form_without_javascript_downloads_the_file(
    client: FlaskClient, woo_merchant: Merchant, runtime: Runtime
) -> None:
    woo_history(client, runtime)
    download = woo_merchant.client.post(
        "/app/privacy/export", data={"email": ELIAS, "csrf_token": woo_merchant.csrf}
    )
    assert download.status_code == 200
    assert download.json["contacts"][0]["contact"]["email"] == ELIAS
    assert download.headers["Content-Disposition"].startswith("attachment")
    unknown = woo_merchant.client.post(
        "/app/privacy/export", data={"email": "nobody@example.se", "csrf_token": woo_merchant.csrf}
    )
    assert unknown.status_code == 404
    assert "No customer with that address is known to this shop." in unescape(unknown.text)


def test_an_unknown_or_another_shop_s_customer_is_never_exported(
    client: FlaskClient, merchant: Merchant, woo_merchant: Merchant, runtime: Runtime
) -> None:
    woo_history(client, runtime)
    for email in ("nobody@example.se", ELIAS):
        answer = merchant.api("POST", "/privacy/exports", {"email": email})
        assert answer.status_code == 404
        assert answer.json["error"] == "not_found"
    assert requests(runtime, merchant.shop_id) == []
    [recorded] = [
        r for r in requests(runtime, woo_merchant.shop_id) if r.kind == "data_request"
    ] or [None]
    assert recorded is None
    exported = woo_merchant.api("POST", "/privacy/exports", {"email": ELIAS})
    assert exported.status_code == 200
    [mine] = requests(runtime, woo_merchant.shop_id)
    assert merchant.client.get(f"/app/privacy/{mine.id}.json").status_code == 404


def test_bad_export_bodies_are_refused_with_their_field(merchant: Merchant) -> None:
    for body, field in (
        ({}, "email"),
        ({"email": "not an address"}, "email"),
        ({"email": "a" * 400 + "@example.se"}, "email"),
        ({"email": "x\x00@example.se"}, "email"),
        ({"email": 5}, "email"),
        ({"email": "a@b.se", "extra": 1}, "extra"),
    ):
        answer = merchant.api("POST", "/privacy/exports", body)
        assert answer.status_code == 400, body
        assert field in [f["field"] for f in answer.json["fields"]], body
    assert merchant.api("POST", "/privacy/exports", data="email=a@b.se").status_code == 415


# --- erasure -------------------------------------------------------------------------------


def test_a_woocommerce_merchant_erases_a_customer_once_confirmed(
    client: FlaskClient, woo_merchant: Merchant, runtime: Runtime
) -> None:
    woo_history(client, runtime)
    exported = woo_merchant.api("POST", "/privacy/exports", {"email": ELIAS})
    assert exported.status_code == 200
    found = contact(runtime, woo_merchant.shop_id, ELIAS)
    assert found is not None
    assert ELIAS in everything(runtime)

    answer = woo_merchant.api(
        "POST", "/privacy/erasures", {"email": ELIAS, "confirm": "Elias.Nyberg@Example.com"}
    )
    assert answer.status_code == 200, answer.json
    assert answer.json["erased"]["contacts"] == 1
    assert answer.json["erased"]["orders"] >= 1
    assert ELIAS not in everything(runtime)
    assert "olga.ivanova@example.com" in everything(runtime)  # the other customer stays
    with runtime.sessions() as session:
        erased = session.get_one(Contact, found.id)
        assert (erased.email, erased.consent_state) == (None, "redacted")
        recorded = session.get_one(PrivacyRequest, answer.json["request"])
        assert recorded.kind == PrivacyRequestKind.CUSTOMER_REDACT
        assert recorded.detail["asked_by"] == "merchant"
        assert recorded.completed_at is not None
    # the export made before is erased with her
    export_id = next(
        r.id for r in requests(runtime, woo_merchant.shop_id) if r.kind == "data_request"
    )
    assert woo_merchant.client.get(f"/app/privacy/{export_id}.json").status_code == 410
    again = woo_merchant.api("POST", "/privacy/erasures", {"email": ELIAS, "confirm": ELIAS})
    assert again.status_code == 404


def test_a_shopify_merchant_erases_a_customer_as_customers_redact_does(
    client: FlaskClient, merchant: Merchant, runtime: Runtime
) -> None:
    send(client, runtime, *HISTORY)
    assert ASTRID in everything(runtime)
    answer = merchant.api("POST", "/privacy/erasures", {"email": ASTRID, "confirm": ASTRID})
    assert answer.status_code == 200, answer.json
    assert answer.json["erased"]["deliveries"] >= len(HISTORY) - 1
    stored = everything(runtime)
    for trace in (ASTRID, "lindqvist", "+46701234567"):
        assert trace not in stored, trace
    assert "jonas.berg@example.com" in stored


def test_an_erasure_without_the_address_typed_again_erases_nothing(
    client: FlaskClient, woo_merchant: Merchant, runtime: Runtime
) -> None:
    woo_history(client, runtime)
    for body in (
        {"email": ELIAS},
        {"email": ELIAS, "confirm": ""},
        {"email": ELIAS, "confirm": "olga.ivanova@example.com"},
    ):
        answer = woo_merchant.api("POST", "/privacy/erasures", body)
        assert answer.status_code == 400, body
        assert "confirm" in [f["field"] for f in answer.json["fields"]]
    assert contact(runtime, woo_merchant.shop_id, ELIAS) is not None
    assert requests(runtime, woo_merchant.shop_id) == []


def test_an_erasure_without_the_csrf_token_is_refused_and_erases_nothing(
    client: FlaskClient, woo_merchant: Merchant, runtime: Runtime
) -> None:
    woo_history(client, runtime)
    body = {"email": ELIAS, "confirm": ELIAS}
    refused = woo_merchant.api("POST", "/privacy/erasures", body, csrf=False)
    assert refused.status_code == 403
    forged = woo_merchant.api(
        "POST", "/privacy/erasures", body, csrf=False, headers={"X-CSRF-Token": "forged"}
    )
    assert forged.status_code == 403
    form = woo_merchant.client.post("/app/privacy/erase", data=body)
    assert form.status_code == 403
    assert contact(runtime, woo_merchant.shop_id, ELIAS) is not None
    assert requests(runtime, woo_merchant.shop_id) == []


def test_another_shop_s_customer_is_never_erased(
    client: FlaskClient, merchant: Merchant, woo_merchant: Merchant, runtime: Runtime
) -> None:
    woo_history(client, runtime)
    answer = merchant.api("POST", "/privacy/erasures", {"email": ELIAS, "confirm": ELIAS})
    assert answer.status_code == 404
    assert answer.json["error"] == "not_found"
    assert contact(runtime, woo_merchant.shop_id, ELIAS) is not None
    assert requests(runtime, merchant.shop_id) == []


def test_no_session_no_privacy(client: FlaskClient) -> None:
    assert client.get("/app/privacy").status_code == 401
    answer = client.post("/api/v1/privacy/exports", json={"email": ELIAS})
    assert answer.status_code in (401, 403)
    assert client.post("/api/v1/privacy/erasures", json={"email": ELIAS}).status_code in (401, 403)


def test_the_erase_form_asks_for_the_address_again_then_erases(
    client: FlaskClient, woo_merchant: Merchant, runtime: Runtime
) -> None:
    woo_history(client, runtime)
    browser = woo_merchant.client
    ask = browser.post("/app/privacy/erase", data={"email": ELIAS, "csrf_token": woo_merchant.csrf})
    assert ask.status_code == 200
    assert "Type the address again to confirm" in unescape(ask.text)
    assert contact(runtime, woo_merchant.shop_id, ELIAS) is not None
    wrong = browser.post(
        "/app/privacy/erase",
        data={"email": ELIAS, "confirm": "someone@else.se", "csrf_token": woo_merchant.csrf},
    )
    assert wrong.status_code == 400
    assert "Type the customer's email address again to confirm." in unescape(wrong.text)
    assert contact(runtime, woo_merchant.shop_id, ELIAS) is not None
    done = browser.post(
        "/app/privacy/erase",
        data={"email": ELIAS, "confirm": ELIAS, "csrf_token": woo_merchant.csrf},
    )
    assert done.status_code == 302
    assert done.headers["Location"].endswith("/app/privacy")
    page = unescape(browser.get("/app/privacy").text)
    assert "The customer's data was erased" in page
    assert "Customer erasure" in page
    assert contact(runtime, woo_merchant.shop_id, ELIAS) is None
    unknown = browser.post(
        "/app/privacy/erase", data={"email": "nobody@example.se", "csrf_token": woo_merchant.csrf}
    )
    assert unknown.status_code == 404
