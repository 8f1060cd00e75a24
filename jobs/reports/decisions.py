"""The decision log, read: a shop's or a contact's timeline of what the engine decided.

Every outcome (enrolled, planned, sent, skipped:<reason>, deferred:<reason>
until T, failed:<reason>, exited:<exit>, expired, cancelled) is a row in
``decisions``; ``triggerpost why <shop> <email>`` and the simulator print it.

``why`` (:func:`explain`) adds what a merchant asks next: the legal basis
each sent email went on (kept on the message as it was handed over), and the
flows an event of hers triggered that did not start for her, with the latest
reason (``non_enrolments``), each in words as well as codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from adapters.events import normalise_email
from adapters.platform import WebhookError
from adapters.registry import PLATFORMS
from jobs.store.models import Contact, Decision, Message, NonEnrolment, Shop


def find_shop(session: Session, ref: str) -> Shop | None:
    """A shop by id, by its key (in any platform's way of writing it) or storefront URL."""
    if ref.isdigit():
        return session.get(Shop, int(ref))
    keys = {ref}
    for platform in PLATFORMS.values():
        try:
            keys.add(platform.shop_key(ref))
        except WebhookError:
            continue
    return session.scalars(
        select(Shop)
        .where(or_(Shop.key.in_(keys), Shop.base_url == ref.rstrip("/")))
        .order_by(Shop.id)
    ).first()


def find_contact(session: Session, shop_id: int, email: str) -> Contact | None:
    return session.scalar(
        select(Contact).where(Contact.shop_id == shop_id, Contact.email == normalise_email(email))
    )


def timeline(session: Session, shop_id: int, contact_id: int | None = None) -> list[dict[str, Any]]:
    """The decision log as plain rows, oldest first (what ``simulate`` and ``why`` print)."""
    query = select(Decision).where(Decision.shop_id == shop_id)
    if contact_id is not None:
        query = query.where(Decision.contact_id == contact_id)
    rows = session.scalars(query.order_by(Decision.at, Decision.id)).all()
    # .all(): dict() of a Result would take it for a mapping (it has keys())
    emails = dict(
        session.execute(select(Contact.id, Contact.email).where(Contact.shop_id == shop_id)).all()
    )
    return [
        {
            "at": row.at.isoformat(),
            "contact": emails.get(row.contact_id) if row.contact_id else None,
            "flow": row.flow,
            "step": row.step,
            "outcome": row.outcome,
            "reason": row.reason,
            "until": row.until.isoformat() if row.until else None,
            "message": row.message_id,
        }
        for row in rows
    ]


#: where the store heard of a consent (the part after ``<platform>:``), in words
_SOURCE_WORDS = (
    ("checkout", "checkout"),
    ("order", "order"),
    ("customer", "customer account"),
    ("preferences", "the preferences page"),
    ("assumed", "the shop's default"),
)

#: a flow that did not start, in words (jobs.engine.enrolment.NotStarted)
_NOT_STARTED_WORDS = {
    "flow_off": "the flow was off",
    "no_contact_address": "no email address was known for her",
    "condition_not_met": "the flow's condition did not hold",
    "already_over": "it was already over",
    "already_enrolled": "she had started it before (it starts once for the same subject)",
    "too_soon": "she had started it lately, about another time (it starts again only after",
}

#: a flow's own condition or exit, named in a non-start's detail or an exit's reason, in
#: words (the dated flows, the win-back, the re-engagement); others are shown as named
_REASON_WORDS = {
    "birthday_passed": "her day had passed where she lives",
    "anniversary_passed": "her day had passed where she lives",
    "lapsed_customer": "she had fewer paid orders than it asks, or has ordered since",
    "still_subscribed": "she was not subscribed",
    "ordered": "she had ordered",
    "in_welcome_series": "her welcome series was still under way",
}


def _day(text: str | None) -> str | None:
    return datetime.fromisoformat(text).date().isoformat() if text else None


def source_words(source: str | None) -> str | None:
    """``<platform>:checkouts/create`` -> ``checkout``; unknown text as it is."""
    if not source:
        return None
    what = source.partition(":")[2] or source
    for key, words in _SOURCE_WORDS:
        if key in what:
            return words
    return what


def basis_words(record: Mapping[str, Any] | None) -> str | None:
    """A send's legal basis as a merchant reads it: ``subscribed via checkout on 2026-03-02``."""
    if not record:
        return None
    basis = record.get("basis")
    if basis == "subscribed":
        via = source_words(record.get("source"))
        day = _day(record.get("at"))
        return "subscribed" + (f" via {via}" if via else "") + (f" on {day}" if day else "")
    if basis == "soft_opt_in":
        since = _day(record.get("customer_since"))
        orders = record.get("orders")
        facts = [f"a customer since {since}" if since else "a past customer"]
        if orders:
            facts.append(f"{orders} order{'s' * (orders != 1)}")
        return "soft opt-in: " + ", ".join(facts)
    return str(basis)


def reason_words(reason: str) -> str:
    """A flow's condition or exit (``birthday_passed``) in words; unknown ones as named."""
    return _REASON_WORDS.get(reason, reason)


def not_started_words(reason: str, detail: str | None) -> str:
    words = _NOT_STARTED_WORDS.get(reason, reason)
    if reason == "too_soon":  # the detail is the flow's days: the sentence ends with them
        return f"{words} {detail or 'a while'})"
    return f"{words} ({reason_words(detail)})" if detail else words


def explain(session: Session, shop_id: int, contact_id: int) -> list[dict[str, Any]]:
    """One contact's timeline for ``why``: the decision log, each sent row with its
    legal basis, and the flows that did not start for her, oldest first; each row
    says what happened in words (``says``)."""
    rows = timeline(session, shop_id, contact_id)
    sent = [row["message"] for row in rows if row["outcome"] == "sent" and row["message"]]
    bases: dict[int, dict[str, Any] | None] = dict(
        session.execute(select(Message.id, Message.legal_basis).where(Message.id.in_(sent))).all()
    )
    for row in rows:
        row["legal_basis"] = bases.get(row["message"]) if row["outcome"] == "sent" else None
        basis = basis_words(row["legal_basis"])
        row["says"] = f"sent ({basis})" if basis else None
        if row["outcome"] == "exited" and row["reason"] in _REASON_WORDS:
            row["says"] = f"exited: {reason_words(row['reason'])}"
    email = session.scalar(select(Contact.email).where(Contact.id == contact_id))
    not_started = session.scalars(
        select(NonEnrolment).where(
            NonEnrolment.shop_id == shop_id, NonEnrolment.contact_id == contact_id
        )
    )
    for found in not_started:
        times = f", {found.count} times since {found.first_at.isoformat()}" * (found.count > 1)
        rows.append(
            {
                "at": found.at.isoformat(),
                "contact": email,
                "flow": found.flow,
                "step": None,
                "outcome": "not_started",
                "reason": found.reason,
                "until": None,
                "message": None,
                "detail": found.detail,
                "event": found.event,
                "count": found.count,
                "first_at": found.first_at.isoformat(),
                "legal_basis": None,
                "says": f"not started: {not_started_words(found.reason, found.detail)}"
                f" (on {found.event}{times})",
            }
        )
    rows.sort(key=lambda row: datetime.fromisoformat(row["at"]))
    return rows


def format_timeline(rows: Sequence[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        what = row.get("says") or (row["outcome"] + (f":{row['reason']}" if row["reason"] else ""))
        if row["until"]:
            what += f" until {row['until']}"
        step = f"{row['flow']}/{row['step']}" if row["step"] else row["flow"]
        lines.append(f"{row['at']}  {row['contact'] or '-':<32} {step:<28} {what}")
    return "\n".join(lines)
