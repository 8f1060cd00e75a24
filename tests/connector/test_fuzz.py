"""The webhook fuzzer (bench/fuzz.py) as a test: a fixed seed, a bounded count, zero tolerated.

Signed mutants of the real fixtures, forgeries and replays go through the web app
and then through a drain of the real intake. Not one may be answered 5xx, a
forgery may never be accepted, no delivery answered 200 may be missing or stored
twice, and the drain must apply or refuse (with its reason) every delivery it
holds. On failure the assertion prints the counts and an example of each, with
the request to reproduce it; ``make fuzz`` runs the same with a larger count.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from werkzeug.serving import make_server

from bench import fuzz
from connector.app import create_app
from jobs.intake import apply
from jobs.runtime import Runtime

SEED = 14
#: every kind a dozen times: some 300 requests, a few seconds per database
COUNT = 12 * len(fuzz.KINDS)
ZERO = dict.fromkeys(fuzz.CHECKS, 0)


def in_process(runtime: Runtime) -> fuzz.InProcess:
    return fuzz.InProcess(create_app(runtime=runtime))


def test_fuzzed_webhooks_never_get_a_5xx_a_wrong_accept_a_loss_or_a_drain_crash(
    runtime: Runtime,
) -> None:
    report = fuzz.run(runtime, in_process(runtime), seed=SEED, count=COUNT)

    assert set(report.kinds) == set(fuzz.KINDS)  # every kind was tried
    # the run reached every stage: accepted, refused, applied and refused again in the drain
    assert report.answers["200 stored"] > COUNT // 4
    assert report.answers["401 refused"] > COUNT // 10
    assert report.processed > COUNT // 5
    assert sum(report.refused.values()) > 0
    assert report.counts() == ZERO, report.text(examples=8)


def test_the_same_seed_makes_the_same_deliveries() -> None:
    def sent(seed: int) -> list[tuple[bytes, tuple[tuple[str, str], ...]]]:
        _, cases = fuzz.generate(seed, 2 * len(fuzz.KINDS), nonce="fixed")
        return [(r.body, r.headers) for case in cases for r in case.requests]

    assert sent(SEED) == sent(SEED)
    assert sent(SEED) != sent(SEED + 1)


class AcceptsEverything:
    """A broken intake: 200 "stored" for anything, and nothing stored."""

    def send(self, request: fuzz.Request) -> fuzz.Answer:
        return fuzz.Answer(200, "stored")


def test_an_intake_that_accepts_forgeries_and_stores_nothing_is_counted(
    runtime: Runtime,
) -> None:
    count = 2 * len(fuzz.KINDS)
    report = fuzz.run(runtime, AcceptsEverything(), seed=SEED, count=count)

    _, cases = fuzz.generate(SEED, count, nonce="any")
    forged = sum(len(c.requests) for c in cases if c.family == "forged")
    genuine = sum(len(c.requests) for c in cases if c.family != "forged")
    counts = report.counts()
    assert counts[fuzz.WRONG_ACCEPT] == forged
    assert counts[fuzz.LOST] == genuine
    assert counts[fuzz.STORED_TWICE] == sum(1 for c in cases if c.kind == "replay")
    assert "[wrong accept]" in report.text()


def test_a_drain_that_raises_is_counted_apart_from_a_refusal(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> apply.Applied:
        raise KeyError("a bug in applying an event")

    monkeypatch.setattr(apply, "apply", broken)
    report = fuzz.run(runtime, in_process(runtime), seed=SEED, count=2 * len(fuzz.KINDS))

    crashes = [f for f in report.findings if f.check == fuzz.DRAIN_CRASH]
    assert crashes
    assert all("KeyError" in f.detail for f in crashes)
    assert sum(report.refused.values()) > 0  # and refusals stay refusals


@pytest.fixture
def served(runtime: Runtime) -> Iterator[tuple[Flask, str]]:
    """The web app, and its URL behind a real HTTP server on loopback."""
    app = create_app(runtime=runtime)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_over_a_socket_the_fuzzer_counts_what_it_counts_in_process(
    runtime: Runtime, served: tuple[Flask, str]
) -> None:
    app, url = served
    count = len(fuzz.KINDS)
    over_http = fuzz.run(runtime, fuzz.OverHttp(url), seed=SEED, count=count)
    here = fuzz.run(runtime, fuzz.InProcess(app), seed=SEED, count=count)

    assert over_http.requests == here.requests
    assert over_http.answers["200 stored"] == here.answers["200 stored"] > 0
    assert over_http.counts() == here.counts()
