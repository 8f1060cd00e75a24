"""Cart recovery: up to three reminders for a checkout left unpaid.

Emails at 1 h, 24 h and 72 h after the checkout was last updated (a later
update pushes them back); the third may carry a personal discount code. It
ends when that checkout completes or the contact places any order after the
checkout began. Marketing mail: by default only to subscribed contacts; the
shop may choose the documented softer policy for past customers.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from adapters import events as ev
from adapters.platform import Platform
from jobs.flows.context import FlowContext
from jobs.flows.model import (
    ConsentPolicy,
    Exit,
    Flow,
    IssueDiscount,
    MessageKind,
    Reentry,
    Send,
    SubjectKind,
    Trigger,
    Wait,
)

CHECKOUT_EVENTS = (ev.CheckoutStarted, ev.CheckoutUpdated)


def _subject(event: ev.Event) -> str | None:
    return event.checkout.token if isinstance(event, CHECKOUT_EVENTS) else None


def _anchor(event: ev.Event) -> datetime:
    assert isinstance(event, CHECKOUT_EVENTS)
    return event.checkout.updated_at


def _recoverable(ctx: FlowContext) -> bool:
    checkout = ctx.checkout
    return (
        checkout is not None
        and checkout.status != "completed"
        and checkout.email is not None
        and checkout.not_mailable_reason is None
        and checkout.recovery_url is not None
    )


def _ordered(ctx: FlowContext) -> bool:
    checkout = ctx.checkout
    since = (checkout.platform_created_at if checkout else None) or (
        ctx.enrollment.entered_at if ctx.enrollment else ctx.now
    )
    return ctx.ordered_since(since)


def _pending_order(platform: Platform, subject: str) -> str | None:
    """Where an abandoned checkout is a pending order, ask the store if it got paid."""
    return subject if platform.checkout_is_pending_order else None


FLOW = Flow(
    name="cart_recovery",
    title="Cart recovery",
    category="cart",
    kind=MessageKind.MARKETING,
    priority=40,
    trigger=Trigger(
        events=CHECKOUT_EVENTS,
        subject=_subject,
        anchor=_anchor,
        when=_recoverable,
        reanchor=True,
    ),
    steps=(
        Wait(option="delay_1_hours"),
        Send("email_1", "cart_recovery_1"),
        Wait(option="delay_2_hours"),
        Send("email_2", "cart_recovery_2", option="email_2"),
        Wait(option="delay_3_hours"),
        IssueDiscount(),
        Send("email_3", "cart_recovery_3", option="email_3"),
    ),
    exits=(
        Exit(
            "checkout_completed",
            lambda ctx: ctx.checkout_completed(),
            on=(*CHECKOUT_EVENTS, ev.OrderPlaced, ev.OrderPaid),
        ),
        Exit(
            "order_placed",
            _ordered,
            on=(ev.OrderPlaced, ev.OrderPaid),
        ),
    ),
    reentry=Reentry.PER_SUBJECT,
    subject_kind=SubjectKind.CHECKOUT,
    live_order=_pending_order,
    defaults={
        "enabled": True,
        # delays count from the checkout's last update, not from the previous email
        "delay_1_hours": 1,
        "delay_2_hours": 23,
        "delay_3_hours": 48,
        "email_2": True,
        "email_3": True,
        # the personal code in the third email: off unless the shop turns it on
        "discount": False,
        "discount_percent": 10,
        "discount_valid_hours": 48,
        "consent": ConsentPolicy.SUBSCRIBED,
        "holdout_percent": 0,
        # a reminder deferred (caps, quiet hours) longer than this is dropped
        "expires_hours": 24,
    },
)

#: the timeline for readers: 1 h, 24 h and 72 h after the last update
SCHEDULE = (timedelta(hours=1), timedelta(hours=24), timedelta(hours=72))
