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
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from adapters.events import normalise_email
from adapters.platform import WebhookError
from adapters.registry import PLATFORMS
from jobs.store.models import (
    Attribution,
    Contact,
    Decision,
    Engagement,
    EngagementKind,
    Message,
    NonEnrolment,
    Order,
    Shop,
)


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
    "not_in_segment": "she was not in the segment the flow is for",
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
    "interested": (
        "she had not looked at a product lately as often as it asks, or had bought it already"
    ),
}

#: the other exits of the built-in flows, in words (only a whole row's words use these:
#: ``says`` keeps to the reasons above, as ``why`` has always printed them)
_EXIT_WORDS = {
    "checkout_completed": "she completed the checkout",
    "order_placed": "she placed an order",
    "items_unavailable": "nothing in her cart could be bought any more",
    "product_unavailable": "the product was no longer for sale",
    "announced_with_another": "another email already told her of it",
    "already_customer": "she was a customer already",
    "welcomed": "she had been welcomed already",
    "rewarded": "she had been rewarded for that order already",
    "order_cancelled": "the order was cancelled",
    "order_refunded": "the order was refunded",
    "checkout_started": "she started a checkout",
    "added_to_cart": "she put something in her cart",
    "cart_reminder": "she was getting a cart reminder instead",
    "product_bought": "she had bought what she looked at",
}

#: a send-time guard's reason (jobs.engine.guards), and the pipeline's, in words
_GUARD_WORDS = {
    "shop_inactive": "the shop had uninstalled triggerpost",
    "holdout": "she was in the flow's holdout group (no email, to measure what the flow earns)",
    "contact_redacted": "her data had been erased at the shop's request",
    "customer_redacted": "her data was erased at the shop's request",
    "no_email": "no address that could receive email was known",
    "not_in_segment": "she was no longer in the segment the flow is for",
    "no_consent": "she had not subscribed to marketing email",
    "unsubscribed": "she had unsubscribed",
    "quiet_hours": "it was night where she lives (quiet hours)",
    "cap:flow_repeat": "this flow had emailed her lately",
    "cap:gap": "another marketing email had just gone to her",
    "cap:weekly": "she had had as many marketing emails this week as the shop allows",
    "cap:priority": "a more important email was due to her first",
    "worker_lost": "the sending stopped midway and was tried again",
    "shop_uninstalled": "the shop had uninstalled triggerpost",
    "shop_redacted": "the shop's data was erased",
}

#: what happened, for each outcome of the decision log (reason words follow a colon)
_OUTCOME_WORDS = {
    "enrolled": "started the flow",
    "planned": "planned",
    "sent": "sent",
    "skipped": "not sent",
    "deferred": "held back",
    "failed": "could not be delivered",
    "exited": "stopped",
    "expired": "never sent, it waited past its time",
    "cancelled": "cancelled",
    "resumed": "went on",
    "branched": "took a branch",
    "timed_out": "waited for something that did not come, and went on",
    "fan_out": "sent to an audience",
    "fanned_out": "sent to an audience",
    "clicked": "clicked a link in the email",
    "ordered": "placed an order credited to the email",
}


def _day(text: str | None, zone: tzinfo | None = None) -> str | None:
    """The day of an ISO 8601 time, in ``zone`` when given and the time has an offset."""
    if not text:
        return None
    at = datetime.fromisoformat(text)
    if zone is not None and at.tzinfo is not None:
        at = at.astimezone(zone)
    return at.date().isoformat()


def source_words(source: str | None) -> str | None:
    """``<platform>:checkouts/create`` -> ``checkout``; unknown text as it is."""
    if not source:
        return None
    what = source.partition(":")[2] or source
    for key, words in _SOURCE_WORDS:
        if key in what:
            return words
    return what


def basis_words(record: Mapping[str, Any] | None, zone: tzinfo | None = None) -> str | None:
    """A send's legal basis as a merchant reads it: ``subscribed via checkout on 2026-03-02``
    (the days in ``zone`` when given, else as recorded)."""
    if not record:
        return None
    basis = record.get("basis")
    if basis == "subscribed":
        via = source_words(record.get("source"))
        day = _day(record.get("at"), zone)
        return "subscribed" + (f" via {via}" if via else "") + (f" on {day}" if day else "")
    if basis == "soft_opt_in":
        since = _day(record.get("customer_since"), zone)
        orders = record.get("orders")
        facts = [f"a customer since {since}" if since else "a past customer"]
        if orders:
            facts.append(f"{orders} order{'s' * (orders != 1)}")
        return "soft opt-in: " + ", ".join(facts)
    return str(basis)


def reason_words(reason: str) -> str:
    """A flow's condition or exit (``birthday_passed``) in words; unknown ones as named."""
    return _REASON_WORDS.get(reason, reason)


def guard_words(reason: str) -> str:
    """A guard's or the pipeline's reason (``cap:weekly``, ``suppressed:marketing``,
    ``retry:timeout``) in words; an unknown one as named."""
    if reason in _GUARD_WORDS:
        return _GUARD_WORDS[reason]
    kind, _, rest = reason.partition(":")
    if kind == "suppressed":
        return f"the address is on the shop's do-not-email list ({rest or 'all'})"
    if kind == "retry":
        return f"a delivery attempt failed and was tried again ({rest})"
    if reason.endswith(":gave_up"):
        return f"every attempt failed ({reason.removesuffix(':gave_up')})"
    return _EXIT_WORDS.get(reason) or _REASON_WORDS.get(reason, reason)


def row_words(row: Mapping[str, Any]) -> str:
    """A timeline row in words, whatever its outcome (``says`` when it has one); the
    time a deferral waits until is left to the reader, who shows it in their zone."""
    if row.get("says"):
        return str(row["says"])
    outcome, reason = row["outcome"], row.get("reason")
    words = _OUTCOME_WORDS.get(outcome, outcome)
    if not reason:
        return words
    if outcome == "enrolled" and reason == "holdout":
        return f"{words}: {guard_words(reason)}"
    if outcome == "planned" and reason == "reanchored":
        return "planned again for a new time"
    if outcome == "resumed" and reason.startswith("event:"):
        return f"{words}: {reason.removeprefix('event:')} came"
    if outcome == "branched":
        return f"{words} ({reason})"
    if outcome == "exited":
        return f"{words}: {_EXIT_WORDS.get(reason) or reason_words(reason)}"
    return f"{words}: {guard_words(reason)}"


def not_started_words(reason: str, detail: str | None) -> str:
    words = _NOT_STARTED_WORDS.get(reason, reason)
    if reason == "too_soon":  # the detail is the flow's days: the sentence ends with them
        return f"{words} {detail or 'a while'})"
    return f"{words} ({reason_words(detail)})" if detail else words


def explain(
    session: Session, shop_id: int, contact_id: int, zone: tzinfo | None = None
) -> list[dict[str, Any]]:
    """One contact's timeline for ``why``: the decision log, each sent row with its
    legal basis, the flows that did not start for her, the links she clicked in
    our emails and the orders credited to them, oldest first; a row says what
    happened in words where the code alone would not (``says``), and every row
    in words as a whole (``words``: the merchant's activity page). A time inside
    the words is in ``zone`` when given (the shop's, for a merchant), else UTC."""
    rows = timeline(session, shop_id, contact_id)
    sent = [row["message"] for row in rows if row["outcome"] == "sent" and row["message"]]
    bases: dict[int, dict[str, Any] | None] = dict(
        session.execute(select(Message.id, Message.legal_basis).where(Message.id.in_(sent))).all()
    )
    for row in rows:
        row["legal_basis"] = bases.get(row["message"]) if row["outcome"] == "sent" else None
        basis = basis_words(row["legal_basis"], zone)
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
        since = local_time(found.first_at.isoformat(), zone)
        times = f", {found.count} times since {since}" * (found.count > 1)
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
    rows.extend(_clicks(session, shop_id, contact_id, email))
    rows.extend(_orders(session, shop_id, contact_id, email))
    rows.sort(key=lambda row: datetime.fromisoformat(row["at"]))
    for row in rows:
        row["words"] = row_words(row)
    return rows


def _row(
    at: datetime, email: str | None, flow: str, step: str | None, outcome: str
) -> dict[str, Any]:
    return {
        "at": at.isoformat(),
        "contact": email,
        "flow": flow,
        "step": step,
        "outcome": outcome,
        "reason": None,
        "until": None,
        "legal_basis": None,
    }


def _clicks(
    session: Session, shop_id: int, contact_id: int, email: str | None
) -> list[dict[str, Any]]:
    """Her clicks in our emails (opens are left out: privacy proxies fetch every pixel)."""
    found = session.execute(
        select(Engagement.at, Engagement.url, Message.id, Message.flow, Message.step)
        .join(Message, Message.id == Engagement.message_id)
        .where(
            Engagement.shop_id == shop_id,
            Engagement.contact_id == contact_id,
            Engagement.kind == EngagementKind.CLICK,
        )
    ).all()
    rows = []
    for at, url, message_id, flow, step in found:
        row = _row(at, email, flow, step, "clicked")
        row.update(message=message_id, url=url, says=None)
        rows.append(row)
    return rows


def _orders(
    session: Session, shop_id: int, contact_id: int, email: str | None
) -> list[dict[str, Any]]:
    """Her orders credited to one of our emails (jobs.reports.attribution), in the
    shop's currency as credited."""
    found = session.execute(
        select(Attribution, Order.order_id, Order.name, Order.placed_at, Message.step)
        .join(Order, Order.id == Attribution.order_row_id)
        .join(Message, Message.id == Attribution.message_id)
        .where(Attribution.shop_id == shop_id, Order.contact_id == contact_id)
    ).all()
    rows = []
    for credit, order_id, name, placed_at, step in found:
        row = _row(placed_at, email, credit.flow, step, "ordered")
        label = name or order_id
        row.update(
            message=credit.message_id,
            order=label,
            revenue=str(credit.revenue),
            currency=credit.currency,
            says=f"ordered {label} ({credit.revenue} {credit.currency}),"
            " credited to this flow's email",
        )
        rows.append(row)
    return rows


def format_timeline(rows: Sequence[dict[str, Any]], zone: tzinfo | None = None) -> str:
    """The timeline as lines; its times in ``zone`` when given (a shop's timeline as
    its merchant reads it), else as stored (UTC, ISO 8601)."""
    lines = []
    for row in rows:
        what = row.get("says") or (row["outcome"] + (f":{row['reason']}" if row["reason"] else ""))
        if row["until"]:
            what += f" until {local_time(row['until'], zone)}"
        step = f"{row['flow']}/{row['step']}" if row["step"] else row["flow"]
        at = local_time(row["at"], zone)
        lines.append(f"{at}  {row['contact'] or '-':<32} {step:<28} {what}")
    return "\n".join(lines)


def local_time(text: str, zone: tzinfo | None) -> str:
    """An ISO 8601 time as a reader in ``zone`` reads it (``text`` itself without one)."""
    if zone is None:
        return text
    return f"{datetime.fromisoformat(text).astimezone(zone):%Y-%m-%d %H:%M:%S %Z}"
