"""The triggerpost command: help everywhere, shops registered and listed by hand."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from connector.cli import main
from jobs.store.db import make_engine, make_sessions
from jobs.store.models import Shop
from jobs.store.secrets import SecretBox


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += all_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("path", all_commands(main), ids=lambda p: " ".join(p) or "triggerpost")
def test_every_command_has_help(path: tuple[str, ...], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, [*path, "--help"], env={"TRIGGERPOST_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 3


def test_expected_commands_exist() -> None:
    names = {" ".join(p) for p in all_commands(main)}
    assert {"run", "web", "worker", "migrate", "shop add shopify", "shop add woocommerce",
            "shop list"} <= names  # fmt: skip


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "TRIGGERPOST_DATA_DIR": str(tmp_path / "var"),
        "TRIGGERPOST_DATABASE_URL": database_url,
        "TRIGGERPOST_SHOPIFY_API_SECRET": "",
    }


def shops(database_url: str) -> list[Shop]:
    engine = make_engine(database_url)
    with make_sessions(engine)() as session:
        found = list(session.scalars(select(Shop).order_by(Shop.id)))
    engine.dispose()
    return found


def test_shop_add_and_list(env: dict[str, str], database_url: str) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["shop", "add", "woocommerce", "https://Butik.Example.se/", "--webhook-secret",
         "s3cr3tvalue", "--consumer-key", "ck_1", "--consumer-secret", "cs_1", "--currency", "sek"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "woocommerce butik.example.se" in result.output
    result = runner.invoke(
        main,
        ["shop", "add", "shopify", "Nordic-Socks.myshopify.com", "--webhook-secret", "app-secret-1",
         "--access-token", "shpat_123"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    listing = runner.invoke(main, ["shop", "list"], env=env)
    assert listing.exit_code == 0
    assert "butik.example.se" in listing.output
    assert "nordic-socks.myshopify.com" in listing.output

    woo, shopify = shops(database_url)
    assert woo.currency == "SEK"
    assert woo.base_url == "https://Butik.Example.se"
    # secrets are sealed at rest, and open with the data dir's key
    box = SecretBox((Path(env["TRIGGERPOST_DATA_DIR"]) / "secret_key").read_text().strip())
    assert woo.webhook_secret_enc
    assert "s3cr3tvalue" not in woo.webhook_secret_enc
    assert box.open(woo.webhook_secret_enc) == "s3cr3tvalue"
    assert woo.consumer_secret_enc
    assert box.open(woo.consumer_secret_enc) == "cs_1"
    assert shopify.access_token_enc
    assert box.open(shopify.access_token_enc) == "shpat_123"


def test_adding_again_updates_the_same_shop(env: dict[str, str], database_url: str) -> None:
    runner = CliRunner()
    for secret in ("first-secret", "second-secret"):
        args = [
            "shop",
            "add",
            "woocommerce",
            "https://butik.example.se",
            "--webhook-secret",
            secret,
        ]
        assert runner.invoke(main, args, env=env).exit_code == 0
    [shop] = shops(database_url)
    box = SecretBox((Path(env["TRIGGERPOST_DATA_DIR"]) / "secret_key").read_text().strip())
    assert shop.webhook_secret_enc
    assert box.open(shop.webhook_secret_enc) == "second-secret"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["shopify", "evil.example.com", "--webhook-secret", "abcdefgh"], "myshopify.com"),
        (["shopify", "x.myshopify.com"], "TRIGGERPOST_SHOPIFY_API_SECRET"),
        (["woocommerce", "https://b.example", "--webhook-secret", "short"], "guessable"),
        (["woocommerce", "http://b.example", "--webhook-secret", "s3cr3tvalue"], None),
        (["woocommerce", "https://b.example", "--webhook-secret", "s3cr3tvalue",
          "--consumer-key", "ck"], "go together"),
    ],
)  # fmt: skip
def test_bad_shops_are_refused_with_a_reason(
    env: dict[str, str], database_url: str, args: list[str], message: str | None
) -> None:
    result = CliRunner().invoke(main, ["shop", "add", *args], env=env)
    if message is None:  # http is fine in development
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1
    assert message in result.output
    assert shops(database_url) == []


def test_production_refuses_to_start_on_dev_defaults(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["shop", "list"],
        env={"TRIGGERPOST_ENV": "production", "TRIGGERPOST_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert "TRIGGERPOST_SECRET_KEY" in result.output


def test_version_prints_the_package_s_version(tmp_path: Path) -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text("utf-8"))
    result = CliRunner().invoke(main, ["--version"], env={"TRIGGERPOST_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert result.output == f"triggerpost {pyproject['project']['version']}\n"
    assert result.output == f"triggerpost {version('triggerpost')}\n"


def add_two_shops(env: dict[str, str], database_url: str) -> None:
    """A Shopify shop in Stockholm installed at 12:00 UTC on 1 July (14:00 there), and
    a WooCommerce store with no zone (UTC)."""
    runner = CliRunner()
    for args in (
        ["shopify", "nordic-socks.myshopify.com", "--webhook-secret", "app-secret-1"],
        ["woocommerce", "https://butik.example.se", "--webhook-secret", "s3cr3tvalue"],
    ):
        assert runner.invoke(main, ["shop", "add", *args], env=env).exit_code == 0
    engine = make_engine(database_url)
    with make_sessions(engine).begin() as session:
        shopify = session.scalars(select(Shop).where(Shop.platform == "shopify")).one()
        shopify.timezone = "Europe/Stockholm"
        shopify.name = "Nordic Socks AB"
        shopify.installed_at = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
        woo = session.scalars(select(Shop).where(Shop.platform == "woocommerce")).one()
        woo.installed_at = datetime(2026, 11, 30, 23, 30, 15, tzinfo=UTC)
    engine.dispose()


def test_shop_list_has_a_header_and_shows_when_each_shop_came_on_its_own_clock(
    env: dict[str, str], database_url: str
) -> None:
    add_two_shops(env, database_url)
    listing = CliRunner().invoke(main, ["shop", "list"], env=env)
    assert listing.exit_code == 0, listing.output
    header, *rows = [line.split("  ") for line in listing.output.splitlines()]
    cells = [[c.strip() for c in line if c.strip()] for line in (header, *rows)]
    assert cells[0] == ["id", "platform", "shop", "status", "timezone", "installed", "name"]
    assert cells[1][1:] == [
        "shopify", "nordic-socks.myshopify.com", "active",
        "Europe/Stockholm", "2026-07-01 14:00 CEST", "Nordic Socks AB",
    ]  # fmt: skip
    assert cells[2][1:] == [
        "woocommerce", "butik.example.se", "active", "UTC", "2026-11-30 23:30 UTC",
        "butik.example.se",
    ]  # fmt: skip
    # the columns line up under their headings
    lines = listing.output.splitlines()
    assert {line.index("2026") for line in lines[1:]} == {lines[0].index("installed")}


def test_shop_list_as_json_gives_one_object_per_shop_with_the_table_s_fields(
    env: dict[str, str], database_url: str
) -> None:
    empty = CliRunner().invoke(main, ["shop", "list", "--json"], env=env)
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.output) == []
    add_two_shops(env, database_url)
    listing = CliRunner().invoke(main, ["shop", "list", "--json"], env=env)
    assert listing.exit_code == 0, listing.output
    shopify, woo = json.loads(listing.output)
    ids = [shop.id for shop in shops(database_url)]
    assert shopify == {
        "id": ids[0],
        "platform": "shopify",
        "shop": "nordic-socks.myshopify.com",
        "status": "active",
        "timezone": "Europe/Stockholm",
        "installed": "2026-07-01T14:00:00+02:00",
        "name": "Nordic Socks AB",
    }
    assert woo["installed"] == "2026-11-30T23:30:15+00:00"
    assert (woo["id"], woo["platform"], woo["shop"]) == (ids[1], "woocommerce", "butik.example.se")


def test_an_empty_shop_list_says_how_to_add_one(env: dict[str, str]) -> None:
    listing = CliRunner().invoke(main, ["shop", "list"], env=env)
    assert listing.exit_code == 0, listing.output
    assert listing.output == "no shops yet: add one with `triggerpost shop add`\n"
