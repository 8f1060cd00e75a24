"""Cart recovery: up to three reminders for a checkout left unpaid.

Emails at 1 h, 24 h and 72 h after the checkout was last updated (a later
update pushes them back); the third may carry a personal discount code. It
ends when that checkout completes or the contact places any order after the
checkout began (asked of the store itself right before each send, where its
API can say), or when nothing in the cart is for sale any more; products no
longer for sale are left out of the emails. Marketing mail: by default only to
subscribed contacts; the shop may choose the documented softer policy for past
customers.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from adapters import events as ev
from adapters.platform import LiveQuestion, Platform
from jobs.flows.context import FlowContext
from jobs.flows.model import (
    Exit,
    Flow,
    Hours,
    IssueDiscount,
    MessageKind,
    Option,
    Reentry,
    Send,
    SubjectKind,
    Switch,
    Trigger,
    Wait,
    common,
    discount_options,
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


def _began(ctx: FlowContext) -> datetime:
    checkout = ctx.checkout
    return (checkout.platform_created_at if checkout else None) or (
        ctx.enrollment.entered_at if ctx.enrollment else ctx.now
    )


def _ordered(ctx: FlowContext) -> bool:
    return ctx.ordered_since(_began(ctx))


def _live_question(platform: Platform, ctx: FlowContext) -> LiveQuestion | None:
    """Ask the store whether the checkout went ahead after all: where an abandoned
    checkout is a pending order, whether that order got paid; elsewhere, whether
    its customer placed an order since it began."""
    if platform.checkout_is_pending_order:
        return LiveQuestion(order_id=ctx.subject)
    checkout = ctx.checkout
    if checkout is None or checkout.email is None:
        return None
    return LiveQuestion(email=checkout.email, since=_began(ctx))


FLOW = Flow(
    name="cart_recovery",
    title="Cart recovery",
    summary=(
        "Reminds a customer of a checkout they left, up "
        "to three times, with an optional code in the last."
    ),
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
        # asked before each send: products are sold out or withdrawn without a word to
        # the checkout (a reminder for a cart of which nothing can be bought is noise)
        Exit("items_unavailable", lambda ctx: ctx.checkout_items_gone),
    ),
    reentry=Reentry.PER_SUBJECT,
    subject_kind=SubjectKind.CHECKOUT,
    live_check=_live_question,
    options=(
        # delays count from the checkout's last update, not from the previous email
        Option(
            "delay_1_hours",
            Hours(1, min=0, max=24 * 7),
            label="First reminder after (hours)",
            help="Hours after the customer last changed their cart. Most carts that "
            "come back do so within the first hour or two.",
        ),
        Option(
            "delay_2_hours",
            Hours(23, min=0, max=24 * 7),
            label="Second reminder after (hours)",
            help="Hours after the first reminder was due.",
        ),
        Option(
            "delay_3_hours",
            Hours(48, min=0, max=24 * 7),
            label="Third reminder after (hours)",
            help="Hours after the second reminder was due.",
        ),
        Option(
            "email_2",
            Switch(True),
            label="Send the second reminder",
            help="Turn off to send fewer reminders for the same cart.",
        ),
        Option(
            "email_3",
            Switch(True),
            label="Send the third reminder",
            help="The last reminder, the one that can carry a discount code.",
        ),
        # the personal code in the third email: off unless the shop turns it on
        *discount_options(
            on=False,
            label="Discount code in the third reminder",
            where="in the third reminder",
            percent=10,
            valid_hours=48,
            max_valid_hours=24 * 30,
        ),
        # a reminder deferred (caps, quiet hours) longer than this is dropped
        *common(expires_hours=24),
    ),
)

#: the timeline for readers: 1 h, 24 h and 72 h after the last update
SCHEDULE = (timedelta(hours=1), timedelta(hours=24), timedelta(hours=72))
