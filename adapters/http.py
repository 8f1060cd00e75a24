"""Outbound HTTP for platform API clients: one policy, timeouts, retries, clear errors.

A store's address is whatever a merchant typed, so every call is held to
:class:`OutboundPolicy` (the server-side request forgery guard): the URL's
scheme and host are checked before the call, and the address the socket
actually connected to is checked again after DNS (a name that resolves to
loopback, a private or link-local network, or a cloud metadata address is
refused, whatever it resolved to a moment before). Redirects are never
followed: a 3xx is an answer, not an instruction. Proxies from the
environment are ignored (they would hide the address we connect to).

Every call has a connect and a read timeout. A 429 or a 5xx, a refused
connection or a timeout is retried with exponential backoff (full jitter),
waiting what ``Retry-After`` asks when the platform says; anything else
answers at once. A failure becomes :class:`AdminApiError` naming the method,
host and path and the status: never a credential (no query string, no chained
exception that would print the URL) and never the remote body, which may be
anything the far end chose to send; the start of the body goes to the log only.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from adapters.platform import AdminApiError

log = logging.getLogger("triggerpost.http")

#: statuses a retry may fix (408 timeout, 429 throttled, 5xx the platform's trouble)
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: (connect, read) seconds; Shopify and most WordPress hosts answer well within these
DEFAULT_TIMEOUT = (5.0, 30.0)


@dataclass
class RetryPolicy:
    """Up to ``attempts`` tries; waits grow ``base * 2**n`` (jittered) up to ``cap`` seconds.

    A ``Retry-After`` longer than ``cap`` is not waited for: the call fails as
    transient, so the job that made it is retried later instead of holding a
    worker for minutes.
    """

    attempts: int = 4
    base: float = 0.5
    cap: float = 20.0
    sleep: Callable[[float], None] = time.sleep
    # jitter only spreads retries out; it guards nothing, so a plain PRNG is right
    jitter: Callable[[float], float] = field(
        default=lambda limit: random.uniform(0, limit)  # noqa: S311
    )

    def backoff(self, attempt: int) -> float:
        return self.jitter(min(self.cap, self.base * 2**attempt))


def retry_after(response: requests.Response, at: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait (delta-seconds or an HTTP date), if it said."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (at or datetime.now(UTC))).total_seconds())


def describe(method: str, url: str) -> str:
    """``GET host/path``: what a log line or an error may say about a call (no query)."""
    parts = urlsplit(url)
    return f"{method} {parts.hostname}{parts.path}"


def excerpt(response: requests.Response, limit: int = 300) -> str:
    """The start of a remote body, for the log only (never for a merchant's eyes)."""
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("…" if len(text) > limit else "")


# --- the outbound policy ---------------------------------------------------------

#: NAT64's well-known prefix carries an IPv4 address in its last 32 bits
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddressError(NewConnectionError):
    """The connection reached (or would reach) an address the policy refuses."""


def forbidden_address(text: str) -> bool:
    """True for anything but a public unicast address: loopback, private,
    link-local (cloud metadata at 169.254.169.254), shared, reserved,
    multicast, and IPv6 forms that carry such an IPv4 address inside."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None and forbidden_address(str(inner)):
            return True
    return ip.is_multicast or not ip.is_global


@dataclass(frozen=True)
class OutboundPolicy:
    """Where triggerpost may send a request whose address came from outside.

    ``allow_private`` lets development and tests reach stores on loopback or a
    private network (``TRIGGERPOST_ALLOW_PRIVATE_HOSTS``); ``https_only`` is on
    in production.
    """

    allow_private: bool = False
    https_only: bool = False

    def check_url(self, url: str) -> None:
        """Refuse a URL before any call: scheme, a host, and a host that is plainly private."""
        parts = urlsplit(url)
        allowed = ("https",) if self.https_only else ("https", "http")
        if parts.scheme not in allowed:
            raise AdminApiError(
                f"{parts.scheme or 'a relative'} URL refused: only "
                + " and ".join(f"{s}://" for s in allowed)
                + " addresses are called",
                transient=False,
            )
        try:
            host = parts.hostname
            parts.port  # noqa: B018 (a malformed port raises here, before any call)
        except ValueError:
            host = None
        if not host:
            raise AdminApiError("a URL without a valid host is refused", transient=False)
        if self.allow_private:
            return
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise AdminApiError(f"{host} is a local name; triggerpost does not call those",
                                transient=False)  # fmt: skip
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return  # a name: checked again where the socket connects
        if forbidden_address(host):
            raise AdminApiError(
                f"{host} is not a public address; triggerpost does not call those",
                transient=False,
            )

    def vet(self, sock: socket.socket, connection: HTTPConnection) -> None:
        """After connect: the address DNS actually led us to."""
        if self.allow_private:
            return
        peer = sock.getpeername()[0]
        if forbidden_address(str(peer)):
            sock.close()
            raise BlockedAddressError(
                connection, f"{connection.host} resolves to a non-public address ({peer})"
            )


def _guarded_pools(policy: OutboundPolicy) -> dict[str, type[HTTPConnectionPool]]:
    class Http(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            policy.vet(sock, self)
            return sock

    class Https(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            policy.vet(sock, self)
            return sock

    class HttpPool(HTTPConnectionPool):
        ConnectionCls = Http

    class HttpsPool(HTTPSConnectionPool):
        ConnectionCls = Https

    return {"http": HttpPool, "https": HttpsPool}


class GuardedAdapter(HTTPAdapter):
    """requests' adapter whose connections are vetted by an :class:`OutboundPolicy`."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _guarded_pools(self.policy)


def _blocked(exc: BaseException) -> BlockedAddressError | None:
    """The policy's refusal inside requests' wrapping (ConnectionError(MaxRetryError(..)))."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return None
        if isinstance(seen, BlockedAddressError):
            return seen
        reason = getattr(seen, "reason", None)
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = reason if isinstance(reason, BaseException) else inner
    return None


class ApiSession:
    """One shop's HTTP conversation: a pooled ``requests.Session`` plus the policies."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        policy: OutboundPolicy | None = None,
    ) -> None:
        self.policy = policy or OutboundPolicy()
        self.http = session or requests.Session()
        # a proxy from the environment would hide the address we really connect to
        self.http.trust_env = False
        adapter = GuardedAdapter(self.policy)
        self.http.mount("https://", adapter)
        self.http.mount("http://", adapter)
        self.http.headers.update({"User-Agent": "triggerpost", **(headers or {})})
        if auth is not None:
            self.http.auth = auth
        self.timeout = timeout
        self.retry = retry or RetryPolicy()

    def request(
        self,
        method: str,
        url: str,
        *,
        expect: Callable[[requests.Response], bool] = lambda r: r.ok,
        **kwargs: Any,
    ) -> requests.Response:
        """The response once ``expect`` holds; AdminApiError otherwise (after retries)."""
        what = describe(method, url)
        self.policy.check_url(url)
        attempts = self.retry.attempts
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self.http.request(
                    method, url, timeout=self.timeout, allow_redirects=False, **kwargs
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                # never chained: requests' messages carry the full URL, query and all
                blocked = _blocked(exc)
                if blocked is not None:
                    log.warning("%s refused: %s", what, blocked)
                    raise AdminApiError(
                        f"{what}: the address is not a public one; triggerpost does not call it",
                        transient=False,
                    ) from None
                if last:
                    raise AdminApiError(
                        f"{what}: no answer after {attempts} tries ({type(exc).__name__})",
                        transient=True,
                    ) from None
                self._wait(what, self.retry.backoff(attempt), f"{type(exc).__name__}")
                continue
            if response.is_redirect:
                target = urlsplit(response.headers.get("Location", ""))
                raise AdminApiError(
                    f"{what} answered {response.status_code}, a redirect"
                    + (f" to {target.hostname}{target.path}" if target.hostname else "")
                    + "; redirects are not followed (connect with the final address)",
                    transient=False,
                    status=response.status_code,
                )
            if expect(response):
                return response
            if response.status_code not in TRANSIENT_STATUSES:
                log.warning("%s answered %s: %s", what, response.status_code, excerpt(response))
                raise AdminApiError(
                    f"{what} answered {response.status_code}",
                    transient=False,
                    status=response.status_code,
                    detail=excerpt(response),
                )
            asked = retry_after(response)
            if last or (asked is not None and asked > self.retry.cap):
                raise AdminApiError(
                    f"{what} answered {response.status_code} after {attempt + 1} tries"
                    + (f" (asks to retry after {asked:.0f} s)" if asked is not None else ""),
                    transient=True,
                    status=response.status_code,
                )
            self._wait(
                what,
                asked if asked is not None else self.retry.backoff(attempt),
                str(response.status_code),
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, what: str, seconds: float, why: str) -> None:
        log.info("%s: %s, retrying in %.2f s", what, why, seconds)
        self.retry.sleep(seconds)
