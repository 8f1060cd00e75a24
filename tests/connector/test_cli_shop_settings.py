"""`triggerpost shop settings`: the effective settings and their problems, and validated writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from connector.cli import main
from jobs.store.db import make_engine, make_sessions
from jobs.store.models import Shop

SHOP = "nordic-socks.myshopify.com"


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    env = {
        "TRIGGERPOST_DATA_DIR": str(tmp_path / "var"),
        "TRIGGERPOST_DATABASE_URL": database_url,
        "TRIGGERPOST_SHOPIFY_API_SECRET": "",
    }
    added = CliRunner().invoke(
        main, ["shop", "add", "shopify", SHOP, "--webhook-secret", "app-secret-1"], env=env
    )
    assert added.exit_code == 0, added.output
    return env


def stored(database_url: str) -> tuple[Any, Any]:
    engine = make_engine(database_url)
    with make_sessions(engine)() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOP)).one()
        found = (shop.settings, shop.settings_valid)
    engine.dispose()
    return found


def write_by_hand(database_url: str, blob: dict[str, Any]) -> None:
    engine = make_engine(database_url)
    with make_sessions(engine).begin() as session:
        session.scalars(select(Shop).where(Shop.key == SHOP)).one().settings = blob
    engine.dispose()


def test_settings_prints_the_effective_settings(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["shop", "settings", SHOP, "--json"], env=env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["problems"] == []
    assert shown["settings"]["engine"]["quiet_start"] == "21:00"
    assert shown["settings"]["flows"]["cart_recovery"]["delay_1_hours"] == 1


def test_set_writes_validated_values(env: dict[str, str], database_url: str) -> None:
    result = CliRunner().invoke(
        main,
        [
            "shop", "settings", SHOP,
            "--set", "flows.cart_recovery.delay_1_hours=2",
            "--set", "engine.quiet_start=22:00",
            "--set", "sender.name=Nordic Socks",
        ],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"settings of {SHOP} saved" in result.output
    assert '"delay_1_hours": 2' in result.output
    expected = {
        "flows": {"cart_recovery": {"delay_1_hours": 2}},
        "engine": {"quiet_start": "22:00"},
        "sender": {"name": "Nordic Socks"},
    }
    assert stored(database_url) == (expected, expected)


def test_a_bad_set_exits_non_zero_naming_each_field_and_saves_nothing(
    env: dict[str, str], database_url: str
) -> None:
    before = stored(database_url)
    result = CliRunner().invoke(
        main,
        [
            "shop", "settings", SHOP,
            "--set", "flows.cart_recovery.delay_1_hours=500",
            "--set", "flows.nope.enabled=true",
            "--set", "engine.quiet_start=late",
            "--set", "engine.min_gap_hours=4",
        ],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 1
    assert f"{SHOP}: flows.cart_recovery.delay_1_hours: must be between 0 and 168" in result.output
    assert f"{SHOP}: flows.nope: unknown flow" in result.output
    assert f"{SHOP}: engine.quiet_start: not a time (HH:MM)" in result.output
    assert "nothing saved: 3 bad settings" in result.output
    assert stored(database_url) == before


def test_file_replaces_the_settings_after_validating_them(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"engine": {"min_gap_hours": 8}}))
    bad.write_text(json.dumps({"engine": {"min_gap_hours": "eight"}, "brand": {}}))
    runner = CliRunner()
    assert (
        runner.invoke(main, ["shop", "settings", SHOP, "--file", str(good)], env=env).exit_code == 0
    )
    refused = runner.invoke(main, ["shop", "settings", SHOP, "--file", str(bad)], env=env)
    assert refused.exit_code == 1
    assert "engine.min_gap_hours: must be a whole number" in refused.output
    assert "brand: unknown setting" in refused.output
    assert stored(database_url)[0] == {"engine": {"min_gap_hours": 8}}


def test_problems_in_the_stored_settings_are_shown(env: dict[str, str], database_url: str) -> None:
    write_by_hand(database_url, {"engine": {"min_gap_hours": -2}, "flows": {"nope": {}}})
    result = CliRunner().invoke(main, ["shop", "settings", SHOP], env=env)
    assert result.exit_code == 0, result.output
    assert "2 problems in the stored settings" in result.output
    assert "engine.min_gap_hours: must be between 0 and 168" in result.output
    assert "flows.nope: unknown flow" in result.output
    assert '"min_gap_hours": 16' in result.output  # the default applies meanwhile


def test_an_unknown_shop_or_a_malformed_set_is_refused(env: dict[str, str]) -> None:
    runner = CliRunner()
    unknown = runner.invoke(main, ["shop", "settings", "nope.myshopify.com"], env=env)
    assert unknown.exit_code == 1
    assert "no shop" in unknown.output
    malformed = runner.invoke(main, ["shop", "settings", SHOP, "--set", "engine"], env=env)
    assert malformed.exit_code == 2
    assert "is not PATH=VALUE" in malformed.output
