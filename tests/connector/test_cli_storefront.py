"""`triggerpost shop storefront SHOP`: where a shop's storefront events go."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from click.testing import CliRunner

from connector.cli import main
from tests.connector.test_cli import shops


def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "TRIGGERPOST_DATA_DIR": str(tmp_path / "var"),
        "TRIGGERPOST_DATABASE_URL": database_url,
        "TRIGGERPOST_BASE_URL": "https://tp.example.com",
        "TRIGGERPOST_SHOPIFY_API_SECRET": "",
    }


def add(runner: CliRunner, environ: dict[str, str], *args: str) -> None:
    result = runner.invoke(main, ["shop", "add", *args], env=environ)
    assert result.exit_code == 0, result.output


def test_it_prints_key_endpoint_origins_and_a_stores_connection_code(
    tmp_path: Path, database_url: str
) -> None:
    runner, environ = CliRunner(), env(tmp_path, database_url)
    add(
        runner,
        environ,
        "woocommerce",
        "https://butik.example.se",
        "--webhook-secret",
        "s3cr3tvalue",
    )
    add(
        runner, environ, "shopify", "nordic-socks.myshopify.com", "--webhook-secret", "app-secret-1"
    )
    woo, shopify = shops(database_url)

    shown = runner.invoke(main, ["shop", "storefront", "butik.example.se"], env=environ)
    assert shown.exit_code == 0, shown.output
    assert woo.storefront_key in shown.output
    assert f"https://tp.example.com/events/woocommerce/{woo.storefront_key}" in shown.output
    assert "https://butik.example.se" in shown.output
    code = shown.output.strip().splitlines()[-1]
    decoded = json.loads(base64.urlsafe_b64decode(code + "=" * (-len(code) % 4)))
    assert decoded["key"] == woo.storefront_key
    assert decoded["url"] == "https://tp.example.com"

    again = runner.invoke(main, ["shop", "storefront", str(woo.id), "--json"], env=environ)
    assert json.loads(again.output)["connection_code"] == code  # the same secret, kept
    renewed = runner.invoke(
        main, ["shop", "storefront", str(woo.id), "--new-secret", "--json"], env=environ
    )
    assert json.loads(renewed.output)["connection_code"] != code

    plain = runner.invoke(
        main, ["shop", "storefront", "nordic-socks.myshopify.com", "--json"], env=environ
    )
    facts = json.loads(plain.output)
    assert facts["key"] == shopify.storefront_key
    assert facts["origins"] == ["https://nordic-socks.myshopify.com"]
    assert facts["connection_code"] is None
    refused = runner.invoke(
        main, ["shop", "storefront", str(shopify.id), "--new-secret"], env=environ
    )
    assert refused.exit_code != 0
    assert "no triggerpost plugin" in refused.output


def test_an_unknown_shop_is_a_clear_error(tmp_path: Path, database_url: str) -> None:
    result = CliRunner().invoke(
        main, ["shop", "storefront", "nowhere.example"], env=env(tmp_path, database_url)
    )
    assert result.exit_code != 0
    assert "no shop" in result.output
