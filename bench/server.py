"""The web server exactly as ``triggerpost web`` runs it, plus a bare baseline route.

``POST /bench/bare`` reads the body and answers 200: what gunicorn and Flask
cost on their own, measured on the same server as the real intake. Settings
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
from connector.web import DEFAULT_WORKERS, WebServer, options
from jobs.settings import Settings


def bench_app(settings: Settings) -> Flask:
    app = create_app(settings)

    @app.post("/bench/bare")
    def bare() -> tuple[dict[str, str], int]:
        request.get_data()
        return {"status": "ok"}, 200

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--stock-worker", action="store_true")
    args = parser.parse_args()
    settings = Settings.from_env()
    web = options(settings, port=args.port, workers=args.workers)
    if args.stock_worker:
        web["worker_class"] = "gthread"
    WebServer(settings, web, factory=bench_app).run()
