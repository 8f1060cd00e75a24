"""The simulator reads a scenario strictly, and lets the merchant change settings on the way."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest

from adapters import events as ev
from jobs.runtime import Runtime
from jobs.simulator import Scenario, ScenarioError, simulate
from tests.jobs.engine_support import T0, customer, hours, order

SHOP = {"platform": "shopify", "domain": "nordljus.myshopify.com", "name": "Nordljus"}


def timed(at: datetime, event: ev.Event, note: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"at": at.isoformat(), "event": ev.to_dict(event)}
    if note is not None:
        item["note"] = note
    return item


def delivery(at: datetime) -> list[dict[str, Any]]:
    """Anna's order, paid, delivered at ``at``."""
    anna = customer(customer_id="c1")
    placed = order("1", at - timedelta(days=3), anna, None)
    return [
        timed(at - timedelta(days=3), placed),
        timed(at - timedelta(days=3), ev.OrderPaid(placed.occurred_at, placed.order)),
        timed(at, ev.ShipmentDelivered(at, order_id="1", email=anna.email)),
    ]


def scenario(*items: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "shop": SHOP,
        "start": T0.isoformat(),
        "until": (T0 + timedelta(days=10)).isoformat(),
        "events": list(items),
        **more,
    }


def test_a_notice_turned_on_mid_way_goes_for_deliveries_from_then_on(runtime: Runtime) -> None:
    first, second = delivery(T0 + timedelta(days=3)), delivery(T0 + timedelta(days=6))
    second = [copy.deepcopy(item) for item in second]
    for item in second:  # another order of hers
        data = item["event"]["data"]
        if "order" in data:
            data["order"]["order_id"] = data["order"]["name"] = "2"
        else:
            data["order_id"] = "2"
    turn_on = {
        "at": (T0 + timedelta(days=4)).isoformat(),
        "note": "the merchant turns the delivered notice on",
        "settings": {"flows": {"delivered_notice": {"enabled": True}}},
    }
    result = simulate(Scenario.from_dict(scenario(*first, turn_on, *second)), runtime=runtime)
    notices = [r for r in result.timeline if r["flow"] == "delivered_notice" and r["step"]]
    assert [(r["outcome"], r["at"]) for r in notices if r["outcome"] == "sent"] == [
        ("sent", (T0 + timedelta(days=6)).isoformat())
    ]


def test_a_settings_change_the_shop_would_refuse_stops_the_scenario_with_its_words() -> None:
    change = {"at": (T0 + hours(1)).isoformat(), "settings": {"engine": {"min_gap_hours": -1}}}
    with pytest.raises(ScenarioError, match=r"settings at .*min_gap_hours"):
        simulate(Scenario.from_dict(scenario(change)))


def test_notes_are_for_the_reader_and_change_nothing() -> None:
    anna = customer(customer_id="c1")
    created = ev.CustomerCreated(occurred_at=T0, customer=anna)
    with_notes = scenario(timed(T0, created, note="Anna subscribes"), note="one sign-up")
    without = scenario(timed(T0, created))
    assert simulate(Scenario.from_dict(with_notes)).timeline == (
        simulate(Scenario.from_dict(without)).timeline
    )


def test_a_misspelt_field_is_refused_with_its_place_named_not_read_as_absent() -> None:
    anna = customer(customer_id="c1")
    item = timed(T0, ev.CustomerCreated(occurred_at=T0, customer=anna))
    # Shopify's legacy flag, which the event model does not have: without the check the
    # customer would silently have no consent, and no welcome would ever go
    item["event"]["data"]["customer"]["accepts_marketing"] = True
    with pytest.raises(ScenarioError, match=r"events\[0\]\.event\.data\.customer: no field "):
        Scenario.from_dict(scenario(item))


def test_a_misspelt_field_inside_a_line_item_is_named_too() -> None:
    anna = customer(customer_id="c1")
    placed = order("1", T0, anna, None)
    item = timed(T0, placed)
    item["event"]["data"]["order"]["line_items"] = [
        {"title": "Ullmössa", "quantity": 1, "unit_price": {"amount": "1", "currency": "SEK"}},
        {"title": "Halsduk", "quantity": 1, "unit_price": {"amount": "1", "currency": "SEK"},
         "product": "p2"},
    ]  # fmt: skip
    with pytest.raises(ScenarioError, match=r"order\.line_items\[1\]: no field 'product'"):
        Scenario.from_dict(scenario(item))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda raw: raw.update(ends="2026-04-01T00:00:00Z"), "scenario: unknown key 'ends'"),
        (lambda raw: raw["shop"].update(tz="Europe/Oslo"), "shop: unknown key 'tz'"),
        (lambda raw: raw["events"][0].update(when="x"), "events[0]: unknown key 'when'"),
        (lambda raw: raw["events"][0]["event"].update(v=1), "events[0].event: unknown key 'v'"),
        (
            lambda raw: raw["events"][0].update(settings={}),
            "events[0]: give either an event or settings",
        ),
    ],
)
def test_an_unknown_key_in_the_scenario_is_refused(change: Any, named: str) -> None:
    anna = customer(customer_id="c1")
    raw = scenario(timed(T0, ev.CustomerCreated(occurred_at=T0, customer=anna)))
    raw["shop"] = dict(raw["shop"])
    change(raw)
    with pytest.raises(ScenarioError) as refused:
        Scenario.from_dict(raw)
    assert named in str(refused.value)
