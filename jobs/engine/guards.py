"""Guards: the checks every message passes at send time, each with a reason code.

Asked in this order, against the state of the moment (never the state when
the message was planned); the first that says no decides:

==========================  ==================================================
``cancelled:shop_inactive``  the shop uninstalled triggerpost
``exited:<exit>``            the flow's exit holds now (the late re-check)
``expired:<rule>``           deferred past the message's expiry (by that rule)
``skipped:holdout``          the enrollment is in the flow's holdout group
``skipped:contact_redacted`` the contact was erased at the shop's request
``skipped:no_email``         no address, or one that cannot be valid
``skipped:not_in_segment``   the flow is for a segment (its ``audience``) she has
                             left since she entered it (jobs.audience.segments)
``skipped:suppressed:<s>``   unsubscribed, bounced or complained (scope ``s``)
``skipped:no_consent``       marketing mail to a contact who never subscribed
``skipped:unsubscribed``     marketing mail to a contact who unsubscribed
``skipped:cap:flow_repeat``  a one-email flow already mailed them this week
``deferred:cap:flow_repeat`` a flow with ``spacing`` mailed them lately (instead of
                             the skip: another order's email comes later)
``deferred:quiet_hours``     outside 08:00-21:00 in the contact's local time
``deferred:cap:gap``         another marketing email within 16 h
``deferred:cap:weekly``      3 marketing emails in the rolling 7 days
``deferred:cap:priority``    a higher-priority marketing email is due first (within
                             the gap, or before the week frees the last slot)
==========================  ==================================================

A deferral moves the message to the first moment all guards could pass and
is asked again then; if that moment is past the expiry, it expires with the
reason instead. Transactional mail skips consent, caps and priority (a
receipt is not marketing) but keeps suppression of bounces and complaints.

A verdict to send carries its *legal basis*: why this email was allowed,
which the send pipeline records on the message as it hands it over:

=================  ===========================================================
``subscribed``     marketing to a contact who subscribed (with the consent's
                   source and time, as the store last heard them)
``soft_opt_in``    marketing to a past customer who never opted out, under the
                   flow's ``subscribed_or_customer`` consent policy
``transactional``  mail about something she did (a receipt), which needs no consent
=================  ===========================================================

The guards only read: the send pipeline applies the verdict (an exit there also
ends the enrollment), so judging can be asked anywhere without side effects.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapters.events import ConsentState
from jobs.engine import localtime, suppressions
from jobs.engine.enrolment import exit_reason, outside_audience
from jobs.engine.policy import Policy, flow_options
from jobs.flows.context import FlowContext
from jobs.flows.model import ConsentPolicy, Flow, MessageKind
from jobs.store import queries
from jobs.store.db import plain
from jobs.store.models import (
    Contact,
    Enrollment,
    EnrollmentState,
    Message,
    Shop,
    ShopStatus,
)


def plausible_address(address: str) -> bool:
    """Could this be an email address at all? One ``@`` with text on each side, a dot
    inside the domain, no whitespace.

    Deliberately loose: the provider is the judge; this only catches what cannot
    work. String scans only, so the time is linear in the length: a backtracking
    pattern for the same rule was quadratic, and an 80 KB address in a webhook
    held a worker for seconds.
    """
    local, at, domain = address.partition("@")
    return (
        bool(local)
        and bool(at)
        and "@" not in domain
        and "." in domain[1:-1]  # a dot with something before and after it
        and not any(map(str.isspace, address))
    )


class Outcome(StrEnum):
    """What the guards decide; the final ones are the message states of the same name."""

    SEND = "send"
    SKIPPED = "skipped"
    EXITED = "exited"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DEFERRED = "deferred"


class Basis(StrEnum):
    """Why an email was allowed to go (the table in the module docstring)."""

    SUBSCRIBED = "subscribed"
    SOFT_OPT_IN = "soft_opt_in"
    TRANSACTIONAL = "transactional"


@dataclass(frozen=True)
class LegalBasis:
    """The basis of one send, with the facts it stands on at the moment it was judged."""

    basis: Basis
    #: subscribed: where the store heard of the consent, and when it was given
    source: str | None = None
    consented_at: datetime | None = None
    #: soft opt-in: the orders that make her a customer, and the first one's time
    orders: int | None = None
    customer_since: datetime | None = None

    def as_record(self) -> dict[str, str | int]:
        """Plain JSON for the message's row (only the facts this basis has)."""
        record: dict[str, str | int] = {"basis": self.basis.value}
        if self.source is not None:
            record["source"] = self.source
        if self.consented_at is not None:
            record["at"] = self.consented_at.isoformat()
        if self.orders is not None:
            record["orders"] = self.orders
        if self.customer_since is not None:
            record["customer_since"] = self.customer_since.isoformat()
        return record


TRANSACTIONAL = LegalBasis(Basis.TRANSACTIONAL)


@dataclass(frozen=True)
class Verdict:
    """``send`` with its legal basis, or the final/deferring outcome with its reason
    (and new due time)."""

    outcome: Outcome
    reason: str | None = None
    until: datetime | None = None
    #: the flow's exit holds now: the enrollment ends with this reason too
    ends_enrollment: bool = False
    #: a send's legal basis (None on any other outcome)
    basis: LegalBasis | None = None

    @property
    def sends(self) -> bool:
        return self.outcome == Outcome.SEND


SEND = Verdict(Outcome.SEND)


def judge(
    session: Session,
    shop: Shop,
    flow: Flow,
    enrollment: Enrollment,
    message: Message,
    contact: Contact | None,
    ctx: FlowContext,
    at: datetime,
) -> Verdict:
    """The first guard that says no, in the order of the table above, or :data:`SEND`.

    Writes nothing: it reads the state of the moment (through ``session``, and
    through ``ctx`` for the flow's exit conditions) and the caller applies the
    verdict: ends the enrollment on an exit, defers, skips or sends.
    """
    if shop.status != ShopStatus.ACTIVE:
        return Verdict(Outcome.CANCELLED, "shop_inactive")
    if enrollment.state == EnrollmentState.EXITED:
        return Verdict(Outcome.EXITED, enrollment.reason)
    if enrollment.state == EnrollmentState.CANCELLED:
        return Verdict(Outcome.CANCELLED, enrollment.reason)
    exit_ = exit_reason(flow, ctx)
    if exit_ is not None:
        return Verdict(Outcome.EXITED, exit_, ends_enrollment=True)
    if at > message.expires_at:
        return Verdict(Outcome.EXPIRED, message.reason or "late")
    if enrollment.holdout:
        return Verdict(Outcome.SKIPPED, "holdout")
    if contact is None or contact.redacted_at is not None:
        return Verdict(Outcome.SKIPPED, "contact_redacted")
    if not contact.email or not plausible_address(contact.email):
        return Verdict(Outcome.SKIPPED, "no_email")
    if outside_audience(session, shop, flow, contact, at) is not None:
        return Verdict(Outcome.SKIPPED, "not_in_segment")
    marketing = message.kind == MessageKind.MARKETING
    blocked = suppressions.blocking_scope(
        suppressions.scopes_for(session, shop.id, contact.email), message.kind, flow.category
    )
    if blocked is not None:
        return Verdict(Outcome.SKIPPED, f"suppressed:{blocked}")
    basis = TRANSACTIONAL
    if marketing:
        refusal = consent_refusal(contact, flow_options(shop, flow).get("consent"))
        if refusal is not None:
            return Verdict(Outcome.SKIPPED, refusal)
        basis = marketing_basis(contact)
    verdict = _timing(session, shop, flow, message, contact, at, marketing=marketing)
    return replace(verdict, basis=basis) if verdict.sends else verdict


def consent_refusal(contact: Contact, policy: object) -> str | None:
    state = contact.consent_state
    if state == ConsentState.SUBSCRIBED:
        return None
    if state in (ConsentState.UNSUBSCRIBED, ConsentState.REDACTED, ConsentState.INVALID):
        return "unsubscribed" if state == ConsentState.UNSUBSCRIBED else f"consent_{state}"
    if policy == ConsentPolicy.SUBSCRIBED_OR_CUSTOMER and contact.orders_count > 0:
        return None
    return "no_consent"


def marketing_basis(contact: Contact) -> LegalBasis:
    """The basis of marketing mail :func:`consent_refusal` let through: her
    subscription, or else (the customer policy let her in) her past orders."""
    if contact.consent_state == ConsentState.SUBSCRIBED:
        return LegalBasis(Basis.SUBSCRIBED, contact.consent_source, contact.consent_at)
    return LegalBasis(
        Basis.SOFT_OPT_IN, orders=contact.orders_count, customer_since=contact.first_order_at
    )


def _timing(
    session: Session,
    shop: Shop,
    flow: Flow,
    message: Message,
    contact: Contact,
    at: datetime,
    *,
    marketing: bool,
) -> Verdict:
    """Quiet hours for all mail; caps and priority for marketing. Defers to a free slot."""
    policy = Policy.of(shop)
    tz, _source = localtime.zone_for(contact.timezone, contact.country_code, shop.timezone)
    if marketing and flow.single_email and flow.spacing is None:
        repeat = session.scalar(
            select(Message.id).where(
                Message.contact_id == contact.id,
                Message.flow == flow.name,
                Message.id != message.id,
                Message.state.in_(queries.OCCUPYING),
                Message.sent_at >= at - policy.single_flow_window,
            )
        )
        if repeat is not None:
            return Verdict(Outcome.SKIPPED, "cap:flow_repeat")
    spaced_until = _spaced_until(session, shop, flow, message, contact) if marketing else None
    # Each rule may push the slot later; repeat until one pass moves nothing.
    # The reason given is the first rule that blocked the due time: the cause,
    # even when the slot it leads to then falls into quiet hours. An email that
    # expires says the rule that pushed it past its expiry (a full week, not
    # the gap that first held it back).
    slot, reason, too_late = at, None, None

    def push(to: datetime, rule: str) -> None:
        nonlocal slot, reason, too_late
        if too_late is None and to > message.expires_at:
            too_late = rule
        slot, reason = to, reason or rule

    for _ in range(10):
        moved = False
        opens = localtime.quiet_until(slot, tz, policy.quiet_end, policy.quiet_start)
        if opens is not None:
            push(opens, "quiet_hours")
            moved = True
        if spaced_until is not None and spaced_until > slot:
            push(spaced_until, "cap:flow_repeat")
            moved = True
        if marketing:
            for rule, free_at in _cap_slots(session, policy, message, contact, slot):
                if free_at > slot:
                    push(free_at, rule)
                    moved = True
        if not moved:
            break
    if reason is None:
        return SEND
    if slot > message.expires_at:
        return Verdict(Outcome.EXPIRED, too_late or reason)
    return Verdict(Outcome.DEFERRED, reason, slot)


def _spaced_until(
    session: Session, shop: Shop, flow: Flow, message: Message, contact: Contact
) -> datetime | None:
    """When a flow with ``spacing`` may mail this contact again: its last email plus the days."""
    if flow.spacing is None:
        return None
    days = float(flow_options(shop, flow).get(flow.spacing) or 0)
    if not days:
        return None
    last = session.scalar(
        select(func.max(Message.sent_at)).where(
            Message.contact_id == contact.id,
            Message.flow == flow.name,
            Message.id != message.id,
            Message.state.in_(queries.OCCUPYING),
        )
    )
    if last is None:
        return None
    return last + timedelta(days=days)


def _cap_slots(
    session: Session, policy: Policy, message: Message, contact: Contact, slot: datetime
) -> list[tuple[str, datetime]]:
    """(rule, earliest time it allows) for each frequency rule that blocks ``slot``."""
    params = {"contact_id": contact.id, "message_id": message.id}
    connection = plain(session)
    since = slot - policy.window
    taken = connection.scalars(queries.OTHER_MARKETING_SENT_SINCE, {**params, "since": since})
    times = sorted(t for t in taken if t)
    found: list[tuple[str, datetime]] = []
    near = [t for t in times if t > slot - policy.min_gap]
    if near:
        found.append(("cap:gap", max(near) + policy.min_gap))
    in_window = [t for t in times if t > slot - policy.window]
    # A higher-priority message due within the gap either side of the slot would
    # be blocked by this one: it goes first, and this one follows a gap after it.
    until = slot + policy.min_gap
    if len(in_window) >= policy.marketing_per_window:
        # the slot frees when enough of them have left the window
        oldest = in_window[len(in_window) - policy.marketing_per_window]
        found.append(("cap:weekly", oldest + policy.window))
    elif len(in_window) + 1 == policy.marketing_per_window:
        # this one would take the window's last slot: a higher-priority message
        # due before a slot frees again (the oldest leaves the window) would find
        # none, so that one has the slot, and this one waits a gap after it
        until = max(until, min([*in_window, slot]) + policy.window)
    rival = connection.scalar(
        queries.HIGHER_PRIORITY_DUE_NEAR,
        {
            **params,
            "priority": message.priority,
            "after": slot - policy.min_gap,
            "until": until,
        },
    )
    if rival is not None:
        found.append(("cap:priority", rival + policy.min_gap))
    return found
