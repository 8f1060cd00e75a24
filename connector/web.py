"""``triggerpost web``: the Flask app under gunicorn."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from connector.app import create_app
from jobs.settings import Settings

#: one process per core, each with THREADS request threads: the threads of a
#: process share one intake writer, so concurrent deliveries share a commit
#: (see jobs.intake_writer); measured with bench/intake.py
DEFAULT_WORKERS = max(2, os.cpu_count() or 1)
THREADS = 16


class WebServer(BaseApplication):
    def __init__(
        self,
        settings: Settings,
        options: dict[str, Any],
        factory: Callable[[Settings], Flask] = create_app,
    ) -> None:
        self.settings = settings
        self.options = options
        self.factory = factory
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # called in each worker after the fork: every worker gets its own
        # database pool and Redis connection
        return self.factory(self.settings)


def options(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = DEFAULT_WORKERS,
    access_log: bool = False,
) -> dict[str, Any]:
    """gunicorn's configuration for ``triggerpost web`` (the benchmark uses it too)."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": THREADS,
        # Shopify gives us 5 s to answer; a request still running after 30 s is stuck
        "timeout": 30,
        "graceful_timeout": 10,
        "loglevel": settings.log_level.lower(),
        "accesslog": "-" if access_log else None,
        "proc_name": "triggerpost-web",
        # gunicorn's runtime control socket would live in the user's home; we
        # manage the server by signals, as every process manager does
        "control_socket_disable": True,
    }


def serve(settings: Settings, **kwargs: Any) -> None:
    WebServer(settings, options(settings, **kwargs)).run()
