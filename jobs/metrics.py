"""What the service counts, for ``/metrics`` (Prometheus text, prometheus_client).

Counted where it happens, by the helpers below (each a line at its place):

=============================================  =================================================
``triggerpost_webhook_requests_total``         {platform, outcome}: every webhook answered
                                               (:class:`WebhookOutcome`), connector/webhooks.py
``triggerpost_webhook_answer_seconds``         {platform}: from the view's start to its answer
``triggerpost_storefront_events_total``        {outcome}: storefront events (count_storefront)
``triggerpost_sends_total``                    {flow, outcome, reason}: each send decided:
                                               sent, skipped, deferred, exited, expired,
                                               cancelled, retrying, failed, with the reason
                                               code (jobs/engine/guards.py; a provider's code
                                               without its text), jobs/sending/pipeline.py
``triggerpost_send_lag_seconds``               a message's due time to its hand-over to the
                                               delivery backend
``triggerpost_provider_errors_total``          {backend, kind}: a backend refused (kind: its
                                               reason code, ``smtp_451``, ``postmark_429``)
``triggerpost_rate_limit_wait_seconds_total``  {backend}: the waits the token bucket asked for
``triggerpost_processes``                      {kind}: the processes counting (web, worker)
=============================================  =================================================

And read at scrape time (:class:`StateCollector`), not counted:
``triggerpost_queue_depth`` {queue} (jobs waiting in each RQ queue),
``triggerpost_deliveries_waiting`` and ``triggerpost_drain_lag_seconds`` (the age of
the oldest stored delivery not drained yet), one indexed query.

Several processes count: gunicorn's workers, RQ workers (and a fork worker's
children). Each keeps its counts in files of its own in one directory shared
by the processes of a machine (prometheus_client's multiprocess mode,
:func:`use_directory`, which ``triggerpost run``, ``web`` and ``worker`` call
at start), and ``/metrics`` adds them up. A process that ends takes its live
gauges with it (:func:`mark_dead`); its counts stay in the sum. A process
that was not given a directory (a test, the simulator) counts in memory.

Label values are bounded: platforms and flows are declared, outcomes and
reasons are codes, and a reason is cut to its code and to :data:`MAX_REASONS`
distinct values a process (the rest are ``other``).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from jobs.queues import ALL_QUEUES
from jobs.store.models import Delivery, DeliveryStatus, now

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.metrics_core import Metric

    from jobs.runtime import Runtime

log = logging.getLogger(__name__)

#: prometheus_client's own variable: set, every metric of the process is kept in files there
DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: a webhook's answer: most within milliseconds (one group commit), the platforms wait 5 s
ANSWER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: due to handed over: a drain picks a message up within a second, a backlog or a
#: retry takes minutes, past an hour something is wrong
SEND_LAG_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0
)  # fmt: skip
#: distinct reason codes a process labels before the rest are ``other``
MAX_REASONS = 200
#: what a reason code may look like (guards' codes, a provider's ``smtp_550``)
REASON = re.compile(r"[a-z0-9_.:-]{1,64}")


class WebhookOutcome(StrEnum):
    """How a webhook was answered (connector/webhooks.py has the order of checks)."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"  # a topic on the platform's ignore list
    UNSUPPORTED = "unsupported"  # a topic we do not know
    PING = "ping"
    REFUSED_HEADERS = "refused_headers"  # identity headers missing or wrong
    UNKNOWN_SHOP = "unknown_shop"
    REFUSED_SIGNATURE = "refused_signature"
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"  # a content type other than JSON
    MALFORMED = "malformed"


class SendOutcome(StrEnum):
    """The first word of what :func:`jobs.sending.pipeline.run` records."""

    SENT = "sent"
    SKIPPED = "skipped"
    DEFERRED = "deferred"
    EXITED = "exited"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    RETRYING = "retrying"
    FAILED = "failed"


class ProcessKind(StrEnum):
    WEB = "web"
    WORKER = "worker"


@dataclass(frozen=True)
class _Metrics:
    registry: CollectorRegistry
    #: where the counts are kept (None: in this process's memory)
    directory: Path | None
    webhook_requests: Counter
    webhook_answer: Histogram
    storefront_events: Counter
    sends: Counter
    send_lag: Histogram
    provider_errors: Counter
    rate_limit_wait: Counter
    processes: Gauge


_built: _Metrics | None = None
_lock = threading.Lock()
_reasons: set[str] = set()


def use_directory(directory: Path) -> None:
    """Keep this process's counts in ``directory``, shared with the other processes of
    the machine (and inherited by those it starts). Call it before anything is counted."""
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[DIRECTORY_VARIABLE] = str(directory)


def directory() -> Path | None:
    value = os.environ.get(DIRECTORY_VARIABLE)
    return Path(value) if value else None


def _metrics() -> _Metrics:
    global _built
    if _built is not None:
        return _built
    with _lock:
        if _built is None:
            _built = _build()
        return _built


def _build() -> _Metrics:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

    if directory() is not None and not getattr(values.ValueClass, "_multiprocess", False):
        # prometheus_client chooses how values are kept when it is first imported;
        # the directory may have been given after that (it is a setting)
        values.ValueClass = values.get_value_class()
    registry = CollectorRegistry(auto_describe=True)
    return _Metrics(
        registry=registry,
        directory=directory(),
        webhook_requests=Counter(
            "triggerpost_webhook_requests",
            "Webhooks answered, by platform and outcome",
            ["platform", "outcome"],
            registry=registry,
        ),
        webhook_answer=Histogram(
            "triggerpost_webhook_answer_seconds",
            "Seconds from a webhook reaching the app to its answer",
            ["platform"],
            buckets=ANSWER_BUCKETS,
            registry=registry,
        ),
        storefront_events=Counter(
            "triggerpost_storefront_events",
            "Storefront events answered, by outcome",
            ["outcome"],
            registry=registry,
        ),
        sends=Counter(
            "triggerpost_sends",
            "Sends decided, by flow, outcome and reason code",
            ["flow", "outcome", "reason"],
            registry=registry,
        ),
        send_lag=Histogram(
            "triggerpost_send_lag_seconds",
            "Seconds from a message's due time to its hand-over to the delivery backend",
            buckets=SEND_LAG_BUCKETS,
            registry=registry,
        ),
        provider_errors=Counter(
            "triggerpost_provider_errors",
            "Refusals by the delivery backend, by backend and reason code",
            ["backend", "kind"],
            registry=registry,
        ),
        rate_limit_wait=Counter(
            "triggerpost_rate_limit_wait_seconds",
            "Seconds the sending rate limit (token bucket) asked sends to wait",
            ["backend"],
            registry=registry,
        ),
        processes=Gauge(
            "triggerpost_processes",
            "Processes of this machine counting, by kind",
            ["kind"],
            multiprocess_mode="livesum",
            registry=registry,
        ),
    )


def reason_code(reason: str) -> str:
    """A reason as a label: its code without the text a provider adds
    (``smtp_550: mailbox unavailable`` -> ``smtp_550``), bounded in kind and number."""
    code = reason.split(": ", 1)[0].split(" ", 1)[0].lower()
    if not REASON.fullmatch(code):
        return "other"
    if code not in _reasons:
        if len(_reasons) >= MAX_REASONS:
            return "other"
        _reasons.add(code)
    return code


# --- counted where it happens ------------------------------------------------------


# a labelled child found once: ``labels()`` costs more than the count itself (bench/metrics.py)


@functools.cache
def _webhook(platform: str, outcome: WebhookOutcome) -> tuple[Any, Any]:
    metrics = _metrics()
    return (
        metrics.webhook_requests.labels(platform, outcome.value),
        metrics.webhook_answer.labels(platform),
    )


@functools.lru_cache(maxsize=4 * MAX_REASONS)
def _send(flow: str, outcome: SendOutcome, reason: str) -> Any:
    return _metrics().sends.labels(flow, outcome.value, reason)


def count_webhook(platform: str, outcome: WebhookOutcome, seconds: float) -> None:
    requests, answer = _webhook(platform, outcome)
    requests.inc()
    answer.observe(seconds)


def count_storefront(outcome: str, events: int = 1) -> None:
    """Storefront events answered (``stored``, ``refused_key``, ``malformed`` ...): a
    stored batch counts its events, a refused request counts one."""
    _metrics().storefront_events.labels(reason_code(outcome)).inc(events)


def count_send(flow: str, recorded: str) -> None:
    """A send's outcome as the pipeline records it (``sent``, ``skipped:no_consent``,
    ``failed:smtp_550: ...``); what is not a decision (``taken``, ``not_due``) is not
    counted."""
    word, _, reason = recorded.partition(":")
    try:
        outcome = SendOutcome(word)
    except ValueError:
        return
    _send(flow, outcome, reason_code(reason) if reason else "").inc()


def observe_send_lag(seconds: float) -> None:
    _metrics().send_lag.observe(max(0.0, seconds))


def count_provider_error(backend: str, reason: str) -> None:
    _metrics().provider_errors.labels(backend, reason_code(reason)).inc()


def count_rate_limit_wait(backend: str, seconds: float) -> None:
    _metrics().rate_limit_wait.labels(backend).inc(max(0.0, seconds))


def process_started(kind: ProcessKind) -> None:
    """This process counts (a live gauge: gone from the sum when :func:`mark_dead`)."""
    _metrics().processes.labels(kind.value).inc()


def mark_dead(pid: int, path: Path | None = None) -> None:
    """A process of the directory (this process's, or ``path``) ended: its live gauges
    leave the sum (its counts stay)."""
    path = path or directory()
    if path is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(path))


# --- read at scrape time -----------------------------------------------------------


class StateCollector:
    """The gauges read when ``/metrics`` is asked: queue depths, the drain's backlog."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        """Each gauge that can be read; one whose source does not answer is left out
        (and logged): the counts are still worth a scrape."""
        from prometheus_client.core import GaugeMetricFamily

        try:
            depths = [(name, self.runtime.queue(name).count) for name in ALL_QUEUES]
        except RedisError as exc:
            log.warning("metrics: queue depths not read: %s", exc)
        else:
            depth = GaugeMetricFamily(
                "triggerpost_queue_depth", "Jobs waiting in each RQ queue", labels=["queue"]
            )
            for name, count in depths:
                depth.add_metric([name], count)
            yield depth
        try:
            waiting, oldest = self._deliveries_waiting()
        except SQLAlchemyError as exc:
            log.warning("metrics: deliveries waiting not read: %s", exc)
            return
        yield GaugeMetricFamily(
            "triggerpost_deliveries_waiting",
            "Deliveries stored and not drained yet",
            value=waiting,
        )
        lag = (now() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "triggerpost_drain_lag_seconds",
            "Age of the oldest delivery stored and not drained yet",
            value=max(0.0, lag),
        )

    def _deliveries_waiting(self) -> tuple[int, Any]:
        # ix_deliveries_status_received_at: only the received ones are read
        with self.runtime.reads() as session:
            count, oldest = session.execute(
                select(func.count(), func.min(Delivery.received_at)).where(
                    Delivery.status == DeliveryStatus.RECEIVED
                )
            ).one()
        return int(count), oldest


def exposition(runtime: Runtime) -> bytes:
    """The text ``/metrics`` answers: every process's counts, then the state of now."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    path = _metrics().directory
    if path is not None:
        counted = CollectorRegistry()
        MultiProcessCollector(counted, path=str(path))
    else:
        counted = _metrics().registry
    state = CollectorRegistry()
    state.register(StateCollector(runtime))
    return generate_latest(counted) + generate_latest(state)
