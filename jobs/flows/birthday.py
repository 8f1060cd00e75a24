"""Birthday: a greeting on the contact's birthday, in the morning where she lives.

The daily scan tells of a birthday the shop-local day before it (``BirthdayCame``,
``on``: this year's date; a 29 February birthday is on 28 February in other
years). The greeting waits until the send hour (09:00) on ``on`` in the
contact's zone (her own, her country's, else the shop's); quiet hours still
apply. With the shop's option on it carries a personal code (15 %, 7 days),
and it offers a few products that go with what she bought (the shop's
favourites if nothing yet).

Once a year: the subject names the year (``birthday:2026``), so a scan that
runs twice adds nothing, and next year's birthday enrolls again.

A fact that comes late (:mod:`jobs.flows.dated`): the greeting is for her
birthday, never after it. On the day itself it goes at once if the hour has
passed; once her birthday is over where she lives, the flow does not start
(``already_over: birthday_passed``), and a greeting held back past the day
ends with that reason. Marketing mail.
"""

from __future__ import annotations

from adapters import events as ev
from jobs.flows.dated import DAY, before_the_day, day_passed, day_values
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
    WaitUntil,
    common,
    discount_options,
    send_hour_option,
)

NAME = "birthday"


def _subject(event: ev.Event) -> str | None:
    """One greeting a year: the year is the subject."""
    return f"birthday:{event.on.year}" if isinstance(event, ev.BirthdayCame) else None


FLOW = Flow(
    name=NAME,
    title="Birthday greeting",
    summary="Wishes a customer a happy birthday on the morning of their day, once a year.",
    category="birthday",
    kind=MessageKind.MARKETING,
    # for one day only: before a review request, which loses nothing by a day
    priority=31,
    trigger=Trigger(
        events=(ev.BirthdayCame,),
        subject=_subject,
        anchor=before_the_day,
        values=day_values,
    ),
    steps=(
        WaitUntil(day=DAY, option="send_hour"),
        IssueDiscount(),
        Send("greeting", "birthday"),
    ),
    exits=(Exit("birthday_passed", day_passed),),
    reentry=Reentry.PER_SUBJECT,
    subject_kind=SubjectKind.CONTACT,
    recommend=Recommend(limit=4, basis=RecommendBasis.PURCHASES),
    options=(
        send_hour_option(9, when="on the birthday", what="the greeting"),
        *discount_options(
            on=False,
            label="Birthday code",
            where="with the birthday greeting",
            percent=15,
            valid_hours=24 * 7,
            max_valid_hours=24 * 30,
        ),
        # held back (caps, quiet hours) until the evening, a greeting is no longer for today
        *common(expires_hours=12),
    ),
)
