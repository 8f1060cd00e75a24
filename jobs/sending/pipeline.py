"""Sending one planned message, exactly once from the customer's view.

:func:`run` is the work for one message, with the time passed in so the
simulator can drive it; :func:`send_due` is the work of the RQ job
``jobs.tasks.send_due``, a drain that runs it for each of a shop's messages
that have come due. The steps, each its own
commit:

1. **claim**: planned -> sending with a fresh claim token (a conditional
   UPDATE: of two workers, or a worker and a replayed job, exactly one wins).
2. **judge**: the guards (:mod:`jobs.engine.guards`) against current state, with the
   contact's row locked so two of their messages cannot both take one slot.
   A no ends it (skipped, exited, expired, cancelled) or defers it back to
   planned with a new due time, each recorded with its reason.
3. **prepare**: the discount code (named from the message, so asking the
   platform again can only find the same code), then rendering.
4. **hand over**: sending -> handed, committed right before the provider is
   called, with the address and Message-ID that will be used, and the legal
   basis the guards found for it (subscribed, soft opt-in, transactional).
5. **deliver**, then **record**: handed -> sent with the provider's id.

Crash windows: dying before (4) leaves a ``sending`` row, which the sweeper
returns to planned after the lease (nothing reached the provider, so sending
it later is safe). Dying between the provider accepting and (5) is the one
window no database can close: the row stays ``handed``. The sweeper then asks
the courier: a backend with an idempotency key (the file outbox, providers
that take one) is simply called again with the same key and cannot make a
second email; for any other backend the message is marked
``failed:outcome_unknown`` and never resent: a possibly-missing email is
preferred to a possibly-duplicate one, and the merchant sees it in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.platform import AdminApiError, DiscountRequest, LiveOrderState, LiveQuestion
from adapters.registry import PLATFORMS
from jobs import logs, metrics, queues
from jobs.engine import enrolment, ledger, schedule
from jobs.engine.guards import Outcome, Verdict, judge
from jobs.engine.ledger import LEASE
from jobs.engine.policy import flow_options
from jobs.flows import registry
from jobs.flows.context import products_read_once
from jobs.flows.model import Flow, SubjectKind
from jobs.runtime import Runtime
from jobs.store import queries, rows
from jobs.store.models import (
    Checkout,
    Contact,
    Enrollment,
    EnrollmentState,
    Message,
    MessageState,
    Shop,
    now,
)

log = logging.getLogger(__name__)

#: messages a send drain holds per turn
SEND_BATCH = 16
#: seconds a send drain takes new turns before it leaves the rest to a new job
DRAIN_SECONDS = 60.0
#: sends that may raise in one drain before the drain itself fails
MAX_RAISED = 8
#: waits after transient delivery failures (attempt 1, 2, ...); then it fails
BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=3),
)


class TransientSendError(RuntimeError):
    """The provider may accept it later (rate limit, 4xx SMTP, 5xx, timeout)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentSendError(RuntimeError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Composed:
    """A rendered email ready for the provider, and what the ledger records of it."""

    email_to: str
    subject: str
    locale: str | None
    message_id_header: str
    payload: Any = field(repr=False)


class Courier(Protocol):
    """Rendering and delivery, as a send sees them (jobs.sending.courier has the real one)."""

    @property
    def provider(self) -> str: ...

    @property
    def supports_idempotency(self) -> bool: ...

    def compose(
        self,
        session: Any,
        shop: Shop,
        message: Message,
        contact: Contact,
        at: datetime,
    ) -> Composed: ...

    def deliver(self, composed: Composed) -> str | None:
        """Hand it over; returns the provider's id. Raises Transient/PermanentSendError."""
        ...


class DiscountIssuer(Protocol):
    def issue(self, shop: Shop, request: DiscountRequest) -> None: ...


class LiveOrders(Protocol):
    def order_state(self, shop: Shop, order_id: str) -> LiveOrderState | None:
        """The platform's current view of the order; raises AdminApiError."""
        ...

    def ordered_since(self, shop: Shop, email: str, since: datetime) -> LiveOrderState | None:
        """The customer's first order since ``since``, as the platform sees it; raises
        AdminApiError."""
        ...


class Catalogue(Protocol):
    def complete(self, message_ids: list[int], at: datetime) -> None:
        """Ask the shops' platforms for the products these messages' emails would show
        that the store holds nothing of, and store what they say (jobs.sending.catalogue).
        Best effort: it never raises for the platform."""
        ...


@dataclass
class Sender:
    """What a send needs besides the database: delivery, the shops' APIs, and a
    way to queue work it reschedules (RQ normally; the simulator polls instead)."""

    runtime: Runtime
    courier: Courier
    discounts: DiscountIssuer | None = None
    #: the optional live re-check before a send (None: local state only)
    live_orders: LiveOrders | None = None
    #: the optional question for products the store has no word of (None: not asked)
    catalogue: Catalogue | None = None
    hand_off: Callable[[list[enrolment.DueWork]], object] | None = None

    def queue(self, work: list[enrolment.DueWork]) -> None:
        if not work:
            return
        if self.hand_off is not None:
            self.hand_off(work)
            return
        schedule.hand_off(self.runtime, work)

    def unit_of_work(self) -> AbstractContextManager[Session]:
        """A transaction whose due work is queued (:meth:`queue`) once it has committed."""
        return schedule.unit_of_work(self.runtime, via=self.queue)


def discount_code(secret: str, message: Message) -> str:
    """The message's own code: the same on every retry, unguessable from outside."""
    digest = hmac.new(secret.encode(), f"discount:{message.id}".encode(), hashlib.sha256).digest()
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a phone screen
    number = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(10):
        number, index = divmod(number, len(alphabet))
        chars.append(alphabet[index])
    return "TP-" + "".join(chars)


def run(
    sender: Sender,
    message_id: int,
    at: datetime,
    asked: Questions | None = None,
    refs: ledger.Refs | None = None,
    *,
    catalogued: bool = False,
) -> str:
    """Send (or decide not to send) one message; returns the outcome recorded.

    ``asked`` and ``refs``: the live re-check's questions and what the message
    belongs to, when a drain has read them for a batch of messages already;
    ``catalogued``: the drain asked the catalogue for the batch's products too.

    Claim, judge, render and hand over share one transaction: if anything in it
    fails, the row is still planned (nothing was handed over). Only a message
    that needs a discount code commits its claim first, so the shop's API is
    never called with the database locked. Each step either hands the next one
    what it needs or stops the send (a :class:`_Stop`, settled once its
    transaction has committed).
    """
    started = time.monotonic()
    with logs.ids(message=message_id):
        live = _live_check(sender, message_id, at, asked)
        if live is None and sender.catalogue is not None and not catalogued:
            sender.catalogue.complete([message_id], at)  # an HTTP call: before the transaction
        # what the transaction plans or ends is queued once it commits; it writes no
        # products (the catalogue wrote its own before), so the guards and the email ask
        # about each product once
        with sender.unit_of_work() as session, products_read_once(session):
            claim = _claim(session, message_id, at, refs)
            if isinstance(claim, str):
                return claim  # not planned, not yet due (a deferral moved it), or taken
            logs.note(shop=claim.shop.id)
            step: Composed | _Stop | None = _judge(session, claim, live, at)
            if step is None and not _needs_discount(claim.message):
                step = _prepare_and_hand_over(sender, session, claim, at)
        if step is None:  # a discount code to issue first: outside the transaction
            step = _prepare_with_discount(sender, claim, at)
        if isinstance(step, _Stop):
            _settled(claim, step.outcome)
            return step.settle()
        # handed over now: its due time (``at`` is the clock the send runs on, the
        # simulator's too) to this moment
        lag = (at - claim.message.due_at).total_seconds() + time.monotonic() - started
        metrics.observe_send_lag(lag)
        outcome = _deliver(sender, claim, step, at)
        _settled(claim, outcome)
        return outcome


def _settled(claim: _Claim, outcome: str) -> None:
    """What a send came to, counted (jobs.metrics) and logged once."""
    message = claim.message
    metrics.count_send(message.flow, outcome)
    log.info("message %s (%s %s): %s", message.id, message.flow, message.step, outcome)


@dataclass
class _Claim:
    """A claimed message, its token, and what it is judged against."""

    message: Message
    token: str
    enrollment: Enrollment
    shop: Shop
    contact: Contact | None
    #: the legal basis the guards found, recorded with the hand-over (JSON)
    basis: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Stop:
    """The send ends before the provider: the outcome, and a failure to raise once
    the transaction has committed (and queued the work it made due)."""

    outcome: str
    failure: BaseException | None = None

    def settle(self) -> str:
        if self.failure is not None:
            raise self.failure
        return self.outcome


def _claim(session: Any, message_id: int, at: datetime, refs: ledger.Refs | None) -> _Claim | str:
    """Step 1: planned -> sending under a fresh token, or why not (``not_planned``,
    ``not_due``, ``taken``).

    The contact is locked before the message is claimed: the intake of an
    event locks its contact before the messages it ends, so the two always
    take their locks in the same order and cannot deadlock.
    """
    refs = refs or ledger.refs_of(session, message_id)
    if refs is None:
        return "not_planned"
    params = {"enrollment_id": refs.enrollment_id, "contact_id": refs.contact_id}
    found = (
        session.execute(queries.ENROLLMENT_SHOP_AND_CONTACT_FOR_UPDATE, params).one_or_none()
        if refs.contact_id
        else None
    )
    claimed = ledger.claim(session, message_id, at)
    if isinstance(claimed, str):
        return claimed
    message, token = claimed
    if found is not None:
        enrollment, shop, contact = found
    else:  # no contact (or no longer): the guards say so
        enrollment, shop = session.execute(queries.ENROLLMENT_AND_SHOP, params).one()
        contact = None
    return _Claim(message, token, enrollment, shop, contact)


def _judge(session: Any, claim: _Claim, live: str | None, at: datetime) -> _Stop | None:
    """Step 2: the guards against the state of the moment; None if it is to be sent.

    A flow that is gone cancels it; an exit the live re-check found ends the
    enrollment first, so the guards see it. The verdict is then applied.
    """
    message, enrollment = claim.message, claim.enrollment
    flow = registry.get(message.flow)
    if flow is None:
        ledger.finish(
            session, message, MessageState.CANCELLED, "flow_removed", at, token=claim.token
        )
        return _Stop("cancelled")
    if live is not None and enrollment.state == EnrollmentState.ACTIVE:
        enrolment.end_enrollment(session, enrollment, EnrollmentState.EXITED, live, at)
    ctx = enrolment.context_for(session, claim.shop, flow, enrollment, at)
    verdict = judge(session, claim.shop, flow, enrollment, message, claim.contact, ctx, at)
    if verdict.basis is not None:
        claim.basis = verdict.basis.as_record()
    return _apply(session, claim, verdict, at)


def _apply(session: Any, claim: _Claim, verdict: Verdict, at: datetime) -> _Stop | None:
    """What the verdict says, done: deferred back to planned with a new due time, or
    ended with its reason (an exit ends the enrollment too, and its later messages,
    whose jobs are withdrawn once this commits)."""
    message, token = claim.message, claim.token
    if verdict.sends:
        return None
    if verdict.outcome == Outcome.DEFERRED:
        assert verdict.until is not None
        ledger.release(
            session,
            message,
            due_at=verdict.until,
            reason=verdict.reason or "",
            at=at,
            token=token,
        )
        enrolment.due_work(session).append(
            enrolment.DueWork(enrolment.DueKind.MESSAGE, message.shop_id, message.id, verdict.until)
        )
        return _Stop(f"deferred:{verdict.reason}")
    if verdict.ends_enrollment:
        assert verdict.reason is not None
        enrolment.end_enrollment(
            session, claim.enrollment, EnrollmentState.EXITED, verdict.reason, at
        )
    ledger.finish(session, message, MessageState(verdict.outcome), verdict.reason, at, token=token)
    enrolment.complete_if_done(session, claim.enrollment, at)
    return _Stop(f"{verdict.outcome}:{verdict.reason}")


def _needs_discount(message: Message) -> bool:
    return bool(message.data.get("discount")) and not message.discount_code


def _prepare_and_hand_over(
    sender: Sender, session: Any, claim: _Claim, at: datetime
) -> Composed | _Stop:
    """Steps 3 and 4 in the claim's transaction (no discount code to issue): render,
    then sending -> handed."""
    assert claim.contact is not None  # judge() skipped it otherwise
    try:
        composed = sender.courier.compose(session, claim.shop, claim.message, claim.contact, at)
        _hand_over(sender, session, claim.message, claim.token, composed, claim.basis)
    except Exception as exc:
        return _not_handed_over(session, claim, exc, at)
    return composed


def _prepare_with_discount(sender: Sender, claim: _Claim, at: datetime) -> Composed | _Stop:
    """Steps 3 and 4 for a message that needs a discount code, after the claim committed.

    The claim now holds the message as handed over (with its code and terms).
    """
    try:
        composed, claim.message = _issue_compose_hand_over(
            sender, claim.message.id, claim.token, claim.basis, at
        )
    except Exception as exc:
        with sender.unit_of_work() as session:
            return _not_handed_over(session, claim, exc, at)
    return composed


def _not_handed_over(session: Any, claim: _Claim, exc: Exception, at: datetime) -> _Stop:
    """Preparing failed and nothing reached the provider: a permanent failure ends the
    message; any other gives the row back for a later attempt and is raised once that
    has committed."""
    if isinstance(exc, PermanentSendError):
        ledger.finish(
            session, claim.message, MessageState.FAILED, exc.reason, at, token=claim.token
        )
        return _Stop(f"failed:{exc.reason}")
    outcome = _retry_or_fail(session, claim.message, claim.token, "prepare_error", None, at)
    return _Stop(outcome, failure=exc)


#: per message that asks the platform before it is sent: its shop and the question
Questions = dict[int, tuple[Shop, LiveQuestion]]


def _live_check(
    sender: Sender, message_id: int, at: datetime, asked: Questions | None
) -> str | None:
    """The optional live re-check, before any transaction (it is an HTTP call)."""
    if sender.live_orders is None:
        return None
    if asked is None:
        with sender.runtime.reads() as session:
            asked = live_questions(session, [message_id], at)
    question = asked.get(message_id)
    if question is None:
        return None
    return _live_exit(sender, *question)


def live_questions(session: Any, message_ids: list[int], at: datetime) -> Questions:
    """What the live re-check would ask for these messages, read in a few statements
    for the whole batch: the messages, then the contacts and checkouts the flows'
    questions read (not a statement each per message).

    Most messages ask nothing: already ended, not yet due, their enrollment
    over, or a flow or platform without a live check.
    """
    found = session.execute(
        select(Message.id, Message.state, Message.flow, Message.due_at, Enrollment, Shop)
        .join(Enrollment, Enrollment.id == Message.enrollment_id)
        .join(Shop, Shop.id == Message.shop_id)
        .where(Message.id.in_(message_ids))
    ).all()
    asking = []
    for row in found:
        if (
            row.state != MessageState.PLANNED
            or row.due_at > at
            or row.Enrollment.state != EnrollmentState.ACTIVE
        ):
            continue
        flow = registry.get(row.flow)
        if flow is None or flow.live_check is None:
            continue
        platform = PLATFORMS.get(row.Shop.platform)
        if platform is None:
            continue
        asking.append((row, flow, flow.live_check, platform))
    _held = _read_ahead(session, [(row.Enrollment, flow) for row, flow, _, _ in asking])
    questions: Questions = {}
    for row, flow, live_check, platform in asking:
        ctx = enrolment.context_for(session, row.Shop, flow, row.Enrollment, at)
        question = live_check(platform, ctx)
        if question is not None:
            questions[row.id] = (row.Shop, question)
    return questions


def _read_ahead(session: Any, asking: list[tuple[Enrollment, Flow]]) -> list[object]:
    """The contacts and checkouts these enrollments' contexts read, in a statement each.

    The session's identity map (contacts) and :mod:`jobs.store.rows` (checkouts)
    then answer the contexts without asking the database; the rows are returned
    to be held while they do (the identity map keeps only what is referenced).
    """
    contact_ids = {e.contact_id for e, _ in asking if e.contact_id is not None}
    tokens = {
        (e.shop_id, e.subject) for e, flow in asking if flow.subject_kind == SubjectKind.CHECKOUT
    }
    held: list[object] = []
    if contact_ids:
        held += session.scalars(select(Contact).where(Contact.id.in_(sorted(contact_ids)))).all()
    for shop_id in sorted({shop_id for shop_id, _ in tokens}):
        checkouts = session.scalars(
            select(Checkout).where(
                Checkout.shop_id == shop_id,
                Checkout.token.in_(sorted(token for shop, token in tokens if shop == shop_id)),
            )
        ).all()
        for checkout in checkouts:
            rows.remember(session, checkout)
        held += checkouts
    return held


def _hand_over(
    sender: Sender,
    session: Any,
    message: Message,
    token: str,
    composed: Composed,
    basis: dict[str, Any] | None,
) -> None:
    """Step 4: sending -> handed, with the address and Message-ID that will be used
    and the legal basis it goes on; committed before the provider is called (see
    the module docstring)."""
    handed = ledger.hand_over(
        session,
        message,
        token,
        {
            "email_to": composed.email_to,
            "subject_line": composed.subject,
            "locale": composed.locale,
            "message_id_header": composed.message_id_header,
            "provider": sender.courier.provider,
            "discount_code": message.discount_code,
            "data": message.data,  # with its discount's terms, when it has one
            "legal_basis": basis,
        },
    )
    if not handed:
        raise PermanentSendError("claim_lost")


def _live_exit(sender: Sender, shop: Shop, question: LiveQuestion) -> str | None:
    """Ask the platform the flow's question; an exit reason if the store has moved on:
    the flow's order paid, cancelled or refunded, or the customer's order since.

    Optional and best effort: if the shop's API cannot answer (down, slow, a
    rejected token, rate limited past the client's short retries), the local
    state (re-checked by the guards) decides and the failure is logged; the
    send is neither held back nor failed for it.
    """
    assert sender.live_orders is not None
    try:
        if question.order_id is None:
            assert question.email is not None
            assert question.since is not None
            ordered = sender.live_orders.ordered_since(shop, question.email, question.since)
            return "order_placed" if ordered is not None else None
        state = sender.live_orders.order_state(shop, question.order_id)
    except AdminApiError as exc:
        log.warning("shop %s: live re-check failed: %s", shop.id, exc)
        return None
    if state is None:
        return None
    if state.refunded:
        return "order_refunded"
    if state.cancelled:
        return "order_cancelled"
    if state.paid:
        return "order_paid"
    return None


def _issue_compose_hand_over(
    sender: Sender, message_id: int, token: str, basis: dict[str, Any] | None, at: datetime
) -> tuple[Composed, Message]:
    """Issue the message's discount code, render it, then hand it over.

    Only the hand-over writes. The shop's API is called outside any
    transaction (a write transaction would hold every SQLite writer back, or
    keep a PostgreSQL connection idle in a transaction, while it answers), and
    rendering only reads.
    """
    runtime = sender.runtime
    with runtime.reads() as session:
        message = session.get_one(Message, message_id)
        shop = session.get_one(Shop, message.shop_id)
        contact = session.get_one(Contact, message.contact_id)
    if _needs_discount(message):
        code = discount_code(runtime.settings.secret_key, message)
        _issue_discount(sender, shop, message, contact, code, at)
        message.discount_code = code
    with runtime.reads() as session:
        composed = sender.courier.compose(session, shop, message, contact, at)
    with runtime.sessions.begin() as session:
        _hand_over(sender, session, message, token, composed, basis)
    return composed, message


def _issue_discount(
    sender: Sender,
    shop: Shop,
    message: Message,
    contact: Contact,
    code: str,
    at: datetime,
) -> None:
    flow = registry.get(message.flow)
    options = flow_options(shop, flow) if flow else {}
    from decimal import Decimal

    request = DiscountRequest(
        code=code,
        title=f"triggerpost {message.flow} {message.id}",
        expires_at=at + timedelta(hours=float(options.get("discount_valid_hours", 48))),
        percent=Decimal(str(options.get("discount_percent", 10))),
        email=contact.email,
        customer_id=contact.customer_id,
    )
    if sender.discounts is None:
        raise PermanentSendError("discount_unavailable")
    sender.discounts.issue(shop, request)
    message.data = {
        **message.data,
        "discount_percent": str(request.percent),
        "discount_expires_at": request.expires_at.isoformat(),
    }


def _deliver(sender: Sender, claim: _Claim, composed: Composed, at: datetime) -> str:
    """Step 5: hand the email to the provider, then record what it said."""
    try:
        provider_id = sender.courier.deliver(composed)
    except (TransientSendError, PermanentSendError) as exc:
        return _record_refusal(sender, claim, exc, at)
    return _record_sent(sender, claim, provider_id, at)


def _record_sent(sender: Sender, claim: _Claim, provider_id: str | None, at: datetime) -> str:
    """handed -> sent with the provider's id: the message is the one claimed, already
    read, so recording needs no read of it (nor of its enrollment)."""
    message = claim.message
    with sender.runtime.sessions.begin() as session:
        ledger.sent(session, message, claim.token, at, {"provider_message_id": provider_id})
        enrolment.complete_if_done_by_id(session, message.enrollment_id, message.flow, at)
    return "sent"


def _record_refusal(
    sender: Sender, claim: _Claim, exc: TransientSendError | PermanentSendError, at: datetime
) -> str:
    """The provider said not now (retried after a backoff, or failed when they are
    spent) or never (failed)."""
    with sender.unit_of_work() as session:
        if isinstance(exc, PermanentSendError):
            ledger.finish(
                session, claim.message, MessageState.FAILED, exc.reason, at, token=claim.token
            )
            return f"failed:{exc.reason}"
        return _retry_or_fail(session, claim.message, claim.token, exc.reason, exc.retry_after, at)


def _retry_or_fail(
    session: Any,
    message: Message,
    token: str,
    reason: str,
    retry_after: float | None,
    at: datetime,
) -> str:
    attempt = message.attempts
    if attempt > len(BACKOFF):
        ledger.finish(session, message, MessageState.FAILED, f"{reason}:gave_up", at, token=token)
        return f"failed:{reason}"
    wait = BACKOFF[attempt - 1] if attempt >= 1 else BACKOFF[0]
    if retry_after is not None:
        wait = max(wait, timedelta(seconds=retry_after))
    due = at + wait
    ledger.release(
        session,
        message,
        due_at=due,
        reason=f"retry:{reason}",
        at=at,
        token=token,
        outcome="retrying",
    )
    enrolment.due_work(session).append(
        enrolment.DueWork(enrolment.DueKind.MESSAGE, message.shop_id, message.id, due)
    )
    return f"retrying:{reason}"


def resolve_stale_claims(sender: Sender, at: datetime) -> dict[str, int]:
    """The sweeper's part: claims whose worker died (see the module docstring)."""
    counts = {"released": 0, "resent": 0, "unknown": 0}
    with sender.unit_of_work() as session:
        stale = session.scalars(
            select(Message).where(
                Message.state.in_([MessageState.SENDING, MessageState.HANDED]),
                Message.claimed_at < at - LEASE,
            )
        ).all()
        for message in stale:
            if message.attempts > len(BACKOFF):
                # it has killed its worker every time: stop before it does again
                if ledger.finish(
                    session,
                    message,
                    MessageState.FAILED,
                    "worker_lost:gave_up",
                    at,
                    token=message.claim_token,
                ):
                    counts["unknown"] += 1
                continue
            if message.state == MessageState.SENDING or sender.courier.supports_idempotency:
                # nothing was handed over, or handing over again cannot duplicate it
                key = "released" if message.state == MessageState.SENDING else "resent"
                if ledger.release(
                    session,
                    message,
                    due_at=min(message.due_at, at),  # it was due already: it stays due
                    reason="worker_lost",
                    at=at,
                    token=message.claim_token,
                    outcome="retrying",
                ):
                    enrolment.due_work(session).append(
                        enrolment.DueWork(
                            enrolment.DueKind.MESSAGE, message.shop_id, message.id, message.due_at
                        )
                    )
                    counts[key] += 1
            elif ledger.finish(
                session,
                message,
                MessageState.FAILED,
                "outcome_unknown",
                at,
                token=message.claim_token,
            ):
                counts["unknown"] += 1
    return counts


def drain(
    sender: Sender,
    shop_id: int,
    *,
    budget: float = DRAIN_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Send the shop's messages that have come due, a few at a time, in send order;
    returns how many were handled (sent or not).

    Each turn holds up to :data:`SEND_BATCH` messages no other drain holds
    (:func:`jobs.engine.ledger.take_due`), so drains of one shop share its backlog
    side by side; each message is then sent exactly as :func:`run` does, in
    its own transactions. While a backlog remains, a helper drain is asked
    for now and then (at most one waits in the queue): a slow provider or a
    burst is spread over the idle workers. After ``budget`` seconds the rest
    (its holds let go) is left to a new drain job, so other shops' work is
    not held up and the job stays within its timeout.

    A message whose send raises was given back for a later attempt (or left
    planned, held, until the hold lapses) by :func:`run`; it is logged and the
    drain goes on with the others. Only when :data:`MAX_RAISED` have raised
    (the database or the provider is failing for everyone) does the drain
    itself fail, and the sweeper asks for a new one later.
    """
    runtime = sender.runtime
    started = clock()
    done = raised = 0
    while True:
        asked: Questions = {}
        with runtime.sessions.begin() as session:
            at = now()
            held = ledger.take_due(session, shop_id, at, SEND_BATCH)
            if held and sender.live_orders is not None:
                asked = live_questions(session, list(held), at)
        if not held:
            return done
        if sender.catalogue is not None:
            # products no webhook told us of, asked for the batch at once (an HTTP call:
            # outside any transaction)
            sender.catalogue.complete(list(held), at)
        if len(held) == SEND_BATCH:
            schedule.notify_sends(runtime, shop_id)  # a helper, if none waits yet
        ids = list(held)
        for n, message_id in enumerate(ids):
            if clock() - started > budget:
                with runtime.sessions.begin() as session:
                    ledger.let_go(session, ids[n:])
                schedule.notify_sends(runtime, shop_id, force=True)
                return done
            try:
                run(sender, message_id, now(), asked, held[message_id], catalogued=True)
            except Exception:
                # still held by this drain, it is not taken again by it
                log.exception("shop %s: sending message %s raised", shop_id, message_id)
                raised += 1
                if raised >= MAX_RAISED:
                    raise
            done += 1


def send_due(sender: Sender, shop_id: int) -> int:
    """The ``send_due`` job's work: a drain of the shop's due messages (see
    :mod:`jobs.engine.schedule`), which asks for a new job from here on."""
    queues.clear(sender.runtime.redis, schedule.send_flag(shop_id))
    with logs.ids(shop=shop_id):
        return drain(sender, shop_id)
