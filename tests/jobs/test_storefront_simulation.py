"""A WooCommerce cart before "Place order", its pending order and its payment, through
the simulator: examples/woocommerce_cart.json is what the translators make of the
fixtures (kept so by a test), and it sends one cart reminder, never two series."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters import events as ev
from adapters import storefront
from adapters.platform import ShopContext
from adapters.registry import PLATFORMS
from jobs.simulator import Scenario, simulate
from tests.support import FIXTURES

EXAMPLE = Path(__file__).parents[2] / "examples" / "woocommerce_cart.json"
WOO = PLATFORMS["woocommerce"]
SHOP = ShopContext(domain="butik.example.se", currency="SEK", base_url="https://butik.example.se")
T = datetime(2026, 3, 2, 17, 6, 30, tzinfo=UTC)
PAID_AT = T + timedelta(hours=16)


def _storefront(name: str, at: datetime) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / "storefront" / f"{name}.json").read_bytes())
    body["at"] = at.isoformat()
    body["received_at"] = (at + timedelta(milliseconds=400)).isoformat()
    return body


def _order(name: str, at: datetime, paid: datetime | None = None) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / "woocommerce" / f"{name}.json").read_bytes())
    body["date_created_gmt"] = at.replace(tzinfo=None).isoformat()
    body["date_modified_gmt"] = (paid or at).replace(tzinfo=None).isoformat()
    if paid:
        body["date_paid_gmt"] = paid.replace(tzinfo=None).isoformat()
    consent = {"id": 91006, "key": "_triggerpost_marketing_consent", "value": "yes"}
    body["meta_data"].append(consent)
    body["payment_url"] = body["payment_url"].replace("ullboden.se", "butik.example.se")
    return body


def story(*, cart_token_on_orders: bool = True) -> list[tuple[datetime, ev.Event, str]]:
    """The translators' events for Elias's evening and morning, each at its time."""
    checkout = _storefront("checkout_started__email_typed", T)
    pending = _order("order_created__pending_cart_token", T + timedelta(minutes=3))
    paid = _order("order_updated__processing_cart_token", T + timedelta(minutes=3), PAID_AT)
    if not cart_token_on_orders:
        for order in (pending, paid):
            order["meta_data"] = [
                m for m in order["meta_data"] if m["key"] != "_triggerpost_cart_token"
            ]
    typed = storefront.translate(WOO, "storefront/checkout_started", checkout, SHOP)
    placed = WOO.topic_handlers["order.created"](pending, SHOP)
    payment = WOO.topic_handlers["order.updated"](paid, SHOP)
    return [
        *((e.occurred_at, e, TYPED) for e in typed),
        *((e.occurred_at, e, PLACED) for e in placed),
        *((PAID_AT, e, PAID) for e in payment),
    ]


TYPED = "the email typed at the checkout: the cart is the checkout cart-<token>"
PLACED = (
    "Place order: the unpaid order carries the cart's token, so it is the same "
    "checkout (and the consent box was ticked); the payment is left"
)
PAID = (
    "paid the next morning (the webhook comes then): the checkout completes, "
    "the later reminders never go"
)


def scenario(**options: bool) -> dict[str, Any]:
    return {
        "note": (
            "Butik (WooCommerce, SEK): Elias types his email at the checkout, clicks Place "
            "order, leaves the payment and pays the next morning. The cart, the pending order "
            "and the paid order are one checkout (cart-<token>): one reminder, an hour after "
            "his last change, and no second series. Times are UTC."
        ),
        "shop": {
            "platform": "woocommerce",
            "domain": "https://butik.example.se",
            "name": "Butik",
            "currency": "SEK",
            "timezone": "Europe/Stockholm",
        },
        "start": "2026-03-02T17:00:00+00:00",
        "until": "2026-03-08T00:00:00+00:00",
        "events": [
            {"at": at.isoformat(), "note": note, "event": ev.to_dict(event)}
            for at, event, note in story(**options)
        ],
    }


def cart_rows(timeline: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [
        (r["step"], ":".join(filter(None, (r["outcome"], r["reason"]))))
        for r in timeline
        if r["flow"] == "cart_recovery"
    ]


def test_the_example_is_what_the_translators_make_of_the_fixtures() -> None:
    written = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(scenario()))


def test_cart_pending_order_and_payment_send_one_cart_reminder_and_the_payment_ends_it() -> None:
    result = simulate(Scenario.load(EXAMPLE))
    rows = cart_rows(result.timeline)
    assert [row for row in rows if row[1] == "enrolled"] == [(None, "enrolled")]
    assert [step for step, outcome in rows if outcome == "sent"] == ["email_1"]
    assert ("email_2", "exited:checkout_completed") in rows
    assert ("email_3", "exited:checkout_completed") in rows
    # the cart's one reminder, and the thank-you for the order it became
    assert len(result.sent) == 2


def test_without_the_cart_token_on_the_order_the_cart_and_the_order_would_be_two_series() -> None:
    """Why the plugin marks the order: unmarked, the pending order is a checkout of its
    own (the fallback), and the cart's series would run beside it."""
    result = simulate(Scenario.from_dict(scenario(cart_token_on_orders=False)))
    enrolled = [row for row in cart_rows(result.timeline) if row[1] == "enrolled"]
    assert len(enrolled) == 2
