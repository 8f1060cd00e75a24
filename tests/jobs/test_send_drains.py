"""Send drains and ticks: a shop's due emails go out through a few jobs, each once."""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from rq.job import Job, JobStatus
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapters.platform import DiscountRequest
from jobs.engine import enrolment, ledger, schedule
from jobs.intake import apply
from jobs.runtime import Runtime
from jobs.sending import pipeline
from jobs.store import queries
from jobs.store.models import Enrollment, EnrollmentState, Message, MessageState, Shop
from tests.jobs.engine_support import Harness, checkout, customer
from tests.support import INSTANT, stepping_clock


def add_checkouts(h: Harness, count: int, at: datetime, updated: datetime) -> None:
    """Checkouts by as many customers, applied at ``at`` (the simulator's clock stands still:
    what they plan is left to the drains)."""
    with h.runtime.sessions.begin() as session:
        shop = session.get_one(Shop, h.shop_id)
        for n in range(count):
            who = customer(f"kund{n}@example.se", customer_id=f"c{n}", at=updated)
            event = checkout(f"tok-{n}", updated, who)
            apply.apply(session, shop, event, delivery_id=None, at=at)
        ledger.take_due_work(session)


def shop_with_due_emails(runtime: Runtime, checkouts: int) -> Harness:
    """A shop whose checkouts, updated an hour ago, each have three reminders due now."""
    h = Harness(runtime)
    h.settings(**INSTANT)
    started = datetime.now(UTC) - timedelta(hours=1)
    add_checkouts(h, checkouts, started, started)
    return h


def states(h: Harness) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in h.messages():
        counts[message.state] = counts.get(message.state, 0) + 1
    return counts


def test_a_drain_holds_what_it_takes_so_drains_of_one_shop_share_the_backlog(
    runtime: Runtime,
) -> None:
    h = shop_with_due_emails(runtime, 6)  # 18 emails due
    at = datetime.now(UTC)
    with runtime.sessions.begin() as session:
        first = list(ledger.take_due(session, h.shop_id, at, 16))
    with runtime.sessions.begin() as session:
        second = list(ledger.take_due(session, h.shop_id, at, 16))
        assert ledger.take_due(session, h.shop_id, at, 16) == {}
    assert len(first) == 16
    assert len(second) == 2
    assert not set(first) & set(second)
    # in send order: by due time, then priority, then age
    due = {m.id: (m.due_at, -m.priority, m.id) for m in h.messages()}
    assert first == sorted(first, key=due.__getitem__)
    # a hold older than ledger.HOLD is a dead drain's: the messages are free again
    later = at + ledger.HOLD + timedelta(seconds=1)
    with runtime.sessions.begin() as session:
        assert len(ledger.take_due(session, h.shop_id, later, 100)) == 18


def test_two_drains_side_by_side_send_every_email_once(runtime: Runtime) -> None:
    h = shop_with_due_emails(runtime, 12)  # 36 emails due
    handled: list[int] = []
    barrier = threading.Barrier(2)

    def drain() -> None:
        barrier.wait()
        handled.append(pipeline.drain(h.sender, h.shop_id))

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # a contact's next email can meet the gap guard of another drain's send an
    # instant later (a deferral, then sent): handled once or more, sent once
    assert sum(handled) >= 36
    assert states(h) == {MessageState.SENT: 36}
    sent = [c.message_id_header for c in h.outbox.sent]
    assert len(sent) == len(set(sent)) == 36
    # a full turn asked for a helper drain in Redis
    assert runtime.redis.exists(schedule.send_flag(h.shop_id))


def test_a_send_that_raises_does_not_hold_up_the_shops_other_emails(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    h = shop_with_due_emails(runtime, 2)
    broken = h.messages()[1].id
    courier = h.sender.courier
    real = courier.compose

    def compose(session, shop, message, contact, at):  # type: ignore[no-untyped-def]
        if message.id == broken:
            raise RuntimeError("template blew up")
        return real(session, shop, message, contact, at)

    courier.compose = compose  # type: ignore[method-assign]
    assert pipeline.drain(h.sender, h.shop_id) == 6
    assert states(h) == {MessageState.SENT: 5, MessageState.PLANNED: 1}
    retrying = next(m for m in h.messages() if m.id == broken)
    assert retrying.reason == "retry:prepare_error"
    assert retrying.due_at > datetime.now(UTC)  # given back for a later attempt
    assert "template blew up" in caplog.text


def test_a_drain_that_keeps_failing_fails_its_job(runtime: Runtime) -> None:
    h = shop_with_due_emails(runtime, 4)

    def compose(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("provider down")

    h.sender.courier.compose = compose  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="provider down"):
        pipeline.drain(h.sender, h.shop_id)
    # it gave up after MAX_RAISED; nothing was sent and nothing is lost
    assert states(h) == {MessageState.PLANNED: 12}
    assert sum(m.attempts for m in h.messages()) == pipeline.MAX_RAISED


def test_a_drain_past_its_time_leaves_the_rest_to_a_new_job(runtime: Runtime) -> None:
    h = shop_with_due_emails(runtime, 6)  # 18 emails due
    clock = stepping_clock()
    assert pipeline.drain(h.sender, h.shop_id, budget=5.5, clock=clock) == 5
    assert states(h) == {MessageState.SENT: 5, MessageState.PLANNED: 13}
    # the rest is not held: the next drain takes it at once
    assert all(m.enqueued_at is None for m in h.messages() if m.state == MessageState.PLANNED)
    queue = runtime.queue("messages")
    assert [job.func_name for job in queue.jobs] == ["jobs.tasks.send_due"] * 2  # helper, rest
    assert queue.jobs[0].args == (h.shop_id,)
    assert pipeline.drain(h.sender, h.shop_id) == 13
    assert states(h) == {MessageState.SENT: 18}


def _work(shop_id: int, id_: int, due: datetime, **kwargs: bool) -> schedule.DueWork:
    return schedule.DueWork("message", shop_id, id_, due, **kwargs)


def test_messages_due_in_the_same_second_share_their_shops_tick(runtime: Runtime) -> None:
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1, milliseconds=300)
    scheduled = runtime.queue("messages").scheduled_job_registry
    assert schedule.hand_off(runtime, [_work(7, 1, due), _work(7, 2, due)]) == 1
    assert schedule.hand_off(runtime, [_work(7, 3, due + timedelta(milliseconds=500))]) == 0
    assert schedule.hand_off(runtime, [_work(8, 4, due)]) == 1  # another shop's own tick
    tick = schedule.job_id(_work(7, 1, due))
    assert sorted(scheduled.get_job_ids()) == sorted([tick, schedule.job_id(_work(8, 4, due))])
    assert tick == f"sends-7-{int(due.timestamp()) + 1}"  # rounded up: never before it is due

    # a tick already running may have read the shop before this message was written
    job = Job.fetch(tick, connection=runtime.redis)
    job.set_status(JobStatus.STARTED)
    assert schedule.hand_off(runtime, [_work(7, 5, due)]) == 1
    assert f"{tick}-5" in scheduled.get_job_ids()


def test_a_tick_is_withdrawn_only_when_nothing_planned_is_left_in_its_second(
    runtime: Runtime,
) -> None:
    h = Harness(runtime)
    start = datetime.now(UTC) + timedelta(hours=1)  # due in an hour: ticks wait in Redis
    h.settings(**INSTANT)
    add_checkouts(h, 2, datetime.now(UTC), start)  # two carts: their reminders share ticks
    messages = h.messages()
    assert len(messages) == 6
    assert len({m.due_at for m in messages}) == 1
    work = [_work(h.shop_id, m.id, m.due_at) for m in messages]
    schedule.hand_off(runtime, work)
    scheduled = runtime.queue("messages").scheduled_job_registry
    assert scheduled.get_job_ids() == [schedule.job_id(work[0])]

    def end(checkout_messages: list[Message]) -> None:
        with runtime.sessions.begin() as session:
            for message in checkout_messages:
                ledger.finish(session, session.merge(message), MessageState.EXITED, "order", start)
            gone = ledger.take_due_work(session)
        schedule.hand_off(runtime, gone)

    end(messages[:3])  # the first cart's order: the second cart still needs the tick
    assert scheduled.get_job_ids() == [schedule.job_id(work[0])]
    end(messages[3:])
    assert scheduled.get_job_ids() == []
    assert not runtime.redis.exists(f"rq:job:{schedule.job_id(work[0])}")


def test_the_last_two_emails_ending_side_by_side_complete_their_enrollment(
    runtime: Runtime,
) -> None:
    h = shop_with_due_emails(runtime, 1)
    at = datetime.now(UTC)
    claims: list[tuple[Message, str]] = []
    with runtime.sessions.begin() as session:
        for message_id in [m.id for m in h.messages()]:
            claimed = ledger.claim(session, message_id, at)
            assert not isinstance(claimed, str)
            assert ledger.hand_over(session, *claimed, {"email_to": "kund0@example.se"})
            claims.append(claimed)
    (first, first_token), (second, second_token), (third, third_token) = claims
    with runtime.sessions.begin() as session:
        assert ledger.sent(session, session.merge(third), third_token, at, {})
        assert not enrolment.complete_if_done_by_id(session, third.enrollment_id, third.flow, at)

    checked = threading.Event()
    go = threading.Event()

    def finish(message: Message, token: str, wait: threading.Event | None) -> None:
        with runtime.sessions.begin() as session:
            assert ledger.sent(session, session.merge(message), token, at, {})
            enrolment.complete_if_done_by_id(session, message.enrollment_id, message.flow, at)
            if wait is not None:
                checked.set()
                assert wait.wait(10)  # still uncommitted while the other one checks

    a = threading.Thread(target=finish, args=(first, first_token, go))
    a.start()
    assert checked.wait(10)
    b = threading.Thread(target=finish, args=(second, second_token, None))
    b.start()
    b.join(0.5)  # it waits for the first to commit (or, unguarded, finishes now)
    go.set()
    a.join(10)
    b.join(10)
    with runtime.sessions() as session:
        enrollment = session.get_one(Enrollment, first.enrollment_id)
        assert enrollment.state == EnrollmentState.COMPLETED


def test_a_send_locking_its_contact_does_not_deadlock_with_a_decision_about_them(
    runtime: Runtime,
) -> None:
    """The send's contact lock and another transaction's decision row (which refers
    to the contact) must not wait on each other while each holds what the other
    needs next: here the enrollment the send is about to end."""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("row locks: SQLite runs one writer at a time, nothing to interleave")
    h = shop_with_due_emails(runtime, 1)
    message = h.messages()[0]
    at = datetime.now(UTC)
    contact_locked, enrollment_locked = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def send_side() -> None:
        try:
            with runtime.sessions.begin() as session:
                params = {"enrollment_id": message.enrollment_id, "contact_id": message.contact_id}
                locking = queries.ENROLLMENT_SHOP_AND_CONTACT_FOR_UPDATE
                enrollment, _shop, _contact = session.execute(locking, params).one()
                contact_locked.set()
                assert enrollment_locked.wait(10)
                enrolment.end_enrollment(session, enrollment, EnrollmentState.EXITED, "order", at)
        except BaseException as exc:
            errors.append(exc)

    def decision_side() -> None:
        try:
            with runtime.sessions.begin() as session:
                enrollment = session.get_one(
                    Enrollment, message.enrollment_id, with_for_update={"key_share": True}
                )
                enrollment_locked.set()
                assert contact_locked.wait(10)
                time.sleep(0.3)  # the send side now waits for this enrollment
                ledger.record(
                    session,
                    shop_id=h.shop_id,
                    flow="cart_recovery",
                    outcome="note",
                    at=at,
                    enrollment=enrollment,
                    contact_id=message.contact_id,
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send_side), threading.Thread(target=decision_side)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    with runtime.sessions() as session:
        assert session.get_one(Enrollment, message.enrollment_id).state == EnrollmentState.EXITED


def test_a_discount_is_issued_and_rendered_outside_any_write_transaction(
    runtime: Runtime,
) -> None:
    """The shop's API may take seconds: no writer may wait for it (on SQLite the
    writer lock file is free while it is called), and the code and its terms
    are stored with the hand-over."""
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("the writer lock file is SQLite's")
    h = Harness(runtime)
    h.settings(**{**INSTANT, "flows": {"cart_recovery": {**INSTANT["flows"]["cart_recovery"],
                                                         "discount": True}}})  # fmt: skip
    started = datetime.now(UTC) - timedelta(hours=1)
    add_checkouts(h, 1, started, started)
    database = runtime.settings.database_url.split("///", 1)[1]
    writer_free: list[bool] = []
    book = h.sender.discounts
    assert book is not None
    issue = book.issue

    def probing_issue(shop: Shop, request: DiscountRequest) -> None:
        with open(f"{database}-writer", "a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(lock, fcntl.LOCK_UN)
                writer_free.append(True)
            except BlockingIOError:
                writer_free.append(False)
        issue(shop, request)

    book.issue = probing_issue  # type: ignore[method-assign]
    assert pipeline.drain(h.sender, h.shop_id) == 3
    assert writer_free == [True]
    third = next(m for m in h.messages() if m.step == "email_3")
    assert third.state == MessageState.SENT
    assert third.discount_code is not None
    assert third.data["discount_percent"] == "10"
    assert [c.payload["discount_code"] for c in h.outbox.sent] == [None, None, third.discount_code]


def plan_checkouts(session: Session, h: Harness, count: int) -> None:
    """Checkouts updated an hour ago: each plans reminders due now (with INSTANT settings)."""
    updated = datetime.now(UTC) - timedelta(hours=1)
    shop = session.get_one(Shop, h.shop_id)
    for n in range(count):
        who = customer(f"kund{n}@example.se", customer_id=f"c{n}", at=updated)
        apply.apply(session, shop, checkout(f"tok-{n}", updated, who), delivery_id=None)


def test_a_unit_of_work_hands_its_due_work_to_rq_only_once_it_has_committed(
    runtime: Runtime,
) -> None:
    h = Harness(runtime)
    h.settings(**INSTANT)
    seen: list[tuple[int, int]] = []

    def hand_off(work: list[schedule.DueWork]) -> None:
        with runtime.reads() as session:  # what a job starting now would find
            seen.append((len(work), session.scalar(select(func.count(Message.id))) or 0))
        schedule.hand_off(runtime, work)

    with schedule.unit_of_work(runtime, via=hand_off) as session:
        plan_checkouts(session, h, 2)
        session.flush()
        assert seen == []
        assert runtime.queue("messages").count == 0
    assert seen == [(6, 6)]  # six reminders, every one of them written when handed over
    assert [job.func_name for job in runtime.queue("messages").jobs] == ["jobs.tasks.send_due"]


def test_a_unit_of_work_that_raises_keeps_nothing_and_hands_nothing_over(
    runtime: Runtime,
) -> None:
    h = Harness(runtime)
    h.settings(**INSTANT)

    def fail_midway() -> None:
        with schedule.unit_of_work(runtime) as session:
            plan_checkouts(session, h, 1)
            session.flush()
            raise RuntimeError("the rest of the transaction failed")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert h.messages() == []
    assert runtime.queue("messages").count == 0
    assert runtime.queue("messages").scheduled_job_registry.get_job_ids() == []


def test_a_unit_of_work_whose_hand_off_redis_does_not_take_leaves_it_to_the_sweeper(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(runtime)
    h.settings(**INSTANT)
    down = dataclasses.replace(
        runtime, redis=Redis(port=closed_port(), socket_connect_timeout=0.5), _queues={}
    )
    with caplog.at_level(logging.WARNING), schedule.unit_of_work(down) as session:
        plan_checkouts(session, h, 1)
    assert "the sweeper will retry" in caplog.text
    assert len(h.messages()) == 3  # committed all the same
    assert runtime.queue("messages").count == 0

    assert schedule.sweep(runtime, datetime.now(UTC) + schedule.GRACE + timedelta(seconds=1)) == 1
    assert [job.func_name for job in runtime.queue("messages").jobs] == ["jobs.tasks.send_due"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
