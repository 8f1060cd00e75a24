"""The outbound HTTP policy every platform client shares (against ``responses``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
import responses

from adapters.http import ApiSession, RetryPolicy, retry_after
from adapters.platform import AdminApiError

URL = "https://shop.example.com/api/thing"


def _session(waits: list[float], attempts: int = 4) -> ApiSession:
    return ApiSession(retry=RetryPolicy(attempts=attempts, sleep=waits.append, jitter=lambda x: x))


@responses.activate
def test_429_waits_what_retry_after_asks_then_succeeds() -> None:
    responses.get(URL, status=429, headers={"Retry-After": "2.0"})
    responses.get(URL, json={"ok": True})
    waits: list[float] = []
    assert _session(waits).request("GET", URL).json() == {"ok": True}
    assert waits == [2.0]


@responses.activate
def test_server_errors_back_off_exponentially_then_fail_as_transient() -> None:
    for _ in range(3):
        responses.get(URL, status=503, body="maintenance")
    waits: list[float] = []
    with pytest.raises(AdminApiError) as caught:
        _session(waits, attempts=3).request("GET", URL)
    assert waits == [0.5, 1.0]
    assert caught.value.transient
    assert caught.value.status == 503
    assert "GET shop.example.com/api/thing answered 503 after 3 tries" in str(caught.value)


@responses.activate
def test_a_client_error_is_permanent_and_not_retried() -> None:
    responses.post(URL, status=422, json={"errors": {"code": ["is taken"]}})
    waits: list[float] = []
    with pytest.raises(AdminApiError) as caught:
        _session(waits).request("POST", URL, json={})
    assert not caught.value.transient
    assert caught.value.status == 422
    # the remote body is for the log, never the message a merchant may read
    assert "is taken" not in str(caught.value)
    assert "is taken" in (caught.value.detail or "")
    assert waits == []
    assert len(responses.calls) == 1


@responses.activate
def test_a_long_retry_after_is_left_to_the_job_retry() -> None:
    responses.get(URL, status=429, headers={"Retry-After": "600"})
    waits: list[float] = []
    with pytest.raises(AdminApiError) as caught:
        _session(waits).request("GET", URL)
    assert caught.value.transient
    assert "600 s" in str(caught.value)
    assert waits == []


@responses.activate
def test_timeouts_are_retried_and_every_call_has_one() -> None:
    responses.get(URL, body=requests.ConnectTimeout("slow"))
    responses.get(URL, json={})
    waits: list[float] = []
    _session(waits).request("GET", URL)
    assert waits == [0.5]
    assert all(call.request.req_kwargs["timeout"] == (5.0, 30.0) for call in responses.calls)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    at = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    response = requests.Response()
    response.headers["Retry-After"] = "Sun, 22 Nov 2026 12:00:30 GMT"
    assert retry_after(response, at) == 30.0
    response.headers["Retry-After"] = "soon"
    assert retry_after(response, at) is None
