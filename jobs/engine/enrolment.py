"""The flow engine: enrollments from events, the plan of messages, exits, wakes.

Runs inside the transaction that applied the event (``jobs.intake.apply.apply``), so
an event, the enrollments it starts and the messages they plan commit
together or not at all, and a replayed delivery finds them already there
(every enrollment and message has a unique key). What became due is noted on
the session (:func:`due_work`) and handed to RQ after the commit
(:mod:`jobs.engine.schedule`); the sweeper re-hands anything Redis lost.

Facts (a birthday came, a customer lapsed: ``adapters.events.FACTS``) arrive
here like any webhook's event, through ``jobs.intake.apply.apply``.

A trigger with an *audience* fans one event out to every contact its selection
finds (a new product to those who bought its kind). The selection runs in the
database, a batch of contacts per transaction in contact id order; the batch
left over is carried by a *fan-out enrollment* (no contact, key
``audience:<subject>``) that wakes at once through the ordinary wake path
(RQ, the sweeper, the simulator) to enroll the next batch. Its unique key
makes a replayed event fan out nobody twice, and each contact's own
enrollment keeps its re-entry rule.

An event that triggers a flow but does not start it for its contact leaves
the reason (:class:`NotStarted`) in ``non_enrolments``: one row per shop,
contact and flow, the latest reason kept and counted by one upsert, so
``triggerpost why`` can answer for an email that never began. An enrollment
writes nothing there; neither does a flow whose trigger the event does not
match, nor an event without a contact (no one to explain it to). Consent is
not asked at enrolment: the guards ask it at every send, where the answer is
current (an unsubscribed contact enrolls, and her sends are ``skipped``).

Time is passed in (``at``), never read from the wall clock here, so the
simulator can drive the same code with a virtual clock.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from adapters import events as ev
from jobs.audience import segments
from jobs.engine import ledger, localtime
from jobs.engine.ledger import DueKind as DueKind
from jobs.engine.ledger import DueWork as DueWork
from jobs.engine.ledger import due_work as due_work
from jobs.engine.ledger import take_due_work as take_due_work
from jobs.engine.policy import flow_audience, flow_options
from jobs.flows import registry
from jobs.flows.context import FlowContext
from jobs.flows.model import (
    AUDIENCE_KEY_PREFIX,
    AudienceQuery,
    Branch,
    End,
    Flow,
    IssueDiscount,
    Label,
    Reentry,
    Send,
    Wait,
    WaitForEvent,
    WaitUntil,
)
from jobs.store import queries
from jobs.store.db import insert_new, plain
from jobs.store.models import (
    Contact,
    Enrollment,
    EnrollmentState,
    Message,
    MessageState,
    Shop,
    ShopStatus,
)

log = logging.getLogger(__name__)


def _note(session: Session, kind: DueKind, shop_id: int, id_: int, due_at: datetime) -> None:
    due_work(session).append(DueWork(kind, shop_id, id_, due_at))


def _withdraw(session: Session, kind: DueKind, shop_id: int, id_: int, due_at: datetime) -> None:
    due_work(session).append(DueWork(kind, shop_id, id_, due_at, withdraw=True))


# --- events in ------------------------------------------------------------------


def on_event(
    session: Session,
    shop: Shop,
    event: ev.Event,
    contact: Contact | None,
    subject: str | None,
    *,
    event_id: int | None,
    at: datetime,
) -> None:
    """Exit, resume, re-anchor and enroll, in that order, for one applied event."""
    if shop.status != ShopStatus.ACTIVE:
        return
    subjects = [subject] if subject is not None else []
    order = getattr(event, "order", None)
    if isinstance(order, ev.Order) and order.checkout_token:
        # the checkout it completes, even if it was started under another address
        subjects.append(order.checkout_token)
    active = _active_enrollments(session, shop.id, contact, subjects)
    for enrollment in active:
        flow = registry.get(enrollment.flow)
        if flow is None or _fanning_out(enrollment):
            continue
        ctx = context_for(session, shop, flow, enrollment, at, event)
        if _check_exits(session, flow, enrollment, ctx, at, event):
            continue
        _resume_on_event(session, shop, flow, enrollment, ctx, subject, at)
    for flow in registry.flows().values():
        if not isinstance(event, flow.trigger.events):
            continue
        if flow.trigger.audience is not None:
            _start_fan_out(session, shop, flow, event, event_id=event_id, at=at)
        else:
            _trigger(session, shop, flow, event, contact, event_id=event_id, at=at)


def _active_enrollments(
    session: Session, shop_id: int, contact: Contact | None, subjects: list[str]
) -> list[Enrollment]:
    if contact is None and not subjects:
        return []
    statement = queries.ACTIVE_ENROLLMENTS_ABOUT[(contact is not None, bool(subjects))]
    params = {
        "shop_id": shop_id,
        "contact_id": contact.id if contact is not None else None,
        "subjects": subjects,
    }
    return list(session.scalars(statement, params))


def context_for(
    session: Session,
    shop: Shop,
    flow: Flow,
    enrollment: Enrollment | None,
    at: datetime,
    event: ev.Event | None = None,
    *,
    contact: Contact | None = None,
    subject: str | None = None,
) -> FlowContext:
    """What the flow's conditions see: the enrollment's contact and subject (or, before
    there is an enrollment, the ones given), the shop's options for the flow, and the time."""
    if enrollment is not None:
        contact = session.get(Contact, enrollment.contact_id) if enrollment.contact_id else None
        subject = enrollment.subject
    return FlowContext(
        session=session,
        shop=shop,
        contact=contact,
        subject=subject or "",
        now=at,
        options=flow_options(shop, flow),
        event=event,
        enrollment=enrollment,
        zone=_zone(shop, contact),
    )


def exit_reason(flow: Flow, ctx: FlowContext, event: ev.Event | None = None) -> str | None:
    """The first exit whose condition holds now (for an event: only exits it concerns)."""
    for exit_ in flow.exits:
        if event is not None and not isinstance(event, exit_.on):
            continue
        if exit_.check(ctx):
            return exit_.reason
    return None


def _check_exits(
    session: Session,
    flow: Flow,
    enrollment: Enrollment,
    ctx: FlowContext,
    at: datetime,
    event: ev.Event | None,
) -> bool:
    reason = exit_reason(flow, ctx, event)
    if reason is None:
        return False
    end_enrollment(session, enrollment, EnrollmentState.EXITED, reason, at)
    return True


def end_enrollment(
    session: Session, enrollment: Enrollment, state: EnrollmentState, reason: str, at: datetime
) -> None:
    """End it and every message it still has planned (exited or cancelled, with the reason)."""
    if enrollment.wake_at is not None:
        _withdraw(session, DueKind.WAKE, enrollment.shop_id, enrollment.id, enrollment.wake_at)
    enrollment.state = state
    enrollment.reason = reason
    enrollment.ended_at = at
    enrollment.wake_at = None
    message_state = (
        MessageState.EXITED if state == EnrollmentState.EXITED else MessageState.CANCELLED
    )
    planned = session.scalars(
        select(Message).where(
            Message.enrollment_id == enrollment.id, Message.state == MessageState.PLANNED
        )
    ).all()
    for message in planned:
        ledger.finish(session, message, message_state, reason, at)
    ledger.record(
        session,
        shop_id=enrollment.shop_id,
        flow=enrollment.flow,
        outcome=str(state),
        reason=reason,
        at=at,
        enrollment=enrollment,
    )


def _resume_on_event(
    session: Session,
    shop: Shop,
    flow: Flow,
    enrollment: Enrollment,
    ctx: FlowContext,
    subject: str | None,
    at: datetime,
) -> None:
    """A WaitForEvent got its event: continue at its label; or a re-anchor."""
    event = ctx.event
    assert event is not None
    waiting = enrollment.context.get("waiting_for")
    step = flow.steps[enrollment.step_index] if enrollment.step_index < len(flow.steps) else None
    if (
        waiting
        and isinstance(step, WaitForEvent)
        and isinstance(event, step.events)
        and (not step.same_subject or subject == enrollment.subject)
        and (step.when is None or step.when(ctx))
    ):
        kept = {k: v for k, v in enrollment.context.items() if k != "waiting_for"}
        enrollment.step_index = flow.labels()[step.goto]
        enrollment.context = {
            **kept,
            "cursor": at.isoformat(),
            **({"resumed_by": subject} if subject is not None else {}),
        }
        if enrollment.wake_at is not None:  # its timeout's job need not run
            _withdraw(session, DueKind.WAKE, enrollment.shop_id, enrollment.id, enrollment.wake_at)
        enrollment.wake_at = None
        ledger.record(
            session,
            shop_id=shop.id,
            flow=flow.name,
            outcome="resumed",
            reason=f"event:{type(event).__name__}",
            at=at,
            enrollment=enrollment,
        )
        plan(session, shop, flow, enrollment, at)
        return
    trigger = flow.trigger
    if trigger.reanchor and isinstance(event, trigger.events):
        if trigger.subject(event) != enrollment.subject:
            return
        anchor = trigger.anchor(event)
        if anchor > enrollment.anchor_at:
            reanchor(session, shop, flow, enrollment, anchor, at)


def reanchor(
    session: Session, shop: Shop, flow: Flow, enrollment: Enrollment, anchor: datetime, at: datetime
) -> None:
    """Move the anchor; messages not yet sent move with it (e.g. the cart changed again)."""
    enrollment.anchor_at = anchor
    contact = session.get(Contact, enrollment.contact_id) if enrollment.contact_id else None
    times = dict(_linear_times(flow, shop, contact, anchor, _values(enrollment)))
    planned = session.scalars(
        select(Message).where(
            Message.enrollment_id == enrollment.id, Message.state == MessageState.PLANNED
        )
    ).all()
    for message in planned:
        due = times.get(message.step)
        if due is None or due == message.due_at:
            continue
        expires = due + (message.expires_at - message.planned_at)
        _withdraw(session, DueKind.MESSAGE, message.shop_id, message.id, message.due_at)  # old time
        message.due_at = due
        message.enqueued_at = None  # a send drain's hold on it was for its old time
        message.planned_at = due
        message.expires_at = expires
        ledger.record(
            session,
            shop_id=shop.id,
            flow=flow.name,
            outcome="planned",
            reason="reanchored",
            until=due,
            at=at,
            message=message,
        )
        _note(session, DueKind.MESSAGE, message.shop_id, message.id, due)


class NotStarted(StrEnum):
    """Why an event that triggers a flow did not start it for its contact."""

    #: the shop turned the flow off
    FLOW_OFF = "flow_off"
    #: the flow's condition did not hold, and she had no email address
    NO_CONTACT_ADDRESS = "no_contact_address"
    #: the flow's own condition (named in the detail) did not hold
    CONDITION_NOT_MET = "condition_not_met"
    #: an exit of the flow (named in the detail) held at once: nothing left to send
    ALREADY_OVER = "already_over"
    #: the re-entry rule: she is (or was) in it for this subject, or once ever
    ALREADY_ENROLLED = "already_enrolled"
    #: the re-entry rule: she entered it (about another subject) more lately than the
    #: flow's ``reentry_days`` allow (the days named in the detail)
    TOO_SOON = "too_soon"
    #: she is not in the segment the flow is for (its ``audience``, named in the detail)
    NOT_IN_SEGMENT = "not_in_segment"


def condition_name(condition: Callable[..., object]) -> str | None:
    """A flow condition's own name (``_recoverable`` -> ``recoverable``); None for a lambda."""
    name = getattr(condition, "__name__", "").strip("_")
    return name if name and name != "<lambda>" else None


def _not_started(
    session: Session,
    shop: Shop,
    flow: Flow,
    event: ev.Event,
    contact: Contact,
    reason: NotStarted,
    at: datetime,
    detail: str | None = None,
) -> None:
    """Keep why (the latest reason per shop, contact and flow): one prebuilt upsert."""
    connection = plain(session)
    connection.execute(
        queries.NOTE_NON_ENROLMENT[connection.dialect.name],
        {
            "shop_id": shop.id,
            "contact_id": contact.id,
            "flow": flow.name,
            "reason": reason.value,
            "detail": detail,
            "event": type(event).__name__,
            "first_at": at,
            "at": at,
            "count": 1,
        },
    )


def _entered_lately(
    session: Session, shop: Shop, flow: Flow, contact: Contact, key: str, since: datetime
) -> bool:
    """Did the contact enter this flow, about another subject than ``key``'s, at or after
    ``since``? (The same subject again is a replay: the unique key answers for it.)"""
    params = {
        "shop_id": shop.id,
        "contact_id": contact.id,
        "flow": flow.name,
        "key": key,
        "since": since,
    }
    return bool(plain(session).scalar(queries.CONTACT_ENTERED_FLOW_SINCE, params))


def _trigger(
    session: Session,
    shop: Shop,
    flow: Flow,
    event: ev.Event,
    contact: Contact | None,
    *,
    event_id: int | None,
    at: datetime,
) -> None:
    if contact is None:
        return  # no one to enroll, nor to explain it to
    options = flow_options(shop, flow)
    if not options.get("enabled", True):
        _not_started(session, shop, flow, event, contact, NotStarted.FLOW_OFF, at)
        return
    trigger = flow.trigger
    subject = trigger.subject(event)
    if subject is None:
        return  # the trigger reads no subject from this event: not one of its own
    ctx = context_for(session, shop, flow, None, at, event, contact=contact, subject=subject)
    if trigger.when is not None and not trigger.when(ctx):
        # without an address, that is what a merchant needs to hear
        reason = NotStarted.CONDITION_NOT_MET if contact.email else NotStarted.NO_CONTACT_ADDRESS
        _not_started(session, shop, flow, event, contact, reason, at, condition_name(trigger.when))
        return
    outside = outside_audience(session, shop, flow, contact, at)
    if outside is not None:
        _not_started(session, shop, flow, event, contact, NotStarted.NOT_IN_SEGMENT, at, outside)
        return
    over = exit_reason(flow, ctx)
    if over is not None:  # e.g. the order arrived before the checkout update
        _not_started(session, shop, flow, event, contact, NotStarted.ALREADY_OVER, at, over)
        return
    key = f"{contact.id}" if flow.reentry == Reentry.ONCE else f"{subject}:{contact.id}"
    if flow.reentry == Reentry.AFTER_DAYS:
        days = int(options.get(flow.reentry_days or "") or 0)
        if _entered_lately(session, shop, flow, contact, key, at - timedelta(days=days)):
            detail = f"{days} days"
            _not_started(session, shop, flow, event, contact, NotStarted.TOO_SOON, at, detail)
            return
    anchor = flow.trigger.anchor(event)
    values = dict(trigger.values(event)) if trigger.values else {}
    # walked before the row is written, so it is written as it will be (no UPDATE after)
    walked = _walk(flow, options, shop, contact, 0, anchor.astimezone(UTC), False, values)
    step_index, wake_at, context = walked.state({"values": values} if trigger.values else {})
    new = insert_new(
        session,
        Enrollment,
        ("shop_id", "flow", "key"),
        [
            {
                "shop_id": shop.id,
                "flow": flow.name,
                "key": key,
                "subject": subject,
                "contact_id": contact.id,
                "holdout": in_holdout(shop.id, flow.name, key, options.get("holdout_percent", 0)),
                "trigger_event_id": event_id,
                "anchor_at": anchor,
                "entered_at": at,
                "step_index": step_index,
                "wake_at": wake_at,
                "context": context,
            }
        ],
    )
    if not new:  # enrolled before: a replay, or the re-entry rule says once
        _not_started(session, shop, flow, event, contact, NotStarted.ALREADY_ENROLLED, at)
        return
    enrollment = new[0]
    ledger.record(
        session,
        shop_id=shop.id,
        flow=flow.name,
        outcome="enrolled",
        reason="holdout" if enrollment.holdout else None,
        at=at,
        enrollment=enrollment,
        detail={"subject": subject, "anchor": anchor.isoformat()},
    )
    _plan_walked(session, shop, flow, enrollment, walked, options, at)


def outside_audience(
    session: Session, shop: Shop, flow: Flow, contact: Contact, at: datetime
) -> str | None:
    """The name of the segment the flow is for when the contact is not in it now; None
    when she is, or the flow is for everyone. One query by her id (at enrolment and
    again by the guards at every send)."""
    audience = flow_audience(shop, flow)
    if audience is None:
        return None
    name, condition = audience
    if segments.contains(session, shop.id, contact.id, condition, at):
        return None
    return name[:128]


# --- audiences: one event, many contacts -----------------------------------------------


def _fanning_out(enrollment: Enrollment) -> bool:
    return "audience" in enrollment.context


def _start_fan_out(
    session: Session,
    shop: Shop,
    flow: Flow,
    event: ev.Event,
    *,
    event_id: int | None,
    at: datetime,
) -> None:
    """Claim the event's fan-out (once: a replay finds it taken) and enroll the first batch."""
    if not flow_options(shop, flow).get("enabled", True):
        return
    subject = flow.trigger.subject(event)
    if subject is None:
        return
    new = insert_new(
        session,
        Enrollment,
        ("shop_id", "flow", "key"),
        [
            {
                "shop_id": shop.id,
                "flow": flow.name,
                "key": f"{AUDIENCE_KEY_PREFIX}{subject}",
                "subject": subject,
                "contact_id": None,
                "holdout": False,
                "trigger_event_id": event_id,
                "anchor_at": flow.trigger.anchor(event),
                "entered_at": at,
                # the event itself, so a later batch needs nothing but this row
                "context": {"audience": {"event": ev.to_dict(event), "after": 0}},
            }
        ],
    )
    if not new:
        return
    fan_out = new[0]
    ledger.record(
        session,
        shop_id=shop.id,
        flow=flow.name,
        outcome="fan_out",
        at=at,
        enrollment=fan_out,
        detail={"subject": subject},
    )
    _fan_out_batch(session, shop, flow, fan_out, at, event)


def _audience_batch(
    session: Session, shop: Shop, flow: Flow, event: ev.Event, at: datetime
) -> Select[Any]:
    """The flow's selection as a subquery: the next batch of contact ids after ``:after``
    (only those in the segment the flow is for, when it names one)."""
    audience = flow.trigger.audience
    assert audience is not None
    query = AudienceQuery(shop.id, event, session.get_bind().dialect.name)
    chosen = audience.select(query).subquery()
    contact_id = chosen.c[0]
    batch = select(contact_id).distinct().where(contact_id > bindparam("after"))
    segment = flow_audience(shop, flow)
    if segment is not None:
        batch = batch.where(contact_id.in_(segments.members(shop.id, segment[1], at)))
    return batch.order_by(contact_id).limit(audience.batch)


def _fan_out_batch(
    session: Session,
    shop: Shop,
    flow: Flow,
    fan_out: Enrollment,
    at: datetime,
    event: ev.Event | None = None,
) -> None:
    """Enroll one batch of the audience; wake again at once if it may have more.

    ``event``: the one its row carries, when the caller has it at hand (the first batch).
    """
    audience = flow.trigger.audience
    state = fan_out.context["audience"]
    if audience is None:  # the flow no longer fans out
        end_enrollment(session, fan_out, EnrollmentState.CANCELLED, "flow_changed", at)
        return
    if event is None:
        event = ev.from_dict(state["event"])
    ids = list(
        session.scalars(_audience_batch(session, shop, flow, event, at), {"after": state["after"]})
    )
    if ids:  # most new products find nobody who bought their kind
        chosen = select(Contact).where(Contact.id.in_(ids)).order_by(Contact.id)
        for contact in session.scalars(chosen):
            _trigger(session, shop, flow, event, contact, event_id=fan_out.trigger_event_id, at=at)
    after = ids[-1] if ids else state["after"]
    fan_out.context = {**fan_out.context, "audience": {**state, "after": after}}
    if len(ids) < audience.batch:
        fan_out.state = EnrollmentState.COMPLETED
        fan_out.ended_at = at
        fan_out.wake_at = None
        ledger.record(
            session,
            shop_id=shop.id,
            flow=flow.name,
            outcome="fanned_out",
            at=at,
            enrollment=fan_out,
            detail={"subject": fan_out.subject},
        )
        return
    fan_out.wake_at = at
    _note(session, DueKind.WAKE, fan_out.shop_id, fan_out.id, at)


def in_holdout(shop_id: int, flow: str, key: str, percent: float) -> bool:
    """Deterministic: the same enrollment is always in or out, whoever asks."""
    if not percent:
        return False
    digest = hashlib.sha256(f"{shop_id}:{flow}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 10000 < float(percent) * 100


# --- planning ----------------------------------------------------------------------


def _zone(shop: Shop, contact: Contact | None) -> localtime.ZoneInfo:
    tz, _ = localtime.zone_for(
        contact.timezone if contact else None,
        contact.country_code if contact else None,
        shop.timezone,
    )
    return tz


def _advance(
    cursor: datetime,
    step: object,
    options: dict[str, object],
    shop: Shop,
    contact: Contact | None,
    values: Mapping[str, Any],
) -> datetime:
    """Where the cursor is after a waiting step (any other step leaves it where it is).

    ``values``: the enrollment's trigger values, where a ``WaitUntil`` with a ``day``
    finds its date (the hour on that date in the contact's zone, unless that moment
    is already behind the cursor: then the next such hour, as without a day)."""
    if isinstance(step, Wait):
        return cursor + step.length(options)
    if isinstance(step, WaitUntil):
        tz = _zone(shop, contact)
        at = step.time_of_day(options)
        day = step.date_of(values)
        if day is not None:
            moment = localtime.on_day(day, at, tz)
            if moment >= cursor:
                return moment
        return localtime.next_local_time(cursor, at, tz)
    return cursor


def _values(enrollment: Enrollment) -> Mapping[str, Any]:
    """The values its trigger kept for it (a date a ``WaitUntil`` aims at, ...)."""
    kept = (enrollment.context or {}).get("values")
    return kept if isinstance(kept, dict) else {}


def _linear_times(
    flow: Flow, shop: Shop, contact: Contact | None, anchor: datetime, values: Mapping[str, Any]
) -> list[tuple[str, datetime]]:
    """Due times of the sends in the linear stretch from the start, for a given anchor."""
    options = flow_options(shop, flow)
    cursor = anchor
    times = []
    for step in flow.steps:
        cursor = _advance(cursor, step, options, shop, contact, values)
        if isinstance(step, Send):
            times.append((step.name, cursor))
        elif isinstance(step, (Branch, WaitForEvent, End)):
            break
    return times


@dataclass(frozen=True)
class _Walk:
    """A walk of a flow's steps: the sends it passed (each with its due time and
    whether it carries a discount), and where it stopped: at a decision point
    (``waiting``, woken at ``wake``) or past the last step."""

    sends: tuple[tuple[Send, datetime, bool], ...]
    index: int
    cursor: datetime
    discount: bool
    waiting: Branch | WaitForEvent | None = None
    wake: datetime | None = None

    def state(self, context: dict[str, Any]) -> tuple[int, datetime | None, dict[str, Any]]:
        """The enrollment's step, wake time and context once it has walked."""
        if self.waiting is None:
            return self.index, None, {**context, "cursor": self.cursor.isoformat()}
        return (
            self.index,
            self.wake,
            {
                **context,
                "cursor": self.cursor.isoformat(),
                "discount": self.discount,
                **({"waiting_for": True} if isinstance(self.waiting, WaitForEvent) else {}),
            },
        )


def _walk(
    flow: Flow,
    options: dict[str, object],
    shop: Shop,
    contact: Contact | None,
    index: int,
    cursor: datetime,
    discount: bool,
    values: Mapping[str, Any],
) -> _Walk:
    """Walk the steps from ``index`` until a decision point or the end (reads nothing)."""
    steps = flow.steps
    sends: list[tuple[Send, datetime, bool]] = []
    while index < len(steps):
        step = steps[index]
        cursor = _advance(cursor, step, options, shop, contact, values)
        if isinstance(step, IssueDiscount):
            discount = bool(options.get(step.option))
        elif isinstance(step, Send):
            if step.option is None or options.get(step.option, True):
                sends.append((step, cursor, discount))
            discount = False
        elif isinstance(step, Label):
            pass
        elif isinstance(step, End):
            break
        elif isinstance(step, (Branch, WaitForEvent)):
            wake = cursor + step.length(options) if isinstance(step, WaitForEvent) else cursor
            return _Walk(tuple(sends), index, cursor, discount, step, wake)
        index += 1
    return _Walk(tuple(sends), len(steps), cursor, discount)


def plan(session: Session, shop: Shop, flow: Flow, enrollment: Enrollment, at: datetime) -> None:
    """Walk the steps from where the enrollment is, planning sends until a decision point."""
    options = flow_options(shop, flow)
    contact = session.get(Contact, enrollment.contact_id) if enrollment.contact_id else None
    cursor_text = enrollment.context.get("cursor")
    cursor = datetime.fromisoformat(cursor_text) if cursor_text else enrollment.anchor_at
    discount = bool(enrollment.context.get("discount"))
    walked = _walk(
        flow, options, shop, contact, enrollment.step_index, cursor, discount, _values(enrollment)
    )
    enrollment.step_index, enrollment.wake_at, enrollment.context = walked.state(enrollment.context)
    _plan_walked(session, shop, flow, enrollment, walked, options, at)


def _plan_walked(
    session: Session,
    shop: Shop,
    flow: Flow,
    enrollment: Enrollment,
    walked: _Walk,
    options: dict[str, object],
    at: datetime,
) -> None:
    """The walk's sends into the ledger and its wake noted; an enrollment past its
    last step with nothing pending completes."""
    sends = [
        _message_row(shop, flow, enrollment, step, due, discount, options)
        for step, due, discount in walked.sends
    ]
    planned = _plan_messages(session, shop, flow, sends, at)
    if walked.waiting is not None:
        assert walked.wake is not None
        _note(session, DueKind.WAKE, enrollment.shop_id, enrollment.id, walked.wake)
    elif not planned:  # a message planned just now is pending: it cannot be done yet
        complete_if_done(session, enrollment, at)


def _message_row(
    shop: Shop,
    flow: Flow,
    enrollment: Enrollment,
    step: Send,
    due: datetime,
    discount: bool,
    options: dict[str, object],
) -> dict[str, Any]:
    expires = due + timedelta(hours=float(options.get("expires_hours", 24)))  # type: ignore[arg-type]
    return {
        "shop_id": shop.id,
        "enrollment_id": enrollment.id,
        "contact_id": enrollment.contact_id,
        "dedupe_key": f"{flow.name}:{step.name}:{enrollment.subject}:{enrollment.contact_id}",
        "flow": flow.name,
        "step": step.name,
        "template": step.template,
        "kind": flow.kind.value,
        "priority": flow.priority,
        "state": MessageState.PLANNED,
        "due_at": due,
        "planned_at": due,
        "expires_at": expires,
        "data": {"discount": discount},
    }


def _plan_messages(
    session: Session, shop: Shop, flow: Flow, sends: list[dict[str, Any]], at: datetime
) -> int:
    """Insert the planned sends in one statement; a send planned before (exactly one
    row per flow, step, subject and contact) is left as it is. Returns how many
    were new."""
    new = {m.dedupe_key: m for m in insert_new(session, Message, ("shop_id", "dedupe_key"), sends)}
    for row in sends:  # in step order, so the decision log reads in order
        message = new.get(row["dedupe_key"])
        if message is None:
            continue
        ledger.record(
            session,
            shop_id=shop.id,
            flow=flow.name,
            outcome="planned",
            until=row["due_at"],
            at=at,
            message=message,
        )
        _note(session, DueKind.MESSAGE, message.shop_id, message.id, row["due_at"])
    return len(new)


def complete_if_done(session: Session, enrollment: Enrollment, at: datetime) -> None:
    """An enrollment past its last step completes once no message of it is pending."""
    session.flush()  # its step may have just moved
    if complete_if_done_by_id(session, enrollment.id, enrollment.flow, at):
        set_committed_value(enrollment, "state", EnrollmentState.COMPLETED)
        set_committed_value(enrollment, "ended_at", at)


def complete_if_done_by_id(
    session: Session, enrollment_id: int, flow_name: str, at: datetime
) -> bool:
    """The same as one conditional UPDATE, for a caller that has not loaded the row.

    On PostgreSQL the enrollment's row is locked first. Under READ COMMITTED,
    two transactions ending its last two messages side by side would each see
    the other's message still pending, and neither would complete it; with
    the lock the second waits for the first to commit, and its UPDATE (a new
    statement, a new snapshot) then sees that message ended.
    """
    flow = registry.get(flow_name)
    if flow is None:
        return False
    params = {"enrollment_id": enrollment_id}
    connection = plain(session)
    postgresql = connection.dialect.name == "postgresql"
    if postgresql and connection.scalar(queries.ACTIVE_ENROLLMENT_FOR_UPDATE, params) is None:
        return False
    done = connection.execute(
        queries.COMPLETE_ENROLLMENT, {**params, "steps": len(flow.steps), "at": at}
    )
    return bool(done.rowcount)


# --- wakes ---------------------------------------------------------------------------


def wake(session: Session, enrollment_id: int, at: datetime) -> bool:
    """Decide a Branch, or time out a WaitForEvent, that has come due; False if not due."""
    # FOR NO KEY UPDATE: rows that only refer to it (decisions) need not wait
    enrollment = session.get(Enrollment, enrollment_id, with_for_update={"key_share": True})
    if (
        enrollment is None
        or enrollment.state != EnrollmentState.ACTIVE
        or enrollment.wake_at is None
        or enrollment.wake_at > at
    ):
        return False
    flow = registry.get(enrollment.flow)
    shop = session.get_one(Shop, enrollment.shop_id)
    if flow is None or shop.status != ShopStatus.ACTIVE:
        end_enrollment(
            session,
            enrollment,
            EnrollmentState.CANCELLED,
            "flow_removed" if flow is None else "shop_uninstalled",
            at,
        )
        return True
    if _fanning_out(enrollment):
        _fan_out_batch(session, shop, flow, enrollment, at)
        return True
    ctx = context_for(session, shop, flow, enrollment, at)
    if _check_exits(session, flow, enrollment, ctx, at, None):
        return True
    step = flow.steps[enrollment.step_index]
    enrollment.wake_at = None
    context = {k: v for k, v in enrollment.context.items() if k != "waiting_for"}
    if isinstance(step, Branch):
        taken = step.then if step.condition(ctx) else step.otherwise
        enrollment.step_index = (
            flow.labels()[taken] if taken is not None else enrollment.step_index + 1
        )
        outcome, reason = "branched", taken or "next"
    else:  # a WaitForEvent timed out: carry on after it
        enrollment.step_index += 1
        outcome, reason = "timed_out", None
    enrollment.context = {**context, "cursor": at.isoformat()}
    ledger.record(
        session,
        shop_id=shop.id,
        flow=flow.name,
        outcome=outcome,
        reason=reason,
        at=at,
        enrollment=enrollment,
    )
    plan(session, shop, flow, enrollment, at)
    return True


def cancel_shop(session: Session, shop_id: int, reason: str, at: datetime) -> int:
    """Stop every active enrollment of a shop (uninstalled, redacted)."""
    active = session.scalars(
        select(Enrollment).where(
            Enrollment.shop_id == shop_id, Enrollment.state == EnrollmentState.ACTIVE
        )
    ).all()
    for enrollment in active:
        end_enrollment(session, enrollment, EnrollmentState.CANCELLED, reason, at)
    return len(active)


def cancel_contact(session: Session, contact: Contact, reason: str, at: datetime) -> int:
    active = session.scalars(
        select(Enrollment).where(
            Enrollment.contact_id == contact.id, Enrollment.state == EnrollmentState.ACTIVE
        )
    ).all()
    for enrollment in active:
        end_enrollment(session, enrollment, EnrollmentState.CANCELLED, reason, at)
    return len(active)
