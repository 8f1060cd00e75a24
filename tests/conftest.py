"""Shared fixtures: real Redis, SQLite always, PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import text

from connector.app import create_app
from connector.embedded_redis import EmbeddedRedis
from jobs import runtime as runtimes
from jobs.merchant.shops import add_shop
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.store.db import make_engine, migrate
from jobs.store.models import Base
from tests.support import SHOPIFY_SECRET, SHOPIFY_SHOP, STORE, WOO_SECRET

FIXTURES = Path(__file__).parent / "fixtures"
SECRET_KEY = "test-secret-key-" + "x" * 32


def _redis_answers(url: str) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (RedisError, OSError):
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The REDIS_URL server if one answers (CI), else an embedded redis-server."""
    url = os.environ.get("REDIS_URL")
    if url and _redis_answers(url):
        yield url
        return
    if os.environ.get("CI") and url:
        pytest.fail(f"REDIS_URL={url} does not answer")
    workdir = Path(tempfile.mkdtemp(prefix="triggerpost-redis-"))
    server = EmbeddedRedis(workdir)
    server.start()
    yield server.url
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


DATABASES = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating each time is slow)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgresql_url() -> str:
    url = os.environ["TEST_DATABASE_URL"]
    migrate(url)
    return url


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a fresh SQLite file, or the PostgreSQL test DB truncated."""
    if request.param == "sqlite":
        path = tmp_path / "triggerpost.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgresql_url")
    engine = make_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    return Settings.from_env(
        {
            "TRIGGERPOST_DATA_DIR": str(tmp_path / "var"),
            "TRIGGERPOST_DATABASE_URL": database_url,
            "TRIGGERPOST_REDIS_URL": redis_url,
            "TRIGGERPOST_SECRET_KEY": SECRET_KEY,
            "TRIGGERPOST_SHOPIFY_API_SECRET": SHOPIFY_SECRET,
            "TRIGGERPOST_BASE_URL": "http://127.0.0.1:8000",
        }
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime.create(settings)
    runtime.redis.flushdb()
    runtimes.install(runtime)
    yield runtime
    runtimes.install(None)
    runtime.redis.flushdb()
    runtime.close()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def client(runtime: Runtime) -> Iterator[FlaskClient]:
    """The web app with a Shopify shop and a WooCommerce store registered (SEK)."""
    with runtime.sessions.begin() as session:
        add_shop(session, runtime.secrets, "shopify", SHOPIFY_SHOP, currency="SEK")
        add_shop(
            session,
            runtime.secrets,
            "woocommerce",
            STORE,
            webhook_secret=WOO_SECRET,
            currency="SEK",
        )
    with create_app(runtime=runtime).test_client() as client:
        yield client
