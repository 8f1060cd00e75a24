"""Win-back: a customer who bought a few times and then stopped, asked back.

The daily scan tells of a customer on the shop-local day her last order turns
``lapsed_days`` (90) days old, if she has at least ``min_orders`` (2) orders
(``CustomerLapsed``: both options are read from here by the scan). The flow
starts only if, at that moment, she has that many *paid* orders (not tests,
not cancelled or refunded) and her last order really is that old in the
shop's calendar (an order since, whose webhook came before the fact, is a
reason not to: ``lapsed_customer``). The email goes at the next send hour
(10:00) in her zone, with products that go with what she bought and, if the
shop turns it on, a personal code. It ends at once if she orders (checked
again right before it goes).

At most once every ``again_after_days`` (180): she lapses again after coming
back, and the win-back starts again only once that long has passed since the
last one began (``too_soon``; :class:`jobs.flows.model.Reentry` ``AFTER_DAYS``).
The subject is the lapse (the day of the last order), so a scan run twice adds
nothing. Marketing mail.
"""

from __future__ import annotations

from adapters import events as ev
from jobs.flows.context import FlowContext
from jobs.flows.model import (
    Count,
    Days,
    Exit,
    Flow,
    IssueDiscount,
    MessageKind,
    Option,
    Recommend,
    RecommendBasis,
    Reentry,
    Send,
    SubjectKind,
    Trigger,
    WaitUntil,
    common,
    discount_options,
    send_hour_option,
)

NAME = "win_back"
ORDER_EVENTS = (ev.OrderPlaced, ev.OrderPaid)


def _subject(event: ev.Event) -> str | None:
    """One win-back per lapse: the day of the last order names it."""
    if not isinstance(event, ev.CustomerLapsed):
        return None
    return f"win_back:{event.last_order_at.date().isoformat()}"


def _lapsed_customer(ctx: FlowContext) -> bool:
    """She paid for at least ``min_orders`` orders, and her last order is at least
    ``lapsed_days`` old in the shop's calendar now (not only when the scan ran)."""
    contact = ctx.contact
    if contact is None or contact.last_order_at is None:
        return False
    if ctx.paid_orders() < int(ctx.options["min_orders"]):
        return False
    return ctx.days_ago_in_shop_calendar(contact.last_order_at) >= int(ctx.options["lapsed_days"])


def _ordered(ctx: FlowContext) -> bool:
    """She placed an order since the lapse was found (before that: the trigger's question)."""
    if ctx.enrollment is None:
        return False
    return ctx.ordered_since(ctx.enrollment.anchor_at)


FLOW = Flow(
    name=NAME,
    title="Win-back",
    summary=(
        "Invites a regular who has gone quiet for 90 days back, with picks from what they bought."
    ),
    category="winback",
    kind=MessageKind.MARKETING,
    # what can wait days without losing its point
    priority=20,
    trigger=Trigger(events=(ev.CustomerLapsed,), subject=_subject, when=_lapsed_customer),
    steps=(
        WaitUntil(option="send_hour"),
        IssueDiscount(),
        Send("win_back", "win_back"),
    ),
    exits=(Exit("ordered", _ordered, on=ORDER_EVENTS),),
    reentry=Reentry.AFTER_DAYS,
    reentry_days="again_after_days",
    subject_kind=SubjectKind.CONTACT,
    recommend=Recommend(limit=4, basis=RecommendBasis.PURCHASES),
    options=(
        Option(
            "min_orders",
            Count(2, min=1, max=100, unit="paid orders"),
            label="For customers with at least (paid orders)",
            help="Only customers who paid for at least this many orders. Test, cancelled "
            "and refunded orders do not count.",
        ),
        Option(
            "lapsed_days",
            Days(90, min=14, max=365),
            label="After no order for (days)",
            help="Sent when a customer's last order is this many days old.",
        ),
        Option(
            "again_after_days",
            Days(180, min=30, max=365),
            label="At most once every (days)",
            help="A customer who comes back and lapses again gets the next win-back only "
            "once this many days have passed since the last one.",
        ),
        send_hour_option(10, when="of the day"),
        *discount_options(
            on=False,
            label="Welcome-back code",
            where="with the win-back email",
            percent=10,
            valid_hours=24 * 14,
            max_valid_hours=24 * 60,
        ),
        # it has waited three months: held back two days more, it is still worth sending
        *common(expires_hours=48),
    ),
)
