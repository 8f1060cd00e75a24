"""An erasure leaves no bytes of the person behind in any file we write.

The data directory here is laid out as ``triggerpost run`` lays it out: the
SQLite database (with its ``-wal``, ``-shm`` and writer lock files), the file
outbox and a persistent embedded Redis. Every webhook goes the real way:
signed, through the web edge, stored, drained by an RQ worker; the emails are
really rendered and written to the outbox. Afterwards every regular file is
searched byte for byte, in any letter case.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from connector.embedded_redis import EmbeddedRedis
from jobs.runtime import Runtime
from jobs.settings import Settings
from tests.conftest import SECRET_KEY
from tests.connector.test_privacy import (
    ASTRID,
    HISTORY,
    everything,
    send,
    what_the_engine_wrote,
)
from tests.jobs.test_send_pipeline import checkout_payload, configure, deliver, outbox
from tests.support import INSTANT, SHOPIFY_SECRET, run_worker

JONAS = "jonas.berg@example.com"  # the guest of HISTORY, who is not erased
#: every table a customer's erasure writes to
ERASED_TABLES = {
    "checkouts",
    "contacts",
    "decisions",
    "deliveries",
    "engagements",
    "enrollments",
    "events",
    "messages",
    "orders",
    "privacy_requests",
    "suppressions",
    "visitors",
}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The test's data directory (the SQLite database fixture puts its file here)."""
    return tmp_path


@pytest.fixture
def own_redis(data_dir: Path) -> Iterator[str]:
    """A persistent embedded Redis in the data directory, as ``triggerpost run`` starts it."""
    server = EmbeddedRedis(data_dir / "redis", socket=data_dir / "redis.sock", persistent=True)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def settings(data_dir: Path, database_url: str, own_redis: str) -> Settings:
    return Settings.from_env(
        {
            "TRIGGERPOST_DATA_DIR": str(data_dir),
            "TRIGGERPOST_DATABASE_URL": database_url,
            "TRIGGERPOST_REDIS_URL": own_redis,
            "TRIGGERPOST_SECRET_KEY": SECRET_KEY,
            "TRIGGERPOST_SHOPIFY_API_SECRET": SHOPIFY_SECRET,
            "TRIGGERPOST_BASE_URL": "http://127.0.0.1:8000",
        }
    )


def files_naming(directory: Path, address: str) -> list[str]:
    """Every regular file under ``directory`` holding ``address``'s bytes, in any letter case."""
    needle = address.lower().encode()
    return sorted(
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file() and needle in path.read_bytes().lower()
    )


def her_whole_story(client: FlaskClient, runtime: Runtime) -> None:
    """Reminders sent to her outbox, then her checkouts, orders, shipment, an
    unsubscribe and a click, and a data export the merchant asked for."""
    configure(runtime, INSTANT)
    deliver(client, checkout_payload(datetime.now(UTC) - timedelta(minutes=5)), "cart-1")
    run_worker(runtime)
    assert outbox(runtime), "the cart reminders were sent"
    send(client, runtime, *HISTORY)
    what_the_engine_wrote(runtime)
    send(client, runtime, "customers_data_request__customer", prefix="p")


def test_customer_redact_leaves_no_byte_of_her_address_in_any_file_of_the_data_directory(
    client: FlaskClient, runtime: Runtime, data_dir: Path
) -> None:
    her_whole_story(client, runtime)
    before = files_naming(data_dir, ASTRID)
    assert any(name.startswith("outbox/") for name in before), before
    if runtime.engine.dialect.name == "sqlite":
        assert any(name.startswith("triggerpost.db") for name in before), before

    send(client, runtime, "customers_redact__customer", prefix="r")

    assert files_naming(data_dir, ASTRID) == []
    assert ASTRID not in everything(runtime)
    # the search sees what is there: the other customer and his emails are kept
    assert JONAS in everything(runtime)
    if runtime.engine.dialect.name == "sqlite":
        assert files_naming(data_dir, JONAS) == ["triggerpost.db"]


def test_shop_redact_leaves_none_of_the_shops_customer_addresses_in_any_file(
    client: FlaskClient, runtime: Runtime, data_dir: Path
) -> None:
    her_whole_story(client, runtime)
    assert files_naming(data_dir, ASTRID)

    send(client, runtime, "app_uninstalled__shop", prefix="u")
    send(client, runtime, "shop_redact__shop", prefix="gone")

    for address in (ASTRID, JONAS):
        assert files_naming(data_dir, address) == [], address
    assert list((data_dir / "outbox").iterdir()) == []


def vacuums(url: str) -> dict[str, int]:
    """How often each table was vacuumed by hand (not by autovacuum), as PostgreSQL counts."""
    engine = create_engine("postgresql+psycopg://" + url.split("://", 1)[1])
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT relname, vacuum_count FROM pg_stat_user_tables")
            ).all()
    finally:
        engine.dispose()
    return {name: int(count) for name, count in rows}


def test_the_database_files_are_scrubbed_once_an_erasure_is_committed(
    client: FlaskClient, runtime: Runtime, data_dir: Path
) -> None:
    """SQLite: freed space is zeroed and the write-ahead log emptied; PostgreSQL: the
    tables the erasure touched are vacuumed, so their dead rows and index entries go."""
    her_whole_story(client, runtime)
    sqlite = runtime.engine.dialect.name == "sqlite"
    if sqlite:
        assert (data_dir / "triggerpost.db-wal").stat().st_size > 0
        with runtime.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    else:
        vacuumed_before = vacuums(runtime.settings.database_url)

    send(client, runtime, "customers_redact__customer", prefix="r")

    if sqlite:
        assert (data_dir / "triggerpost.db-wal").stat().st_size == 0
    else:
        vacuumed_after = vacuums(runtime.settings.database_url)
        assert {
            table
            for table in ERASED_TABLES
            if vacuumed_after[table] > vacuumed_before.get(table, 0)
        } == ERASED_TABLES
