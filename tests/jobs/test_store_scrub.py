"""Emptying SQLite's write-ahead log after an erasure, while readers come and go."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from jobs.store.db import make_engine, truncate_wal

ADDRESS = "astrid.lindqvist@example.se"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[Engine, Path]]:
    """A SQLite database whose log holds a row that was written and then erased."""
    path = tmp_path / "erasure.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE people (email TEXT)")
        connection.exec_driver_sql("INSERT INTO people VALUES (?)", (ADDRESS,))
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE people SET email = NULL")
    yield engine, path
    engine.dispose()


def reading(path: Path) -> sqlite3.Connection:
    """Another process's reader, in the middle of a read transaction on the log."""
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM people").fetchone()
    return reader


def log_of(path: Path) -> bytes:
    return Path(f"{path}-wal").read_bytes()


def test_the_log_is_emptied_and_the_erased_row_is_nowhere_in_the_files(
    database: tuple[Engine, Path],
) -> None:
    engine, path = database
    assert ADDRESS.encode() in log_of(path)

    assert truncate_wal(engine)

    assert log_of(path) == b""
    assert ADDRESS.encode() not in path.read_bytes()  # secure_delete zeroed the old cell


def test_a_reader_that_finishes_between_two_attempts_lets_the_log_be_emptied(
    database: tuple[Engine, Path],
) -> None:
    engine, path = database
    reader = reading(path)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        reader.execute("COMMIT")

    assert truncate_wal(engine, tries=3, sleep=pause)

    assert len(pauses) == 1  # the first attempt found the reader in the log
    assert log_of(path) == b""
    reader.close()


def test_readers_holding_the_log_through_every_attempt_leave_it_and_a_warning(
    database: tuple[Engine, Path], caplog: pytest.LogCaptureFixture
) -> None:
    engine, path = database
    reader = reading(path)
    pauses: list[float] = []

    with caplog.at_level(logging.WARNING, logger="jobs.store.db"):
        assert not truncate_wal(engine, tries=2, sleep=pauses.append)

    assert len(pauses) == 1  # two attempts, one pause between them
    assert ADDRESS.encode() in log_of(path)
    assert "still holds erased data" in caplog.text
    reader.close()
    assert truncate_wal(engine)  # the next checkpoint finds no reader
    assert log_of(path) == b""
