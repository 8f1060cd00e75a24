"""Activity and Connection health: a customer's timeline as ``why`` tells it, in the
shop's time zone, and the shop's connection in words; only ever the signed-in shop's."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import unescape
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient

from adapters import events as ev
from jobs.runtime import Runtime
from jobs.store.models import Delivery, DeliveryStatus, Engagement, EngagementKind, Message
from tests.connector.merchant.conftest import Merchant, signed_in
from tests.jobs.engine_support import T0, Harness, checkout, customer, hours, order

ANNA = "anna@example.se"


@pytest.fixture
def shop(client: FlaskClient, runtime: Runtime) -> Harness:
    """A shop in Stockholm whose engine mailed Anna, who clicked and bought: the
    checkout at 21:30 her time, the reminder held back by the night until 08:00."""
    shop = Harness(runtime)
    consent = ev.Consent(ev.ConsentState.SUBSCRIBED, "shopify:checkouts/create", T0 - hours(24))
    anna = replace(customer(ANNA), consent=consent)
    late = T0 + hours(11.5)  # 20:30 UTC, 21:30 in Stockholm
    shop.at(late, checkout("tok-1", late, anna))
    shop.run(late + hours(12))
    with runtime.sessions.begin() as session:
        message = session.query(Message).filter_by(step="email_1", state="sent").one()
        assert message.sent_at is not None
        clicked = message.sent_at + timedelta(minutes=20)
        session.add(
            Engagement(
                shop_id=shop.shop_id,
                message_id=message.id,
                contact_id=message.contact_id,
                kind=EngagementKind.CLICK,
                url="https://example.se/cart",
                at=clicked,
            )
        )
    bought = clicked + hours(1)
    shop.at(bought, order("1001", bought, anna, "tok-1"))
    return shop


@pytest.fixture
def anna_s_merchant(client: FlaskClient, shop: Harness) -> Merchant:
    return signed_in(client, shop.shop_id)


def test_a_customer_s_timeline_is_why_s_in_the_shop_s_time_zone(
    anna_s_merchant: Merchant,
) -> None:
    answer = anna_s_merchant.api("GET", f"/contacts/{quote(' Anna@Example.SE ')}/timeline")
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert (body["email"], body["timezone"], body["consent"]) == (
        ANNA,
        "Europe/Stockholm",
        "subscribed",
    )
    rows = body["rows"]
    deferred = next(row for row in rows if row["outcome"] == "deferred")
    assert (deferred["flow"], deferred["step"], deferred["reason"]) == (
        "cart_recovery",
        "email_1",
        "quiet_hours",
    )
    assert deferred["words"] == "held back: it was night where she lives (quiet hours)"
    assert deferred["until"] == "2026-03-03T07:00:00+00:00"
    assert deferred["until_local"] == "2026-03-03T08:00:00+01:00"
    sent = next(row for row in rows if row["outcome"] == "sent")
    assert sent["words"] == "sent (subscribed via checkout on 2026-03-01)"
    assert sent["at_local"] == "2026-03-03T08:00:00+01:00"
    assert sent["day"] == "2026-03-03"
    assert sent["flow_title"] == "Cart recovery"
    started = rows[0]
    assert (started["outcome"], started["at"], started["at_local"], started["day"]) == (
        "enrolled",
        "2026-03-02T20:30:00+00:00",
        "2026-03-02T21:30:00+01:00",
        "2026-03-02",
    )
    clicked = next(row for row in rows if row["outcome"] == "clicked")
    assert clicked["at_local"] == "2026-03-03T08:20:00+01:00"
    ordered = next(row for row in rows if row["outcome"] == "ordered")
    assert (ordered["order"], ordered["revenue"], ordered["currency"]) == ("#1001", "499.00", "SEK")
    assert ordered["words"] == "ordered #1001 (499.00 SEK), credited to this flow's email"
    assert all(row["words"] for row in rows)


def test_the_activity_page_tells_the_timeline_in_words_by_day_in_the_shop_s_zone(
    anna_s_merchant: Merchant,
) -> None:
    page = anna_s_merchant.client.get("/app/activity", query_string={"email": "ANNA@example.se"})
    assert page.status_code == 200
    text = unescape(page.text)
    assert 'aria-current="page"' in page.text
    assert ">Activity<" in page.text
    assert "Timeline of anna@example.se" in text
    assert "Times in the shop's time zone (Europe/Stockholm)." in text
    # newest day first, each a heading of its own in the shop's zone
    later = text.index("Tuesday, March 3, 2026")
    earlier = text.index("Monday, March 2, 2026")
    assert later < earlier
    assert "9:30\u202fPM" in text[earlier:] or "9:30 PM" in text[earlier:]  # 20:30 UTC
    assert "held back: it was night where she lives (quiet hours)" in text
    assert "until Mar 3, 2026, 8:00:00" in text
    assert "sent (subscribed via checkout on 2026-03-01)" in text
    assert "ordered #1001 (SEK499.00), credited to this flow's email" in text  # shop currency
    assert "planned for Mar 3, 2026, 9:30:00" in text  # the second reminder, a day on


def test_the_activity_page_without_an_address_shows_the_search_only(
    anna_s_merchant: Merchant,
) -> None:
    page = anna_s_merchant.client.get("/app/activity")
    assert page.status_code == 200
    assert 'name="email"' in page.text
    assert "Timeline of" not in page.text


def test_the_activity_page_in_swedish(anna_s_merchant: Merchant, runtime: Runtime) -> None:
    from jobs.store.models import Shop

    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, anna_s_merchant.shop_id)
        shop.settings = {**shop.settings, "branding": {"language": "sv"}}
    page = anna_s_merchant.client.get("/app/activity", query_string={"email": ANNA})
    text = unescape(page.text)
    assert 'lang="sv"' in page.text
    assert "Tidslinje för anna@example.se" in text
    assert "tisdag 3 mars 2026" in text
    assert "beställde #1001 (499,00\xa0kr), tillskrivet flödets e-post" in text
    assert "hölls tillbaka: det var natt där hon bor (tysta timmar)" in text


def test_no_session_no_timeline(client: FlaskClient, shop: Harness) -> None:
    answer = client.get(f"/api/v1/contacts/{ANNA}/timeline")
    assert answer.status_code == 401
    assert answer.json["error"] == "unauthorized"
    assert client.get("/app/activity", query_string={"email": ANNA}).status_code == 401
    assert client.get("/api/v1/health").status_code == 401
    assert client.get("/app/health").status_code == 401


def test_another_shop_s_customer_is_never_found(merchant: Merchant, shop: Harness) -> None:
    """The suite's Shopify shop asks for Anna, a customer of the engine's shop."""
    answer = merchant.api("GET", f"/contacts/{ANNA}/timeline")
    assert answer.status_code == 404
    assert answer.json == {
        "error": "not_found",
        "message": "No customer with that address is known to this shop.",
    }
    page = merchant.client.get("/app/activity", query_string={"email": ANNA})
    assert page.status_code == 404
    assert "No customer with that address is known to this shop." in unescape(page.text)
    assert "Timeline of" not in page.text


@pytest.mark.parametrize(
    "email",
    [
        "not-an-address",
        "a" * 400 + "@example.se",
        "anna%00@example.se",
        "anna%0a@example.se",
        "%ED%A0%80@example.se",
        "%FF%FE@example.se",
        "x@" + "y" * 20000 + ".se",
        "%20%20",
    ],
)
def test_a_malformed_or_oversized_address_is_refused_not_a_crash(
    anna_s_merchant: Merchant, email: str
) -> None:
    answer = anna_s_merchant.api("GET", f"/contacts/{email}/timeline")
    assert 400 <= answer.status_code < 500
    assert answer.is_json
    assert answer.json["error"]
    page = anna_s_merchant.client.get(f"/app/activity?email={email}")
    if email == "%20%20":  # the page takes a blank search for none: the form alone
        assert page.status_code == 200
        assert "Timeline of" not in page.text
    else:
        assert 400 <= page.status_code < 500


# --- connection health ---------------------------------------------------------------------


def _delivery(
    shop_id: int, key: str, topic: str, status: DeliveryStatus, error: str | None
) -> Delivery:
    return Delivery(
        shop_id=shop_id,
        platform="shopify",
        topic=topic,
        delivery_key=key,
        body=b"{}",
        received_at=datetime.now(UTC) - timedelta(hours=1),
        status=status,
        attempts=1 if error else 0,
        error=error,
    )


def test_the_health_api_and_page_show_the_shop_s_own_connection_in_words(
    merchant: Merchant, woo_merchant: Merchant, runtime: Runtime
) -> None:
    with runtime.sessions.begin() as session:
        session.add_all(
            [
                _delivery(merchant.shop_id, "1", "orders/paid", DeliveryStatus.PROCESSED, None),
                _delivery(
                    merchant.shop_id,
                    "2",
                    "orders/create",
                    DeliveryStatus.FAILED,
                    "EventError: order.total is missing",
                ),
                _delivery(
                    woo_merchant.shop_id, "3", "order.updated", DeliveryStatus.FAILED, "X: y"
                ),
            ]
        )
    answer = merchant.api("GET", "/health")
    assert answer.status_code == 200
    body = answer.json
    assert body["healthy"] is False
    assert sorted((w["topic"], w["count"]) for w in body["webhooks"]) == [
        ("orders/create", 1),
        ("orders/paid", 1),
    ]
    assert body["deliveries"]["failed"] == 1
    [failure] = body["deliveries"]["failures"]
    assert failure["says"] == (
        "the webhook lacked something triggerpost needs (order.total is missing)"
    )
    page = merchant.client.get("/app/health")
    assert page.status_code == 200
    text = unescape(page.text)
    assert "Webhooks received in the last 24 hours" in text
    assert "the webhook lacked something triggerpost needs (order.total is missing)" in text
    assert "order.updated" not in text
    theirs = woo_merchant.api("GET", "/health").json
    assert [w["topic"] for w in theirs["webhooks"]] == ["order.updated"]


def test_a_quiet_shop_is_not_called_working_before_anything_arrived(
    woo_merchant: Merchant,
) -> None:
    body = woo_merchant.api("GET", "/health").json
    assert (body["healthy"], body["webhooks"], body["deliveries"]["failed"]) == (True, [], 0)
    page = unescape(woo_merchant.client.get("/app/health").text)
    assert "nothing needs you" not in page
    assert "nothing has arrived from your shop in the last 24 hours" in page


def test_a_healthy_shop_with_webhooks_says_nothing_needs_the_merchant(
    woo_merchant: Merchant, runtime: Runtime
) -> None:
    with runtime.sessions.begin() as session:
        session.add(
            _delivery(woo_merchant.shop_id, "4", "order.updated", DeliveryStatus.PROCESSED, None)
        )
    page = unescape(woo_merchant.client.get("/app/health").text)
    assert "nothing needs you" in page


def test_the_openapi_document_describes_the_activity_privacy_and_health_routes(
    client: FlaskClient,
) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert set(paths["/api/v1/contacts/{email}/timeline"]) == {"get"}
    assert set(paths["/api/v1/privacy/exports"]) == {"post"}
    assert set(paths["/api/v1/privacy/erasures"]) == {"post"}
    assert set(paths["/api/v1/health"]) == {"get"}
    erasure = paths["/api/v1/privacy/erasures"]["post"]
    assert "requestBody" in erasure
    assert "400" in erasure["responses"]


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        ("enrolled", None),
        ("enrolled", "holdout"),
        ("planned", None),
        ("sent", None),
        ("clicked", None),
        ("deferred", "quiet_hours"),
        ("deferred", "cap:gap"),
        ("deferred", "cap:weekly"),
        ("deferred", "cap:priority"),
        ("deferred", "cap:flow_repeat"),
        ("skipped", "no_consent"),
        ("skipped", "unsubscribed"),
        ("skipped", "cap:flow_repeat"),
        ("skipped", "holdout"),
        ("skipped", "no_email"),
        ("skipped", "contact_redacted"),
        ("exited", "checkout_completed"),
        ("exited", "order_placed"),
        ("exited", "ordered"),
        ("exited", "items_unavailable"),
        ("cancelled", "customer_redacted"),
        ("cancelled", "shop_inactive"),
    ],
)
def test_the_common_timeline_words_read_in_swedish(outcome: str, reason: str | None) -> None:
    from connector.merchant import ui
    from jobs.reports.decisions import row_words

    assert row_words({"outcome": outcome, "reason": reason}) in ui.catalog("sv")
