"""Group commit for the webhook intake.

Every delivery must be committed before its 200, and a commit is the costly
part of the intake: a WAL sync, SQLite's single-writer lock, a PostgreSQL
round trip. The web server runs a few threads per process; their requests
hand their rows to one writer thread, which inserts whatever has queued up
in one statement and one commit and wakes the requests at once. Under load
many deliveries share a commit; alone, a delivery waits for nothing but its
own.

Handing the shops to the workers (one ``SET NX`` per shop, see
:func:`jobs.intake.deliveries.notify`) is a second thread's work, the notifier's, so no
later commit ever waits on Redis. A request, once committed, waits for its
shop's hand-off only while Redis keeps answering, and then only for
:data:`HAND_OFF_WAIT`: normally a 200 means the delivery is stored *and* a
drain job knows of it; while Redis stalls, requests are answered right after
their commit, stored. Shops committed while the notifier is busy are
notified once, after all of those commits. A notification Redis does not
take (within its socket timeout) leaves that shop, and the others waiting with
it, to the sweeper, which finds every stored, unprocessed delivery in the
database.

A batch that fails as a whole is retried row by row, so one bad row fails
only its own request.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from jobs.intake import deliveries
from jobs.runtime import Runtime

log = logging.getLogger(__name__)

#: rows per commit at most; more wait for the next one
MAX_BATCH = 64
#: a request gives up on the writer after this long (the platforms wait 5 s)
WAIT = 10.0
#: how long a committed request waits for its shop's hand-off to the workers, at
#: most (a Redis round trip takes well under a millisecond; its timeout is 2 s)
HAND_OFF_WAIT = 0.5


class IntakeWriteError(RuntimeError):
    """The delivery could not be stored; the request must not answer 200."""


@dataclass
class _Pending:
    row: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    #: set once its shop's hand-off to the workers is over (done, or left to the sweeper)
    handed: threading.Event = field(default_factory=threading.Event)
    delivery_id: int | None = None
    error: BaseException | None = None


class DeliveryWriter:
    def __init__(self, runtime: Runtime, *, max_batch: int = MAX_BATCH) -> None:
        self.runtime = runtime
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        # shops committed and not yet handed to the workers (with the requests that
        # wait for it), for the notifier thread
        self._to_notify: dict[int, list[_Pending]] = {}
        self._notify_wanted = threading.Condition()
        # whether Redis took the last hand-off in time: only then do requests wait for theirs
        self._redis_answers = True
        # the writer thread's own connection, kept between batches: a pool
        # checkout with its pre-ping per batch cost as much as the insert
        self._connection: Connection | None = None
        runtime.on_close(self.close)

    def close(self) -> None:
        """Let the writer thread go, and its kept connection with it (the runtime closes)."""
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            self._queue.put(None)
            self._thread.join(WAIT)

    def store(self, row: dict[str, Any]) -> int | None:
        """Commit ``row``; its id, or None when the same delivery was stored before."""
        self._ensure_thread()
        pending = _Pending(row)
        self._queue.put(pending)
        if not pending.done.wait(WAIT):
            raise IntakeWriteError(f"delivery not stored within {WAIT:.0f} s")
        if pending.error is not None:
            raise IntakeWriteError(f"delivery not stored: {pending.error}") from pending.error
        # stored: answered with or without its hand-off (the sweeper has the last word)
        if not pending.handed.wait(HAND_OFF_WAIT if self._redis_answers else 0):
            self._redis_answers = False
        return pending.delivery_id

    def store_many(self, rows: list[dict[str, Any]]) -> list[int | None]:
        """Commit all ``rows`` (in one commit when they fit a batch); each one's id, or
        None for one stored before. Raises IntakeWriteError unless every row is stored."""
        self._ensure_thread()
        waiting = [_Pending(row) for row in rows]
        for pending in waiting:
            self._queue.put(pending)
        deadline = time.monotonic() + WAIT
        for pending in waiting:
            if not pending.done.wait(max(0.0, deadline - time.monotonic())):
                raise IntakeWriteError(f"deliveries not stored within {WAIT:.0f} s")
            if pending.error is not None:
                raise IntakeWriteError(f"delivery not stored: {pending.error}") from pending.error
        wait = HAND_OFF_WAIT if self._redis_answers else 0
        deadline = time.monotonic() + wait
        for pending in waiting:
            if not pending.handed.wait(max(0.0, deadline - time.monotonic())):
                self._redis_answers = False
                break
        return [pending.delivery_id for pending in waiting]

    def _ensure_thread(self) -> None:
        # started on first use, in the process that uses it (gunicorn forks workers)
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._to_notify = {}  # a forked child's copy: the parent notifies its own
                for target, name in (
                    (self._notify, "triggerpost-intake-notifier"),
                    (self._run, "triggerpost-intake-writer"),
                ):
                    thread = threading.Thread(target=target, name=name, daemon=True)
                    thread.start()
                self._thread = thread

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:  # closing: what was queued before it is written already
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    following = self._queue.get_nowait()
                except queue.Empty:
                    break
                if following is None:
                    self._queue.put(None)  # seen after this batch
                    break
                batch.append(following)
            try:
                self._write(batch)
            except BaseException as exc:
                log.exception("intake writer: batch of %d failed", len(batch))
                for pending in batch:
                    pending.error = pending.error or exc
            finally:
                self._hand_off(batch)
                # answered right after the commit: nothing of Redis's in the way
                for pending in batch:
                    pending.done.set()

    def _hand_off(self, batch: list[_Pending]) -> None:
        """Give the notifier the shops of the batch's new deliveries."""
        new: dict[int, list[_Pending]] = {}
        for pending in batch:
            if pending.error is None and pending.delivery_id is not None:
                new.setdefault(pending.row["shop_id"], []).append(pending)
            else:
                pending.handed.set()  # nothing new: nothing to hand off
        if new:
            with self._notify_wanted:
                for shop_id, waiting in new.items():
                    self._to_notify.setdefault(shop_id, []).extend(waiting)
                self._notify_wanted.notify()

    def _notify(self) -> None:
        while True:
            with self._notify_wanted:
                while not self._to_notify:
                    self._notify_wanted.wait()
                shops, self._to_notify = self._to_notify, {}
            order = sorted(shops)
            for n, shop_id in enumerate(order):
                self._redis_answers = self._notify_one(shop_id)
                for pending in shops[shop_id]:
                    pending.handed.set()
                if not self._redis_answers:
                    # Redis did not answer in time: the rest would wait as long
                    if rest := len(order) - n - 1:
                        log.warning("%d more shops left to the sweeper", rest)
                    break
            for waiting in shops.values():  # those left to the sweeper
                for pending in waiting:
                    pending.handed.set()

    def _notify_one(self, shop_id: int) -> bool:
        try:
            return deliveries.notify(self.runtime, shop_id)
        except Exception:
            log.exception("hand-off of shop %s failed; left to the sweeper", shop_id)
            return False

    def _write(self, batch: list[_Pending]) -> None:
        # the same delivery twice in one batch: the first one stands for both
        first: dict[tuple[int, str], _Pending] = {}
        for pending in batch:
            first.setdefault(_key(pending.row), pending)
        try:
            stored = self._insert([p.row for p in first.values()])
        except Exception:
            if len(first) == 1:
                raise
            log.warning("intake writer: batch failed, storing its %d rows one by one", len(first))
            stored = self._one_by_one(list(first.values()))
        for key, pending in first.items():
            pending.delivery_id = stored.get(key)

    def _insert(self, rows: list[dict[str, Any]]) -> dict[tuple[int, str], int]:
        for attempt in (1, 2):
            if self._connection is None or self._connection.closed:
                self._connection = self.runtime.engine.connect()
            try:
                with self._connection.begin():
                    return deliveries.insert_deliveries(self._connection, rows)
            except DBAPIError as exc:
                if not (exc.connection_invalidated or self._connection.invalidated):
                    raise
                # the server dropped the kept connection (restart, idle timeout):
                # once more on a new one; rows a lost commit did store come back
                # as duplicates, which is still the truth
                self._connection.close()
                self._connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _one_by_one(self, batch: list[_Pending]) -> dict[tuple[int, str], int]:
        stored: dict[tuple[int, str], int] = {}
        for pending in batch:
            try:
                stored.update(self._insert([pending.row]))
            except Exception as exc:
                pending.error = exc
        return stored


def _key(row: dict[str, Any]) -> tuple[int, str]:
    return (row["shop_id"], row["delivery_key"])
