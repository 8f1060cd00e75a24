"""What counting costs a webhook and a send: jobs.metrics in multiprocess mode.

Times, in one process with a metrics directory (as ``triggerpost web`` and
``worker`` run), what the webhook view adds to each answer (a counter and a
histogram) and what the send pipeline adds to each send (a counter, a
histogram, a JSON log line to /dev/null), against the same loop without them,
and a scrape that adds up the files of N processes. Figures only.

    .venv/bin/python bench/metrics.py [--calls 200000] [--processes 8]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def per_call(loop: object, calls: int) -> float:
    started = time.perf_counter()
    loop(calls)  # type: ignore[operator]
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--processes", type=int, default=8)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="triggerpost-bench-metrics-"))

    from jobs import logs, metrics

    metrics.use_directory(directory)
    outcome = metrics.WebhookOutcome.STORED

    def baseline(n: int) -> None:
        for _ in range(n):
            time.perf_counter()

    def webhook(n: int) -> None:
        for _ in range(n):
            metrics.count_webhook("shopify", outcome, time.perf_counter() - 0.001)

    log = logging.getLogger("bench.send")
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    handler.setFormatter(logs.JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    def send(n: int) -> None:
        for i in range(n):
            with logs.ids(message=i, shop=3):
                metrics.observe_send_lag(0.2)
                metrics.count_send("cart_recovery", "sent")
                log.info("message %s (%s %s): %s", i, "cart_recovery", "email_1", "sent")

    base = per_call(baseline, args.calls)
    hook = per_call(webhook, args.calls)
    sent = per_call(send, args.calls // 4)
    print(f"baseline loop:          {base:7.2f} us a call")
    print(f"webhook counted:        {hook:7.2f} us a call ({hook - base:.2f} us added)")
    print(f"send counted + logged:  {sent:7.2f} us a call ({sent - base:.2f} us added)")

    # other processes' files, as gunicorn's and the workers' would be
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from jobs import metrics\n"
        "for flow in ('cart_recovery', 'welcome', 'win_back', 'review_request'):\n"
        "    for reason in ('', 'no_consent', 'quiet_hours', 'cap:weekly'):\n"
        "        metrics.count_send(flow, 'skipped:' + reason if reason else 'sent')\n"
        "metrics.count_webhook('shopify', metrics.WebhookOutcome.STORED, 0.01)\n"
    )
    env = {**os.environ, metrics.DIRECTORY_VARIABLE: str(directory)}
    for _ in range(args.processes):
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    rounds = 50
    started = time.perf_counter()
    for _ in range(rounds):
        text = generate_latest(registry)
    scrape = (time.perf_counter() - started) / rounds * 1000
    files = len(list(directory.glob("*.db")))
    print(
        f"scrape of {files} files ({args.processes + 1} processes): {scrape:.2f} ms, "
        f"{len(text)} bytes (the state gauges' queries not included)"
    )


if __name__ == "__main__":
    main()
