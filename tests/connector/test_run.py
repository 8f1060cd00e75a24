"""`triggerpost run` as a newcomer starts it: whole service, embedded defaults, clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from jobs.store.db import make_engine, make_sessions
from jobs.store.models import Contact
from tests.support import dumps, shopify_headers

pytestmark = pytest.mark.slow

SHOP = "run-test.myshopify.com"
SECRET = "custom-app-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    data = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERPOST_")} | {
        "TRIGGERPOST_DATA_DIR": str(data),
        "TRIGGERPOST_SWEEP_INTERVAL": "1",
    }
    cli = [sys.executable, "-m", "connector.cli"]
    added = subprocess.run(
        [*cli, "shop", "add", "shopify", SHOP, "--webhook-secret", SECRET],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    port = free_port()
    process = subprocess.Popen(
        [*cli, "run", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    yield process, f"http://127.0.0.1:{port}", data
    if process.poll() is None:  # the test failed half-way: stop it as a user would
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def wait_for(url: str, seconds: float) -> requests.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return requests.get(url, timeout=1)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_run_serves_processes_and_stops_cleanly(
    service: tuple[subprocess.Popen[str], str, Path],
) -> None:
    process, base, data = service
    started = time.monotonic()
    assert wait_for(f"{base}/healthz", 30).json() == {"status": "ok"}
    assert time.monotonic() - started < 30

    ready = requests.get(f"{base}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["redis"] == "ok"

    body = dumps(
        {
            "id": 706405506930370000,
            "email": "bob@example.com",
            "first_name": "Bob",
            "last_name": "Norman",
            "created_at": "2026-09-14T19:12:40+02:00",
            "updated_at": "2026-09-14T19:12:40+02:00",
            "state": "enabled",
            "currency": "SEK",
            "verified_email": True,
            "addresses": [],
            "default_address": None,
            "admin_graphql_api_id": "gid://shopify/Customer/706405506930370000",
        }
    )
    headers = shopify_headers("customers/create", body, SECRET, SHOP, "run-1")
    response = requests.post(f"{base}/webhooks/shopify", data=body, headers=headers, timeout=5)
    assert response.status_code == 200, response.text

    # the service's own worker turns it into a contact
    engine = make_engine(f"sqlite:///{data / 'triggerpost.db'}")
    sessions = make_sessions(engine)
    deadline = time.monotonic() + 60
    contact = None
    while contact is None and time.monotonic() < deadline:
        with sessions() as session:
            contact = session.scalar(select(Contact).where(Contact.email == "bob@example.com"))
        time.sleep(0.2)
    engine.dispose()
    assert contact is not None
    assert contact.first_name == "Bob"

    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "/webhooks/shopify" in output  # the URLs to use were printed
    assert "stopping" in output
    assert not (data / "redis.sock").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/healthz", timeout=1)
    assert json.loads(ready.text)["queues"].keys() == {"intake", "messages", "default"}


def test_children_do_not_outlive_a_killed_supervisor(
    service: tuple[subprocess.Popen[str], str, Path],
) -> None:
    process, base, data = service
    wait_for(f"{base}/healthz", 30)
    process.kill()  # no chance to stop anything in order
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/healthz", timeout=1)
        except requests.ConnectionError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the web server outlived its supervisor")
    while (data / "redis.sock").exists():  # redis-server removes it as it exits
        assert time.monotonic() < deadline, "redis-server outlived its supervisor"
        time.sleep(0.2)
