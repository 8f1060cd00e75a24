"""Loyalty: a thank-you with a personal code on the customer's 3rd, 5th and 10th paid order.

Counted over every order the store holds for the contact that was paid, is
not a test and was not cancelled or refunded (the order that was just paid
among them). Each milestone is rewarded once: a count that falls (a refund)
and climbs back to a milestone already rewarded gives nothing. The email
carries a personal single-use code (15 %, 30 days) and a few products bought
together with what she ordered, and ends if that order is cancelled or
refunded before it goes; a second milestone within a week is rewarded a week
after the first. It is her thank-you for that order: the thank-you flow sends
none beside it. Marketing mail.
"""

from __future__ import annotations

from adapters import events as ev
from jobs.flows.context import ORDER_ENDED, FlowContext, paid_order_id
from jobs.flows.model import (
    Days,
    Flow,
    Hours,
    IssueDiscount,
    MessageKind,
    Numbers,
    Option,
    Recommend,
    RecommendBasis,
    Reentry,
    Send,
    SubjectKind,
    Trigger,
    Wait,
    common,
    discount_options,
)

NAME = "loyalty"


def _milestone(ctx: FlowContext) -> bool:
    """This paid order is a milestone, and not one the contact was rewarded for.

    Milestones are rewarded in ascending order, so the contact's earlier loyalty
    enrollments say how many are behind them: the n-th milestone is due while
    fewer than n were.
    """
    if not ctx.order_open():
        return False
    milestones = sorted(ctx.options.get("milestones") or ())
    paid = ctx.paid_orders()
    if paid not in milestones:
        return False
    return ctx.enrollments_in(NAME) < milestones.index(paid) + 1


FLOW = Flow(
    name=NAME,
    title="Loyalty reward",
    summary="Thanks a regular on their 3rd, 5th and 10th order with a personal code.",
    category="loyalty",
    kind=MessageKind.MARKETING,
    # below review requests, above win-back and announcements
    priority=22,
    trigger=Trigger(events=(ev.OrderPaid,), subject=paid_order_id, when=_milestone),
    steps=(
        Wait(option="delay_hours"),
        IssueDiscount(),
        Send("reward", "loyalty"),
    ),
    exits=ORDER_ENDED,
    reentry=Reentry.PER_SUBJECT,
    subject_kind=SubjectKind.ORDER,
    link=lambda view: view.shop_url,  # the reward is spent on anything in the shop
    spacing="spacing_days",
    # somewhere to spend the code: what goes with this order, never what is in it
    recommend=Recommend(limit=4, basis=RecommendBasis.SUBJECT),
    options=(
        Option(
            "milestones",
            Numbers((3, 5, 10), min=1, max=1000, most=10),
            label="Reward on these paid orders",
            help="Which of a customer's paid orders earn a thank-you, e.g. 3, 5, 10 for "
            "their third, fifth and tenth. Test, cancelled and refunded orders do not count.",
        ),
        Option(
            "delay_hours",
            Hours(24, min=0, max=24 * 7),
            label="Send after the payment (hours)",
            help="Hours after the order was paid, so the thank-you does not arrive beside "
            "your order confirmation.",
        ),
        *discount_options(
            on=True,
            label="Personal discount code",
            where="with the thank-you",
            percent=15,
            valid_hours=24 * 30,
            max_valid_hours=24 * 90,
        ),
        Option(
            "spacing_days",
            Days(7, min=0, max=60),
            label="At most one reward email every (days)",
            help="Two milestones reached within this many days: the second reward comes "
            "when they have passed, not right after the first. 0: no waiting.",
        ),
        # a reward held back (spacing) must still go out
        *common(expires_hours=24 * 10),
    ),
)
