"""The store: migrations match the models, times stay UTC, money stays exact."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, select, text

from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.store.db import make_engine, make_read_sessions, migrate
from jobs.store.models import Base, Order, Shop
from jobs.store.secrets import SecretBox, SecretError


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    migrate(database_url)  # a second run changes nothing
    engine = make_engine(database_url)
    with engine.connect() as connection:
        diff = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == []


def test_times_come_back_aware_and_utc(runtime: Runtime) -> None:
    oslo = timezone(timedelta(hours=1))
    with runtime.sessions.begin() as session:
        shop = add_shop(session, runtime.secrets, "shopify", "a.myshopify.com")
        session.add(
            Order(
                shop_id=shop.id,
                order_id="1",
                name="#1",
                currency="NOK",
                total=Decimal("133.0357145"),
                data={},
                placed_at=datetime(2026, 3, 29, 2, 30, tzinfo=oslo),
                platform_updated_at=datetime(2026, 3, 29, 2, 30, tzinfo=oslo),
            )
        )
    with runtime.sessions() as session:
        order = session.scalars(select(Order)).one()
    assert order.placed_at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert order.placed_at.tzinfo is UTC
    assert order.total == Decimal("133.0357145")


def test_naive_times_and_float_money_are_refused(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        shop = add_shop(session, runtime.secrets, "shopify", "a.myshopify.com")
        session.add(
            Order(
                shop_id=shop.id, order_id="1", name="#1", currency="SEK", total=Decimal(1),
                data={}, placed_at=datetime(2026, 1, 1),  # noqa: DTZ001
                platform_updated_at=datetime.now(UTC),
            )
        )  # fmt: skip
        with pytest.raises(Exception, match="naive datetime"):
            session.flush()
        session.rollback()
        shop = add_shop(session, runtime.secrets, "shopify", "a.myshopify.com")
        session.add(
            Order(
                shop_id=shop.id, order_id="1", name="#1", currency="SEK", total=0.1,  # type: ignore[arg-type]
                data={}, placed_at=datetime.now(UTC), platform_updated_at=datetime.now(UTC),
            )
        )  # fmt: skip
        with pytest.raises(Exception, match="Decimal"):
            session.flush()


def test_secrets_are_sealed_and_need_the_key(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        add_shop(session, runtime.secrets, "shopify", "a.myshopify.com", access_token="shpat_abc")
    with runtime.sessions() as session:
        sealed = session.scalars(select(Shop.access_token_enc)).one()
    assert sealed is not None
    assert "shpat_abc" not in sealed
    assert runtime.secrets.open(sealed) == "shpat_abc"
    with pytest.raises(SecretError, match="TRIGGERPOST_SECRET_KEY"):
        SecretBox("another-key-entirely-" + "y" * 20).open(sealed)
    # during a key rotation the old key still opens what it sealed
    rotated = SecretBox("new-key-" + "z" * 32, previous=runtime.settings.secret_key)
    assert rotated.open(sealed) == "shpat_abc"


# --- SQLite writers queue on the writer lock file -------------------------------------


def _second_writer_begins(engine: Engine, started: threading.Event) -> threading.Thread:
    def write() -> None:
        with engine.begin() as connection:
            started.set()
            connection.exec_driver_sql("SELECT 1")

    thread = threading.Thread(target=write)
    thread.start()
    return thread


@pytest.mark.parametrize("ending", ["commit", "rollback", "close"])
def test_a_sqlite_writer_hands_over_its_turn_however_it_ends(tmp_path: Path, ending: str) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'writers.db'}")
    first = engine.connect()
    first.begin()
    first.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    started = threading.Event()
    second = _second_writer_begins(engine, started)
    assert not started.wait(0.3)  # waits its turn while the first writes
    if ending == "commit":
        first.commit()
    elif ending == "rollback":
        first.rollback()
    else:
        first.invalidate()  # the handle is gone, as after a crash of its owner
    assert started.wait(5)
    second.join(5)
    first.close()
    engine.dispose()


def test_sqlite_readers_do_not_wait_for_the_writer(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'writers.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    writer = engine.connect()
    writer.begin()
    writer.exec_driver_sql("INSERT INTO t VALUES (1)")
    reads = make_read_sessions(engine)
    with reads() as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 0  # not yet committed
    writer.commit()
    with reads() as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 1
    writer.close()
    engine.dispose()


def test_sqlite_writes_still_work_without_a_lock_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "writers.db"
    (tmp_path / "writers.db-writer").mkdir()  # where the lock file would go: not a file
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
    with engine.begin() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
    assert "no SQLite writer lock file" in caplog.text
    engine.dispose()
