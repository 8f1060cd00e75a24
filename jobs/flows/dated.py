"""What the flows about a date share (a birthday, an anniversary of a first order).

A daily scan tells of the date the shop-local day before it (the fact's ``on``),
so the contact's own morning of that day is still ahead in every timezone. The
flow keeps the date as a trigger value (``"on"``) and waits until the send hour
on it in the contact's zone (``WaitUntil(day="on")``).

The rule for a fact that comes late (a catch-up after downtime): the email is
for that day, never after it.

- The anchor is the start (UTC) of the day before ``on``: earlier than the send
  hour of ``on`` in any timezone, so the wait always lands on ``on`` itself. A
  fact that comes on the day after the send hour plans an email already due: it
  goes at once (quiet hours still apply, and it expires the same evening).
- :data:`DAY_PASSED`: a fact that comes when the day is over where the contact
  lives starts nothing (``already_over``), and an email held back past the day
  (caps, quiet hours) ends with that reason instead of arriving belated.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from adapters import events as ev
from jobs.flows.context import FlowContext

#: the trigger value that holds the day (ISO date)
DAY = "on"


def day_of(event: ev.Event) -> date | None:
    """The day a fact is about (None: an anniversary fact made without one)."""
    if isinstance(event, (ev.BirthdayCame, ev.OrderAnniversaryCame)):
        return event.on
    return None


def day_values(event: ev.Event) -> dict[str, str]:
    """The trigger value a ``WaitUntil(day=DAY)`` reads."""
    day = day_of(event)
    return {DAY: day.isoformat()} if day is not None else {}


def before_the_day(event: ev.Event) -> datetime:
    """The anchor: the start (UTC) of the day before the fact's day, or the fact's time
    if that is earlier (a fact without a day: its time)."""
    day = day_of(event)
    if day is None:
        return event.occurred_at
    return min(event.occurred_at, datetime.combine(day - timedelta(days=1), time(0), UTC))


def the_day(ctx: FlowContext) -> date | None:
    """The day the enrollment is about: the triggering fact's, or the one it kept."""
    if ctx.enrollment is None and ctx.event is not None:
        return day_of(ctx.event)
    raw = ctx.trigger_values.get(DAY)
    try:
        return date.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def day_passed(ctx: FlowContext) -> bool:
    """The day is over where the contact lives (a fact without a day never is)."""
    day = the_day(ctx)
    return day is not None and ctx.contact_today() > day
