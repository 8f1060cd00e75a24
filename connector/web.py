"""``triggerpost web``: the Flask app under gunicorn, with requests buffered before a thread.

gunicorn's gthread worker hands a connection to a request thread as soon as
its first bytes arrive, and the thread then reads the rest of the headers and
the body itself, for as long as the client takes: a few dozen clients that
promise a body and send it a byte at a time held every thread of every
process, and genuine webhooks waited behind them past the platforms' 5 s.

:class:`BufferingWorker` is that worker with what a buffering reverse proxy
(nginx with request buffering) adds: a request reaches a thread only once it
has fully arrived. The worker's main loop reads every connection without
blocking and keeps the bytes until the headers and the whole body (its
Content-Length, or all its chunks) are in, then hands the request to a thread
with its bytes: the thread never waits on a client. Each request has
:data:`READ_DEADLINE` from the moment it is awaited to arrive, headers and
body together (a total, not a per-read timeout); a late one is answered 408
and closed. So a slow client costs a socket and the bytes it sent, never a
thread, and no longer than the deadline. What stays bounded:

- a declared body over the size limit is handed over at once (the app answers
  413 without reading it) and its connection closed, not drained;
- a chunked body is handed over as soon as its chunks exceed the limit (the
  app answers 413);
- headers over :data:`MAX_HEAD` are answered 431;
- requests larger than :data:`SMALL_REQUEST` share :data:`BUFFER_BUDGET` of
  memory per process; a request that would exceed it is answered 503 (the
  platforms retry). Small requests, every webhook among them, are always taken.

A connection is one of gunicorn's ``worker_connections`` (1000 a process) for
as long as it lasts; behind a reverse proxy that buffers requests (see the
README), nothing slow ever reaches this server. TLS and HTTP/2 end at that
proxy: for them the worker falls back to gthread's own reading.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger
from gunicorn.workers.gthread import ThreadWorker

from connector.app import create_app
from jobs import logs, metrics
from jobs.settings import LogFormat, Settings

#: one process per core, each with THREADS request threads: the threads of a
#: process share one intake writer, so concurrent deliveries share a commit
#: (see jobs.intake.writer); measured with bench/intake.py
DEFAULT_WORKERS = max(2, os.cpu_count() or 1)
THREADS = 16

#: seconds a request has to arrive whole, headers and body, from when it is awaited
READ_DEADLINE = 10.0
#: the most a request line and its headers may take
MAX_HEAD = 64 * 1024
#: requests up to this size (every webhook) are always buffered ...
SMALL_REQUEST = 64 * 1024
#: ... larger ones share this much memory per process while they arrive
BUFFER_BUDGET = 64 * 1024 * 1024
#: the most one read takes from a socket
RECV_SIZE = 256 * 1024
#: the longest chunk-size line or trailer section we wait for (gunicorn's own limits)
MAX_CHUNK_LINE = 8190
MAX_TRAILERS = 8190 * 32
HEX = re.compile(rb"[0-9a-fA-F]+")


def _plain(status: str, *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status}", "Connection: close", "Content-Length: 0", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii")


TIMED_OUT = _plain("408 Request Timeout")
HEAD_TOO_LARGE = _plain("431 Request Header Fields Too Large")
BUSY = _plain("503 Service Unavailable", "Retry-After: 5")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Arrived(Enum):
    NOT_YET = "not yet"
    WHOLE = "whole"  # headers and all of the body
    OVERSIZE = "over the limit"  # enough of it: the application answers 413
    MALFORMED = "malformed"  # enough of it: gunicorn's parser answers 400
    HEAD_TOO_LARGE = "headers too large"


@dataclass
class Arrival:
    """A request's bytes as they come in, and how far they make a request.

    Scanned incrementally: each call to :meth:`add` looks only at what is new
    (a client sending a byte at a time costs a byte's work per read).
    """

    deadline: float
    max_body: int
    data: bytearray = field(default_factory=bytearray)
    head_end: int | None = None  # index just past the blank line
    length: int | None = None  # Content-Length
    chunked: bool = False
    chunk_at: int = 0  # where the next chunk-size line starts
    decoded: int = 0  # body bytes in the chunks complete so far
    expects_continue: bool = False
    held: int = 0  # what it counts against the buffer budget
    state: Arrived = Arrived.NOT_YET

    def add(self, data: bytes) -> Arrived:
        searched = max(0, len(self.data) - 3)
        self.data += data
        if self.head_end is None:
            end = self.data.find(b"\r\n\r\n", searched)
            if end < 0:
                if len(self.data) > MAX_HEAD:
                    self.state = Arrived.HEAD_TOO_LARGE
                return self.state
            self.head_end = end + 4
            if self.head_end > MAX_HEAD:
                self.state = Arrived.HEAD_TOO_LARGE
                return self.state
            self.state = self._read_head(bytes(self.data[:end]))
            if self.state is not Arrived.NOT_YET:
                return self.state
            self.chunk_at = self.head_end
        self.state = self._body()
        return self.state

    @property
    def waits_for_body(self) -> bool:
        return self.head_end is not None and self.state is Arrived.NOT_YET

    def _read_head(self, head: bytes) -> Arrived:
        lengths, codings = [], []
        for line in head.split(b"\r\n")[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                return Arrived.MALFORMED
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings += [c.strip() for c in value.split(b",")]
            elif name == b"expect":
                self.expects_continue = value == b"100-continue"
        if codings:
            # chunked last, and no length beside it: anything else is for the parser to refuse
            if lengths or codings[-1] != b"chunked":
                return Arrived.MALFORMED
            self.chunked = True
            return Arrived.NOT_YET
        if not lengths:
            self.length = 0
            return Arrived.NOT_YET
        if len(set(lengths)) > 1 or not lengths[0].isdigit():
            return Arrived.MALFORMED
        self.length = int(lengths[0])
        return Arrived.OVERSIZE if self.length > self.max_body else Arrived.NOT_YET

    def _body(self) -> Arrived:
        assert self.head_end is not None
        if not self.chunked:
            assert self.length is not None
            whole = len(self.data) - self.head_end >= self.length
            return Arrived.WHOLE if whole else Arrived.NOT_YET
        data = self.data
        while True:
            line_end = data.find(b"\r\n", self.chunk_at)
            if line_end < 0:
                too_long = len(data) - self.chunk_at > MAX_CHUNK_LINE
                return Arrived.MALFORMED if too_long else Arrived.NOT_YET
            digits = bytes(data[self.chunk_at : line_end]).split(b";", 1)[0].rstrip(b" \t")
            if not HEX.fullmatch(digits):
                return Arrived.MALFORMED
            size = int(digits, 16)
            start = line_end + 2
            if size == 0:
                # the trailer section (usually empty), then the blank line
                if data[start : start + 2] == b"\r\n":
                    return Arrived.WHOLE
                if data.find(b"\r\n\r\n", start) >= 0:
                    return Arrived.WHOLE
                too_long = len(data) - start > MAX_TRAILERS
                return Arrived.MALFORMED if too_long else Arrived.NOT_YET
            end = start + size
            if len(data) < end + 2:
                # over the limit already with what is in of this chunk: the
                # application reads no more than that before it answers 413
                partial = min(size, len(data) - start)
                return (
                    Arrived.OVERSIZE if self.decoded + partial > self.max_body else Arrived.NOT_YET
                )
            if data[end : end + 2] != b"\r\n":
                return Arrived.MALFORMED
            self.decoded += size
            self.chunk_at = end + 2
            if self.decoded > self.max_body:
                return Arrived.OVERSIZE


class DeadlineSocket:
    """The reading side of a client socket, with one deadline for all of a request's reads.

    A thread only reads from the socket when a request was handed over before
    it arrived whole (a body over the limit); even then it waits no longer
    than the request's deadline.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._timeout: float | None = None

    def recv(self, size: int) -> bytes:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive within its deadline")
        if self._timeout is not None:
            remaining = min(remaining, self._timeout)
        self._sock.settimeout(remaining)
        try:
            return self._sock.recv(size)
        finally:
            self._sock.settimeout(None)

    def gettimeout(self) -> float | None:
        return self._timeout

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferingWorker(ThreadWorker):
    """gunicorn's gthread worker; a request reaches a thread only once it has arrived."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = getattr(self.app, "settings", None)
        self.max_body = settings.max_webhook_bytes if settings else Settings.max_webhook_bytes
        # connection -> its request arriving, in the order of their deadlines
        self.arriving: dict[Any, Arrival] = {}
        self.held = 0  # bytes the larger requests hold among them

    def enqueue_req(self, conn: Any) -> None:
        """Wait for the connection's next request to arrive whole; then a thread serves it."""
        if self.cfg.is_ssl or conn.is_http2:
            super().enqueue_req(conn)
            return
        self.arriving[conn] = Arrival(time.monotonic() + READ_DEADLINE, self.max_body)
        conn.sock.setblocking(False)
        read_ahead = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        if read_ahead:
            self._take(conn, read_ahead)  # pipelined behind the last request
        else:
            self._receive(conn)  # usually all there already: no round through the poller
        if conn in self.arriving:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))

    def _readable(self, conn: Any, _sock: Any) -> None:
        self._receive(conn)

    def _receive(self, conn: Any) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        self._take(conn, data)

    def _take(self, conn: Any, data: bytes) -> None:
        """Add what came; hand the request to a thread once that is enough of it."""
        arrival = self.arriving[conn]
        if not data:  # the client left
            self._forget(conn)
            self._close(conn)
            return
        state = arrival.add(data)
        held = len(arrival.data) if len(arrival.data) > SMALL_REQUEST else 0
        self.held += held - arrival.held
        arrival.held = held
        if state is Arrived.NOT_YET:
            if held and self.held > BUFFER_BUDGET:
                self.log.warning("request buffers full: 503 to %s", conn.client)
                self._forget(conn)
                self._refuse(conn, BUSY)
            elif arrival.expects_continue and arrival.waits_for_body:
                arrival.expects_continue = False
                self._send(conn, CONTINUE)
            return
        self._forget(conn)
        self._settle(conn, arrival)

    def _settle(self, conn: Any, arrival: Arrival) -> None:
        if arrival.state is Arrived.HEAD_TOO_LARGE:
            self._refuse(conn, HEAD_TOO_LARGE)
            return
        conn.data_ready = True  # gthread's own wait for the first bytes is over
        future = self.tpool.submit(self._serve, conn, arrival)
        future.add_done_callback(
            lambda done: self.method_queue.defer(self.finish_request, conn, done)
        )

    def _serve(self, conn: Any, arrival: Arrival) -> Any:
        """In a request thread: gthread's handling, its bytes already in hand."""
        conn.sock.setblocking(True)
        conn.init()
        conn.parser.unreader.unread(bytes(arrival.data))
        conn.parser.unreader.sock = DeadlineSocket(conn.sock, arrival.deadline)
        conn.arrived_whole = arrival.state is Arrived.WHOLE
        return self.handle(conn)

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        # draining what the application did not read waits on nobody only when
        # the request arrived whole; otherwise the connection closes
        if not getattr(conn, "arrived_whole", False):
            return False
        return bool(super()._keepalive_after(conn, keepalive))

    def murder_pending(self) -> None:
        """gthread's own expiries, then the requests past their deadline: 408."""
        super().murder_pending()
        now = time.monotonic()
        late = []
        for conn, arrival in self.arriving.items():
            if arrival.deadline > now:
                break
            late.append(conn)
        for conn in late:
            self.log.info("request from %s not in within %.0f s: 408", conn.client, READ_DEADLINE)
            self._forget(conn)
            self._refuse(conn, TIMED_OUT)

    def _forget(self, conn: Any) -> None:
        arrival = self.arriving.pop(conn)
        self.held -= arrival.held
        with contextlib.suppress(KeyError, ValueError, OSError):  # closed already
            self.poller.unregister(conn.sock)

    def _refuse(self, conn: Any, answer: bytes) -> None:
        self._send(conn, answer)
        self._close(conn)

    @staticmethod
    def _send(conn: Any, data: bytes) -> None:
        # a few bytes into an empty send buffer; lost if the client is gone
        with contextlib.suppress(OSError):
            conn.sock.send(data)

    def _close(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()


class JsonLogger(Logger):
    """gunicorn's own lines (its errors, the access log) as the service's JSON lines."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(logs.JsonFormatter())


def _counting(_server: Any, _worker: Any) -> None:
    """gunicorn's post_fork: a web process counts from here (jobs.metrics)."""
    metrics.process_started(metrics.ProcessKind.WEB)


def _ended(_server: Any, worker: Any) -> None:
    """gunicorn's child_exit: the web process's live gauges leave the sum."""
    metrics.mark_dead(worker.pid)


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
    chosen: dict[str, Any] = {}
    if settings.log_format is LogFormat.JSON:
        chosen["logger_class"] = JsonLogger
    return {
        **chosen,
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "connector.web.BufferingWorker",
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
        "post_fork": _counting,
        "child_exit": _ended,
    }


class PortInUseError(RuntimeError):
    """Something already listens where the web server was asked to."""


def check_port(host: str, port: int) -> None:
    """Raise :class:`PortInUseError` unless ``host:port`` can be listened on now.

    Checked before anything says the service is running: gunicorn would retry
    the bind for half a minute and then exit, after the banner.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as gunicorn binds: a port in TIME_WAIT is free, one listened on is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUseError(
                f"port {port} on {host} is not free ({exc.strerror}): another triggerpost "
                f"or another program listens there; pick another port "
                f"(`make run PORT={port + 1}` or `--port {port + 1}`)"
            ) from exc


def serve(settings: Settings, **kwargs: Any) -> None:
    if settings.metrics_dir is not None:
        # before the workers fork: each counts in its own files there (jobs.metrics)
        metrics.use_directory(settings.metrics_dir)
    WebServer(settings, options(settings, **kwargs)).run()
