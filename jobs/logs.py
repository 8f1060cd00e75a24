"""Log lines: plain text for a person, or one JSON object a line for a machine.

``TRIGGERPOST_LOG_FORMAT=json`` makes every line of a process (ours, RQ's,
gunicorn's, the libraries') a JSON object::

    {"time": "2026-12-07T01:02:03.456789+00:00", "level": "INFO",
     "logger": "jobs.intake.deliveries", "message": "processed delivery 7 ...",
     "shop_id": 3, "delivery_id": 7, "job_id": "8c0f..."}

The ids are those the code at work knows when the line is written, kept in
context variables: the webhook view sets the shop and the delivery, a drain
each delivery it applies, the send pipeline the message and its shop, a
worker the id of the job it runs. They follow the thread (and ``asyncio``
task) that set them, never another request's.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from jobs.settings import LogFormat, Settings

#: the ids a line carries when they are known (``shop_id`` ... in the JSON line)
IDS: dict[str, ContextVar[Any]] = {
    name: ContextVar(f"triggerpost_{name}", default=None)
    for name in ("shop", "delivery", "message", "job")
}

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def ids(**known: object) -> Iterator[None]:
    """While the block runs, lines carry these ids (``shop=3, delivery=7``; None ones
    are left as they were), and those :func:`note` adds inside it. All of them are
    as before afterwards: a thread that serves one request, job or message after
    another carries nothing over."""
    before = {name: variable.get() for name, variable in IDS.items()}
    note(**known)
    try:
        yield
    finally:
        for name, variable in IDS.items():
            variable.set(before[name])


def note(**known: object) -> None:
    """Set ids for the rest of the current context (a request's thread, a job): for
    what is learnt half-way, like a webhook's shop once its signature checked out.
    The :func:`ids` block around it takes them back."""
    for name, value in known.items():
        if value:
            IDS[name].set(value)


def current_ids() -> dict[str, Any]:
    """The ids known here, by their key in a JSON line (``shop_id``, ``message_id`` ...)."""
    return {
        f"{name}_id": value
        for name, variable in IDS.items()
        if (value := variable.get()) is not None
    }


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: time (UTC), level, logger, message, the known ids,
    and the exception with its traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **current_ids(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # default=str: a message's arguments are already in it; nothing else can fail
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(settings: Settings) -> logging.Formatter:
    if settings.log_format is LogFormat.JSON:
        return JsonFormatter()
    return logging.Formatter(PLAIN_FORMAT)


def configure(settings: Settings) -> None:
    """The process's logging: one handler on the root logger, to stderr, in the
    settings' format and level, unless the root logger has handlers already (a
    test's). RQ then adds none of its own (it looks for one)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings))
    logging.basicConfig(level=settings.log_level, handlers=[handler])
