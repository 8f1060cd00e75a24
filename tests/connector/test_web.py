"""How the web server tells that a request has arrived whole, read a few bytes at a time."""

from __future__ import annotations

import pytest

from connector.web import MAX_HEAD, Arrival, Arrived

LIMIT = 1000
HEAD = b"POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\nX-Shopify-Topic: orders/create\r\n"


def fed(data: bytes, step: int = 1) -> list[Arrived]:
    """What an arrival says after each ``step`` bytes of ``data``."""
    arrival = Arrival(deadline=0.0, max_body=LIMIT)
    return [arrival.add(data[i : i + step]) for i in range(0, len(data), step)]


def chunked(body: bytes, size: int, trailers: bytes = b"") -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n" + trailers + b"\r\n"


@pytest.mark.parametrize("step", [1, 7, 10_000])
def test_a_request_with_a_length_has_arrived_with_its_last_byte(step: int) -> None:
    request = HEAD + b"Content-Length: 20\r\n\r\n" + b"x" * 20
    states = fed(request, step)
    assert states[-1] is Arrived.WHOLE
    assert set(states[:-1]) <= {Arrived.NOT_YET}
    assert fed(request[:-1])[-1] is Arrived.NOT_YET


def test_a_request_without_a_body_has_arrived_with_its_headers() -> None:
    assert fed(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[-1] is Arrived.WHOLE


@pytest.mark.parametrize("trailers", [b"", b"X-Checksum: abc\r\n"])
@pytest.mark.parametrize("step", [1, 5, 10_000])
def test_a_chunked_request_has_arrived_with_its_last_chunk_and_blank_line(
    step: int, trailers: bytes
) -> None:
    request = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"y" * 300, 64, trailers)
    states = fed(request, step)
    assert states[-1] is Arrived.WHOLE
    assert set(states[:-1]) <= {Arrived.NOT_YET}


def test_a_chunked_body_is_over_the_limit_as_soon_as_its_chunks_are() -> None:
    request = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"z" * (3 * LIMIT), 300)
    states = fed(request, 50)
    over = states.index(Arrived.OVERSIZE)
    # handed over once a little more than the limit is in, long before the end
    assert len(HEAD) + LIMIT < 50 * (over + 1) < len(HEAD) + 1.2 * LIMIT + 100
    assert set(states[:over]) == {Arrived.NOT_YET}


def test_a_declared_length_over_the_limit_is_over_it_with_the_headers() -> None:
    assert fed(HEAD + b"Content-Length: %d\r\n\r\n" % (LIMIT + 1))[-1] is Arrived.OVERSIZE


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: -5\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Not a header line\r\n",
    ],
)
def test_ambiguous_framing_is_handed_to_the_parser_at_once(headers: bytes) -> None:
    assert fed(HEAD + headers + b"\r\n")[-1] is Arrived.MALFORMED


@pytest.mark.parametrize("size_line", [b"0x10", b"-5", b"1_0", b"zz", b""])
def test_a_chunk_size_that_is_not_hex_digits_is_malformed(size_line: bytes) -> None:
    request = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\n"
    assert fed(request, 10_000)[-1] is Arrived.MALFORMED


def test_headers_that_never_end_are_too_large() -> None:
    states = fed(HEAD + b"X-Long: " + b"a" * MAX_HEAD, 4096)
    assert states[-1] is Arrived.HEAD_TOO_LARGE


def test_a_client_that_expects_100_continue_is_noted() -> None:
    arrival = Arrival(deadline=0.0, max_body=LIMIT)
    arrival.add(HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    assert arrival.expects_continue
    assert arrival.waits_for_body
