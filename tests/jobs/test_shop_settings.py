"""Per-shop settings: one schema validates every write, and bad stored values never stop sending."""

from __future__ import annotations

import copy
import json
from datetime import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from jobs import shop_settings
from jobs.engine.policy import Policy, flow_options
from jobs.flows import registry
from jobs.flows.model import ConsentPolicy, Option
from jobs.intake import deliveries
from jobs.merchant.notices import open_notices
from jobs.runtime import Runtime
from jobs.store.models import MessageState, Shop
from tests.jobs.engine_support import T0, Harness, checkout, customer, hours
from tests.support import SHOPIFY_SECRET, SHOPIFY_SHOP, dumps, post, shopify_headers


def messages(problems: list[shop_settings.Problem]) -> list[str]:
    return [str(problem) for problem in problems]


# --- validation ------------------------------------------------------------------------------


def test_valid_settings_have_no_problems() -> None:
    assert shop_settings.validate({}) == []
    assert (
        shop_settings.validate(
            {
                "branding": {"colour": "#aa3300", "logo_url": "https://shop.example/logo.png"},
                "sender": {"name": "Nordljus", "reply_to": "hej@nordljus.example"},
                "engine": {"quiet_start": "22:30", "min_gap_hours": 4, "open_tracking": True},
                "consent": {"meta_key": "optin", "read_from": "order"},
                "copy": {"cart_recovery_1": {"sv": {"subject": "Hej {{ first_name }}!"}}},
                "flows": {"cart_recovery": {"delay_1_hours": 2, "consent": "subscribed"}},
            }
        )
        == []
    )


def test_each_bad_field_is_named_with_what_is_wrong() -> None:
    problems = shop_settings.validate(
        {
            "flows": {
                "cart_recovery": {"delay_1_hours": 500, "discount": "yes", "holdout_percent": 2.5},
                "nope": {"enabled": True},
            },
            "engine": {"quiet_start": "9pm", "min_gap_hours": "4"},
            "sender": {"address": "not-an-address"},
            "branding": {"colour": "red", "language": "de"},
            "consent": {"read_from": "somewhere"},
        }
    )
    assert messages(problems) == [
        "branding.colour: not a colour (#rrggbb)",
        "branding.language: must be one of: store, en, fa, nb, ru, sv",
        "consent.read_from: must be one of: order, customer, both",
        "engine.min_gap_hours: must be a whole number",
        "engine.quiet_start: not a time (HH:MM)",
        "flows.cart_recovery.delay_1_hours: must be between 0 and 168",
        "flows.cart_recovery.discount: must be true or false",
        "flows.cart_recovery.holdout_percent: must be a whole number",
        "flows.nope: unknown flow",
        "sender.address: not an email address",
    ]


def test_unknown_keys_are_reported_not_dropped() -> None:
    problems = shop_settings.validate(
        {
            "engine": {"quiet_hours": "22-07"},
            "flows": {"cart_recovery": {"delay_4_hours": 1}},
            "x": 1,
        }
    )
    assert messages(problems) == [
        "engine.quiet_hours: unknown setting",
        "flows.cart_recovery.delay_4_hours: unknown setting",
        "x: unknown setting",
    ]


def test_a_group_of_the_wrong_type_and_bad_copy_are_reported() -> None:
    problems = shop_settings.validate(
        {
            "engine": [1, 2],
            "copy": {
                "cart_recovery_1": {"en": {"subject": "Hi {{ password }}", "footer": "x"}},
                "no_such_email": {},
            },
        }
    )
    found = messages(problems)
    assert "engine: must be a group of settings (a JSON object)" in found
    assert "copy.no_such_email: unknown email" in found
    assert any(
        p.startswith("copy.cart_recovery_1.en.subject: this text cannot be used") for p in found
    )
    assert (
        "copy.cart_recovery_1.en.footer: "
        "unknown setting (one of: subject, preheader, heading, body)" in found
    )
    assert messages(shop_settings.validate([1])) == [
        "settings: must be a group of settings (a JSON object)"
    ]


# --- loading ---------------------------------------------------------------------------------


def test_loading_fills_in_typed_defaults(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        shop = Shop(platform="shopify", key="a.myshopify.com", name="A", base_url="https://a")
        shop.settings = {"engine": {"quiet_start": "22:30"}}
        session.add(shop)
        session.flush()
        loaded = shop_settings.load(shop)
    assert loaded.problems == ()
    assert loaded.engine.quiet_start == time(22, 30)
    assert loaded.engine.quiet_end == time(8, 0)
    assert loaded.branding.colour == "#1f2937"
    assert loaded.consent.meta_key == "_triggerpost_marketing_consent"
    options = loaded.flows["cart_recovery"]
    assert options["consent"] is ConsentPolicy.SUBSCRIBED
    assert dict(options) == dict(registry.get("cart_recovery").defaults)  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        options["delay_1_hours"] = 5  # type: ignore[index]
    assert loaded.as_dict()["engine"]["quiet_start"] == "22:30"


def test_the_defaults_are_the_ones_the_engine_always_had() -> None:
    flow = registry.get("cart_recovery")
    assert flow is not None
    assert dict(flow.defaults) == {
        "enabled": True,
        "delay_1_hours": 1,
        "delay_2_hours": 23,
        "delay_3_hours": 48,
        "email_2": True,
        "email_3": True,
        "discount": False,
        "discount_percent": 10,
        "discount_valid_hours": 48,
        "consent": ConsentPolicy.SUBSCRIBED,
        "holdout_percent": 0,
        "expires_hours": 24,
        "audience": None,
    }
    shop = Shop(settings={})
    assert Policy.of(shop) == Policy(
        marketing_per_window=3,
        window_days=7,
        min_gap_hours=16,
        single_flow_days=7,
        quiet_end=time(8, 0),
        quiet_start=time(21, 0),
        attribution_days=5,
        attribute_opens=False,
    )


def test_a_bad_stored_field_falls_back_to_its_last_valid_value_and_the_rest_apply() -> None:
    shop = Shop(
        id=1,
        settings={
            "engine": {"quiet_start": "late", "min_gap_hours": 2, "typo": 1},
            "flows": {"cart_recovery": {"delay_1_hours": -3}},
        },
        settings_valid={
            "engine": {"quiet_start": "22:00"},
            "flows": {"cart_recovery": {"delay_1_hours": 3}},
        },
    )
    loaded = shop_settings.load(shop)
    assert loaded.engine.quiet_start == time(22, 0)  # the last valid value
    assert loaded.engine.min_gap_hours == 2  # its neighbour, valid, still applies
    assert loaded.flows["cart_recovery"]["delay_1_hours"] == 3
    assert messages(list(loaded.problems)) == [
        "engine.quiet_start: not a time (HH:MM)",
        "engine.typo: unknown setting",
        "flows.cart_recovery.delay_1_hours: must be between 0 and 168",
    ]


def test_without_a_valid_snapshot_a_bad_field_falls_back_to_its_default() -> None:
    shop = Shop(id=2, settings={"flows": {"cart_recovery": {"delay_2_hours": "soon"}}})
    loaded = shop_settings.load(shop)
    assert loaded.flows["cart_recovery"]["delay_2_hours"] == 23
    assert [p.where for p in loaded.problems] == ["flows.cart_recovery.delay_2_hours"]
    assert shop_settings.load(Shop(id=3, settings="nonsense")).engine.min_gap_hours == 16  # type: ignore[arg-type]


def test_a_snapshot_value_the_schema_no_longer_accepts_gives_way_to_the_default() -> None:
    shop = Shop(
        id=4,
        settings={"flows": {"cart_recovery": {"delay_1_hours": 999}}},
        settings_valid={"flows": {"cart_recovery": {"delay_1_hours": 500}}},
    )
    assert shop_settings.load(shop).flows["cart_recovery"]["delay_1_hours"] == 1


def test_bad_stored_settings_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    shop = Shop(id=5, settings={"engine": {"window_days": 0}})
    for _ in range(3):
        shop_settings.load(shop)
    logged = [r for r in caplog.records if "stored settings have problems" in r.getMessage()]
    assert len(logged) == 1
    assert "engine.window_days: must be between 1 and 60" in logged[0].getMessage()


# --- writing ---------------------------------------------------------------------------------


@pytest.fixture
def harness(runtime: Runtime) -> Harness:
    return Harness(runtime)


def stored(runtime: Runtime, shop_id: int) -> tuple[Any, Any]:
    with runtime.sessions() as session:
        shop = session.get_one(Shop, shop_id)
        return shop.settings, shop.settings_valid


def test_a_write_with_errors_changes_nothing(harness: Harness, runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, harness.shop_id)
        shop_settings.update(session, shop, {"flows": {"cart_recovery": {"delay_1_hours": 2}}})
    before = stored(runtime, harness.shop_id)
    patch = {
        "flows": {"cart_recovery": {"delay_1_hours": 200}, "nope": {}},
        "engine": {"quiet_start": "25:99", "min_gap_hours": 1},
    }
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, harness.shop_id)
        with pytest.raises(shop_settings.SettingsError) as refused:
            shop_settings.update(session, shop, patch)
    assert messages(list(refused.value.problems)) == [
        "engine.quiet_start: not a time (HH:MM)",
        "flows.cart_recovery.delay_1_hours: must be between 0 and 168",
        "flows.nope: unknown flow",
    ]
    assert "flows.nope: unknown flow" in str(refused.value)
    assert stored(runtime, harness.shop_id) == before
    assert before[0] == {"flows": {"cart_recovery": {"delay_1_hours": 2}}}


def test_a_valid_write_merges_and_keeps_the_snapshot(harness: Harness, runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, harness.shop_id)
        shop_settings.update(session, shop, {"engine": {"min_gap_hours": 4, "quiet_end": "07:00"}})
        loaded = shop_settings.update(
            session, shop, {"engine": {"quiet_end": None}, "sender": {"name": "Nordljus"}}
        )
    assert loaded.engine.quiet_end == time(8, 0)  # None: back to the default
    settings, valid = stored(runtime, harness.shop_id)
    assert settings == valid == {"engine": {"min_gap_hours": 4}, "sender": {"name": "Nordljus"}}


# --- the engine keeps running, the merchant is told --------------------------------------------


def notices(runtime: Runtime, shop_id: int) -> list[str]:
    with runtime.sessions() as session:
        return [n.message for n in open_notices(session, shop_id) if n.code == shop_settings.NOTICE]


def test_a_shop_whose_settings_went_bad_keeps_sending_on_its_last_valid_values(
    harness: Harness, runtime: Runtime
) -> None:
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, harness.shop_id)
        shop_settings.update(session, shop, {"flows": {"cart_recovery": {"delay_1_hours": 3}}})
    # then edited by hand, badly: a string delay, a typo, a flow that does not exist
    harness.settings(
        flows={"cart_recovery": {"delay_1_hours": "three", "dealy_2_hours": 5}, "winback": {}}
    )
    harness.at(T0, checkout("tok-1", T0, customer()))
    harness.run(T0 + hours(5))
    first = next(m for m in harness.messages() if m.step == "email_1")
    assert (first.state, first.sent_at) == (MessageState.SENT, T0 + hours(3))
    with runtime.sessions() as session:
        shop = session.get_one(Shop, harness.shop_id)
        assert flow_options(shop, registry.flows()["cart_recovery"])["delay_1_hours"] == 3


def test_the_intake_raises_a_notice_listing_each_bad_field_and_clears_it_when_fixed(
    client: FlaskClient, runtime: Runtime
) -> None:
    with runtime.sessions.begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOPIFY_SHOP)).one()
        shop.settings = {"engine": {"quiet_start": "9pm"}, "flows": {"nope": {}}}
        shop_id = shop.id

    def deliver(n: int) -> None:
        stamp = "2026-09-14T19:12:40+02:00"
        body = dumps(
            {
                "id": 7000 + n,
                "email": f"kund{n}@example.se",
                "created_at": stamp,
                "updated_at": stamp,
                "addresses": [],
            }
        )
        headers = shopify_headers("customers/create", body, SHOPIFY_SECRET, SHOPIFY_SHOP, f"w{n}")
        assert post(client, "shopify", body, headers).status_code == 200
        deliveries.process_batch(runtime, shop_id)

    deliver(1)
    [notice] = notices(runtime, shop_id)
    assert "engine.quiet_start: not a time (HH:MM)" in notice
    assert "flows.nope: unknown flow" in notice
    deliver(2)  # the same problems: still one notice, seen once
    with runtime.sessions() as session:
        [row] = [n for n in open_notices(session, shop_id) if n.code == shop_settings.NOTICE]
        assert row.count == 1

    with runtime.sessions.begin() as session:  # fixed by hand
        session.get_one(Shop, shop_id).settings = {"engine": {"quiet_start": "21:30"}}
    deliver(3)
    assert notices(runtime, shop_id) == []
    assert stored(runtime, shop_id)[1] == {"engine": {"quiet_start": "21:30"}}  # the new snapshot


def test_a_valid_write_clears_the_notice(harness: Harness, runtime: Runtime) -> None:
    harness.settings(engine={"min_gap_hours": -1})
    with runtime.sessions.begin() as session:
        shop_settings.check(session, session.get_one(Shop, harness.shop_id))
    assert notices(runtime, harness.shop_id) == [
        (
            "Some settings could not be used, so the last valid values (or the defaults) apply "
            "instead: engine.min_gap_hours: must be between 0 and 168."
        )
    ]
    with runtime.sessions.begin() as session:
        shop = session.get_one(Shop, harness.shop_id)
        shop_settings.replace(session, shop, {"engine": {"min_gap_hours": 1}})
    assert notices(runtime, harness.shop_id) == []


# --- the schema as data, for forms -------------------------------------------------------------


def test_every_field_has_a_label_help_type_and_default() -> None:
    groups = shop_settings.describe()
    assert [g["path"] for g in groups][:6] == [
        "branding",
        "sender",
        "engine",
        "consent",
        "birthday",
        "copy",
    ]
    assert "flows.cart_recovery" in [g["path"] for g in groups]
    for group in groups:
        assert group["label"], group["path"]
        assert group["help"], group["path"]
        assert group["fields"], group["path"]
        for field in group["fields"]:
            assert field["path"] == f"{group['path']}.{field['name']}" or field["path"] in (
                "copy",
                "segments",
            )
            assert len(field["label"]) > 3, field["path"]
            assert len(field["help"]) > 20, field["path"]
            assert field["type"], field["path"]
            assert "default" in field, field["path"]
            if field["type"] == "integer":
                assert field["min"] <= field["default"] <= field["max"], field["path"]
            if field["type"] == "choice":
                assert field["default"] in field["choices"], field["path"]
    json.dumps(groups)  # plain data


def test_the_description_covers_every_typed_field() -> None:
    described = {f["path"] for g in shop_settings.describe() for f in g["fields"]}
    loaded = shop_settings.load(Shop(id=6, settings={})).as_dict()
    typed = {
        f"{section}.{name}"
        for section in ("branding", "sender", "engine", "consent", "birthday")
        for name in loaded[section]
    } | {f"flows.{flow}.{name}" for flow, options in loaded["flows"].items() for name in options}
    assert typed | {"copy", "segments"} == described


def test_a_flow_option_without_words_for_the_merchant_is_caught() -> None:
    flow = registry.get("cart_recovery")
    assert flow is not None
    for option in flow.all_options:
        assert isinstance(option, Option)
        assert option.label.strip(), option.name
        assert option.help.strip(), option.name


def test_a_flow_registered_at_run_time_joins_the_schema() -> None:
    flow = registry.get("cart_recovery")
    assert flow is not None
    other = copy.copy(flow)
    object.__setattr__(other, "name", "test_settings_flow")
    registry.register(other)
    try:
        assert shop_settings.validate({"flows": {"test_settings_flow": {"delay_1_hours": 2}}}) == []
        paths = [g["path"] for g in shop_settings.describe()]
        assert "flows.test_settings_flow" in paths
    finally:
        registry.unregister("test_settings_flow")
    assert messages(shop_settings.validate({"flows": {"test_settings_flow": {}}})) == [
        "flows.test_settings_flow: unknown flow"
    ]


def test_birthday_settings_default_to_the_standard_metafield_and_no_meta_key() -> None:
    birthday = shop_settings.load(Shop(id=6, settings={})).birthday
    assert (birthday.metafield, birthday.meta_key) == ("facts.birth_date", None)
    assert (birthday.metafield_namespace, birthday.metafield_key) == ("facts", "birth_date")
    mine = {"birthday": {"metafield": "custom.fodelsedag", "meta_key": "billing_birth_date"}}
    assert shop_settings.validate(mine) == []
    assert shop_settings.load(Shop(id=6, settings=mine)).birthday.meta_key == "billing_birth_date"


def test_birthday_settings_are_checked() -> None:
    problems = shop_settings.validate(
        {"birthday": {"metafield": "birth_date", "meta_key": "birth date"}}
    )
    assert messages(problems) == [
        "birthday.meta_key: not a meta key (letters, digits, _ - . :)",
        "birthday.metafield: not a metafield (namespace.key)",
    ]
    assert messages(shop_settings.validate({"birthday": {"metafield": "a.b.c"}})) == [
        "birthday.metafield: not a metafield (namespace.key)"
    ]
