"""The live resources of one process: settings, database, Redis.

A process builds its :class:`Runtime` once from its settings (the web app in
``create_app``, a worker at start-up) and jobs reach it through
:func:`current`, since RQ hands a job only its arguments, and settings or
connections must never travel through Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.commands.core import Script
from rq import Queue
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapters.http import ApiSession, OutboundPolicy
from jobs import queues
from jobs.engine import ledger
from jobs.settings import Settings
from jobs.store import rows
from jobs.store.db import SessionListener, make_engine, make_read_sessions, make_sessions
from jobs.store.secrets import SecretBox

#: what every session of a process is told: the decisions a transaction records
#: are written at its commit, the rows it remembered are forgotten at its end
SESSION_LISTENERS: tuple[SessionListener, ...] = (
    *ledger.SESSION_LISTENERS,
    *rows.SESSION_LISTENERS,
)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: Redis
    secrets: SecretBox
    #: sessions that only read (see jobs.store.db.make_read_sessions)
    reads: sessionmaker[Session]
    _queues: dict[str, Queue] = field(default_factory=dict)
    #: what sends this process's emails, built from this runtime on first use and
    #: reused with its connections (see jobs.sending.courier); typed by its builder
    sender: object | None = None
    #: the Lua script that takes waiting jobs out of Redis, registered on first use
    #: (see jobs.engine.schedule.withdraw)
    withdraw_script: Script | None = None
    #: what holds a connection of its own and must let go when the runtime closes
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings.database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessions(engine, SESSION_LISTENERS),
            redis=queues.connect(settings),
            secrets=SecretBox(settings.secret_key),
            reads=make_read_sessions(engine, SESSION_LISTENERS),
        )

    @property
    def outbound(self) -> OutboundPolicy:
        """Where outbound calls may go: public addresses only, https only in production."""
        return OutboundPolicy(
            allow_private=self.settings.allow_private_hosts, https_only=self.settings.production
        )

    def api_session(self, **kwargs: Any) -> ApiSession:
        """An HTTP session for a platform or store call, held to :attr:`outbound`."""
        return ApiSession(policy=self.outbound, **kwargs)

    def queue(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = queues.queue(name, self.redis)
        return self._queues[name]

    def on_close(self, closer: Callable[[], None]) -> None:
        """Call ``closer`` when the runtime closes (before its pools are disposed)."""
        self._closers.append(closer)

    def close(self) -> None:
        for closer in self._closers:
            closer()
        self._closers.clear()
        self.engine.dispose()
        self.redis.close()


_current: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    """Make ``runtime`` the one jobs in this process use (None to clear)."""
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise LookupError("no runtime installed in this process (see jobs.runtime.install)")
    return _current
