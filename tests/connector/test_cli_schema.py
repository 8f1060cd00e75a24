"""Only `triggerpost migrate` (and `run`, which sets everything up) changes the schema:
every other command refuses a database that is behind, says what to run, and
touches nothing; none of them prints Alembic's log unless asked."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import inspect, text

from connector.cli import main
from jobs.store.db import alembic_config, make_engine, migrate, schema_revisions
from tests.conftest import DATABASES

SHOP = "nordic-socks.myshopify.com"
EXAMPLE = Path(__file__).parents[2] / "examples" / "cart_recovery.json"


@pytest.fixture(params=DATABASES)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all: a SQLite file not made yet, or a PostgreSQL
    schema of its own in the test database (found first on the search path)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'triggerpost.db'}"
        return
    base = os.environ["TEST_DATABASE_URL"]
    schema = f"cli_{uuid.uuid4().hex[:8]}"
    engine = make_engine(base)
    with engine.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield base + ("&" if "?" in base else "?") + f"options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


def previous_revision(url: str) -> str:
    """The revision before this version's latest one."""
    (head,) = ScriptDirectory.from_config(alembic_config(url)).get_heads()
    down = ScriptDirectory.from_config(alembic_config(url)).get_revision(head).down_revision
    assert isinstance(down, str)
    return down


@pytest.fixture(params=["empty", "behind"])
def stale_database_url(request: pytest.FixtureRequest, empty_database_url: str) -> str:
    """A database a newer version has to migrate: empty, or one revision behind."""
    if request.param == "behind":
        migrate(empty_database_url, previous_revision(empty_database_url))
    return empty_database_url


def env_for(url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "TRIGGERPOST_DATA_DIR": str(tmp_path / "var"),
        "TRIGGERPOST_DATABASE_URL": url,
        "TRIGGERPOST_SHOPIFY_API_SECRET": "",
    }


def the_schema(url: str) -> tuple[tuple[str, ...], list[str]]:
    """The database's revision and its tables: what a refused command must leave as it was."""
    revisions, _heads = schema_revisions(url)
    engine = make_engine(url)
    try:
        tables = sorted(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    return revisions, tables


def contacts_file(tmp_path: Path) -> str:
    path = tmp_path / "contacts.csv"
    path.write_text("email,birthday\nanna@example.se,1990-05-17\n", "utf-8")
    return str(path)


COMMANDS = [
    ["shop", "list"],
    ["shop", "list", "--json"],
    ["shop", "add", "woocommerce", "https://butik.example.se", "--webhook-secret", "s3cr3tvalue"],
    ["shop", "add", "shopify", SHOP, "--webhook-secret", "app-secret-1"],
    ["shop", "settings", SHOP],
    ["shop", "settings", SHOP, "--set", "engine.quiet_start=08:00"],
    ["shop", "login-link", SHOP],
    ["shop", "storefront", SHOP],
    ["why", SHOP, "anna@example.se"],
    ["history", "status", SHOP],
    ["history", "import", SHOP],
    ["contacts", "import", SHOP, "CONTACTS"],
    ["simulate", "--shop", SHOP],
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_command_refuses_a_stale_schema_and_leaves_it_as_it_was(
    args: list[str], stale_database_url: str, tmp_path: Path
) -> None:
    before = the_schema(stale_database_url)
    args = [contacts_file(tmp_path) if arg == "CONTACTS" else arg for arg in args]
    result = CliRunner().invoke(main, args, env=env_for(stale_database_url, tmp_path))
    assert result.exit_code != 0, result.output
    assert "run `triggerpost migrate` first" in result.output
    assert the_schema(stale_database_url) == before


@pytest.mark.parametrize("command", ["web", "worker", "sweeper"])
def test_the_service_s_processes_refuse_to_start_on_a_stale_schema(
    command: str, empty_database_url: str, tmp_path: Path
) -> None:
    """They end at once with the message (a process that started instead would hang here
    until the timeout, and the test would fail)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERPOST_")}
    env |= env_for(empty_database_url, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "connector.cli", command],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "run `triggerpost migrate` first" in done.stderr
    assert the_schema(empty_database_url) == ((), [])


def test_migrate_then_makes_the_commands_work(stale_database_url: str, tmp_path: Path) -> None:
    env = env_for(stale_database_url, tmp_path)
    runner = CliRunner()
    add = ["shop", "add", "shopify", SHOP, "--webhook-secret", "app-secret-1"]
    assert runner.invoke(main, add, env=env).exit_code != 0
    was, _tables = the_schema(stale_database_url)

    migrated = runner.invoke(main, ["migrate"], env=env)
    assert migrated.exit_code == 0, migrated.output
    (head,) = schema_revisions(stale_database_url)[1]
    assert the_schema(stale_database_url)[0] == (head,)
    start = f"revision {was[0]}" if was else "an empty database"
    assert f"upgraded from {start} to revision {head}" in migrated.output

    added = runner.invoke(main, add, env=env)
    assert added.exit_code == 0, added.output
    listing = runner.invoke(main, ["shop", "list"], env=env)
    assert listing.exit_code == 0, listing.output
    assert SHOP in listing.output
    again = runner.invoke(main, ["migrate"], env=env)
    assert again.exit_code == 0, again.output
    assert f"is up to date (revision {head})" in again.output


def test_a_schema_from_a_newer_version_is_refused_even_by_migrate(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Its revision is one this version does not know: nothing here may run on it or
    try to undo it."""
    migrate(empty_database_url)
    engine = make_engine(empty_database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    env = env_for(empty_database_url, tmp_path)
    for args in (["shop", "list"], ["migrate"]):
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code != 0, result.output
        assert "revision 9999, which this version of triggerpost does not know" in result.output
    assert the_schema(empty_database_url)[0] == ("9999",)


def test_simulate_runs_on_its_own_scratch_store_and_leaves_the_database_alone(
    empty_database_url: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        main, ["simulate", str(EXAMPLE)], env=env_for(empty_database_url, tmp_path)
    )
    assert result.exit_code == 0, result.output
    assert result.output.endswith("\n1 email sent, 0 discount codes issued\n")
    assert the_schema(empty_database_url) == ((), [])


def run_cli(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a shell runs it: logging set up as in real use (pytest's own
    handlers would swallow what a CliRunner's logs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERPOST_")}
    return subprocess.run(
        [sys.executable, "-m", "connector.cli", *args],
        env=env | env_for(url, tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_commands_print_no_alembic_log_unless_asked(
    empty_database_url: str, tmp_path: Path
) -> None:
    migrated = run_cli(empty_database_url, tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "upgraded from an empty database" in migrated.stdout
    listed = run_cli(empty_database_url, tmp_path, "shop", "list")
    assert listed.returncode == 0, listed.stderr
    for done in (migrated, listed):
        assert "alembic" not in done.stderr.lower(), done.stderr
        assert "Context impl" not in done.stderr

    verbose = run_cli(empty_database_url, tmp_path, "-v", "shop", "list")
    assert verbose.returncode == 0, verbose.stderr
    assert "alembic.runtime.migration" in verbose.stderr
