"""/metrics across processes, as production runs them: gunicorn with two web
processes and an RQ worker of its own, sharing one metrics directory; and
their log lines as JSON."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client.multiprocess import MultiProcessCollector

from jobs.runtime import Runtime
from tests.connector.test_metrics import Samples, samples, value
from tests.connector.test_run import free_port, wait_for
from tests.jobs.test_send_pipeline import checkout_payload, configure, worker_env
from tests.support import INSTANT, SHOPIFY_SECRET, SHOPIFY_SHOP, dumps, shopify_headers

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "connector.cli"]
STORED = ("triggerpost_webhook_requests_total", "stored")


@pytest.fixture
def metrics_env(runtime: Runtime, tmp_path: Path) -> dict[str, str]:
    return {
        **worker_env(runtime),
        "TRIGGERPOST_SHOPIFY_API_SECRET": SHOPIFY_SECRET,  # how the test shop signs
        "TRIGGERPOST_METRICS_DIR": str(tmp_path / "metrics"),
        "TRIGGERPOST_LOG_FORMAT": "json",
    }


@pytest.fixture
def web(metrics_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "web", "--workers", "2", "--port", str(port), "--access-log"],
        env=metrics_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/healthz", 30)
    yield base, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def post_checkout(base: str, body: bytes, webhook_id: str, secret: str = SHOPIFY_SECRET) -> int:
    headers = shopify_headers("checkouts/update", body, secret, SHOPIFY_SHOP, webhook_id)
    # a connection each: gunicorn's processes take turns at accepting
    with requests.Session() as session:
        return session.post(
            f"{base}/webhooks/shopify", data=body, headers=headers, timeout=10
        ).status_code


def scrape(base: str) -> Samples:
    answer = requests.get(f"{base}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    return samples(answer.text)


def stored_per_process(directory: Path) -> dict[str, float]:
    """The webhooks each process counted as stored, from its own file."""
    counted = {}
    for path in directory.glob("counter_*.db"):
        for family in MultiProcessCollector.merge([str(path)]):
            for sample in family.samples:
                if sample.name == STORED[0] and sample.labels.get("outcome") == STORED[1]:
                    counted[path.name] = counted.get(path.name, 0) + sample.value
    return counted


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line, or this fails


def test_counts_from_two_web_processes_and_a_worker_add_up_in_one_scrape(
    client: FlaskClient,
    runtime: Runtime,
    metrics_env: dict[str, str],
    web: tuple[str, subprocess.Popen[str]],
    tmp_path: Path,
) -> None:
    base, server = web
    configure(runtime, INSTANT)
    directory = tmp_path / "metrics"
    body = dumps(checkout_payload(datetime.now(UTC) - timedelta(minutes=5)))
    stored = forged = 0
    with ThreadPoolExecutor(16) as pool:
        # until both processes have answered some (bounded: they share the listening socket)
        for round_ in range(10):
            ids = [f"r{round_}-{n}" for n in range(24)]
            stored += sum(s == 200 for s in pool.map(lambda i: post_checkout(base, body, i), ids))
            forged += sum(
                s == 401 for s in pool.map(lambda i: post_checkout(base, body, i, "x"), ids[:4])
            )
            if len([n for n in stored_per_process(directory).values() if n]) >= 2:
                break
        broken = b'{"id": 1,'
        assert post_checkout(base, broken, "broken-1") == 400
    per_process = stored_per_process(directory)
    assert len([n for n in per_process.values() if n]) == 2, per_process
    found = scrape(base)
    assert value(found, STORED[0], platform="shopify", outcome="stored") == stored
    assert sum(per_process.values()) == stored
    refused = value(found, STORED[0], platform="shopify", outcome="refused_signature")
    assert refused == forged
    answered = value(found, "triggerpost_webhook_answer_seconds_count", platform="shopify")
    assert answered == stored + forged + 1  # and the broken one
    assert value(found, "triggerpost_processes", kind="web") == 2
    assert value(found, "triggerpost_deliveries_waiting") == stored
    assert value(found, "triggerpost_queue_depth", queue="intake") == 1  # one drain for the shop

    # an RQ worker, a process of its own, drains and sends; the web's scrape shows it
    worker = subprocess.run(
        [*CLI, "worker", "--burst", "--no-sweeper"],
        env=metrics_env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr[-3000:]
    found = scrape(base)
    assert value(found, "triggerpost_deliveries_waiting") == 0
    assert value(found, "triggerpost_queue_depth", queue="intake") == 0
    sent = {"flow": "cart_recovery", "outcome": "sent", "reason": ""}
    assert value(found, "triggerpost_sends_total", **sent) == 3  # the three reminders, once
    assert value(found, "triggerpost_send_lag_seconds_count") == 3
    # the worker has ended: out of the live sum, its counts kept
    assert value(found, "triggerpost_processes", kind="worker") == 0

    # the worker's lines: JSON, each job's with its id, each delivery's and email's with theirs
    lines = json_lines(worker.stderr)
    assert {"time", "level", "logger", "message"} <= lines[0].keys()
    applied = [line for line in lines if line["message"].startswith("processed delivery")]
    assert len(applied) == stored
    assert all({"shop_id", "delivery_id", "job_id"} <= line.keys() for line in applied)
    assert all(
        line["message"].startswith(f"processed delivery {line['delivery_id']} ") for line in applied
    )
    mailed = [line for line in lines if line["message"].startswith("message ")]
    assert len(mailed) == 3
    assert all(
        {"shop_id", "message_id", "job_id"} <= line.keys()
        and line["message"].startswith(f"message {line['message_id']} ")
        for line in mailed
    )

    server.send_signal(signal.SIGTERM)
    access, errors = server.communicate(timeout=30)
    assert server.returncode == 0
    web_lines = json_lines(errors) + json_lines(access)  # gunicorn's own lines and its access log
    assert any(line["logger"] == "gunicorn.access" for line in web_lines)
    assert any(line["logger"] == "gunicorn.error" for line in web_lines)
    # a signed but broken body: the warning names the shop it came from
    (malformed,) = [line for line in web_lines if "broken-1" in line["message"]]
    assert malformed["level"] == "WARNING"
    assert malformed["shop_id"] == 1
    # every process that ended was marked dead: no live gauge of theirs is left
    assert list(directory.glob("gauge_livesum_*.db")) == []


def test_log_lines_are_plain_text_unless_json_is_asked_for(
    runtime: Runtime, metrics_env: dict[str, str]
) -> None:
    plain = {k: v for k, v in metrics_env.items() if k != "TRIGGERPOST_LOG_FORMAT"}
    for env, parses in ((plain, False), (metrics_env, True)):
        done = subprocess.run(
            [*CLI, "-v", "migrate"], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert lines, "alembic's lines (-v) expected"
        for line in lines:
            try:
                json.loads(line)
                parsed = True
            except ValueError:
                parsed = False
            assert parsed is parses, line
    assert " INFO alembic" in (
        subprocess.run([*CLI, "-v", "migrate"], env=plain, capture_output=True, text=True).stderr
    )
