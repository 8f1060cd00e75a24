"""Re-engagement: a subscriber who signed up a while ago and never bought.

The daily scan tells of a subscribed contact without orders on the day she
subscribed ``quiet_days`` (30) days ago (``SubscriberWentQuiet``; the scan reads
the option from here). The flow starts if she is still subscribed, has never
ordered (``ordered``), and is not in a welcome series under way
(``in_welcome_series``, read when asked). The email goes at the next send
hour (10:00) in her zone and shows the shop's favourites; it ends if she
orders, or if a welcome series has begun, before it goes. Once per contact,
ever. Consent is asked again at the send, as for every marketing email (an
unsubscribe meanwhile: ``skipped:unsubscribed``). Marketing mail.
"""

from __future__ import annotations

from adapters import events as ev
from jobs.flows.context import FlowContext
from jobs.flows.model import (
    Days,
    Exit,
    Flow,
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
    send_hour_option,
)

NAME = "re_engagement"
#: the series a new subscriber gets first: one under way is hers to finish
WELCOME = "welcome"
ORDER_EVENTS = (ev.OrderPlaced, ev.OrderPaid)


def _subject(event: ev.Event) -> str | None:
    return NAME if isinstance(event, ev.SubscriberWentQuiet) else None


def _still_subscribed(ctx: FlowContext) -> bool:
    """She is subscribed now (the scan's answer may be a day old)."""
    return ctx.contact is not None and ctx.contact.consent_state == ev.ConsentState.SUBSCRIBED


def _ordered(ctx: FlowContext) -> bool:
    """She has ordered: any real order the store holds, paid or not, even one cancelled
    or refunded since (she is a customer who had a bad time, not a subscriber who
    never started)."""
    contact = ctx.contact
    if contact is None:
        return False
    return contact.first_order_at is not None or ctx.ever_ordered()


def _in_welcome_series(ctx: FlowContext) -> bool:
    return ctx.in_flow(WELCOME)


FLOW = Flow(
    name=NAME,
    title="Re-engagement",
    summary="Reaches out to a subscriber who has not bought anything a month after signing up.",
    category="winback",
    kind=MessageKind.MARKETING,
    # below the win-back of a real customer, above an announcement to many
    priority=15,
    trigger=Trigger(events=(ev.SubscriberWentQuiet,), subject=_subject, when=_still_subscribed),
    steps=(
        WaitUntil(option="send_hour"),
        Send("re_engagement", "re_engagement"),
    ),
    exits=(
        Exit("ordered", _ordered, on=ORDER_EVENTS),
        Exit("in_welcome_series", _in_welcome_series),
    ),
    reentry=Reentry.ONCE,
    subject_kind=SubjectKind.CONTACT,
    # she has bought nothing: the shop's favourites
    recommend=Recommend(limit=4, basis=RecommendBasis.BESTSELLERS),
    options=(
        Option(
            "quiet_days",
            Days(30, min=7, max=365),
            label="After subscribing (days)",
            help="Sent this many days after a customer subscribed, if they have not "
            "ordered yet and no welcome series is still under way for them.",
        ),
        send_hour_option(10, when="of the day"),
        *common(expires_hours=48),
    ),
)
