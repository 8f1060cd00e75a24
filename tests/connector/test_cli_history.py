"""`triggerpost history import` and `history status`: a shop's past, from the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner

from connector.cli import main
from tests.conftest import SECRET_KEY
from tests.jobs.test_history import NOW, FakeStore, customer, order

STORE = "https://ullboden.se"


@pytest.fixture
def env(tmp_path: Path, database_url: str, redis_url: str) -> dict[str, str]:
    env = {
        "TRIGGERPOST_DATA_DIR": str(tmp_path / "var"),
        "TRIGGERPOST_DATABASE_URL": database_url,
        "TRIGGERPOST_REDIS_URL": redis_url,
        "TRIGGERPOST_SECRET_KEY": SECRET_KEY,
        "TRIGGERPOST_SHOPIFY_API_SECRET": "",
    }
    added = CliRunner().invoke(
        main,
        ["shop", "add", "woocommerce", STORE, "--webhook-secret", "s3cr3tvalue",
         "--consumer-key", "ck_1", "--consumer-secret", "cs_1", "--currency", "sek"],
        env=env,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    return env


@pytest.fixture
def store() -> Iterator[FakeStore]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = FakeStore(mock)
        fake.customers = [customer(1), customer(2)]
        fake.orders = [order(100 + n, n % 2 + 1, NOW - timedelta(days=n)) for n in range(150)]
        yield fake


def test_the_import_shows_its_progress_and_reports_what_it_imported(
    env: dict[str, str], store: FakeStore
) -> None:
    result = CliRunner().invoke(main, ["history", "import", "ullboden.se"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "ullboden.se: History imported: 2 customers, 150 orders from the last 2 years"
    )
    # a line per page on stderr, rewritten in place: read of the total, and the rate
    assert "\r2 of 152 customers and orders read" in result.stderr
    assert "152 of 152 customers and orders read, 2 customers and 150 orders imported" in (
        result.stderr
    )
    assert "/s)" in result.stderr

    status = CliRunner().invoke(main, ["history", "status", "ullboden.se", "--json"], env=env)
    assert status.exit_code == 0, status.output
    state = json.loads(status.stdout)
    assert state["status"] == "done"
    assert (state["customers"], state["orders"], state["read"], state["total"]) == (
        2,
        150,
        152,
        152,
    )


def test_json_and_days_choose_what_is_imported_and_how_it_is_told(
    env: dict[str, str], store: FakeStore
) -> None:
    result = CliRunner().invoke(main, ["history", "import", "1", "--days", "30", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["shop"], report["status"], report["orders"]) == ("ullboden.se", "done", 150)
    orders = [q for r, q in store.requests if r == "orders" and q["per_page"] == "100"]
    after = datetime.fromisoformat(orders[0]["after"] + "+00:00")
    assert abs(datetime.now(UTC) - timedelta(days=30) - after) < timedelta(minutes=5)


def test_a_failing_store_is_told_and_a_second_run_continues(
    env: dict[str, str], store: FakeStore
) -> None:
    store.fail_at = ("orders", 2)
    failed = CliRunner().invoke(main, ["history", "import", "ullboden.se"], env=env)
    assert failed.exit_code == 1
    assert "run it again to continue where it stopped" in failed.output
    status = CliRunner().invoke(main, ["history", "status", "ullboden.se"], env=env)
    assert "paused after 102 of 152 customers and orders" in status.stdout
    assert "last error: AdminApiError" in status.stdout

    again = CliRunner().invoke(main, ["history", "import", "ullboden.se", "--json"], env=env)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["orders"] == 150
    assert store.pages_read("orders") == [1, 2, 2]


def test_an_unknown_shop_or_one_without_history_is_told_plainly(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["history", "import", "nowhere.example"], env=env)
    assert result.exit_code == 1
    assert "no shop 'nowhere.example'" in result.output
    status = CliRunner().invoke(main, ["history", "status", "ullboden.se"], env=env)
    assert "no history import yet" in status.stdout
