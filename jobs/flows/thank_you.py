"""Thank you: a day after an order was paid, thanks, with a few products that go with it.

One per order, for real orders only (not a test, not cancelled or refunded
when paid), and it ends if the order is cancelled or refunded before it goes.
It shows the order's items, then other products bought together with them
(never one the customer has bought). An order that woke the welcome series'
own thanks for a first order (its ``welcome_related`` email, planned or sent
since the order was placed, and neither expired nor skipped when the
thank-you comes due) gets no second thank-you, nor does an order the
loyalty flow rewards (its email thanks her, with a code and ideas of its own:
``rewarded``). A second order within
the week gets none either: a one-email flow mails a contact once a week
(``cap:flow_repeat``). Marketing mail.
"""

from __future__ import annotations

from adapters import events as ev
from jobs.flows.context import ORDER_ENDED, FlowContext, paid_order_id
from jobs.flows.model import (
    Exit,
    Flow,
    Hours,
    MessageKind,
    Option,
    Recommend,
    RecommendBasis,
    Reentry,
    Send,
    SubjectKind,
    Trigger,
    Wait,
    common,
)

NAME = "thank_you"
#: the welcome series' step that thanks a subscriber for the order she placed during it
WELCOME_THANKS = ("welcome", "welcome_related")
#: the flow whose reward email thanks her for this same order (its subject is the order too)
REWARD_FLOW = "loyalty"


def _welcomed(ctx: FlowContext) -> bool:
    """The welcome's ideas for this order are planned, on their way or sent: they thank
    her. Asked when the thank-you comes due, never at its start: ideas only planned
    then may still expire (a full week), and she would get no thanks at all."""
    return ctx.enrollment is not None and ctx.step_planned_since_order(*WELCOME_THANKS)


def _rewarded(ctx: FlowContext) -> bool:
    """A loyalty reward for this order is planned, on its way or sent: that is her
    thank-you. A reward that was skipped, cancelled or expired leaves the thank-you
    to go, so it is asked when the thank-you comes due, never at its start (a reward
    only planned then may still be called off)."""
    return ctx.enrollment is not None and ctx.email_live_for_subject(REWARD_FLOW)


FLOW = Flow(
    name=NAME,
    title="Thank you",
    summary="Thanks a customer the day after their order, with products that go with it.",
    category="thanks",
    kind=MessageKind.MARKETING,
    # after a review request, before loyalty rewards and announcements
    priority=25,
    trigger=Trigger(events=(ev.OrderPaid,), subject=paid_order_id, when=FlowContext.order_open),
    steps=(
        Wait(option="delay_hours"),
        Send("thanks", "thank_you"),
    ),
    exits=(
        *ORDER_ENDED,
        # the welcome series thanked her for this order already
        Exit("welcomed", _welcomed),
        # the loyalty reward for this order thanks her instead
        Exit("rewarded", _rewarded),
    ),
    reentry=Reentry.PER_SUBJECT,
    subject_kind=SubjectKind.ORDER,
    link=lambda view: view.shop_url,  # "Visit the shop": the suggestions are there
    recommend=Recommend(limit=4, basis=RecommendBasis.SUBJECT),
    options=(
        Option(
            "delay_hours",
            Hours(24, min=1, max=24 * 14),
            label="Send after the payment (hours)",
            help="Hours after the order was paid, so the thank-you does not arrive beside "
            "your order confirmation. Sent in the customer's daytime.",
        ),
        # held back more than a day (quiet hours, caps), thanks would come too late
        *common(expires_hours=24),
    ),
)
