"""Analytics: the API's figures per day and per flow, its refusals field by field, the
page's chart, and the Overview's 30 days and onboarding checklist."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from aiosmtpd.controller import Controller
from flask.testing import FlaskClient

from jobs import shop_settings
from jobs.reports import analytics
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.store.models import Shop
from tests.connector.merchant.conftest import Merchant
from tests.connector.merchant.test_previews import TEST_SEND, set_settings
from tests.emails.test_delivery import Inbox, free_port
from tests.jobs.test_analytics import Ledger, utc

SPRING = "from=2026-03-28&to=2026-03-30"


def seed(runtime: Runtime, shop_id: int, revenue: str = "199.50") -> None:
    """A Stockholm shop's three days across the spring clock change, with a holdout."""
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, shop_id)
        shop.timezone = "Europe/Stockholm"
        ledger = Ledger(session, shop)
        late = ledger.message("cart_recovery", utc("2026-03-28T22:59:59"))  # the 28th, local
        first = ledger.message("cart_recovery", utc("2026-03-28T23:00:00"))  # the 29th
        ledger.click(first, utc("2026-03-29T08:00:00"))
        ledger.credit(first, utc("2026-03-29T22:30:00"), revenue)  # the 30th, local
        ledger.message("welcome", utc("2026-03-29T12:00:00"))
        del late
        for n in range(60):  # 30 of 60 mailed ordered, 3 of 60 held out
            for holdout, ordered in ((False, n < 30), (True, n < 3)):
                contact = ledger.contact()
                ledger.enrollment("cart_recovery", utc("2026-03-29T10:00:00"), contact, holdout)
                if ordered:
                    ledger.order(utc("2026-03-29T12:00:00"), contact)


def test_the_api_gives_each_figure_per_day_and_per_flow(
    merchant: Merchant, runtime: Runtime
) -> None:
    seed(runtime, merchant.shop_id)
    answer = merchant.api("GET", f"/analytics?{SPRING}")
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert (body["from"], body["to"], body["timezone"], body["currency"]) == (
        "2026-03-28",
        "2026-03-30",
        "Europe/Stockholm",
        "SEK",
    )
    assert [(day["date"], day["sent"], day["clicked"], day["orders"]) for day in body["days"]] == [
        ("2026-03-28", 1, 0, 0),
        ("2026-03-29", 2, 1, 0),
        ("2026-03-30", 0, 0, 1),
    ]
    assert body["days"][2]["revenue"] == "199.50"
    assert body["totals"]["delivered"] == 3
    flows = {row["flow"]: row for row in body["flows"]}
    cart = flows["cart_recovery"]
    assert (cart["title"], cart["sent"], cart["orders"], cart["revenue"]) == (
        "Cart recovery",
        2,
        1,
        "199.50",
    )
    lift = cart["lift"]
    assert (lift["treated"], lift["treated_converted"], lift["holdout"]) == (
        62,
        30,
        60,
    )  # the two mailed above too
    assert lift["verdict"] == "more_orders"
    assert lift["low"] > 0
    assert lift["words"] == "About 868 % more orders than without the emails"
    assert flows["welcome"]["lift"] is None
    assert flows["birthday"]["sent"] == 0  # every flow has its row


class TestASendMeATest:
    """A test the merchant sends themselves arrives, and counts nowhere."""

    @pytest.fixture
    def smtp(self) -> Iterator[Inbox]:
        inbox = Inbox()
        port = free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        inbox.port = port  # type: ignore[attr-defined]
        yield inbox
        controller.stop()

    @pytest.fixture
    def settings(self, settings: Settings, smtp: Inbox) -> Settings:
        port = smtp.port  # type: ignore[attr-defined]
        return dataclasses.replace(settings, email_url=f"smtp://127.0.0.1:{port}?timeout=5")

    def test_is_never_counted(self, merchant: Merchant, runtime: Runtime, smtp: Inbox) -> None:
        set_settings(
            runtime,
            merchant.shop_id,
            {"sender": {"name": "Nordljus", "address": "hej@nordljus.se"}},
        )
        sent = merchant.api("POST", TEST_SEND, {"locale": "sv"})
        assert sent.status_code == 200, sent.json
        assert len(smtp.messages) == 1
        with runtime.sessions.begin() as session:  # and one email of the ledger, which counts
            Ledger(session, session.get_one(Shop, merchant.shop_id)).message(
                "cart_recovery", datetime.now(UTC) - timedelta(minutes=1)
            )
        body = merchant.api("GET", "/analytics").json
        assert body["totals"]["sent"] == 1
        assert body["totals"]["delivered"] == 1


def test_one_flow_only(merchant: Merchant, runtime: Runtime) -> None:
    seed(runtime, merchant.shop_id)
    body = merchant.api("GET", f"/analytics?{SPRING}&flow=welcome").json
    assert [row["flow"] for row in body["flows"]] == ["welcome"]
    assert [day["sent"] for day in body["days"]] == [0, 1, 0]
    every = merchant.api("GET", f"/analytics?{SPRING}&flow=").json  # empty: every flow
    assert every["totals"]["sent"] == 3


def test_without_dates_the_last_30_local_days(merchant: Merchant) -> None:
    body = merchant.api("GET", "/analytics").json
    today = datetime.now(UTC).date()
    assert len(body["days"]) == analytics.SUMMARY_DAYS
    last = datetime.fromisoformat(body["to"]).date()
    assert abs((last - today).days) <= 1  # the shop's today (UTC here)
    assert body["totals"]["sent"] == 0


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("from=2026-13-01", {"from"}),
        ("to=yesterday", {"to"}),
        ("from=2026-03-30&to=2026-03-28", {"to"}),
        ("from=2025-01-01&to=2026-01-02", {"from"}),
        ("flow=nope", {"flow"}),
        ("flow=nope&from=2026-02-30&to=x", {"flow", "from", "to"}),
    ],
)
def test_a_bad_query_is_refused_field_by_field(
    merchant: Merchant, query: str, fields: set[str]
) -> None:
    answer = merchant.api("GET", f"/analytics?{query}")
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid"
    assert {item["field"] for item in answer.json["fields"]} == fields
    assert all(item["message"] for item in answer.json["fields"])


def test_a_year_of_366_days_is_one_range(merchant: Merchant) -> None:
    answer = merchant.api("GET", "/analytics?from=2028-01-01&to=2028-12-31")
    assert answer.status_code == 200
    assert len(answer.json["days"]) == 366


def test_no_session_no_figures(client: FlaskClient) -> None:
    answer = client.get(f"/api/v1/analytics?{SPRING}")
    assert answer.status_code == 401
    assert answer.json["error"] == "unauthorized"
    assert client.get("/app/analytics").status_code == 401
    assert client.get("/api/v1/checklist").status_code == 401


def test_each_merchant_sees_only_their_own_shops_figures(
    merchant: Merchant, woo_merchant: Merchant, runtime: Runtime
) -> None:
    seed(runtime, merchant.shop_id, revenue="199.50")
    seed(runtime, woo_merchant.shop_id, revenue="7.00")
    ours = merchant.api("GET", f"/analytics?{SPRING}").json
    theirs = woo_merchant.api("GET", f"/analytics?{SPRING}").json
    assert ours["totals"]["revenue"] == "199.50"
    assert theirs["totals"]["revenue"] == "7.00"
    assert theirs["totals"]["sent"] == ours["totals"]["sent"] == 3
    page = woo_merchant.client.get(f"/app/analytics?{SPRING}").text
    assert "7.00" in page
    assert "199.50" not in page


def test_the_page_shows_a_chart_a_table_per_flow_and_the_lifts_verdict(
    merchant: Merchant, runtime: Runtime
) -> None:
    seed(runtime, merchant.shop_id)
    page = merchant.client.get(f"/app/analytics?{SPRING}")
    assert page.status_code == 200
    text = unescape(page.text)
    assert text.count("<svg") == 2
    assert len(re.findall(r"<rect [^>]*height=\"(?!0\.00)", text)) >= 3  # bars with height
    assert "Mar 29, 2026: 2 sent, 1 clicked" in text
    assert "SEK199.50" in text.replace("\xa0", "")
    assert "About 868 % more orders than without the emails" in text
    assert 'value="2026-03-28"' in text
    assert 'aria-current="page"' in text  # its place in the navigation
    assert "Days in Europe/Stockholm time" in text


def test_the_page_without_any_figures_still_draws_its_empty_chart(merchant: Merchant) -> None:
    page = merchant.client.get("/app/analytics")
    assert page.status_code == 200
    text = unescape(page.text)
    assert text.count("<svg") == 2
    assert "Nothing was sent and no order was attributed in these days yet." in text


def test_the_page_says_what_is_wrong_with_the_query_next_to_the_field(
    merchant: Merchant,
) -> None:
    page = merchant.client.get("/app/analytics?flow=nope")
    assert page.status_code == 400
    text = unescape(page.text)
    assert 'data-error-for="flow">There is no flow called nope.' in text
    assert 'name="flow" aria-invalid="true"' in text
    assert "<svg" not in text
    backwards = unescape(merchant.client.get("/app/analytics?from=2026-03-30&to=2026-03-28").text)
    assert 'data-error-for="to">The last day must not be before the first.' in backwards
    assert 'value="2026-03-30"' in backwards  # what was asked stays in the form


def test_the_page_speaks_swedish_to_a_swedish_shop(merchant: Merchant, runtime: Runtime) -> None:
    seed(runtime, merchant.shop_id)
    with runtime.sessions.begin() as session:
        shop_settings.update(
            session, session.get_one(Shop, merchant.shop_id), {"branding": {"language": "sv"}}
        )
    text = unescape(merchant.client.get(f"/app/analytics?{SPRING}").text)
    assert "Skickade" in text
    assert "Intäkter" in text
    assert "Omkring 868 % fler beställningar än utan mejlen" in text


# --- the Overview --------------------------------------------------------------------------


def test_the_overview_shows_each_flows_last_30_days(merchant: Merchant, runtime: Runtime) -> None:
    now = datetime.now(UTC)
    with runtime.sessions.begin() as session:
        ledger = Ledger(session, session.get_one(Shop, merchant.shop_id))
        sent = ledger.message("cart_recovery", now - timedelta(days=2))
        ledger.click(sent, now - timedelta(days=2))
        ledger.credit(sent, now - timedelta(days=1), "349.00")
        ledger.message("cart_recovery", now - timedelta(days=45))  # too old
    text = unescape(merchant.client.get("/app/").text).replace("\xa0", "")
    cart = text[text.index('data-flow="cart_recovery"') :]
    cart = cart[: cart.index("</li>")]
    assert "Last 30 days:" in cart
    assert "1 sent" in cart
    assert "1 clicked" in cart
    assert "1 orders" in cart
    assert "SEK349.00" in cart


def test_the_overview_lists_what_is_missing_first(merchant: Merchant) -> None:
    text = unescape(merchant.client.get("/app/").text)
    checklist = text[text.index('id="checklist-heading"') :]
    assert checklist.index("Set the name and address your emails come from") < checklist.index(
        'id="flows-heading"'
    )
    assert "Turn off Shopify's own abandoned checkout email" in checklist


def test_the_checklist_api_and_its_tick(merchant: Merchant) -> None:
    items = {item["code"]: item for item in merchant.api("GET", "/checklist").json["items"]}
    assert items["own_cart_email_off"]["tickable"] is True
    assert items["own_cart_email_off"]["done"] is False
    assert items["sender"]["done"] is False
    assert items["sender"]["fix_url"] == "/app/settings"  # where it is done
    assert items["connection"]["fix_url"] == "/app/health"
    ticked = merchant.api("PATCH", "/checklist/own_cart_email_off", {"done": True})
    assert ticked.status_code == 200, ticked.json
    items = {item["code"]: item for item in ticked.json["items"]}
    assert items["own_cart_email_off"]["done"] is True
    assert merchant.api("PATCH", "/checklist/sender", {"done": True}).status_code == 404
    bad = merchant.api("PATCH", "/checklist/own_cart_email_off", {"done": "yes"})
    assert bad.status_code == 400
    assert [item["field"] for item in bad.json["fields"]] == ["done"]


def test_the_tick_needs_the_csrf_token_with_a_cookie_session(merchant: Merchant) -> None:
    refused = merchant.api("PATCH", "/checklist/own_cart_email_off", {"done": True}, csrf=False)
    assert refused.status_code == 403
    items = {item["code"]: item for item in merchant.api("GET", "/checklist").json["items"]}
    assert items["own_cart_email_off"]["done"] is False


def test_the_tick_works_without_javascript(merchant: Merchant) -> None:
    answer = merchant.client.post(
        "/app/checklist/own_cart_email_off", data={"csrf_token": merchant.csrf, "done": "true"}
    )
    assert answer.status_code == 302
    items = {item["code"]: item for item in merchant.api("GET", "/checklist").json["items"]}
    assert items["own_cart_email_off"]["done"] is True


def test_a_woocommerce_store_is_asked_for_its_consent_checkbox(woo_merchant: Merchant) -> None:
    items = {item["code"]: item for item in woo_merchant.api("GET", "/checklist").json["items"]}
    assert "consent_source" in items
    assert "own_cart_email_off" not in items
    assert (
        woo_merchant.api("PATCH", "/checklist/own_cart_email_off", {"done": True}).status_code
        == 404
    )


def test_the_openapi_document_describes_the_analytics_routes(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert "get" in paths["/api/v1/analytics"]
    assert "patch" in paths["/api/v1/checklist/{code}"]
