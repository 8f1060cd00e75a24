"""Engines, sessions and migrations for SQLite and PostgreSQL.

SQLite runs in WAL mode with ``synchronous=FULL`` (a commit survives power
loss, which is what "stored before we answer 200" promises) and every
transaction begins IMMEDIATE: processes that read then write would otherwise
fail with "database is locked" instead of waiting their turn. Sessions that
only read (:func:`make_read_sessions`) begin DEFERRED and take no write lock.

Writers queue on an advisory file lock beside the database before they
begin: SQLite's own busy handler sleeps in growing steps (1, 2, 5 .. 100 ms)
and so leaves the database idle between two writers' turns; a writer waiting
on the file lock takes its turn within two milliseconds.

Erased data must not outlive its erasure in the files. SQLite runs with
``secure_delete=ON`` (freed cells and pages are overwritten with zeros; some
builds default to it, others not), and :func:`scrub` empties the write-ahead
log after an erasure is committed: the log still holds the pages as they were
before, until it is truncated. On PostgreSQL :func:`scrub` vacuums the tables
the erasure wrote to; what that does and does not remove is in the README
(Privacy webhooks).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    create_engine,
    delete,
    event,
    inspect,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapper, Session, make_transient_to_detached, sessionmaker

from jobs.store import queries

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")

Row = TypeVar("Row")


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": BUSY_TIMEOUT, "factory": _WriterQueueConnection}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return create_engine(url, pool_pre_ping=True, **kwargs)


BUSY_TIMEOUT = 30
#: a waiting writer looks at the file lock again after this, doubling up to the
#: most (so a crowd of waiting web threads does not keep a core busy)
WRITER_POLL = 0.0002
WRITER_POLL_MOST = 0.002


class _WriterQueueConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions hold the database's writer lock
    file from BEGIN IMMEDIATE to COMMIT or ROLLBACK (see the module docstring)."""

    _lock_fd: int | None = None
    _no_lock_file = False
    _holding = False

    def take_writer_turn(self) -> None:
        if self._no_lock_file:
            return
        if self._lock_fd is None:
            path = self.execute("PRAGMA database_list").fetchone()[2]
            if not path:
                self._no_lock_file = True  # in memory: one connection, nobody to queue with
                return
            try:
                # readable and writable by whoever may write the database itself
                mode = os.stat(path).st_mode & 0o666
                self._lock_fd = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, mode)
            except OSError as exc:
                log.warning("no SQLite writer lock file (%s): SQLite's own waits only", exc)
                self._no_lock_file = True
                return
        deadline = time.monotonic() + BUSY_TIMEOUT
        pause = WRITER_POLL
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._holding = True
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    # leave it to SQLite's busy timeout, which fails loudly
                    log.warning("waited %s s for the SQLite writer lock", BUSY_TIMEOUT)
                    return
                time.sleep(pause)
                pause = min(pause * 2, WRITER_POLL_MOST)

    def end_writer_turn(self) -> None:
        if self._holding and self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._holding = False

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.end_writer_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.end_writer_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.end_writer_turn()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # let SQLAlchemy's "begin" event issue BEGIN itself (see _sqlite_begin)
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT * 1000}")
    cursor.close()


#: an execution option marking an engine whose transactions only read
READ_ONLY = "triggerpost_read_only"


def _sqlite_begin(connection: Any) -> None:
    # a reader takes no write lock (WAL lets it read beside the one writer)
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
        return
    raw = connection.connection.dbapi_connection
    raw.take_writer_turn()
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        raw.end_writer_turn()
        raise


#: attempts at emptying the write-ahead log while readers still use it, the pause
#: between two, and how long (ms) one attempt waits for the readers to finish
CHECKPOINT_TRIES = 10
CHECKPOINT_PAUSE = 0.05
CHECKPOINT_WAIT_MS = 100


def scrub(engine: Engine, tables: Iterable[str]) -> bool:
    """Remove what committed erasures left readable in the database's files; True if done.

    Call it after the commit, outside any transaction. SQLite: the write-ahead
    log is checkpointed and truncated (:func:`truncate_wal`); the database file
    itself was zeroed as the rows changed (``secure_delete``). PostgreSQL: the
    ``tables`` are vacuumed (:func:`vacuum`). Failures are logged, not raised:
    the erasure itself is committed and must not be undone or repeated for them.
    """
    if engine.dialect.name == "sqlite":
        return truncate_wal(engine)
    if engine.dialect.name == "postgresql":
        return vacuum(engine, tables)
    return False


def truncate_wal(
    engine: Engine,
    *,
    tries: int = CHECKPOINT_TRIES,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Copy the write-ahead log into the database and cut it to zero bytes; True if done.

    ``wal_checkpoint(TRUNCATE)`` has to wait until no reader uses the log (a
    reader's snapshot may still need the old pages). Each attempt waits a
    little for them, in the writers' queue (so writers wait for it, not
    SQLite's busy sleeps); between attempts writers and readers go on. If
    readers hold the log through every attempt, the log keeps the erased
    pages until a later checkpoint, and a warning says so.
    """
    raw = engine.raw_connection()
    try:
        connection = raw.driver_connection
        assert isinstance(connection, _WriterQueueConnection)
        for attempt in range(tries):
            if attempt:
                sleep(CHECKPOINT_PAUSE)
            connection.take_writer_turn()
            try:
                connection.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
                busy, _frames, _copied = connection.execute(
                    "PRAGMA wal_checkpoint(TRUNCATE)"
                ).fetchone()
            except sqlite3.OperationalError as exc:
                log.info("write-ahead log checkpoint, attempt %d: %s", attempt + 1, exc)
                busy = 1
            finally:
                connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT * 1000}")
                connection.end_writer_turn()
            if not busy:
                return True
        log.warning(
            "readers kept the SQLite write-ahead log in use through %d attempts: it still "
            "holds erased data until the next checkpoint that can truncate it "
            "(run PRAGMA wal_checkpoint(TRUNCATE) when the service is idle)",
            tries,
        )
        return False
    finally:
        raw.close()


def vacuum(engine: Engine, tables: Iterable[str]) -> bool:
    """VACUUM each of ``tables`` (PostgreSQL), index entries included; True if all were.

    A VACUUM cannot run inside a transaction, so this takes a connection of
    its own in autocommit mode. ``INDEX_CLEANUP ON``: by default a VACUUM that
    finds few dead rows may leave the index entries pointing at them (and an
    index on an address holds the address). It takes no lock that stops reads
    or writes; it waits for another VACUUM of the same table.
    """
    done = True
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        quote = connection.dialect.identifier_preparer.quote
        for table in sorted(set(tables)):
            try:
                connection.exec_driver_sql(f"VACUUM (INDEX_CLEANUP ON) {quote(table)}")
            except DBAPIError as exc:
                log.warning("VACUUM %s after an erasure failed (autovacuum will): %s", table, exc)
                done = False
    return done


#: a session event and its listener: what a module that keeps something in
#: ``session.info`` for one transaction needs to hear (jobs.store.rows,
#: jobs.engine.ledger). The factories attach them to the sessions they make, not
#: to SQLAlchemy's Session class, so no import changes anyone else's sessions.
SessionListener = tuple[str, Callable[..., Any]]


def _listened(
    sessions: sessionmaker[Session], listeners: Iterable[SessionListener]
) -> sessionmaker[Session]:
    for name, listener in listeners:
        event.listen(sessions, name, listener)
    return sessions


def delete_in_batches(
    sessions: Any,
    model: Any,
    *where: ColumnElement[bool],
    order_by: Any = None,
    batch: int = 5_000,
) -> int:
    """Delete every row of ``model`` that ``where`` holds for, ``batch`` rows a
    transaction (the first by ``order_by`` first), so a large backlog never holds one
    long transaction; how many. ``sessions`` is a session factory."""
    ids = select(model.id).where(*where).limit(batch)
    if order_by is not None:
        ids = ids.order_by(order_by)
    total = 0
    while True:
        with sessions.begin() as session:
            result = session.execute(
                delete(model)
                .where(model.id.in_(ids.scalar_subquery()))
                .execution_options(synchronize_session=False)
            )
        done = int(result.rowcount or 0)
        total += done
        if done < batch:
            return total


def make_sessions(
    engine: Engine, listeners: Iterable[SessionListener] = ()
) -> sessionmaker[Session]:
    return _listened(sessionmaker(engine, expire_on_commit=False), listeners)


def make_read_sessions(
    engine: Engine, listeners: Iterable[SessionListener] = ()
) -> sessionmaker[Session]:
    """Sessions for reading only: on SQLite they wait for no writer and block none.

    Never write through one: on SQLite its transaction would have to upgrade to
    a write lock, which fails at once if another writer went first.
    """
    readers = sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
    return _listened(readers, listeners)


def plain(session: Session) -> Connection:
    """The session's connection, for a statement whose answer is plain values.

    What the session holds unwritten is flushed first, as the ORM does before
    its own queries (unless autoflush is off). A plain statement skips the
    ORM's execution layer, which for a small indexed query costs more CPU than
    the query itself.
    """
    if session.autoflush:
        session.flush()
    return session.connection()


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed when the block ends, rolled back if it raises."""
    with sessions.begin() as session:
        yield session


def insert_new(
    session: Session, model: type[Row], unique: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> list[Row]:
    """Insert the rows that are new by the ``unique`` constraint; the new ones, as ORM rows.

    ``INSERT .. ON CONFLICT (unique) DO NOTHING RETURNING``: a row another
    transaction (or a replay) inserted first is left alone without the
    savepoint and the error a plain INSERT would need. Any other constraint
    still fails loudly. The rows come back in no particular order. The
    statement is built once and given the rows as parameters (SQLAlchemy
    sends them as one multi-row statement and reuses its compiled form). It
    runs on the session's connection, and each returned row becomes the
    session's own object as if it had been loaded: the ORM's bulk insert would
    do the same for twice the CPU of the statement itself.
    """
    if not rows:
        return []
    connection = plain(session)
    statement = queries.insert_new(connection.dialect.name, model, tuple(unique))
    mapper: Mapper[Any] = inspect(model)
    names, key = _attributes(mapper)
    new = []
    for values in connection.execute(statement, list(rows)):
        # SQLite may give a row deleted earlier in this transaction its id again
        gone = session.identity_map.get(mapper.identity_key_from_primary_key(key(values)))
        if gone is not None:
            session.expunge(gone)
        row = model(**dict(zip(names, values, strict=True)))
        make_transient_to_detached(row)  # as if loaded: nothing of it left to write
        session.add(row)
        new.append(row)
    return new


_ATTRIBUTES: dict[Mapper[Any], tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {}


def _attributes(mapper: Mapper[Any]) -> tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]:
    """The model's attribute for each column of its table (in the table's order), and
    how to read its primary key from such a row."""
    found = _ATTRIBUTES.get(mapper)
    if found is None:
        columns = list(mapper.local_table.c)
        names = tuple(mapper.get_property_by_column(column).key for column in columns)
        at = [next(i for i, c in enumerate(columns) if c is key) for key in mapper.primary_key]
        found = _ATTRIBUTES[mapper] = (names, lambda values: tuple(values[i] for i in at))
    return found


def picked(rows: Select[Any], name: str = "picked") -> Select[Any]:
    """``rows`` (a ``SELECT id .. LIMIT n FOR UPDATE SKIP LOCKED``) evaluated once,
    for an ``UPDATE .. WHERE id IN (picked(..))`` that takes those rows.

    As a plain ``IN`` subquery PostgreSQL may run it again for each row the
    UPDATE visits; rows the UPDATE has just changed then drop out of it, and
    further ones take their place, past the LIMIT. A materialized CTE runs once.
    """
    cte = rows.cte(name).prefix_with("MATERIALIZED", dialect="postgresql")
    return select(*cte.c)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(url), revision)


class SchemaNotCurrent(RuntimeError):
    """The database's schema is not the one this version of the code is written for."""


class SchemaUnknown(SchemaNotCurrent):
    """The database is at a revision this version has no migration for (a newer
    version migrated it): neither running on it nor migrating it is safe."""


def schema_revisions(url: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The revisions the database at ``url`` is at (none before its first migration)
    and the ones this version's migrations end in; read only, nothing is changed."""
    heads = tuple(sorted(ScriptDirectory.from_config(alembic_config(url)).get_heads()))
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_heads()
    finally:
        engine.dispose()
    return tuple(sorted(current)), heads


def check_schema(url: str) -> None:
    """Refuse (:class:`SchemaNotCurrent`, with what to do) unless the database at
    ``url`` is at this version's latest revision.

    Only ``migrate`` changes a schema: a command that upgraded on its own would
    upgrade a production database under the feet of processes still running
    the previous version, and one that ran on an older schema would fail half-way
    on a missing column.
    """
    current, heads = schema_revisions(url)
    if current == heads:
        return
    where = printable_url(url)
    script = ScriptDirectory.from_config(alembic_config(url))
    known = {revision.revision for revision in script.walk_revisions()}
    unknown = [revision for revision in current if revision not in known]
    if unknown:
        raise SchemaUnknown(
            f"the database at {where} is at revision {', '.join(unknown)}, which this "
            "version of triggerpost does not know (a newer version migrated it): "
            "run that version, or upgrade this one"
        )
    at = f"at revision {', '.join(current)}" if current else "empty (no schema yet)"
    raise SchemaNotCurrent(
        f"the database at {where} is {at}; this version needs revision "
        f"{', '.join(heads)}: run `triggerpost migrate` first"
    )


def printable_url(url: str) -> str:
    """``url`` without its password, for printing."""
    return make_url(url).render_as_string(hide_password=True)
