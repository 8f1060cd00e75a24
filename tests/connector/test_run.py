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
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select

from jobs.store.db import make_engine, make_sessions
from jobs.store.models import Contact
from tests.processes import (
    descendants,
    kill_all,
    scheduler_holding_the_locks,
    wait_until_gone,
)
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
    # a shop is added before the first start: the schema first, as the README says
    migrated = subprocess.run(
        [*cli, "migrate"], env=env, capture_output=True, text=True, check=False
    )
    assert migrated.returncode == 0, migrated.stderr
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
        except (requests.ConnectionError, requests.Timeout):  # not up, or still starting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_until_ready(base: str, seconds: float) -> None:
    """Polls ``/readyz`` until it answers 200 (the database and Redis answer)."""
    deadline = time.monotonic() + seconds
    answer = "no answer"
    while True:
        try:
            response = requests.get(f"{base}/readyz", timeout=2)
            if response.status_code == 200:
                return
            answer = f"{response.status_code} {response.text}"
        except requests.RequestException as exc:
            answer = repr(exc)
        assert time.monotonic() < deadline, f"not ready within {seconds:.0f} s: {answer}"
        time.sleep(0.2)


def customer_body(customer_id: int, email: str, first_name: str) -> bytes:
    return dumps(
        {
            "id": customer_id,
            "email": email,
            "first_name": first_name,
            "last_name": "Norman",
            "created_at": "2026-09-14T19:12:40+02:00",
            "updated_at": "2026-09-14T19:12:40+02:00",
            "state": "enabled",
            "currency": "SEK",
            "verified_email": True,
            "addresses": [],
            "default_address": None,
            "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
        }
    )


def wait_for_contact(data: Path, email: str, seconds: float) -> Contact | None:
    """The contact the service's own worker made of a webhook, once it has."""
    engine = make_engine(f"sqlite:///{data / 'triggerpost.db'}")
    sessions = make_sessions(engine)
    deadline = time.monotonic() + seconds
    contact = None
    while contact is None and time.monotonic() < deadline:
        with sessions() as session:
            contact = session.scalar(select(Contact).where(Contact.email == email))
        time.sleep(0.2)
    engine.dispose()
    return contact


def wait_for_scheduler(service: subprocess.Popen[str], data: Path, seconds: float) -> None:
    """Polls until a living scheduler of the service's worker holds RQ's scheduler lock."""
    redis = Redis(unix_socket_path=str(data / "redis.sock"), socket_timeout=2)
    deadline = time.monotonic() + seconds
    try:
        while True:
            try:
                holder = scheduler_holding_the_locks(redis)
            except RedisError:
                holder = None
            if holder in {p.pid for p in descendants(service.pid)}:
                return
            assert time.monotonic() < deadline, "no living scheduler holds the scheduler lock"
            time.sleep(0.2)
    finally:
        redis.close()


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

    body = customer_body(706405506930370000, "bob@example.com", "Bob")
    headers = shopify_headers("customers/create", body, SECRET, SHOP, "run-1")
    response = requests.post(f"{base}/webhooks/shopify", data=body, headers=headers, timeout=5)
    assert response.status_code == 200, response.text

    # the service's own worker turns it into a contact
    contact = wait_for_contact(data, "bob@example.com", 60)
    assert contact is not None
    assert contact.first_name == "Bob"

    # metrics with nothing set: the run's own directory, shared by its web and worker
    scraped = requests.get(f"{base}/metrics", timeout=5)
    assert scraped.status_code == 200
    assert 'triggerpost_webhook_requests_total{outcome="stored",platform="shopify"} 1.0' in (
        scraped.text
    )
    assert 'triggerpost_processes{kind="worker"} 1.0' in scraped.text
    assert [p.name for p in (data / "metrics").iterdir()] == [f"run-{process.pid}"]

    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert list((data / "metrics").iterdir()) == []  # this run's counts went with it
    assert "/webhooks/shopify" in output  # the URLs to use were printed
    assert "stopping" in output
    assert not (data / "redis.sock").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/healthz", timeout=1)
    assert json.loads(ready.text)["queues"].keys() == {"intake", "messages", "default"}


def test_no_process_of_the_service_outlives_a_killed_supervisor(
    service: tuple[subprocess.Popen[str], str, Path],
) -> None:
    """Redis, the web server and its workers, the worker with its scheduler,
    sweeper and resource tracker: all end with the supervisor."""
    process, base, data = service
    wait_for(f"{base}/healthz", 30)
    wait_for_scheduler(process, data, 60)
    tree = descendants(process.pid)
    commands = [p.command for p in tree]
    assert any("redis-server" in c for c in commands), commands
    assert any("spawn_main" in c for c in commands), commands  # the sweeper
    process.kill()  # no chance to stop anything in order
    process.wait()
    try:
        living = wait_until_gone(tree, 30)
        assert not living, f"outlived the supervisor: {[p.command for p in living]}"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/healthz", timeout=1)
        assert not (data / "redis.sock").exists()  # redis-server removed it as it exited
    finally:
        kill_all(tree)


def test_the_embedded_redis_is_restarted_when_it_dies_and_the_service_carries_on(
    service: tuple[subprocess.Popen[str], str, Path],
) -> None:
    process, base, data = service
    wait_for(f"{base}/healthz", 30)
    wait_until_ready(base, 30)
    wait_for_scheduler(process, data, 60)
    servers = [p for p in descendants(process.pid) if "redis-server" in p.command]
    assert len(servers) == 1, servers
    os.kill(servers[0].pid, signal.SIGKILL)
    assert not wait_until_gone(servers, 10), "redis-server survived SIGKILL"

    wait_until_ready(base, 60)
    restarted = [p for p in descendants(process.pid) if "redis-server" in p.command]
    assert len(restarted) == 1, restarted
    assert restarted[0] != servers[0]
    # the web server and the worker found the new one
    body = customer_body(706405506930370001, "ann@example.com", "Ann")
    headers = shopify_headers("customers/create", body, SECRET, SHOP, "run-after-restart")
    response = requests.post(f"{base}/webhooks/shopify", data=body, headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    contact = wait_for_contact(data, "ann@example.com", 60)
    assert contact is not None
    # and the worker's scheduler enqueues due jobs again (retries, timed sends)
    wait_for_scheduler(process, data, 60)
    assert process.poll() is None
