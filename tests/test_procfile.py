"""The Procfile runs a deployment under honcho: the release step, then web and workers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from sqlalchemy import select, text

from jobs.store.db import make_engine, make_sessions
from jobs.store.models import Base, Contact
from tests.production_shape import REPO, Shape, free_port
from tests.support import shopify_headers
from tests.test_production_shape import customer_body, register_shops

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("TEST_DATABASE_URL"),
        reason="production runs on PostgreSQL: set TEST_DATABASE_URL (make test in CI does)",
    ),
]

HONCHO = [sys.executable, "-m", "honcho", "-f", str(REPO / "Procfile"), "-d", str(REPO)]


@pytest.fixture
def around(tmp_path: Path) -> Iterator[Shape]:
    """PostgreSQL emptied, a redis-server and an SMTP server: no process of ours yet."""
    url = os.environ["TEST_DATABASE_URL"]
    engine = make_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with contextlib.suppress(Exception), engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    shape = Shape(database_url=url, where=tmp_path / "shape", webs=0, workers=0)
    try:
        shape.start()
        yield shape
    finally:
        shape.stop()


def test_honcho_runs_the_release_step_then_web_and_workers_that_take_a_webhook(
    around: Shape,
) -> None:
    env = around.environment() | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    }
    release = subprocess.run(
        [*HONCHO, "start", "release"], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert release.returncode == 0, release.stdout + release.stderr
    assert "is up to date" in release.stdout

    port = free_port()
    honcho = subprocess.Popen(
        [*HONCHO, "start", "-p", str(port), "-c", "web=1,worker=2", "web", "worker"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            assert honcho.poll() is None, honcho.communicate()[0]
            assert time.monotonic() < deadline, "the Procfile's web process never answered"
            time.sleep(0.3)
        (key, secret), *_ = register_shops(around)
        body = customer_body(0, 1, datetime.now(UTC))
        headers = shopify_headers("customers/create", body, secret, key, "procfile-1")
        answer = requests.post(
            f"http://127.0.0.1:{port}/webhooks/shopify", data=body, headers=headers, timeout=10
        )
        assert answer.status_code == 200, answer.text
        # the Procfile's workers apply it and send the welcome over SMTP
        engine = make_engine(around.database_url)
        try:
            while not around.mailbox.message_ids:
                assert time.monotonic() < deadline + 60, "no email from the Procfile's workers"
                time.sleep(0.3)
            with make_sessions(engine)() as session:
                contact = session.scalar(
                    select(Contact).where(Contact.email == "c1@shop0.example.se")
                )
            assert contact is not None
        finally:
            engine.dispose()
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)  # as a process manager stops it
        output, _ = honcho.communicate(timeout=60)
    assert "web.1" in output
    assert "worker.1" in output
    assert "worker.2" in output
