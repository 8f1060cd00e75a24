"""/metrics in one process: what an on-call engineer reads, and who may read it.

The counts live in this test process's memory (no metrics directory here, so
each test compares before and after); tests/connector/test_metrics_processes.py
has them across gunicorn's and RQ's processes.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from connector.app import create_app
from emails.delivery import backend_from_url
from emails.delivery.postmark import API
from jobs import metrics
from jobs.runtime import Runtime
from jobs.sending.courier import EmailCourier
from jobs.sending.pipeline import Composed, PermanentSendError, TransientSendError
from jobs.store.models import Delivery
from tests.emails.test_delivery import outgoing
from tests.jobs.test_send_pipeline import checkout_payload, configure
from tests.support import (
    INSTANT,
    SHOPIFY_SECRET,
    SHOPIFY_SHOP,
    dumps,
    post,
    run_worker,
    shopify_headers,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(client: FlaskClient, **kwargs: Any) -> Samples:
    answer = client.get("/metrics", **kwargs)
    assert answer.status_code == 200, answer.text
    assert answer.content_type.startswith("text/plain; version=0.0.4")
    return samples(answer.text)


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def webhooks(found: Samples, outcome: str) -> float:
    return value(found, "triggerpost_webhook_requests_total", platform="shopify", outcome=outcome)


def signed(body: bytes, webhook_id: str, secret: str = SHOPIFY_SECRET) -> dict[str, str]:
    return shopify_headers("checkouts/update", body, secret, SHOPIFY_SHOP, webhook_id)


def test_an_engineer_reads_the_intake_outcomes_the_backlog_and_its_age(
    client: FlaskClient, runtime: Runtime
) -> None:
    before = scrape(client)
    body = dumps(checkout_payload(datetime.now(UTC) - timedelta(minutes=5)))
    assert post(client, "shopify", body, signed(body, "d-1")).status_code == 200
    assert post(client, "shopify", body, signed(body, "d-1")).status_code == 200  # replayed
    assert post(client, "shopify", body, signed(body, "d-2", "forged")).status_code == 401
    broken = b'{"id": 1,'
    assert post(client, "shopify", broken, signed(broken, "d-3")).status_code == 400
    unknown = {**signed(body, "d-4"), "X-Shopify-Shop-Domain": "nobody.myshopify.com"}
    assert post(client, "shopify", body, unknown).status_code == 401

    after = scrape(client)
    for outcome, more in [
        ("stored", 1),
        ("duplicate", 1),
        ("refused_signature", 1),
        ("malformed", 1),
        ("unknown_shop", 1),
    ]:
        assert webhooks(after, outcome) - webhooks(before, outcome) == more, outcome
    answered = "triggerpost_webhook_answer_seconds_count"
    assert (
        value(after, answered, platform="shopify") - value(before, answered, platform="shopify")
        == 5
    )
    assert value(after, "triggerpost_deliveries_waiting") == 1
    assert value(after, "triggerpost_queue_depth", queue="intake") == 1

    with runtime.sessions.begin() as session:  # it has waited a while now
        session.execute(
            update(Delivery).values(received_at=datetime.now(UTC) - timedelta(seconds=90))
        )
    assert 90 <= value(scrape(client), "triggerpost_drain_lag_seconds") < 120

    run_worker(runtime)
    drained = scrape(client)
    assert value(drained, "triggerpost_deliveries_waiting") == 0
    assert value(drained, "triggerpost_drain_lag_seconds") == 0
    assert value(drained, "triggerpost_queue_depth", queue="intake") == 0


def test_each_send_is_counted_by_flow_and_outcome_with_its_lag_from_due_time(
    client: FlaskClient, runtime: Runtime
) -> None:
    configure(runtime, INSTANT)
    before = scrape(client)
    body = dumps(checkout_payload(datetime.now(UTC) - timedelta(minutes=5)))
    assert post(client, "shopify", body, signed(body, "d-1")).status_code == 200
    run_worker(runtime)
    after = scrape(client)
    sent = {"flow": "cart_recovery", "outcome": "sent", "reason": ""}
    assert (
        value(after, "triggerpost_sends_total", **sent)
        - value(before, "triggerpost_sends_total", **sent)
        == 3
    )
    lag = "triggerpost_send_lag_seconds_count"
    assert value(after, lag) - value(before, lag) == 3
    # the checkout was left 5 minutes ago with no delay: each was due then, not when sent
    within = "triggerpost_send_lag_seconds_bucket"
    assert value(after, within, le="120.0") - value(before, within, le="120.0") == 0
    assert value(after, within, le="600.0") - value(before, within, le="600.0") == 3


def test_a_reason_is_its_code_and_labels_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = metrics._metrics().sends
    metrics.count_send("win_back", "failed:smtp_550: 5.1.1 <anna@example.se> no such user")
    assert counted.labels("win_back", "failed", "smtp_550")._value.get() >= 1
    metrics.count_send("win_back", "skipped:suppressed:bounce")
    assert counted.labels("win_back", "skipped", "suppressed:bounce")._value.get() >= 1
    before = counted.labels("win_back", "skipped", "other")._value.get()
    metrics.count_send("win_back", "skipped:Ärger mit <html>")  # not a code
    monkeypatch.setattr(metrics, "_reasons", {f"r{n}" for n in range(metrics.MAX_REASONS)})
    metrics.count_send("win_back", "skipped:a_new_reason")  # one too many
    assert counted.labels("win_back", "skipped", "other")._value.get() - before == 2
    metrics.count_send("win_back", "taken")  # not a decision: another worker's
    assert ("win_back", "taken", "") not in counted._metrics


@responses.activate
def test_provider_refusals_and_rate_limit_waits_are_counted_by_backend(
    runtime: Runtime,
) -> None:
    responses.post(
        API, status=429, headers={"Retry-After": "7"}, json={"ErrorCode": 429, "Message": "slow"}
    )
    responses.post(API, status=422, json={"ErrorCode": 406, "Message": "inactive recipient"})
    postmark = EmailCourier(runtime, backend_from_url("postmark://token@api.postmarkapp.com"))
    errors = metrics._metrics().provider_errors
    waits = metrics._metrics().rate_limit_wait
    before = {
        kind: errors.labels("postmark", kind)._value.get()
        for kind in ("postmark_429", "postmark_406")
    }
    composed = Composed("anna@example.se", "Hej", "sv", "<m@x>", outgoing())
    with pytest.raises(TransientSendError):
        postmark.deliver(composed)
    with pytest.raises(PermanentSendError):
        postmark.deliver(composed)
    for kind in ("postmark_429", "postmark_406"):
        assert errors.labels("postmark", kind)._value.get() - before[kind] == 1

    runtime.redis.delete("triggerpost:ratelimit:null:None")
    limited = EmailCourier(runtime, backend_from_url("null://?rate=1/m", redis=runtime.redis))
    waited = waits.labels("null")._value.get()
    limited.deliver(composed)  # the bucket's one token
    with pytest.raises(TransientSendError, match="rate_limited"):
        limited.deliver(composed)
    assert 55 < waits.labels("null")._value.get() - waited <= 60
    assert errors.labels("null", "rate_limited")._value.get() == 0  # our wait, not theirs


def test_metrics_are_not_served_beyond_this_machine_by_default(client: FlaskClient) -> None:
    assert client.get("/metrics").status_code == 200  # loopback
    elsewhere = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert elsewhere.status_code == 403
    assert "TRIGGERPOST_METRICS_TOKEN" in elsewhere.json["message"]
    # a reverse proxy on this machine connects from loopback: what it forwards is refused
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        proxied = client.get("/metrics", headers={header: "203.0.113.9"})
        assert proxied.status_code == 403, header
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_with_a_token_only_a_scraper_that_sends_it_reads_the_metrics(runtime: Runtime) -> None:
    settings = dataclasses.replace(runtime.settings, metrics_token="s3cret-scrape-token")
    app = create_app(runtime=dataclasses.replace(runtime, settings=settings))
    with app.test_client() as client:
        far = {"REMOTE_ADDR": "203.0.113.9"}
        refused = client.get("/metrics", environ_base=far)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = {"Authorization": "Bearer s3cret-scrape-tokeN"}
        assert client.get("/metrics", environ_base=far, headers=wrong).status_code == 401
        assert client.get("/metrics").status_code == 401  # loopback needs it too now
        right = {"Authorization": "Bearer s3cret-scrape-token"}
        answer = client.get("/metrics", environ_base=far, headers=right)
        assert answer.status_code == 200
        assert "triggerpost_queue_depth" in answer.text
        assert "Set-Cookie" not in answer.headers
