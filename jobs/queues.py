"""Redis connection and the RQ queues.

Queues, highest priority first: ``intake`` (turning deliveries into events),
``messages`` (sending, used by the flow engine), ``default`` (everything else).
Workers listen on all three in that order.
"""

from __future__ import annotations

from redis import Redis
from rq import Queue

from jobs.settings import Settings

INTAKE = "intake"
MESSAGES = "messages"
DEFAULT = "default"
ALL_QUEUES = (INTAKE, MESSAGES, DEFAULT)

#: Redis socket timeouts (seconds): an intake request must not hang on a dead Redis
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0


def connect(settings: Settings) -> Redis:
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
    )


def queue(name: str, connection: Redis) -> Queue:
    return Queue(name, connection=connection)
