"""Outbound HTTP for platform API clients: timeouts, retries, clear errors.

Every call has a connect and a read timeout. A 429 or a 5xx, a refused
connection or a timeout is retried with exponential backoff (full jitter),
waiting what ``Retry-After`` asks when the platform says; anything else
answers at once. A failure becomes :class:`AdminApiError` naming the method,
host and path, the status and the start of the body, never a credential.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

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
    parts = urlsplit(url)
    return f"{method} {parts.hostname}{parts.path}"


def excerpt(response: requests.Response, limit: int = 300) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("…" if len(text) > limit else "")


class ApiSession:
    """One shop's HTTP conversation: a pooled ``requests.Session`` plus the policy."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.http = session or requests.Session()
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
        attempts = self.retry.attempts
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self.http.request(method, url, timeout=self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if last:
                    raise AdminApiError(
                        f"{what}: no answer after {attempts} tries ({type(exc).__name__})",
                        transient=True,
                    ) from exc
                self._wait(what, self.retry.backoff(attempt), f"{type(exc).__name__}")
                continue
            if expect(response):
                return response
            if response.status_code not in TRANSIENT_STATUSES:
                raise AdminApiError(
                    f"{what} answered {response.status_code}: {excerpt(response)}",
                    transient=False,
                    status=response.status_code,
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
