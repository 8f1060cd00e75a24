"""The segment builder (/app/segments/edit): a merchant makes, changes, renames and deletes
segments in a form, without writing a condition by hand; the form is attacked too."""

from __future__ import annotations

import html
import json
import random
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from werkzeug.datastructures import MultiDict

from connector.app import create_app
from connector.merchant import segment_builder as builder
from connector.merchant import segments as segments_page
from jobs import shop_settings
from jobs.audience import segments
from jobs.runtime import Runtime
from jobs.store.models import Contact, Product, Shop
from tests.connector.merchant.conftest import Merchant

PARTIAL = {"X-Triggerpost-Partial": "1"}


def _stored(runtime: Runtime, shop_id: int) -> dict[str, Any]:
    with runtime.sessions() as session:
        return shop_settings.plain(dict(session.get_one(Shop, shop_id).settings or {}))


def _contacts(runtime: Runtime, shop_id: int, *people: tuple[str, str]) -> None:
    with runtime.sessions.begin() as session:
        for n, (country, tags) in enumerate(people):
            session.add(
                Contact(
                    shop_id=shop_id,
                    email=f"b{n}-{shop_id}@example.se",
                    country_code=country,
                    tags=f"\n{tags}\n" if tags else None,
                )
            )


def _post(merchant: Merchant, form: dict[str, str], **kwargs: Any) -> Any:
    data = {"csrf_token": merchant.csrf, **form}
    return merchant.client.post("/app/segments/edit", data=data, **kwargs)


def _fields(page: str) -> dict[str, str]:
    """The builder's inputs and chosen options, by name, as the page shows them."""
    found = {
        m.group(1): html.unescape(m.group(2))
        for m in re.finditer(r'<input type="text"[^>]* name="([^"]+)" value="([^"]*)"', page)
    }
    for select in re.finditer(r'<select[^>]* name="([^"]+)"(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', select.group(2))
        found[select.group(1)] = chosen.group(1) if chosen else ""
    return found


def _errors(page: str) -> dict[str, str]:
    return {
        m.group(1): html.unescape(m.group(2))
        for m in re.finditer(r'data-error-for="([^"]+)"[^>]*>([^<]+)<', page)
    }


# --- the form and the condition, both ways --------------------------------------------------

EVERY_KIND = {
    "any": [
        {"field": "country", "op": "not_in", "value": ["SE", "NO"]},
        {"field": "language", "op": "in", "value": ["sv"]},
        {"field": "tags", "op": "all_of", "value": ["vip", "wholesale"]},
        {"field": "consent", "op": "in", "value": ["subscribed", "pending"]},
        {"field": "created", "op": "before", "value": "2026-01-31"},
        {"field": "created", "op": "more_than_days_ago", "value": 30},
        {"field": "orders_count", "op": "gte", "value": 2},
        {"field": "total_spent", "op": "lt", "value": "999.50"},
        {"field": "average_order_value", "op": "gt", "value": "100"},
        {"field": "days_since_last_order", "op": "eq", "value": 90},
        {"field": "bought_product", "op": "any_of", "value": ["101", "102"]},
        {"field": "bought_collection", "op": "none_of", "value": ["Tea, herbal", 'The "best"']},
        {"field": "bought_category", "op": "any_of", "value": ["Cups"], "within_days": 90},
        {"field": "bought_tag", "op": "any_of", "value": ["organic"]},
        {"not": {"field": "tags", "op": "any_of", "value": ["staff"]}},
        {"not": {"all": [
            {"field": "orders_count", "op": "eq", "value": 0},
            {"not": {"field": "country", "op": "in", "value": ["FI"]}},
        ]}},
        {"not": {"any": [
            {"field": "country", "op": "in", "value": ["FI"]},
            {"field": "language", "op": "in", "value": ["fi"]},
        ]}},
    ]
}  # fmt: skip


def _as_form(group: builder.Group, path: str = "c") -> MultiDict[str, str]:
    form: MultiDict[str, str] = MultiDict()

    def emit(node: builder.Row | builder.Group, at: str) -> None:
        if isinstance(node, builder.Group):
            form.add(f"{at}.match", node.match)
            for n, item in enumerate(node.items):
                emit(item, f"{at}.{n}")
        else:
            form.add(f"{at}.what", node.what)
            form.add(f"{at}.value", node.value)
            form.add(f"{at}.within", node.within)

    emit(group, path)
    return form


def test_every_condition_reads_as_the_form_and_back_unchanged() -> None:
    condition = segments.parse(EVERY_KIND)
    tree = builder.from_condition(condition)
    assert tree.match == "any"
    assert tree.items[11] == builder.Row(
        "bought_collection:none_of", '"Tea, herbal", "The ""best"""', ""
    )
    assert tree.items[14] == builder.Group("none", [builder.Row("tags:any_of", "staff", "")])
    assert isinstance(tree.items[15], builder.Group)
    assert tree.items[15].match == "notall"
    assert isinstance(tree.items[16], builder.Group)
    assert tree.items[16].match == "none"
    posted = builder.from_form(_as_form(tree))
    assert posted == tree
    draft = builder.to_condition(posted)
    assert draft.problems == {}
    assert draft.condition == segments.to_json(condition)


def test_a_group_of_one_is_its_part_and_blank_rows_are_no_part() -> None:
    tree = builder.Group(
        "all",
        [
            builder.Row("country:in", "se, no"),
            builder.Row(),
            builder.Group("none", [builder.Row("tags:any_of", "staff")]),
        ],
    )
    draft = builder.to_condition(tree)
    assert draft.condition == {
        "all": [
            {"field": "country", "op": "in", "value": ["se", "no"]},
            {"not": {"field": "tags", "op": "any_of", "value": ["staff"]}},
        ]
    }
    # the problems of the condition land on the form's fields, whatever was left out
    refused = builder.to_condition(
        builder.Group("all", [builder.Row(), builder.Row("country:in", "Sverige")])
    )
    with pytest.raises(segments.SegmentError) as caught:
        segments.parse(refused.condition)
    assert refused.form_problems(caught.value.problems) == {
        "c.1.value": "must be a two-letter country code, e.g. SE"
    }


def test_a_forged_form_reads_as_the_parts_it_holds_and_no_more() -> None:
    form = MultiDict(
        [
            ("c.match", "sideways"),  # not a way to match: all
            ("c.7.what", "country:in"),
            ("c.7.value", "SE"),
            ("c.x.what", "country:in"),  # not a number: no part
            ("c.-1.what", "country:in"),
            ("c.99999.what", "country:in"),  # too long a number: no part
            ("c.3.match", "any"),
            ("c.3.0.what", "orders_count:gte"),
            ("c.3.0.value", "2"),
            ("c.3.0.0.0.0.0.match", "any"),  # nothing at c.3.0.0: no deeper part
            ("c.8.what", "country:bigger"),  # an operator its field has not
            ("c.8.value", "SE"),
            ("d.0.what", "country:in"),
        ]
    )
    tree = builder.from_form(form)
    assert tree == builder.Group(
        "all",
        [
            builder.Group("any", [builder.Row("orders_count:gte", "2")]),
            builder.Row("country:in", "SE"),
            builder.Row("country:bigger", "SE"),
        ],
    )
    draft = builder.to_condition(tree)
    assert draft.condition is None
    assert draft.problems == {"c.2.what": "Choose a condition."}
    # thousands of parts are read up to the most a segment may hold
    many = MultiDict([(f"c.{n}.what", "country:in") for n in range(5000)])
    assert builder.count_parts(builder.from_form(many)) <= builder.MAX_PARTS * 2


def test_the_buttons_add_and_remove_parts_within_the_limits() -> None:
    tree = builder.empty()
    assert builder.apply(tree, "add:c") == "c.1"
    assert builder.apply(tree, "group:c") == "c.2.0"
    assert builder.apply(tree, "group:c.2") is None  # groups in groups: at most two levels
    assert builder.apply(tree, "add:c.2") == "c.2.1"
    assert builder.apply(tree, "remove:c.0") == "c"
    assert builder.apply(tree, "remove:c") is None  # the top group stays
    assert builder.apply(tree, "add:c.9") is None
    assert builder.apply(tree, "add:c.0") is None  # a row holds no parts
    assert builder.apply(tree, "explode:c") is None
    assert [type(p).__name__ for p in tree.items] == ["Row", "Group"]
    while builder.apply(tree, "add:c") is not None:
        pass
    assert builder.count_parts(tree) == builder.MAX_PARTS


# --- the page -------------------------------------------------------------------------


def test_a_merchant_builds_a_segment_in_the_form_and_saves_it(
    merchant: Merchant, runtime: Runtime
) -> None:
    _contacts(runtime, merchant.shop_id, ("SE", "vip"), ("SE", "staff"), ("NO", "vip"))
    page = merchant.client.get("/app/segments/edit")
    assert page.status_code == 200
    assert _fields(page.text) == {"name": "", "c.match": "all", "c.0.what": "", "c.0.value": "",
                                  "c.0.within": ""}  # fmt: skip
    # add a group: the form comes back as entered, with the new group's row to fill in
    entered = {"name": "swedes", "c.match": "all", "c.0.what": "country:in", "c.0.value": "se"}
    grown = _post(merchant, {**entered, "action": "group:c"})
    assert grown.status_code == 200
    shown = _fields(grown.text)
    assert shown["c.0.value"] == "se"
    assert shown["name"] == "swedes"
    assert shown["c.1.match"] == "any"
    assert shown["c.1.0.what"] == ""
    assert re.search(r'name="c\.1\.0\.what"[^>]*autofocus', grown.text)
    form = {**entered, "c.1.match": "none", "c.1.0.what": "tags:any_of", "c.1.0.value": "staff"}
    counted = _post(merchant, {**form, "action": "count"})
    assert "Customers matching now: 1" in counted.text
    assert _stored(runtime, merchant.shop_id).get("segments", {}) == {}  # counting saves nothing
    saved = _post(merchant, {**form, "action": "save"})
    assert saved.status_code == 302
    assert saved.headers["Location"].endswith("/app/segments#segment-swedes")
    assert _stored(runtime, merchant.shop_id)["segments"] == {
        "swedes": {
            "all": [
                {"field": "country", "op": "in", "value": ["SE"]},
                {"not": {"field": "tags", "op": "any_of", "value": ["staff"]}},
            ]
        }
    }
    listed = merchant.api("GET", "/segments").get_json()
    assert {s["name"]: s["count"] for s in listed["segments"]}["swedes"] == 1
    # opened again, the form shows it as it was built
    again = _fields(merchant.client.get("/app/segments/edit?name=swedes").text)
    assert again["c.0.value"] == "SE"
    assert again["c.1.match"] == "none"
    assert again["c.1.0.what"] == "tags:any_of"
    assert again["c.1.0.value"] == "staff"


def test_bad_conditions_are_named_beside_their_fields_and_nothing_is_saved(
    merchant: Merchant, runtime: Runtime
) -> None:
    before = _stored(runtime, merchant.shop_id)
    form = {
        "name": "bad",
        "c.match": "all",
        "c.0.what": "country:in",
        "c.0.value": "Sverige, NO",
        "c.1.what": "total_spent:gte",
        "c.1.value": "a lot",
        "c.2.what": "",
        "c.2.value": "something",
        "c.3.what": "country:in",
        "c.3.value": "SE",
        "c.3.within": "30",
        "c.4.match": "any",
        "action": "save",
    }
    refused = _post(merchant, form)
    assert refused.status_code == 400
    errors = _errors(refused.text)
    assert errors == {
        "c.2.what": "Choose a condition.",
        "c.4": "Add at least one condition.",
    }  # the builder's own problems first; the values are checked when the form is whole
    del form["c.2.value"], form["c.4.match"]
    refused = _post(merchant, form)
    assert _errors(refused.text) == {
        "c.0.value": "must be a two-letter country code, e.g. SE",
        "c.1.value": "must be an amount in your shop's currency, e.g. 1000 or 99.50",
        "c.3.within": "only for what was bought",
    }
    assert 'aria-invalid="true"' in refused.text
    assert _fields(refused.text)["c.1.value"] == "a lot"  # shown back as entered
    assert _stored(runtime, merchant.shop_id) == before
    bad_name = _post(merchant, {"name": "Not A Name", "c.0.what": "country:in",
                                "c.0.value": "SE", "action": "save"})  # fmt: skip
    assert bad_name.status_code == 400
    assert "small letters" in _errors(bad_name.text)["name"]
    for taken in ("vip", "swedes"):
        merchant.api("PUT", "/segments/swedes", {"condition": {"field": "country", "op": "in",
                                                               "value": ["SE"]}})  # fmt: skip
        clash = _post(merchant, {"name": taken, "c.0.what": "country:in", "c.0.value": "NO",
                                 "action": "save"})  # fmt: skip
        assert clash.status_code == 400
        assert _errors(clash.text)["name"] in (
            "A built-in segment has this name: choose another.",
            "You have a segment of this name already.",
        )
    assert _stored(runtime, merchant.shop_id)["segments"]["swedes"]["value"] == ["SE"]


def test_renaming_a_segment_takes_its_flows_along(merchant: Merchant, runtime: Runtime) -> None:
    swedes = {"field": "country", "op": "in", "value": ["SE"]}
    assert merchant.api("PUT", "/segments/swedes", {"condition": swedes}).status_code == 200
    used = merchant.api("PATCH", "/flows/cart_recovery", {"options": {"audience": "swedes"}})
    assert used.status_code == 200
    form = {"name": "nordics", "previous": "swedes", "c.0.what": "country:in",
            "c.0.value": "SE, NO, DK", "action": "save"}  # fmt: skip
    assert _post(merchant, form).status_code == 302
    stored = _stored(runtime, merchant.shop_id)
    assert stored["segments"] == {
        "nordics": {"field": "country", "op": "in", "value": ["SE", "NO", "DK"]}
    }
    assert stored["flows"]["cart_recovery"]["audience"] == "nordics"
    # the API renames the same way
    back = merchant.api("PUT", "/segments/swedes", {"condition": swedes,
                                                    "renamed_from": "nordics"})  # fmt: skip
    assert back.status_code == 200, back.text
    assert back.get_json()["used_by"] == ["cart_recovery"]
    missing = merchant.api("PUT", "/segments/x", {"condition": swedes, "renamed_from": "nope"})
    assert missing.status_code == 400


def test_a_built_in_segment_changed_and_given_back(merchant: Merchant, runtime: Runtime) -> None:
    page = merchant.client.get("/app/segments/edit?name=vip")
    assert "This is the built-in segment" in page.text
    assert _fields(page.text)["c.0.what"] == "total_spent:gte"
    assert _fields(page.text)["c.0.value"] == "10000"
    merchant.api("PATCH", "/flows/cart_recovery", {"options": {"audience": "vip"}})
    changed = {"name": "vip", "previous": "vip", "c.0.what": "total_spent:gte",
               "c.0.value": "5000", "action": "save"}  # fmt: skip
    assert _post(merchant, changed).status_code == 302
    assert _stored(runtime, merchant.shop_id)["segments"]["vip"]["value"] == "5000"
    listing = merchant.client.get("/app/segments").text
    assert "Your version of a built-in segment." in listing
    # given back while a flow is for it: the flow is for the built-in again
    gone = merchant.client.post(
        "/app/segments/delete", data={"csrf_token": merchant.csrf, "name": "vip"}
    )
    assert gone.status_code == 302
    assert "vip" not in _stored(runtime, merchant.shop_id)["segments"]
    assert _stored(runtime, merchant.shop_id)["flows"]["cart_recovery"]["audience"] == "vip"
    # a new segment from a built-in: its conditions, no name; the built-in stays
    copy = merchant.client.get("/app/segments/edit?from=lapsing-customers").text
    assert _fields(copy)["name"] == ""
    assert _fields(copy)["c.1.what"] == "days_since_last_order:gte"


def test_a_segment_a_flow_is_for_is_not_deleted_from_the_page(
    merchant: Merchant, runtime: Runtime
) -> None:
    swedes = {"field": "country", "op": "in", "value": ["SE"]}
    merchant.api("PUT", "/segments/swedes", {"condition": swedes})
    merchant.api("PUT", "/segments/norse", {"condition": {**swedes, "value": ["NO"]}})
    merchant.api("PATCH", "/flows/cart_recovery", {"options": {"audience": "swedes"}})
    listing = merchant.client.get("/app/segments").text
    assert "Delete norse" in listing
    assert "Delete swedes" not in listing
    refused = merchant.client.post(
        "/app/segments/delete",
        data={"csrf_token": merchant.csrf, "name": "swedes"},
        follow_redirects=True,
    )
    assert "A flow is for this segment" in refused.text
    assert set(_stored(runtime, merchant.shop_id)["segments"]) == {"swedes", "norse"}
    done = merchant.client.post(
        "/app/segments/delete",
        data={"csrf_token": merchant.csrf, "name": "norse"},
        follow_redirects=True,
    )
    assert "Deleted the segment norse." in done.text
    assert set(_stored(runtime, merchant.shop_id)["segments"]) == {"swedes"}
    unsigned = merchant.client.post("/app/segments/delete", data={"name": "swedes"})
    assert unsigned.status_code in (400, 403)
    assert set(_stored(runtime, merchant.shop_id)["segments"]) == {"swedes"}


def test_products_are_named_by_their_names_not_their_ids(
    merchant: Merchant, runtime: Runtime
) -> None:
    with runtime.sessions.begin() as session:
        for product_id, title in (("101", "Ethiopia Sidamo"), ("102", "Mug, large"),
                                  ("103", "Filter"), ("104", "Filter")):  # fmt: skip
            session.add(Product(shop_id=merchant.shop_id, product_id=product_id, title=title,
                                data={}, platform_updated_at=datetime.now(UTC)))  # fmt: skip
    typed = 'ethiopia sidamo, "Mug, large", filter, 101'
    form = {"name": "coffee", "c.0.what": "bought_product:any_of", "c.0.value": typed,
            "action": "save"}  # fmt: skip
    assert _post(merchant, form).status_code == 302
    assert _stored(runtime, merchant.shop_id)["segments"]["coffee"]["value"] == [
        "101", "102", "103", "104"
    ]  # fmt: skip
    shown = _fields(merchant.client.get("/app/segments/edit?name=coffee").text)
    # a name two products share is shown as their ids, so it reads back as the same ones
    assert shown["c.0.value"] == 'Ethiopia Sidamo, "Mug, large", 103, 104'
    listing = merchant.client.get("/app/segments").text
    assert "Bought the product: any of Ethiopia Sidamo, Mug, large, 103, 104" in listing
    unknown = _post(merchant, {**form, "c.0.value": "Kenya AA", "name": "kenya"})
    assert unknown.status_code == 400
    assert _errors(unknown.text)["c.0.value"] == "No product of yours has this name or id: Kenya AA"
    assert "kenya" not in _stored(runtime, merchant.shop_id)["segments"]


def test_the_pages_script_gets_the_builder_as_json(merchant: Merchant, runtime: Runtime) -> None:
    _contacts(runtime, merchant.shop_id, ("SE", ""), ("NO", ""))
    form = {"name": "n", "c.0.what": "country:in", "c.0.value": "SE"}
    added = _post(merchant, {**form, "action": "add:c"}, headers=PARTIAL)
    assert added.status_code == 200
    assert added.json["message"] == ""
    assert 'name="c.1.what"' in added.json["html"]
    assert "<html" not in added.json["html"]
    counted = _post(merchant, {**form, "action": "count"}, headers=PARTIAL)
    assert counted.json["counted"] == "Customers matching now: 1"
    refused = _post(merchant, {**form, "c.0.value": "Sverige", "action": "count"}, headers=PARTIAL)
    assert refused.status_code == 400
    assert "must be a two-letter country code" in refused.json["html"]
    saved = _post(merchant, {**form, "action": "save"}, headers=PARTIAL)
    assert saved.json == {"location": "/app/segments#segment-n"}
    taken = _post(merchant, {**form, "action": "save"}, headers=PARTIAL)
    assert taken.status_code == 400
    assert taken.json["name_error"] == "You have a segment of this name already."


def test_one_shops_segments_are_never_anothers(
    merchant: Merchant, woo_merchant: Merchant, runtime: Runtime
) -> None:
    swedes = {"field": "country", "op": "in", "value": ["SE"]}
    merchant.api("PUT", "/segments/swedes", {"condition": swedes})
    assert woo_merchant.client.get("/app/segments/edit?name=swedes").status_code == 404
    assert woo_merchant.client.get("/app/segments/edit?from=swedes").status_code == 404
    renamed = _post(woo_merchant, {"name": "mine", "previous": "swedes", "c.0.what": "country:in",
                                   "c.0.value": "NO", "action": "save"})  # fmt: skip
    assert renamed.status_code == 302  # a new segment of their own: nothing of the other shop's
    assert _stored(runtime, merchant.shop_id)["segments"] == {"swedes": swedes}
    assert set(_stored(runtime, woo_merchant.shop_id)["segments"]) == {"mine"}
    gone = woo_merchant.client.post(
        "/app/segments/delete", data={"csrf_token": woo_merchant.csrf, "name": "swedes"}
    )
    assert gone.status_code == 302
    assert _stored(runtime, merchant.shop_id)["segments"] == {"swedes": swedes}
    stranger = create_app(runtime=runtime).test_client()
    assert stranger.get("/app/segments/edit").status_code in (302, 401)
    assert stranger.post("/app/segments/edit", data={"name": "x"}).status_code in (400, 401, 403)


@pytest.mark.parametrize(
    "form",
    [
        {"action": "remove:c.0.0.0.0"},
        {"action": "group:" + ".".join(["c"] + ["0"] * 50)},
        {"action": "save", "c.0.what": "country:in", "c.0.value": "SE" + ", SE" * 5000},
        {"action": "save", "name": "x" * 5000, "c.0.what": "country:in", "c.0.value": "SE"},
        {"action": "save", "c.0.what": "orders_count:gte", "c.0.value": "9" * 400},
        {
            "action": "save",
            "c.0.what": "bought_product:any_of",
            "c.0.value": ", ".join(str(n) for n in range(400)),
        },
        {"action": "count", "c.0.what": "created:before", "c.0.value": "2026-02-30"},
        {"action": "save", "c.0.what": "\x00", "c.0.value": "\x00\u202e"},
        {"action": "save", "c.0.what": "country:in", "c.0.value": "SE\rNO\u2028DK"},
        {"action": "count", "c.0.what": "tags:any_of", "c.0.value": "vip\x00"},
        {"action": "save", "c.0.what": "bought_product:any_of", "c.0.value": "\x00"},
        {"action": "save", "c.0.what": "bought_collection:none_of", "c.0.value": "Tea\x00"},
        {"action": "count", "c.0.what": "tags:any_of", "c.0.value": '"a\r"b, "c'},
    ],
)
def test_a_malformed_builder_post_is_answered_4xx_or_shown_again_never_5xx(
    merchant: Merchant, runtime: Runtime, form: dict[str, str]
) -> None:
    before = _stored(runtime, merchant.shop_id)
    answer = _post(merchant, form)
    assert answer.status_code in (200, 400), answer.status_code
    assert _stored(runtime, merchant.shop_id) == before


def test_a_nul_no_database_text_holds_is_refused_beside_its_field(
    merchant: Merchant, runtime: Runtime
) -> None:
    before = _stored(runtime, merchant.shop_id)
    form = {"name": "n", "c.0.what": "tags:any_of", "c.0.value": "vip\x00", "action": "count"}
    refused = _post(merchant, form)
    assert refused.status_code == 400
    assert _errors(refused.text) == {"c.0.value": "must not contain control characters"}
    condition = {"field": "bought_tag", "op": "any_of", "value": ["ok", "a\u0000b"]}
    api = merchant.api("PUT", "/segments/n", {"condition": condition})
    assert api.status_code == 400
    assert {f["field"]: f["message"] for f in api.get_json()["fields"]} == {
        "condition.value[1]": "must not contain control characters"
    }
    assert _stored(runtime, merchant.shop_id) == before


def test_a_post_that_is_not_utf_8_is_refused(merchant: Merchant, runtime: Runtime) -> None:
    before = _stored(runtime, merchant.shop_id)
    body = f"csrf_token={merchant.csrf}&action=save&name=x&c.0.what=country%3Ain"
    body += "&c.0.value=%ED%A0%80"  # a lone surrogate: no UTF-8
    answer = merchant.client.post(
        "/app/segments/edit", data=body.encode(), content_type="application/x-www-form-urlencoded"
    )
    assert answer.status_code in (200, 400)
    assert _stored(runtime, merchant.shop_id) == before


def test_the_builder_speaks_swedish(merchant: Merchant, runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        session.get_one(Shop, merchant.shop_id).locale = "sv-SE"
    page = merchant.client.get("/app/segments/edit").text
    assert "Lägg till ett villkor" in page
    assert "Land är något av" in page
    refused = _post(merchant, {"name": "x", "c.0.what": "", "c.0.value": "SE", "action": "save"})
    assert _errors(refused.text)["c.0.what"] == "Välj ett villkor."
    assert json.dumps(_errors(refused.text))


@pytest.mark.parametrize("depth", [200, 700, 5000])
def test_a_condition_nested_past_any_parser_is_refused_by_the_api_not_a_server_error(
    merchant: Merchant, runtime: Runtime, depth: int
) -> None:
    deep = '{"not": ' * depth + '{"field": "country", "op": "in", "value": ["SE"]}' + "}" * depth
    before = _stored(runtime, merchant.shop_id)
    for method, path, body in (
        ("PUT", "/segments/deep", '{"condition": ' + deep + "}"),
        ("POST", "/segments/count", '{"condition": ' + deep + "}"),
        ("PATCH", "/flows/cart_recovery", '{"options": {"audience": ' + deep + "}}"),
    ):
        answer = merchant.client.open(
            f"/api/v1{path}",
            method=method,
            data=body,
            content_type="application/json",
            headers={"X-CSRF-Token": merchant.csrf},
        )
        assert answer.status_code == 400, (path, answer.status_code)
    assert _stored(runtime, merchant.shop_id) == before


def test_random_builder_posts_are_answered_200_or_400_never_a_server_error(
    merchant: Merchant, runtime: Runtime
) -> None:
    """A seeded stream of made-up posts: paths of any shape, every condition and nonsense,
    values of any character; each answered with the form or its refusal."""
    rng = random.Random(21)
    whats = [f"{f.value}:{op.value}" for f, ops in builder.choices() for op in ops]
    whats += ["", "country", ":", "country:in:in", "x" * 300]
    alphabet = "SEno01-_ ,\"'\r\n\t\x00\u202e\u2028é漢🙂{}[]\\%"
    actions = ["save", "count", "add:c", "group:c", "remove:c.0", "add:c.1", "group:c.0.0"]

    def path() -> str:
        return "c" + "".join(f".{rng.choice(['0', '1', '2', '01', 'x', '-1'])}"
                             for _ in range(rng.randint(0, 4)))  # fmt: skip

    def text(longest: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))

    for _round in range(150):
        form: dict[str, str] = {"action": rng.choice(actions), "name": text(8)}
        for _part in range(rng.randint(0, 6)):
            at = path()
            form[f"{at}.match"] = rng.choice(["all", "any", "none", "notall", "", "x"])
            part = path()
            form[f"{part}.what"] = rng.choice(whats)
            form[f"{part}.value"] = text(30)
            if rng.random() < 0.3:
                form[f"{part}.within"] = rng.choice(["", "0", "90", "-5", "x", "99999999999"])
        answer = _post(merchant, form, headers=PARTIAL if rng.random() < 0.5 else {})
        assert answer.status_code in (200, 302, 400), (form, answer.status_code)
    # whatever got saved is a segment the engine reads, under a name a flow can give
    for name, raw in _stored(runtime, merchant.shop_id).get("segments", {}).items():
        assert segments.check_name(name) is None
        assert segments.to_json(segments.parse(raw)) == raw


def test_a_busy_page_leaves_the_counts_past_its_second_to_the_script(
    merchant: Merchant, woo_merchant: Merchant, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _contacts(runtime, merchant.shop_id, ("SE", ""), ("SE", ""), ("NO", ""))
    merchant.api("PUT", "/segments/swedes", {"condition": {"field": "country", "op": "in",
                                                           "value": ["SE"]}})  # fmt: skip
    monkeypatch.setattr(segments_page, "PAGE_COUNT_SECONDS", 0.0)  # a shop whose counts are slow
    page = merchant.client.get("/app/segments").text
    assert ">Customers in it now" not in page
    assert page.count("Not counted yet.") == len(segments.BUILT_IN) + 1
    assert 'data-count-url="/api/v1/segments/swedes/count"' in page
    everything = merchant.client.get("/app/segments?count=all").text  # without a script
    assert "Customers in it now: 2" in everything
    assert "Not counted yet." not in everything
    assert merchant.api("GET", "/segments/swedes/count").get_json() == {"count": 2}
    assert merchant.api("GET", "/segments/vip/count").get_json() == {"count": 0}
    assert merchant.api("GET", "/segments/nope/count").status_code == 404
    assert woo_merchant.api("GET", "/segments/swedes/count").status_code == 404
