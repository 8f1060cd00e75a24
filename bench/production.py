"""The production shape under a sustained load: send lag and webhook answer times.

Starts the shape of docs/deploy.md on this machine (tests/production_shape.py:
PostgreSQL, a redis-server on a free port, ``--webs`` web processes and
``--workers`` worker processes under TRIGGERPOST_ENV=production, SMTP on
loopback), registers a few shops whose first emails are due at once, and then
sends ``--rate`` signed webhooks a second for ``--seconds`` (new subscribers and
abandoned carts: one email due per event), paced by the clock and alternating
between the web processes, as a proxy would.

Prints, for the load:

- the lag between each email's due time and its hand-over to the backend:
  from the database (``sent_at - due_at``) and from the SMTP server (when it
  received the message), p50, p99 and the worst;
- the webhook answer time at the client, p50 and p99, against the baseline
  measured in the same run before the load: the same server's bare endpoint
  (``POST /bench/bare``, bench/server.py: gunicorn and Flask alone) at the
  same rate;
- the same two figures from ``GET /metrics`` (``triggerpost_send_lag_seconds``,
  ``triggerpost_webhook_answer_seconds{platform=...}``) when this build serves
  them, from the histograms' buckets, beside the figures above.

It empties the PostgreSQL database it is given (``--database-url``, else
TEST_DATABASE_URL) first. Nothing is asserted: figures, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests
from sqlalchemy import select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.merchant.shops import add_shop
from jobs.settings import Settings
from jobs.shop_settings import replace as replace_settings
from jobs.store.db import make_engine, make_sessions, migrate
from jobs.store.models import Base, Message, MessageState
from jobs.store.secrets import SecretBox
from tests.production_shape import REPO, Shape
from tests.support import FIXTURES, INSTANT, dumps, shopify_headers

#: the first email of each flow due at once, the later ones not during the run
SETTINGS = INSTANT | {
    "flows": {"cart_recovery": {"delay_1_hours": 0, "delay_2_hours": 24, "delay_3_hours": 72}}
}
CUSTOMER = json.loads(
    (FIXTURES / "shopify" / "customers_create__api_2024_10_consent.json").read_text()
)
CHECKOUT = json.loads((FIXTURES / "shopify" / "checkouts_create__customer.json").read_text())


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def event(n: int, shop: int) -> tuple[str, bytes]:
    """The n-th event: a new subscriber (even n: the welcome), then the cart she leaves
    (odd n: cart recovery; she subscribed, so it may go)."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    email = f"b{n - n % 2}@shop{shop}.example.se"
    customer_id = 9_000_000_000 + n - n % 2
    if n % 2 == 0:
        body = CUSTOMER | {
            "id": customer_id,
            "email": email,
            "created_at": stamp,
            "updated_at": stamp,
        }
        body["email_marketing_consent"] = CUSTOMER["email_marketing_consent"] | {
            "consent_updated_at": stamp
        }
        return "customers/create", dumps(body)
    body = CHECKOUT | {
        "token": f"bench{n:08d}",
        "cart_token": f"cart-bench{n:08d}",
        "email": email,
        "buyer_accepts_marketing": True,
        "created_at": stamp,
        "updated_at": stamp,
        "customer": CHECKOUT["customer"] | {"id": customer_id, "email": email},
    }
    return "checkouts/create", dumps(body)


def paced(
    rate: float, seconds: float, send: Callable[[int], float], clients: int = 24
) -> tuple[list[float], float]:
    """``send(i)`` for i in 0..rate*seconds, each at its second on the clock; answer times,
    and the rate achieved."""
    total = int(rate * seconds)
    counter = itertools.count()
    times: list[float] = []
    lock = threading.Lock()
    start = time.monotonic() + 0.2

    def client() -> None:
        while (i := next(counter)) < total:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            took = send(i)
            with lock:
                times.append(took)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times, total / max(time.monotonic() - start, 1e-9)


def histogram_quantiles(metrics: str, name: str, q: tuple[float, ...]) -> list[float] | None:
    """Quantiles from a Prometheus histogram's cumulative buckets (all series summed),
    interpolated within the bucket as Prometheus's histogram_quantile does."""
    buckets: dict[float, float] = {}
    for match in re.finditer(rf"^{name}_bucket\{{([^}}]*)\}} ([0-9.e+-]+)$", metrics, re.M):
        le = re.search(r'le="([^"]+)"', match.group(1))
        if le is None:
            continue
        bound = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
        buckets[bound] = buckets.get(bound, 0.0) + float(match.group(2))
    if not buckets or buckets.get(float("inf"), 0) == 0:
        return None
    bounds = sorted(buckets)
    total = buckets[float("inf")]
    found = []
    for quantile in q:
        rank, lower, below = quantile * total, 0.0, 0.0
        for bound in bounds:
            if buckets[bound] >= rank:
                if bound == float("inf"):
                    found.append(lower)
                else:
                    share = (rank - below) / max(buckets[bound] - below, 1e-9)
                    found.append(lower + (bound - lower) * share)
                break
            lower, below = bound, buckets[bound]
    return found


def read_metrics(base: str) -> str | None:
    headers = {}
    token = os.environ.get("TRIGGERPOST_METRICS_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        answer = requests.get(f"{base}/metrics", headers=headers, timeout=5)
    except requests.RequestException:
        return None
    return answer.text if answer.status_code == 200 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the load [120]")
    parser.add_argument("--rate", type=float, default=100.0, help="events a second [100]")
    parser.add_argument("--webs", type=int, default=2, help="web processes [2]")
    parser.add_argument("--workers", type=int, default=3, help="worker processes [3]")
    parser.add_argument("--shops", type=int, default=4, help="shops the events go to [4]")
    parser.add_argument("--baseline-seconds", type=float, default=10.0, help="[10]")
    parser.add_argument("--drain-seconds", type=float, default=180.0, help="most to wait after")
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url or not args.database_url.startswith("postgresql"):
        parser.error("production runs on PostgreSQL: --database-url or TEST_DATABASE_URL")

    migrate(args.database_url)
    engine = make_engine(args.database_url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))

    where = Path(tempfile.mkdtemp(prefix="triggerpost-production-"))
    shape = Shape(
        database_url=args.database_url,
        where=where,
        webs=args.webs,
        workers=args.workers,
        web_command=[sys.executable, str(REPO / "bench" / "server.py")],
        sweep_interval=5,
    )
    print(f"load average (1, 5, 15 min) before the run: {os.getloadavg()} on {os.cpu_count()} CPUs")
    print(
        f"production shape: {args.webs} web processes (1 gunicorn process x 16 threads each), "
        f"{args.workers} workers, PostgreSQL, redis-server, SMTP on loopback; logs in {where}"
    )
    try:
        shape.start()
        settings = Settings.from_env(shape.environment())
        shops = []
        with make_sessions(engine).begin() as session:
            for n in range(args.shops):
                secret = f"bench-secret-{n}-0123456789"
                shop = add_shop(
                    session,
                    SecretBox(settings.secret_key),
                    "shopify",
                    f"bench-{n}.myshopify.com",
                    webhook_secret=secret,
                    timezone="Europe/Stockholm",
                )
                replace_settings(session, shop, SETTINGS)
                shops.append((shop.key, secret))
        bases = shape.bases

        # a connection per request, as the platforms make them
        def bare(i: int) -> float:
            _topic, body = event(10_000_000 + i, 0)
            started = time.perf_counter()
            with contextlib.suppress(requests.RequestException):
                requests.post(f"{bases[i % len(bases)]}/bench/bare", data=body, timeout=30)
            return time.perf_counter() - started

        refused: list[int] = []

        def webhook(i: int) -> float:
            # an event and the one after it go to the same shop (a subscriber, her cart)
            shop = (i // 2) % len(shops)
            key, secret = shops[shop]
            topic, body = event(i, shop)
            headers = shopify_headers(topic, body, secret, key, f"bench-{i}")
            started = time.perf_counter()
            try:
                status = requests.post(
                    f"{bases[i % len(bases)]}/webhooks/shopify",
                    data=body,
                    headers=headers,
                    timeout=30,
                ).status_code
            except requests.RequestException:
                status = 0
            took = time.perf_counter() - started
            if status != 200:
                refused.append(status)
            return took

        print(f"baseline: the bare endpoint at {args.rate:.0f}/s for {args.baseline_seconds:.0f} s")
        baseline, baseline_rate = paced(args.rate, args.baseline_seconds, bare)
        print(f"load: signed webhooks at {args.rate:.0f}/s for {args.seconds:.0f} s")
        answers, achieved = paced(args.rate, args.seconds, webhook)
        load_ended = time.monotonic()

        due_states = (MessageState.PLANNED, MessageState.SENDING, MessageState.HANDED)
        while time.monotonic() - load_ended < args.drain_seconds:
            with make_sessions(engine)() as session:
                waiting = session.scalar(
                    select(text("count(*)"))
                    .select_from(Message)
                    .where(Message.state.in_(due_states), Message.due_at <= datetime.now(UTC))
                )
            if not waiting:
                break
            time.sleep(1)
        drained = time.monotonic() - load_ended
        time.sleep(1)
        with make_sessions(engine)() as session:
            rows = session.execute(
                select(
                    Message.due_at, Message.sent_at, Message.message_id_header, Message.state
                ).where(Message.due_at <= datetime.now(UTC))  # the run's emails due by now
            ).all()
        metrics = read_metrics(bases[0])

        ended = datetime.now(UTC)
        backlog = [(ended - r.due_at).total_seconds() for r in rows if r.state != MessageState.SENT]
        received = dict(zip(shape.mailbox.message_ids, shape.mailbox.received_at, strict=True))
        sent = [r for r in rows if r.state == MessageState.SENT]
        db_lags = [(r.sent_at - r.due_at).total_seconds() for r in sent if r.sent_at]
        smtp_lags = [
            received[r.message_id_header] - r.due_at.timestamp()
            for r in sent
            if r.message_id_header in received
        ]
        print()
        states = ", ".join(f"{state} {n}" for state, n in Counter(r.state for r in rows).items())
        print(f"load average (1, 5, 15 min) after the run: {os.getloadavg()}")
        print(
            f"events sent: {len(answers)} at {achieved:.1f}/s achieved "
            f"({len(refused)} not answered 200); emails due: {len(rows)}, sent: {len(sent)}, "
            f"at the SMTP server: {len(received)}; "
            + (
                f"every due email sent {drained:.0f} s after the load"
                if not backlog
                else f"{len(backlog)} still due when the wait ended, {drained:.0f} s after the "
                f"load (their lag so far: {min(backlog):.0f} s to {max(backlog):.0f} s; "
                "the figures below count only the emails sent)"
            )
        )
        print(f"the due emails now: {states}")
        print(
            f"send lag, due -> handed to the backend (database, sent_at): "
            f"p50 {percentile(db_lags, 50):.2f} s, p99 {percentile(db_lags, 99):.2f} s, "
            f"worst {max(db_lags, default=float('nan')):.2f} s"
        )
        print(
            f"send lag, due -> received by the SMTP server:                "
            f"p50 {percentile(smtp_lags, 50):.2f} s, p99 {percentile(smtp_lags, 99):.2f} s"
        )
        p50, p99 = percentile(answers, 50) * 1000, percentile(answers, 99) * 1000
        b50, b99 = percentile(baseline, 50) * 1000, percentile(baseline, 99) * 1000
        print(f"webhook answer time (client): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        print(
            f"baseline, bare endpoint (client, {baseline_rate:.0f}/s): p50 {b50:.1f} ms, "
            f"p99 {b99:.1f} ms; ratio p99 {p99 / b99:.1f}x, p50 {p50 / b50:.1f}x"
        )
        if metrics is None:
            print("/metrics: not served by this build (figures above from the database and client)")
        else:
            lag = histogram_quantiles(metrics, "triggerpost_send_lag_seconds", (0.5, 0.99))
            answer = histogram_quantiles(metrics, "triggerpost_webhook_answer_seconds", (0.99,))
            print(
                "/metrics (every process's counts; buckets interpolated): "
                + (f"send lag p50 {lag[0]:.2f} s, p99 {lag[1]:.2f} s" if lag else "no send lag")
                + "; "
                + (f"webhook answer p99 {answer[0] * 1000:.1f} ms" if answer else "no answers")
            )
        mean = statistics.mean(db_lags) if db_lags else float("nan")
        print(f"(mean send lag {mean:.2f} s; the processes' logs in {where})")
    finally:
        shape.stop()
        engine.dispose()


if __name__ == "__main__":
    main()
