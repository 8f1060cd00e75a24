"""The message ledger's state changes and the decision log.

Every change of a message's state goes through here, as a conditional UPDATE
on its current state (and claim token while it is being sent), so two workers,
a sweeper and an unsubscribe racing on one row cannot both win. Every change
also appends a :class:`Decision`, which is what ``triggerpost why`` shows.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.orm.attributes import set_committed_value

from jobs.store import queries
from jobs.store.db import SessionListener, picked, plain
from jobs.store.models import Decision, Enrollment, Message, MessageState

DUE = "triggerpost.due"
#: how long a send drain's hold on the messages it took keeps other drains off them
#: (a drain slower than this only makes a second drain try the same claims)
HOLD = timedelta(minutes=1)
#: a send's claim older than this is presumed dead (the send drain's own timeout,
#: jobs.engine.schedule.JOB_TIMEOUT, is shorter)
LEASE = timedelta(minutes=10)
DECISIONS = "triggerpost.decisions"


class DueKind(StrEnum):
    """What due work is: a message to send, or an enrollment to wake."""

    MESSAGE = "message"
    WAKE = "wake"


@dataclass(frozen=True)
class DueWork:
    """A message to send or an enrollment to wake, at ``due_at``.

    ``withdraw`` marks work that is no longer due at that time (it ended or
    moved while its job waited): the hand-off takes the job out of Redis when
    nothing else waits on it (see :mod:`jobs.engine.schedule`).
    """

    kind: DueKind
    shop_id: int
    id: int
    due_at: datetime
    withdraw: bool = False


def due_work(session: Session) -> list[DueWork]:
    """What this transaction planned or ended; hand it to RQ after the commit."""
    work: list[DueWork] = session.info.setdefault(DUE, [])
    return work


def take_due_work(session: Session) -> list[DueWork]:
    return session.info.pop(DUE, [])


def record(
    session: Session,
    *,
    shop_id: int,
    flow: str,
    outcome: str,
    at: datetime,
    message: Message | None = None,
    enrollment: Enrollment | None = None,
    contact_id: int | None = None,
    step: str | None = None,
    reason: str | None = None,
    until: datetime | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append a decision to the log.

    The transaction's decisions are written together, in one statement, when
    it commits, or earlier if anything in it reads or changes the log (an
    erasure, a timeline): a decision costs no flush of its own.
    """
    if message is not None and message.id is None:
        session.flush()  # the decision names the message's row
    row = {
        "shop_id": shop_id,
        "message_id": message.id if message else None,
        "enrollment_id": (
            message.enrollment_id if message else enrollment.id if enrollment else None
        ),
        "contact_id": contact_id
        if contact_id is not None
        else (message.contact_id if message else enrollment.contact_id if enrollment else None),
        "flow": flow,
        "step": step if step is not None else (message.step if message else None),
        "outcome": outcome,
        "reason": reason,
        "until": until,
        "at": at,
        "detail": detail or {},
    }
    session.info.setdefault(DECISIONS, []).append(row)


def write_decisions(session: Session) -> None:
    """Write the decisions recorded so far in this transaction."""
    rows = session.info.pop(DECISIONS, None)
    if rows:
        # NULLs rendered, so every row has the same columns: one statement for all
        # every row has every column: one executemany on the connection
        plain(session).execute(insert(Decision), rows)


@dataclass(frozen=True)
class Mark:
    """How much due work and how many decisions a transaction had noted at a point."""

    due: int
    decisions: int


def mark(session: Session) -> Mark:
    return Mark(len(due_work(session)), len(session.info.get(DECISIONS, ())))


def undo_to(session: Session, point: Mark) -> None:
    """Forget the due work and decisions noted since ``point`` (its savepoint rolled back)."""
    del due_work(session)[point.due :]
    del session.info.setdefault(DECISIONS, [])[point.decisions :]


def _write_at_commit(session: Session) -> None:
    write_decisions(session)


def _write_before_the_log_is_used(state: ORMExecuteState) -> None:
    if DECISIONS in state.session.info and any(m.class_ is Decision for m in state.all_mappers):
        write_decisions(state.session)


def _forget_unwritten(session: Session, transaction: SessionTransaction) -> None:
    # a transaction that ended without its commit (rolled back, closed) takes its
    # decisions with it; a savepoint that rolls back is undone by its owner (undo_to)
    if transaction.parent is None:
        session.info.pop(DECISIONS, None)


#: what the store's session factories attach (see jobs.runtime): the decisions
#: are written at commit, or before anything reads the log, and never outlive
#: their transaction
SESSION_LISTENERS: tuple[SessionListener, ...] = (
    ("before_commit", _write_at_commit),
    ("do_orm_execute", _write_before_the_log_is_used),
    ("after_transaction_end", _forget_unwritten),
)


def _move(
    session: Session,
    message: Message,
    frm: Iterable[MessageState],
    values: dict[str, Any],
    *,
    claim_token: str | None = None,
) -> bool:
    """Conditional state change; False (and nothing written) if someone else moved it."""
    params = {f"new_{name}": value for name, value in values.items()}
    params.update(moving_id=message.id, moving_token=claim_token)
    statement = queries.move_message(tuple(frm), claim_token is not None, tuple(values))
    result = plain(session).execute(statement, params)  # not the ORM's bulk UPDATE
    if result.rowcount != 1:
        if message in session:
            session.refresh(message)
        return False
    # the row is written: tell the ORM without making it write the same again
    for name, value in values.items():
        set_committed_value(message, name, value)
    return True


def claim(session: Session, message_id: int, at: datetime) -> tuple[Message, str] | str:
    """planned -> sending for exactly one caller, if it is due: the message and its
    claim token; otherwise why not (``not_planned``, ``not_due`` or ``taken``).

    One statement claims and reads the row (UPDATE .. RETURNING).
    """
    token = secrets.token_hex(16)
    params = {"message_id": message_id, "token": token, "at": at}
    claimed = session.scalars(queries.CLAIM_MESSAGE, params).one_or_none()
    if claimed is not None:
        return claimed, token
    found = session.execute(queries.MESSAGE_STATE_AND_DUE, params).one_or_none()
    if found is None or found.state != MessageState.PLANNED:
        return "not_planned"
    return "not_due" if found.due_at > at else "taken"


@dataclass(frozen=True)
class Refs:
    """What a message belongs to: read before its claim, so its contact is locked first."""

    enrollment_id: int
    contact_id: int | None


def refs_of(session: Session, message_id: int) -> Refs | None:
    found = plain(session).execute(queries.MESSAGE_REFS, {"message_id": message_id}).one_or_none()
    return Refs(*found) if found is not None else None


def take_due(session: Session, shop_id: int, at: datetime, limit: int) -> dict[int, Refs]:
    """Up to ``limit`` of the shop's planned messages due by ``at`` that no other send
    drain holds, now held by this one: their enrollments and contacts by message
    id, in send order (due time, then priority, highest first).

    The hold (``enqueued_at``) only keeps drains of one shop from working
    through the same messages side by side; each message is still claimed on
    its own (:func:`claim`). A hold older than :data:`HOLD` (its drain died)
    is ignored.
    """
    free = or_(Message.enqueued_at.is_(None), Message.enqueued_at < at - HOLD)
    oldest = (
        select(Message.id)
        .where(
            Message.shop_id == shop_id,
            Message.state == MessageState.PLANNED,
            Message.due_at <= at,
            free,
        )
        .order_by(Message.due_at, Message.priority.desc(), Message.id)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )
    held = session.execute(
        update(Message)
        .where(Message.id.in_(picked(oldest)), Message.state == MessageState.PLANNED, free)
        .values(enqueued_at=at)
        .returning(
            Message.id, Message.due_at, Message.priority, Message.enrollment_id, Message.contact_id
        )
        .execution_options(synchronize_session=False)
    ).all()
    in_order = sorted(held, key=lambda r: (r.due_at, -r.priority, r.id))
    return {row.id: Refs(row.enrollment_id, row.contact_id) for row in in_order}


def let_go(session: Session, message_ids: list[int]) -> None:
    """A drain's hold on messages it will not get to: any drain may take them now."""
    session.execute(
        update(Message)
        .where(Message.id.in_(message_ids), Message.state == MessageState.PLANNED)
        .values(enqueued_at=None)
        .execution_options(synchronize_session=False)
    )


def lapse_holds(session: Session, due_by: datetime, at: datetime) -> int:
    """Clear the holds of drains that died on messages due by ``due_by`` (the sweeper)."""
    result = session.execute(
        update(Message)
        .where(
            Message.state == MessageState.PLANNED,
            Message.due_at <= due_by,
            Message.enqueued_at < at - HOLD,
        )
        .values(enqueued_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def hand_over(session: Session, message: Message, token: str, values: dict[str, Any]) -> bool:
    """sending -> handed: committed right before the provider is called."""
    return _move(
        session,
        message,
        [MessageState.SENDING],
        {"state": MessageState.HANDED, **values},
        claim_token=token,
    )


def sent(
    session: Session, message: Message, token: str, at: datetime, values: dict[str, Any]
) -> bool:
    ok = _move(
        session,
        message,
        [MessageState.HANDED],
        {"state": MessageState.SENT, "sent_at": at, "reason": None, **values},
        claim_token=token,
    )
    if ok:
        record(
            session,
            shop_id=message.shop_id,
            flow=message.flow,
            outcome="sent",
            at=at,
            message=message,
            detail={"to": message.email_to} if message.email_to else None,
        )
    return ok


def release(
    session: Session,
    message: Message,
    *,
    due_at: datetime,
    reason: str,
    at: datetime,
    token: str | None = None,
    outcome: str = "deferred",
) -> bool:
    """Back to planned with a new due time (deferral or a transient failure)."""
    frm = [MessageState.PLANNED, MessageState.SENDING, MessageState.HANDED]
    ok = _move(
        session,
        message,
        frm,
        {
            "state": MessageState.PLANNED,
            "due_at": due_at,
            "reason": reason,
            "claim_token": None,
            "claimed_at": None,
            "enqueued_at": None,
        },
        claim_token=token,
    )
    if ok:
        record(
            session,
            shop_id=message.shop_id,
            flow=message.flow,
            outcome=outcome,
            reason=reason,
            until=due_at,
            at=at,
            message=message,
        )
    return ok


def finish(
    session: Session,
    message: Message,
    state: MessageState,
    reason: str | None,
    at: datetime,
    *,
    token: str | None = None,
    detail: dict[str, Any] | None = None,
) -> bool:
    """A final outcome other than sent (skipped, exited, failed, expired, cancelled)."""
    frm = (
        [MessageState.SENDING, MessageState.HANDED] if token is not None else [MessageState.PLANNED]
    )
    ok = _move(session, message, frm, {"state": state, "reason": reason}, claim_token=token)
    if ok and token is None:
        # it ended while its job waited in Redis: that job need not run
        due_work(session).append(
            DueWork(DueKind.MESSAGE, message.shop_id, message.id, message.due_at, withdraw=True)
        )
    if ok:
        record(
            session,
            shop_id=message.shop_id,
            flow=message.flow,
            outcome=str(state),
            reason=reason,
            at=at,
            message=message,
            detail=detail,
        )
    return ok
