"""/api/v1/segments: the shop's segments with their live counts; saved whole or refused
field by field; never another shop's."""

from __future__ import annotations

from typing import Any

from connector.app import create_app
from jobs import shop_settings
from jobs.runtime import Runtime
from jobs.store.models import Contact, Shop
from tests.connector.merchant.conftest import Merchant

SWEDES = {"field": "country", "op": "in", "value": ["SE"]}


def _contacts(runtime: Runtime, shop_id: int, *countries: str) -> None:
    with runtime.sessions.begin() as session:
        for n, country in enumerate(countries):
            session.add(
                Contact(shop_id=shop_id, email=f"p{n}-{shop_id}@example.se", country_code=country)
            )


def _stored(runtime: Runtime, shop_id: int) -> dict[str, Any]:
    with runtime.sessions() as session:
        return dict(session.get_one(Shop, shop_id).settings or {})


def test_a_saved_segment_is_listed_with_its_live_count_beside_the_built_ins(
    merchant: Merchant, woo_merchant: Merchant, runtime: Runtime
) -> None:
    _contacts(runtime, merchant.shop_id, "SE", "SE", "NO")
    _contacts(runtime, woo_merchant.shop_id, "SE")  # another shop's: never counted here
    saved = merchant.api("PUT", "/segments/swedes", {"condition": SWEDES})
    assert saved.status_code == 200, saved.text
    assert saved.json["count"] == 2
    assert saved.json["built_in"] is False
    listed = merchant.api("GET", "/segments").json
    by_name = {s["name"]: s for s in listed["segments"]}
    assert by_name["swedes"]["count"] == 2
    assert by_name["swedes"]["condition"] == SWEDES
    assert by_name["first-time-buyers"]["built_in"] is True
    assert by_name["first-time-buyers"]["count"] == 0
    assert listed["fields"]["country"]["ops"] == ["in", "not_in"]
    assert "swedes" not in {
        s["name"] for s in woo_merchant.api("GET", "/segments").json["segments"]
    }
    draft = merchant.api("POST", "/segments/count", {"condition": {"not": SWEDES}})
    assert draft.json == {"count": 1}


def test_a_bad_segment_is_refused_field_by_field_and_nothing_is_saved(
    merchant: Merchant, runtime: Runtime
) -> None:
    before = _stored(runtime, merchant.shop_id)
    bad = {
        "all": [
            {"field": "country", "op": "in", "value": ["Sverige"]},
            {"field": "total_spent", "op": "above", "value": 100},
        ]
    }
    refused = merchant.api("PUT", "/segments/swedes", {"condition": bad})
    assert refused.status_code == 400
    assert {f["field"]: f["message"] for f in refused.json["fields"]} == {
        "condition.all[0].value[0]": "must be a two-letter country code, e.g. SE",
        "condition.all[1].op": "total spent takes one of: eq, ne, gt, gte, lt, lte",
    }
    assert _stored(runtime, merchant.shop_id) == before
    assert merchant.api("PUT", "/segments/Not A Name", {"condition": SWEDES}).status_code == 400
    assert merchant.api("POST", "/segments/count", {"condition": []}).status_code == 400
    assert merchant.api("PUT", "/segments/x", {"condition": SWEDES, "more": 1}).status_code == 400


def test_a_segment_a_flow_is_for_cannot_be_deleted_until_the_flow_is_for_another(
    merchant: Merchant, runtime: Runtime
) -> None:
    assert merchant.api("PUT", "/segments/swedes", {"condition": SWEDES}).status_code == 200
    used = merchant.api("PATCH", "/flows/cart_recovery", {"options": {"audience": "swedes"}})
    assert used.status_code == 200, used.text
    assert used.json["options"]["audience"] == "swedes"
    refused = merchant.api("DELETE", "/segments/swedes")
    assert refused.status_code == 409
    assert "cart_recovery" in refused.json["message"]
    # a condition written out replaces the name whole (not merged into it)
    written = {"any": [SWEDES, {"field": "tags", "op": "any_of", "value": ["vip"]}]}
    again = merchant.api("PATCH", "/flows/cart_recovery", {"options": {"audience": written}})
    assert again.status_code == 200, again.text
    assert again.json["options"]["audience"] == written
    assert merchant.api("DELETE", "/segments/swedes").status_code == 200
    assert "swedes" not in shop_settings.plain(_stored(runtime, merchant.shop_id)["segments"])
    assert merchant.api("DELETE", "/segments/swedes").status_code == 404


def test_segments_need_a_signed_in_merchant_and_the_csrf_token(
    merchant: Merchant, runtime: Runtime
) -> None:
    assert merchant.api("PUT", "/segments/s", {"condition": SWEDES}, csrf=False).status_code in (
        400,
        403,
    )
    stranger = create_app(runtime=runtime).test_client()
    assert stranger.get("/api/v1/segments").status_code == 401


def test_a_segment_reads_as_sentences_in_the_merchants_language(
    merchant: Merchant, runtime: Runtime
) -> None:
    condition = {
        "all": [
            {"field": "total_spent", "op": "gte", "value": "1000"},
            {"not": {"field": "tags", "op": "any_of", "value": ["wholesale", "staff"]}},
            {"field": "bought_collection", "op": "any_of", "value": ["coffee"], "within_days": 90},
        ]
    }
    assert (
        merchant.api("PUT", "/segments/coffee-people", {"condition": condition}).status_code == 200
    )
    page = merchant.client.get("/app/segments").text
    for line in (
        "<li>All of these:<ul>",
        "<li>Total spent is at least ",
        "<li>Not this:<ul><li>Customer tags: any of wholesale, staff</li></ul></li>",
        "<li>Bought from the collection: any of coffee, in the last 90 days</li>",
    ):
        assert line in page, line

    with runtime.sessions.begin() as session:
        session.get_one(Shop, merchant.shop_id).locale = "sv-SE"
    page = merchant.client.get("/app/segments").text
    for line in (
        "<li>Allt detta:<ul>",
        "<li>Handlat för totalt är minst ",
        "<li>Inte detta:<ul><li>Kundtaggar: något av wholesale, staff</li></ul></li>",
        "<li>Köpte ur kollektionen: något av coffee, under de senaste 90 dagarna</li>",
    ):
        assert line in page, line
