"""A worker dying mid-send: what the sweeper does with its claim (never a second email)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobs.engine import ledger
from jobs.runtime import Runtime
from jobs.sending.pipeline import LEASE, resolve_stale_claims, run
from jobs.store.models import Message, MessageState
from tests.jobs.engine_support import T0, Harness, checkout, customer, hours


@pytest.fixture
def shop(runtime: Runtime) -> Harness:
    h = Harness(runtime)
    h.at(T0, checkout("tok-1", T0, customer()))
    return h


def _first(shop: Harness) -> Message:
    return shop.messages()[0]


def _claim(runtime: Runtime, message_id: int, state: MessageState) -> None:
    """Leave the row as a worker killed at that point would."""
    with runtime.sessions.begin() as session:
        claimed = ledger.claim(session, message_id, T0 + hours(1))
        assert not isinstance(claimed, str)
        message, token = claimed
        if state == MessageState.HANDED:
            assert ledger.hand_over(session, message, token, {"email_to": "anna@example.se"})


def test_a_claim_that_never_reached_the_provider_is_sent_later(
    shop: Harness, runtime: Runtime
) -> None:
    message_id = _first(shop).id
    _claim(runtime, message_id, MessageState.SENDING)
    # within the lease, nobody touches it
    assert resolve_stale_claims(shop.sender, T0 + hours(1) + LEASE / 2)["released"] == 0
    later = T0 + hours(1) + LEASE + timedelta(seconds=1)
    assert resolve_stale_claims(shop.sender, later)["released"] == 1
    assert run(shop.sender, message_id, later) == "sent"
    assert len(shop.sent()) == 1


def test_handed_over_without_idempotency_is_never_resent(shop: Harness, runtime: Runtime) -> None:
    shop.sender.courier.supports_idempotency = False  # type: ignore[misc]
    message_id = _first(shop).id
    _claim(runtime, message_id, MessageState.HANDED)
    later = T0 + hours(1) + LEASE + timedelta(seconds=1)
    assert resolve_stale_claims(shop.sender, later)["unknown"] == 1
    assert run(shop.sender, message_id, later) == "not_planned"
    assert shop.sent() == []
    message = _first(shop)
    assert (message.state, message.reason) == (MessageState.FAILED, "outcome_unknown")


def test_handed_over_with_idempotency_is_handed_over_again_with_the_same_key(
    shop: Harness, runtime: Runtime
) -> None:
    message_id = _first(shop).id
    _claim(runtime, message_id, MessageState.HANDED)
    with runtime.sessions.begin() as session:
        session.get_one(Message, message_id).message_id_header = "<kept@triggerpost>"
    later = T0 + hours(1) + LEASE + timedelta(seconds=1)
    assert resolve_stale_claims(shop.sender, later)["resent"] == 1
    assert run(shop.sender, message_id, later) == "sent"
    # the same Message-ID (the provider's idempotency key) goes out again
    assert [c.message_id_header for c in shop.outbox.sent] == ["<kept@triggerpost>"]


def test_two_workers_racing_for_one_message_send_it_once(shop: Harness) -> None:
    message_id = _first(shop).id
    at = T0 + hours(1)
    outcomes = sorted(run(shop.sender, message_id, at) for _ in range(2))
    assert outcomes == ["not_planned", "sent"]
    assert len(shop.sent()) == 1


def test_a_message_that_keeps_killing_its_worker_is_given_up(
    shop: Harness, runtime: Runtime
) -> None:
    message_id = _first(shop).id
    _claim(runtime, message_id, MessageState.SENDING)
    with runtime.sessions.begin() as session:
        session.get_one(Message, message_id).attempts = 6
    later = T0 + hours(1) + LEASE + timedelta(seconds=1)
    resolve_stale_claims(shop.sender, later)
    message = _first(shop)
    assert (message.state, message.reason) == (MessageState.FAILED, "worker_lost:gave_up")
    assert shop.sent() == []
