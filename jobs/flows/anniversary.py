"""Anniversary: "a year with us" on the day of the contact's first order, every year.

The daily scan tells of it the shop-local day before (``OrderAnniversaryCame``:
``years`` since the first order, ``on`` its date in the shop's calendar). The
email waits until the send hour (09:00) on ``on`` in the contact's zone, as
the birthday greeting does (:mod:`jobs.flows.dated`: late facts send on the
day or not at all, ``anniversary_passed``); a fact made without ``on`` goes
at the next send hour. The email names the years ("2 years"), offers products
that go with what she bought, and a personal code if the shop turns it on.
Once a year (the subject names the year). Off until the shop turns it on.
Marketing mail.
"""

from __future__ import annotations

from adapters import events as ev
from jobs.flows.dated import DAY, before_the_day, day_of, day_passed, day_values
from jobs.flows.model import (
    Exit,
    Flow,
    IssueDiscount,
    MessageKind,
    Recommend,
    RecommendBasis,
    Reentry,
    Send,
    SubjectKind,
    Trigger,
    TriggerValue,
    WaitUntil,
    common,
    discount_options,
    send_hour_option,
)

NAME = "anniversary"


def _subject(event: ev.Event) -> str | None:
    """Once a year: the year of the anniversary is the subject."""
    if not isinstance(event, ev.OrderAnniversaryCame):
        return None
    day = day_of(event) or event.occurred_at.date()
    return f"anniversary:{day.year}"


def _values(event: ev.Event) -> dict[str, TriggerValue]:
    assert isinstance(event, ev.OrderAnniversaryCame)
    return {"years": event.years, **day_values(event)}


FLOW = Flow(
    name=NAME,
    title="Anniversary of the first order",
    summary="Celebrates a year (or two, or more) since a customer's first order, on the day.",
    category="loyalty",
    kind=MessageKind.MARKETING,
    # dated, but no loss a day late: after the thanks for a fresh order, before a reward
    priority=24,
    trigger=Trigger(
        events=(ev.OrderAnniversaryCame,),
        subject=_subject,
        anchor=before_the_day,
        values=_values,
    ),
    steps=(
        WaitUntil(day=DAY, option="send_hour"),
        IssueDiscount(),
        Send("anniversary", "anniversary"),
    ),
    exits=(Exit("anniversary_passed", day_passed),),
    reentry=Reentry.PER_SUBJECT,
    subject_kind=SubjectKind.CONTACT,
    recommend=Recommend(limit=4, basis=RecommendBasis.PURCHASES),
    options=(
        send_hour_option(9, when="on the anniversary"),
        *discount_options(
            on=False,
            label="Anniversary code",
            where="with the anniversary email",
            percent=10,
            valid_hours=24 * 14,
            max_valid_hours=24 * 60,
        ),
        # a yearly note a shop chooses to send: off until it does
        *common(enabled=False, expires_hours=12),
    ),
)
