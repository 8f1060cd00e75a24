"""Log lines: plain for a person by default, JSON with the ids an engineer searches by."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from jobs import logs
from jobs.settings import LogFormat, Settings, SettingsError


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    return logging.LogRecord(
        "jobs.sending.pipeline",
        logging.WARNING,
        __file__,
        1,
        message,
        args,
        (type(exc), exc, exc.__traceback__) if exc else None,
    )


def test_lines_are_plain_text_unless_json_is_asked_for() -> None:
    assert Settings.from_env({}).log_format is LogFormat.PLAIN
    plain = logs.formatter(Settings.from_env({})).format(record("message %s: sent", 7))
    assert plain.endswith(" WARNING jobs.sending.pipeline: message 7: sent")
    chosen = Settings.from_env({"TRIGGERPOST_LOG_FORMAT": "JSON"})
    assert isinstance(logs.formatter(chosen), logs.JsonFormatter)
    with pytest.raises(SettingsError, match="TRIGGERPOST_LOG_FORMAT must be one of plain, json"):
        Settings.from_env({"TRIGGERPOST_LOG_FORMAT": "xml"})


def test_a_json_line_carries_the_ids_known_where_it_was_written() -> None:
    formatter = logs.JsonFormatter()
    with logs.ids(shop=3, message=41):
        with logs.ids(job="8c0f-job"):
            logs.note(delivery=7)
            inner = json.loads(
                formatter.format(record("message %s (%s): %s", 41, "win_back", "sent"))
            )
        outer = json.loads(formatter.format(record("between jobs")))
    after = json.loads(formatter.format(record("done")))
    assert inner["message"] == "message 41 (win_back): sent"
    assert inner["level"] == "WARNING"
    assert inner["logger"] == "jobs.sending.pipeline"
    assert inner["time"].endswith("+00:00")
    assert (inner["shop_id"], inner["message_id"], inner["job_id"], inner["delivery_id"]) == (
        3, 41, "8c0f-job", 7,
    )  # fmt: skip
    # what a block learnt goes with it: the next job, request or email starts clean
    assert {k for k in outer if k.endswith("_id")} == {"shop_id", "message_id"}
    assert not any(k.endswith("_id") for k in after)


def test_a_json_line_is_one_line_whatever_the_message_and_its_exception_hold() -> None:
    try:
        raise ValueError('a body with\nnewlines and "quotes" and ünïcode')
    except ValueError as exc:
        line = logs.JsonFormatter().format(record("delivery %s failed:\n%r", 7, exc, exc=exc))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"].startswith("delivery 7 failed:\n")
    assert "Traceback" in parsed["exception"]
    assert "ValueError" in parsed["exception"]


def test_one_thread_never_sees_another_threads_ids() -> None:
    seen: dict[str, object] = {}
    started, checked = threading.Event(), threading.Event()

    def other() -> None:
        with logs.ids(shop=99):
            started.set()
            checked.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    started.wait(5)
    seen.update(logs.current_ids())
    checked.set()
    thread.join()
    assert seen == {}
