"""Preview and test send: the API, the email's own document, the page, and a test
delivered to a real SMTP server on loopback, marked and never counted."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from html import unescape
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask.testing import FlaskClient
from sqlalchemy import func, select

from adapters import events as ev
from jobs import shop_settings
from jobs.intake import apply
from jobs.sending import previews
from jobs.settings import Settings
from jobs.store.models import Decision, Engagement, Enrollment, Message, Shop, Suppression
from tests.connector.merchant.conftest import Merchant
from tests.emails.test_delivery import Inbox, free_port

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PREVIEW = "/flows/cart_recovery/steps/email_1/preview"
TEST_SEND = "/flows/cart_recovery/steps/email_1/test-send"


@pytest.fixture
def smtp() -> Iterator[Inbox]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.port = port  # type: ignore[attr-defined]
    yield inbox
    controller.stop()


@pytest.fixture
def settings(settings: Settings, smtp: Inbox) -> Settings:
    """The suite's settings, delivering through the SMTP server on loopback."""
    port = smtp.port  # type: ignore[attr-defined]
    return dataclasses.replace(settings, email_url=f"smtp://127.0.0.1:{port}?timeout=5")


def put(runtime: Any, shop_id: int, *events: ev.Event) -> None:
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, shop_id)
        for event in events:
            apply.apply(session, shop, event, delivery_id=None, at=event.occurred_at)


def customer(email: str, first_name: str, locale: str) -> ev.Customer:
    return ev.Customer(
        customer_id=email.split("@")[0],
        email=email,
        first_name=first_name,
        locale=locale,
        consent=ev.Consent(ev.ConsentState.SUBSCRIBED, "test", T0),
        updated_at=T0,
    )


def cart(who: ev.Customer, title: str) -> ev.CheckoutUpdated:
    return ev.CheckoutUpdated(
        occurred_at=T0,
        checkout=ev.Checkout(
            token=f"tok-{who.customer_id}",
            customer=who,
            email=who.email,
            recovery_url=f"https://shop.example/checkouts/tok-{who.customer_id}/recover",
            total=ev.Money(Decimal("249.00"), "SEK"),
            line_items=(
                ev.LineItem(title, 1, ev.Money(Decimal("249.00"), "SEK"), product_id="p1"),
            ),
            updated_at=T0,
        ),
    )


def counts(runtime: Any) -> dict[str, int]:
    with runtime.sessions() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Message, Decision, Enrollment, Engagement, Suppression)
        }


def set_settings(runtime: Any, shop_id: int, patch: dict[str, Any]) -> None:
    with runtime.sessions.begin() as session:
        shop_settings.update(session, session.get_one(Shop, shop_id), patch)


def problems(answer: Any) -> dict[str, str]:
    return {item["field"]: item["message"] for item in answer.json.get("fields", [])}


# --- the preview API ---------------------------------------------------------------------


def test_the_api_gives_the_email_in_the_language_asked(merchant: Merchant) -> None:
    answer = merchant.api("GET", f"{PREVIEW}?locale=sv")
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert set(body) == {"subject", "preheader", "html", "text", "language", "direction"}
    assert (body["language"], body["direction"]) == ("sv", "ltr")
    assert body["subject"]
    assert "Hej Anna" in body["html"]
    persian = merchant.api("GET", f"{PREVIEW}?locale=fa").json
    assert (persian["language"], persian["direction"]) == ("fa", "rtl")
    assert 'dir="rtl"' in persian["html"]


def test_a_real_customers_preview_has_her_name_language_and_cart(
    merchant: Merchant, runtime: Any
) -> None:
    birgitta = customer("birgitta@example.no", "Birgitta", "nb-NO")
    put(runtime, merchant.shop_id, cart(birgitta, "Ullmössa Fjäll"))
    answer = merchant.api("GET", f"{PREVIEW}?contact=Birgitta@example.no")
    assert answer.status_code == 200, answer.json
    assert answer.json["language"] == "nb"
    assert "Birgitta" in answer.json["html"]
    assert "Ullmössa Fjäll" in answer.json["html"]


def test_another_shops_customer_is_not_found(
    merchant: Merchant, woo_merchant: Merchant, runtime: Any
) -> None:
    eva = customer("eva@example.se", "Eva", "sv-SE")
    put(runtime, woo_merchant.shop_id, cart(eva, "Vantar"))
    assert woo_merchant.api("GET", f"{PREVIEW}?contact=eva@example.se").status_code == 200
    answer = merchant.api("GET", f"{PREVIEW}?contact=eva@example.se")
    assert answer.status_code == 404
    assert "eva@example.se" in problems(answer)["contact"]
    assert "Eva" not in answer.text
    sent = merchant.api("POST", TEST_SEND, {"to": "me@example.com", "contact": "eva@example.se"})
    assert sent.status_code == 404
    assert "contact" in problems(sent)


def test_unknown_flows_steps_and_languages_are_refused_in_words(merchant: Merchant) -> None:
    flow = merchant.api("GET", "/flows/nope/steps/email_1/preview")
    assert flow.status_code == 404
    assert "nope" in flow.json["message"]
    step = merchant.api("GET", "/flows/cart_recovery/steps/thanks/preview")
    assert step.status_code == 404
    assert "thanks" in problems(step)["step"]
    language = merchant.api("GET", f"{PREVIEW}?locale=de")
    assert language.status_code == 400
    assert "en, fa, nb, ru, sv" in problems(language)["locale"]
    huge = merchant.api("GET", f"{PREVIEW}?locale={'x' * 5000}")
    assert huge.status_code == 400
    assert problems(huge)["locale"] == "must be at most 35 characters"
    assert "x" * 100 not in huge.text
    address = merchant.api("GET", f"{PREVIEW}?contact=not-an-address")
    assert address.status_code == 400
    assert problems(address)["contact"] == "This is not an email address."


def test_without_a_session_nothing_is_shown_or_sent(client: FlaskClient, smtp: Inbox) -> None:
    shown = client.get(f"/api/v1{PREVIEW}")
    assert shown.status_code == 401
    assert "html" not in shown.json
    # a cookie-less request is refused before anything (no CSRF token: 403, else 401)
    sent = client.post(f"/api/v1{TEST_SEND}", json={"to": "me@example.com"})
    assert sent.status_code in (401, 403)
    bearer = client.post(
        f"/api/v1{TEST_SEND}",
        json={"to": "me@example.com"},
        headers={"Authorization": "Bearer nonsense"},
    )
    assert bearer.status_code == 401
    assert client.get("/app/flows/cart_recovery/steps/email_1/preview.html").status_code == 401
    assert smtp.messages == []


# --- a test, to the merchant ---------------------------------------------------------------


def test_a_test_arrives_marked_as_a_test_and_is_never_counted(
    merchant: Merchant, runtime: Any, smtp: Inbox
) -> None:
    set_settings(
        runtime, merchant.shop_id, {"sender": {"name": "Nordljus", "address": "hej@nordljus.se"}}
    )
    birgitta = customer("birgitta@example.no", "Birgitta", "nb-NO")
    put(runtime, merchant.shop_id, cart(birgitta, "Ullmössa Fjäll"))
    before = counts(runtime)
    answer = merchant.api("POST", TEST_SEND, {"locale": "sv", "contact": birgitta.email})
    assert answer.status_code == 200, answer.json
    assert answer.json["to"] == "hej@nordljus.se"
    assert answer.json["message"] == "A test was sent to hej@nordljus.se."
    [mail] = smtp.messages
    assert mail["To"] == "hej@nordljus.se"
    assert mail["From"] == "Nordljus <hej@nordljus.se>"
    assert mail["X-Triggerpost-Test"] == "1"
    assert str(mail["Subject"]).startswith("[Test] ")
    assert mail["Subject"] == answer.json["subject"]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Birgitta" in html
    assert "Ullmössa Fjäll" in html
    assert "/t/c/" not in html  # no click is recorded from a test
    assert "/preview-link/unsubscribe?lang=sv" in html
    assert counts(runtime) == before  # no message, decision, enrollment, engagement
    assert birgitta.email not in {m["To"] for m in smtp.messages}


def test_a_test_goes_to_the_address_given_and_a_bad_one_is_refused(
    merchant: Merchant, smtp: Inbox
) -> None:
    ok = merchant.api("POST", TEST_SEND, {"to": " Me@Example.com ", "locale": "fa"})
    assert ok.status_code == 200, ok.json
    assert smtp.messages[0]["To"] == "me@example.com"
    assert str(smtp.messages[0]["Subject"]).startswith("[آزمایشی] ")
    for bad in ("nobody", "a@example.com\r\nBcc: b@example.com", "a@x.se, b@x.se", "x" * 300):
        answer = merchant.api("POST", TEST_SEND, {"to": bad})
        assert answer.status_code == 400
        assert problems(answer)["to"] == "This is not an email address."
    no_sender = merchant.api("POST", TEST_SEND, {})
    assert no_sender.status_code == 400
    assert "no sender address" in problems(no_sender)["to"]
    oversized = merchant.api("POST", TEST_SEND, {"to": "a" * 5000 + "@example.com"})
    assert problems(oversized)["to"] == "must be at most 320 characters"
    for body in ({"to": 5}, {"to": "me@example.com", "bcc": "x@example.com"}, {"locale": "xx"}):
        assert merchant.api("POST", TEST_SEND, body).status_code == 400
    not_json = merchant.client.post(
        f"/api/v1{TEST_SEND}", data="to=me@example.com", headers={"X-CSRF-Token": merchant.csrf}
    )
    assert not_json.status_code == 415
    assert len(smtp.messages) == 1


def test_a_refusing_mail_server_is_told_in_words(merchant: Merchant, smtp: Inbox) -> None:
    refused = merchant.api("POST", TEST_SEND, {"to": "nobody@example.com"})
    assert refused.status_code == 502
    assert "refused" in refused.json["message"]
    busy = merchant.api("POST", TEST_SEND, {"to": "busy@example.com"})
    assert busy.status_code == 503
    assert "did not answer" in busy.json["message"]


def test_a_cookie_session_without_the_csrf_token_sends_nothing(
    merchant: Merchant, smtp: Inbox
) -> None:
    answer = merchant.api("POST", TEST_SEND, {"to": "me@example.com"}, csrf=False)
    assert answer.status_code == 403
    forged = merchant.api(
        "POST", TEST_SEND, {"to": "me@example.com"}, csrf=False, headers={"X-CSRF-Token": "x"}
    )
    assert forged.status_code == 403
    page = merchant.client.post(
        "/app/flows/cart_recovery/preview", data={"step": "email_1", "to": "me@example.com"}
    )
    assert page.status_code == 403
    assert smtp.messages == []


def test_a_shop_sends_at_most_its_tests_an_hour(
    merchant: Merchant, woo_merchant: Merchant, smtp: Inbox
) -> None:
    for _ in range(previews.TESTS_PER_HOUR):
        assert merchant.api("POST", TEST_SEND, {"to": "me@example.com"}).status_code == 200
    limited = merchant.api("POST", TEST_SEND, {"to": "me@example.com"})
    assert limited.status_code == 429
    assert f"{previews.TESTS_PER_HOUR} test emails in the last hour" in limited.json["message"]
    assert 0 < int(limited.headers["Retry-After"]) <= previews.WINDOW_SECONDS
    assert len(smtp.messages) == previews.TESTS_PER_HOUR
    # another shop's merchant is not held back by this one's tests
    assert woo_merchant.api("POST", TEST_SEND, {"to": "me@example.com"}).status_code == 200


# --- the email's own document, and the page -------------------------------------------------


def test_the_emails_document_is_framed_by_our_pages_only_and_runs_nothing(
    merchant: Merchant,
) -> None:
    answer = merchant.client.get("/app/flows/welcome/steps/welcome_1/preview.html?locale=fa")
    assert answer.status_code == 200
    assert answer.mimetype == "text/html"
    assert 'dir="rtl"' in answer.text
    policy = answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in policy
    assert "sandbox" in policy
    assert "script-src" not in policy
    assert "default-src 'none'" in policy
    assert answer.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert answer.headers["Cache-Control"] == "no-store, private"
    missing = merchant.client.get("/app/flows/welcome/steps/nope/preview.html")
    assert missing.status_code == 404
    bad = merchant.client.get("/app/flows/welcome/steps/welcome_1/preview.html?locale=xx")
    assert bad.status_code == 400


def test_the_page_shows_the_steps_the_subject_and_the_email_at_two_widths(
    merchant: Merchant,
) -> None:
    page = merchant.client.get("/app/flows/cart_recovery/preview?step=email_2&locale=fa")
    assert page.status_code == 200
    html = unescape(page.text)
    preview = merchant.api("GET", "/flows/cart_recovery/steps/email_2/preview?locale=fa").json
    assert preview["subject"] in html
    assert preview["preheader"] in html
    assert 'lang="fa" dir="rtl"' in html
    frames = re.findall(r"<iframe[^>]*>", html)
    assert len(frames) == 2
    assert {re.search(r'width="(\d+)"', f).group(1) for f in frames} == {"390", "700"}  # type: ignore[union-attr]
    assert all("sandbox=" in frame for frame in frames)
    assert all("steps/email_2/preview.html?locale=fa" in frame for frame in frames)
    for step in ("email_1", "email_2", "email_3"):
        assert f"step={step}" in html
    assert 'name="csrf_token"' in html
    assert 'data-api-url="/api/v1/flows/cart_recovery/steps/email_2/test-send"' in html
    for code in ("en", "sv", "nb", "ru", "fa"):
        assert f'<option value="{code}" lang="{code}"' in html


def test_the_pages_way_in_leads_to_a_flows_first_email(merchant: Merchant) -> None:
    answer = merchant.client.get("/app/preview?flow=welcome&step=email_9&locale=sv")
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith(
        "/app/flows/welcome/preview?step=welcome_1&locale=sv"
    )
    assert merchant.client.get("/app/preview?flow=nope").status_code == 404
    assert merchant.client.get("/app/flows/nope/preview").status_code == 404
    assert merchant.client.get("/app/flows/welcome/preview?step=nope").status_code == 404


def test_send_me_a_test_works_without_javascript(
    merchant: Merchant, runtime: Any, smtp: Inbox
) -> None:
    form = {"csrf_token": merchant.csrf, "step": "email_2", "locale": "sv", "contact": ""}
    sent = merchant.client.post(
        "/app/flows/cart_recovery/preview", data={**form, "to": "me@example.com"}
    )
    assert sent.status_code == 302
    assert sent.headers["Location"].endswith(
        "/app/flows/cart_recovery/preview?step=email_2&locale=sv"
    )
    assert smtp.messages[0]["To"] == "me@example.com"
    after = merchant.client.get(sent.headers["Location"])
    assert "A test was sent to me@example.com." in unescape(after.text)
    refused = merchant.client.post(
        "/app/flows/cart_recovery/preview", data={**form, "to": "not-an-address"}
    )
    assert refused.status_code == 400
    assert 'data-error-for="to">This is not an email address.' in unescape(refused.text)
    assert 'value="not-an-address"' in refused.text
    assert len(smtp.messages) == 1


def test_the_page_speaks_swedish_to_a_swedish_shop(merchant: Merchant, runtime: Any) -> None:
    set_settings(runtime, merchant.shop_id, {"branding": {"language": "sv"}})
    page = unescape(merchant.client.get("/app/flows/welcome/preview").text)
    assert "Skicka ett test till mig" in page
    assert "Förhandsvisning" in page
    unknown = merchant.client.get("/app/flows/welcome/preview?contact=vem@example.se")
    assert unknown.status_code == 404
    assert "Din butik har ingen kund med adressen vem@example.se." in unescape(unknown.text)
    assert 'value="vem@example.se"' in unknown.text  # kept in its field, to correct it
    frames = re.findall(r"<iframe[^>]*>", unknown.text)
    assert frames
    assert all("contact=" not in frame for frame in frames)  # the sample is shown instead


# --- where a preview's links go -------------------------------------------------------------


def test_a_previews_unsubscribe_link_says_what_it_would_do_and_changes_nothing(
    merchant: Merchant, runtime: Any
) -> None:
    put(runtime, merchant.shop_id, cart(customer("anna@example.se", "Anna", "sv"), "Mössa"))
    link = merchant.api("GET", f"{PREVIEW}?locale=sv").json["html"]
    path = re.search(r'href="[^"]*(/preview-link/unsubscribe\?lang=sv)"', link).group(1)  # type: ignore[union-attr]
    before = counts(runtime)
    page = merchant.client.get(path)
    assert page.status_code == 200
    assert "inget ändrades" in page.text
    one_click = merchant.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert counts(runtime) == before
    assert merchant.client.get("/preview-link/erase?lang=sv").status_code == 400


def test_the_openapi_document_describes_preview_and_test_send(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert "get" in paths["/api/v1/flows/{name}/steps/{step}/preview"]
    assert "post" in paths["/api/v1/flows/{name}/steps/{step}/test-send"]


def test_two_emails_of_one_template_are_told_apart_by_their_step(merchant: Merchant) -> None:
    page = unescape(merchant.client.get("/app/flows/review_request/preview").text)
    assert "after fulfilment" in page
    assert "after delivery" in page
    single = unescape(merchant.client.get("/app/flows/cart_recovery/preview").text)
    assert 'class="step-name"' not in single
