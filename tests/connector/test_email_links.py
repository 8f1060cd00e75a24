"""Links in emails: unsubscribe (page and RFC 8058 one-click), preferences, clicks, the pixel,
and provider bounce webhooks."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from connector import email_links
from connector.email_events import webhook_url
from jobs.runtime import Runtime
from jobs.sending import links
from jobs.store.models import (
    Contact,
    Engagement,
    Message,
    MessageState,
    Shop,
    Suppression,
)
from tests.jobs.engine_support import SHOP, T0, Harness, checkout, customer


@pytest.fixture
def shop(runtime: Runtime, client: FlaskClient) -> Harness:
    harness = Harness(runtime)
    harness.at(T0, checkout("tok-1", T0, customer()))
    return harness


def _path(url: str) -> str:
    return urlsplit(url).path


def _first(shop: Harness) -> Message:
    return shop.messages()[0]


def test_get_only_asks_and_post_unsubscribes_and_cancels(
    client: FlaskClient, runtime: Runtime, shop: Harness
) -> None:
    message = _first(shop)
    url = links.unsubscribe_url(runtime.settings, shop.shop_id, message.id)
    page = client.get(_path(url))
    assert page.status_code == 200
    assert "anna@example.se" in page.get_data(as_text=True)
    assert {m.state for m in shop.messages()} == {MessageState.PLANNED}  # a scanner changed nothing

    done = client.post(_path(url), data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert {(m.state, m.reason) for m in shop.messages()} == {
        (MessageState.CANCELLED, "suppressed:unsubscribed")
    }
    with runtime.sessions() as session:
        suppression = session.scalars(select(Suppression)).one()
        assert (suppression.scope, suppression.source) == ("marketing", "one_click")
        contact = session.scalars(select(Contact)).one()
        assert (contact.consent_state, contact.consent_source) == (
            "unsubscribed",
            "triggerpost:one_click",
        )
    assert client.post(_path(url), data={"List-Unsubscribe": "One-Click"}).status_code == 200


def _what_a_visit_can_change(runtime: Runtime, shop: Harness) -> object:
    with runtime.sessions() as session:
        return (
            sorted((m.id, m.state, m.reason) for m in shop.messages()),
            session.scalars(select(Suppression.scope)).all(),
            session.scalars(select(Engagement.kind)).all(),
            session.execute(select(Contact.consent_state, Contact.consent_source)).all(),
        )


@pytest.mark.parametrize("route", ["unsubscribe", "preferences", "click", "pixel"])
def test_a_head_request_on_an_email_link_changes_nothing(
    client: FlaskClient, runtime: Runtime, shop: Harness, route: str
) -> None:
    """Link scanners send HEAD; Flask answers HEAD with the GET view."""
    message = _first(shop)
    settings = runtime.settings
    url, status = {
        "unsubscribe": (links.unsubscribe_url(settings, shop.shop_id, message.id), 200),
        "preferences": (links.preferences_url(settings, shop.shop_id, message.id), 200),
        "click": (
            links.click_url(settings, shop.shop_id, message.id, "https://nordljus.example/",
                            flow="cart_recovery", step="email_1"),
            302,
        ),
        "pixel": (links.open_pixel_url(settings, shop.shop_id, message.id), 200),
    }[route]  # fmt: skip
    before = _what_a_visit_can_change(runtime, shop)
    # a body as the one-click POST would carry it, and no box ticked
    response = client.head(_path(url), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == status
    assert response.get_data() == b""
    assert _what_a_visit_can_change(runtime, shop) == before
    if route == "click":
        assert urlsplit(response.headers["Location"]).netloc == "nordljus.example"


def test_forged_and_cross_shop_tokens_are_refused(
    client: FlaskClient, runtime: Runtime, shop: Harness
) -> None:
    message = _first(shop)
    url = links.unsubscribe_url(runtime.settings, shop.shop_id, message.id)
    with runtime.sessions() as session:
        other = session.scalars(select(Shop.id).where(Shop.key != SHOP)).first()
    assert other is not None
    forged = _path(url)[:-3] + "abc"
    cross = _path(url).replace(f"/u/{shop.shop_id}/", f"/u/{other}/")
    click_as_unsubscribe = _path(
        links.click_url(
            runtime.settings, shop.shop_id, message.id, "https://x.example", flow="f", step="s"
        )
    ).replace("/t/c/", "/u/")
    for path in (forged, cross, click_as_unsubscribe):
        assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 400
    with runtime.sessions() as session:
        assert session.scalars(select(Suppression)).all() == []


def test_click_redirects_with_utm_and_is_recorded(
    client: FlaskClient, runtime: Runtime, shop: Harness
) -> None:
    message = _first(shop)
    url = links.click_url(
        runtime.settings,
        shop.shop_id,
        message.id,
        "https://nordljus.example/cart?x=1",
        flow="cart_recovery",
        step="email_1",
    )
    response = client.get(_path(url))
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    assert (target.netloc, target.path) == ("nordljus.example", "/cart")
    assert parse_qs(target.query) == {
        "x": ["1"],
        "utm_source": ["triggerpost"],
        "utm_medium": ["email"],
        "utm_campaign": ["cart_recovery"],
        "utm_content": ["email_1"],
    }
    with runtime.sessions() as session:
        engagement = session.scalars(select(Engagement)).one()
        assert (engagement.kind, engagement.message_id) == ("click", message.id)


def test_a_redirect_to_a_url_not_in_the_email_is_refused(
    client: FlaskClient, runtime: Runtime, shop: Harness
) -> None:
    message = _first(shop)
    good = links.sign(
        runtime.settings, shop.shop_id, links.CLICK, [message.id, "https://nordljus.example/"]
    )
    evil = links.sign(
        runtime.settings, shop.shop_id + 1, links.CLICK, [message.id, "https://evil.example/"]
    )
    assert client.get(f"/t/c/{shop.shop_id}/{good}").status_code == 302
    assert client.get(f"/t/c/{shop.shop_id}/{evil}").status_code == 400
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert client.get(f"/t/c/{shop.shop_id}/{tampered}").status_code == 400
    js = links.sign(
        runtime.settings, shop.shop_id, links.CLICK, [message.id, "javascript:alert(1)"]
    )
    assert client.get(f"/t/c/{shop.shop_id}/{js}").status_code == 400


def test_open_pixel_records_an_open_and_never_breaks(
    client: FlaskClient, runtime: Runtime, shop: Harness
) -> None:
    message = _first(shop)
    url = links.open_pixel_url(runtime.settings, shop.shop_id, message.id)
    for path in (_path(url), f"/t/o/{shop.shop_id}/forged.gif"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.mimetype == "image/gif"
    with runtime.sessions() as session:
        assert [e.kind for e in session.scalars(select(Engagement))] == ["open"]


def test_preferences_leave_one_kind_and_come_back(
    client: FlaskClient, runtime: Runtime, shop: Harness
) -> None:
    message = _first(shop)
    path = _path(links.preferences_url(runtime.settings, shop.shop_id, message.id))
    page = client.get(path).get_data(as_text=True)
    assert 'name="marketing"' in page
    assert 'name="cart"' in page
    # keep marketing in general and every other kind, leave cart reminders
    others = {kind: "1" for kind in email_links.categories() if kind != "cart"}
    assert client.post(path, data={"marketing": "1", **others}).status_code == 200
    with runtime.sessions() as session:
        assert [s.scope for s in session.scalars(select(Suppression))] == ["cart"]
        assert session.scalars(select(Contact.consent_state)).one() == "subscribed"
    assert {m.reason for m in shop.messages()} == {"suppressed:unsubscribed"}
    # and back: only their own unsubscribe is lifted
    client.post(path, data={"marketing": "1", "cart": "1", **others})
    with runtime.sessions() as session:
        assert session.scalars(select(Suppression)).all() == []


POSTMARK_BOUNCE = {
    "RecordType": "Bounce",
    "ID": 4323372036854775807,
    "Type": "HardBounce",
    "TypeCode": 1,
    "Name": "Hard bounce",
    "Tag": "",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "ServerID": 23,
    "Description": "The server was unable to deliver your message (ex: unknown user).",
    "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    "Email": "anna@example.se",
    "From": "shops@mail.triggerpost.example",
    "BouncedAt": "2026-03-02T10:05:08.7140293Z",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": True,
    "Subject": "You left something in your cart",
    "Metadata": {"shop": "1", "message": "1"},
    "MessageStream": "broadcast",
}


def test_postmark_hard_bounce_suppresses_the_address(
    client: FlaskClient, runtime: Runtime, shop: Harness
) -> None:
    message = _first(shop)
    with runtime.sessions.begin() as session:
        session.get_one(Message, message.id).provider_message_id = POSTMARK_BOUNCE["MessageID"]
    url = _path(webhook_url(runtime.settings, "postmark"))
    assert client.post(url.rsplit("/", 1)[0] + "/wrong", json=POSTMARK_BOUNCE).status_code == 401
    assert client.post(url, data="not json", content_type="application/json").status_code == 400
    deep = "[" * 100_000 + "]" * 100_000  # past the JSON parser's stack: no JSON, not a 500
    assert client.post(url, data=deep, content_type="application/json").status_code == 400
    response = client.post(url, json=POSTMARK_BOUNCE)
    assert response.get_json() == {"status": "suppressed"}
    with runtime.sessions() as session:
        suppression = session.scalars(select(Suppression)).one()
        assert (suppression.scope, suppression.reason, suppression.source) == (
            "all",
            "hard_bounce",
            "postmark:hard_bounce",
        )
    assert {m.state for m in shop.messages()} == {MessageState.CANCELLED}
    soft = {**POSTMARK_BOUNCE, "Type": "SoftBounce", "TypeCode": 4096}
    assert client.post(url, json=soft).get_json() == {"status": "soft_bounce"}
    unknown = {**POSTMARK_BOUNCE, "MessageID": "nope", "Metadata": {}}
    assert client.post(url, json=unknown).get_json() == {"status": "unknown_message"}


def test_sendgrid_spam_report_suppresses_and_other_events_do_not(
    client: FlaskClient, runtime: Runtime, shop: Harness
) -> None:
    message = _first(shop)
    url = _path(webhook_url(runtime.settings, "sendgrid"))
    sg_id = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"
    common = {"email": "anna@example.se", "sg_message_id": sg_id, "message": str(message.id)}
    events = [
        {**common, "timestamp": 1772445600, "event": "delivered"},
        {**common, "timestamp": 1772449200, "event": "spamreport", "shop": str(shop.shop_id)},
    ]
    assert client.post(url, json=events).get_json() == {"status": "suppressed"}
    with runtime.sessions() as session:
        suppression = session.scalars(select(Suppression)).one()
        assert (suppression.scope, suppression.reason) == ("all", "complaint")
    assert client.post(url, json={"not": "a list"}).status_code == 400
