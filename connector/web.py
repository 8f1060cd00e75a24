"""``triggerpost web``: the Flask app under gunicorn."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from connector.app import create_app
from jobs.settings import Settings

#: sync workers answer a webhook in a few milliseconds; two per core keeps both
#: cores busy while one waits on the database or Redis
DEFAULT_WORKERS = max(2, 2 * (os.cpu_count() or 1))


class WebServer(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # called in each worker after the fork: every worker gets its own
        # database pool and Redis connection
        return create_app(self.settings)


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = DEFAULT_WORKERS,
    access_log: bool = False,
) -> None:
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
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
    WebServer(settings, options).run()
