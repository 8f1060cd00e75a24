"""The web server exactly as ``triggerpost web`` runs it, plus a bare baseline route.

``POST /bench/bare`` reads the body and answers 200: what gunicorn and Flask
cost on their own, measured on the same server as the real intake;
``POST /bench/bare-events/<platform>/<key>`` the same for storefront events
(202, nothing done). The storefront intake's rate limits are still counted in
Redis for every request, but set so high that one loopback address never
reaches them. Settings
come from the TRIGGERPOST_* environment, as for ``triggerpost web``.
``--stock-worker`` runs gunicorn's own gthread worker instead of ours (which
buffers each request before a thread takes it), for comparison.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flask import Flask, request

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connector.app import create_app
from connector.storefront import LIMITER, RateLimiter, RateLimits
from connector.web import DEFAULT_WORKERS, WebServer, options
from jobs import metrics
from jobs.settings import Settings


def bench_app(settings: Settings) -> Flask:
    app = create_app(settings)

    @app.post("/bench/bare")
    def bare() -> tuple[dict[str, str], int]:
        request.get_data()
        return {"status": "ok"}, 200

    @app.post("/bench/bare-events/<platform>/<key>")
    def bare_events(platform: str, key: str) -> tuple[dict[str, int], int]:
        request.get_data()
        return {"accepted": 1}, 202

    limiter = app.extensions[LIMITER]
    unlimited = RateLimits(per_ip=10**9, per_shop=10**9)
    app.extensions[LIMITER] = RateLimiter(limiter.runtime, unlimited)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--stock-worker", action="store_true")
    args = parser.parse_args()
    settings = Settings.from_env()
    if settings.metrics_dir is not None:  # as connector.web.serve: /metrics sees every process
        metrics.use_directory(settings.metrics_dir)
    web = options(settings, port=args.port, workers=args.workers)
    if args.stock_worker:
        web["worker_class"] = "gthread"
    WebServer(settings, web, factory=bench_app).run()
