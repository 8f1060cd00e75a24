"""Welcome: a new subscriber's first emails, and ideas for their first order.

Starts for a contact who subscribed and has no orders yet: a customer created
with marketing consent, or a contact whose consent becomes subscribed. The
first email goes at once (quiet hours still apply), with a personal code if
the shop turns it on. Then it waits four days for the contact's first order:
if it comes, an email one day after it offers products related to what they
bought (never those themselves) and the series ends; if not, a second email
on day four shows the shop's favourites. A test order is not the order it
waits for; the order it got, cancelled or refunded before the ideas go, ends
the series (no ideas for an order that is not coming). Once per contact, ever;
it ends if an order from before the welcome turns up (a customer already).
Marketing mail.

The subject names the contact, never an order: an order event finds the
enrollment through its contact, so only the contact's own order resumes the
wait (an order or checkout id can never equal a ``welcome:`` subject).
"""

from __future__ import annotations

from adapters import events as ev
from jobs.flows.context import FlowContext
from jobs.flows.model import (
    Days,
    End,
    Exit,
    Flow,
    IssueDiscount,
    Label,
    MessageKind,
    Option,
    Recommend,
    RecommendBasis,
    Reentry,
    Send,
    SubjectKind,
    Trigger,
    Wait,
    WaitForEvent,
    WaitUnit,
    common,
    discount_options,
)
from jobs.store.models import OrderStatus

NAME = "welcome"
ORDER_EVENTS = (ev.OrderPlaced, ev.OrderPaid)


def _subject(event: ev.Event) -> str | None:
    if isinstance(event, ev.CustomerCreated):
        customer_id = event.customer.customer_id
    elif isinstance(event, ev.MarketingConsentChanged):
        if event.consent.state != ev.ConsentState.SUBSCRIBED:
            return None  # not a sign-up: not this flow's event
        customer_id = event.customer_id
    else:
        return None
    # a subscriber known only by address has no customer id (nor is the address kept here)
    return f"welcome:{customer_id or 'subscriber'}"


def _subscribed(ctx: FlowContext) -> bool:
    """The contact is subscribed now (a customer created without consent is welcomed
    when they subscribe, not before: the welcome starts once per contact)."""
    return ctx.contact is not None and ctx.contact.consent_state == ev.ConsentState.SUBSCRIBED


def _real_order(ctx: FlowContext) -> bool:
    """The order that came is a real one: a store's test order is not awaited."""
    event = ctx.event
    return isinstance(event, ORDER_EVENTS) and not event.order.test


def _already_customer(ctx: FlowContext) -> bool:
    """The contact had ordered before the welcome began (at the start: has any order).

    Counted over the orders the store holds for the contact that are not tests
    and were not cancelled or refunded (paid or not); the first order after the
    welcome began is the one it waits for, not a reason to stop.
    """
    contact = ctx.contact
    if contact is None:
        return False
    first = contact.first_order_at
    if ctx.enrollment is None:
        return first is not None or ctx.paid_orders() > 0
    return first is not None and first < ctx.enrollment.anchor_at


FLOW = Flow(
    name=NAME,
    title="Welcome series",
    summary="Welcomes a new subscriber, then follows up with ideas or the shop's favourites.",
    category="welcome",
    kind=MessageKind.MARKETING,
    priority=33,
    trigger=Trigger(
        events=(ev.CustomerCreated, ev.MarketingConsentChanged),
        subject=_subject,
        when=_subscribed,
    ),
    steps=(
        IssueDiscount(),
        Send("welcome_1", "welcome_1"),
        # the contact's own order: the subject is the contact, so any order event
        # about them (found through the contact) counts, not only one subject's
        WaitForEvent(events=ORDER_EVENTS, option="wait_days", goto="ordered", when=_real_order),
        Send("welcome_2", "welcome_2"),
        End(),
        Label("ordered"),
        Wait(option="related_days", unit=WaitUnit.DAYS),
        Send("welcome_related", "welcome_related"),
    ),
    exits=(
        Exit("already_customer", _already_customer, on=ORDER_EVENTS),
        # the first order it waited for, called off before the ideas for it go
        Exit(
            "order_cancelled",
            lambda ctx: ctx.resumed_by_order_is(OrderStatus.CANCELLED),
            on=(ev.OrderCancelled,),
        ),
        Exit(
            "order_refunded",
            lambda ctx: ctx.resumed_by_order_is(OrderStatus.REFUNDED),
            on=(ev.OrderRefunded,),
        ),
    ),
    reentry=Reentry.ONCE,
    subject_kind=SubjectKind.CONTACT,
    # what goes with their purchases; with none yet (the second email), the bestsellers
    recommend=Recommend(limit=4, basis=RecommendBasis.PURCHASES),
    options=(
        Option(
            "wait_days",
            Days(4, min=1, max=30),
            label="Second email after (days)",
            help="Days after the welcome. A new customer who orders before then gets "
            "ideas to go with their order instead, and no second email.",
        ),
        Option(
            "related_days",
            Days(1, min=0, max=14),
            label="Ideas for the first order after (days)",
            help="Days after their first order, an email with products that go with "
            "what they bought.",
        ),
        *discount_options(
            on=False,
            label="Welcome code in the first email",
            where="in the welcome email",
            percent=10,
            valid_hours=24 * 14,
            max_valid_hours=24 * 90,
        ),
        # a welcome held back a day by sending limits is still welcome
        *common(expires_hours=48),
    ),
)
