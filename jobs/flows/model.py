"""How a flow is declared: a trigger, steps, exits, and options a shop may tune.

A flow is data, read by the engine (:mod:`jobs.engine.enrolment`); adding one means one
module in ``jobs/flows/`` (listed in :mod:`jobs.flows.registry`) and its
templates, never an engine change.

Steps run in order from the enrollment's *anchor* (for cart recovery, when the
checkout was last updated). ``Wait`` and ``WaitUntil`` move a cursor forward;
a ``Send`` becomes a planned message due at the cursor. Linear stretches are
planned ahead at once, so the ledger shows every email a contact is due to
get; a ``Branch`` or ``WaitForEvent`` stops planning until its time comes,
when the enrollment wakes and the engine decides with the state of that moment.
``Label`` names a place a branch or an awaited event jumps to.

Delays and other tunables name an *option* (``Wait(option="delay_1")``) whose
default lives in ``Flow.defaults`` and which the shop may override in its
settings (``Shop.settings["flows"][flow.name]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from adapters.events import Event
from emails.content import MessageKind as MessageKind

if TYPE_CHECKING:
    from jobs.flows.context import FlowContext
    from jobs.store.models import Shop


class Reentry(StrEnum):
    #: one enrollment per subject (a checkout, an order) and contact
    PER_SUBJECT = "per_subject"
    #: one enrollment per contact, ever
    ONCE = "once"


class ConsentPolicy(StrEnum):
    """Who may receive a marketing flow (transactional flows ignore this)."""

    #: only contacts who subscribed (the default, and the safe choice everywhere)
    SUBSCRIBED = "subscribed"
    #: also existing customers who never opted out (the "soft opt-in" some laws
    #: allow for similar products to a past buyer, e.g. UK PECR, Sweden's
    #: marknadsföringslagen 19 §); never someone who unsubscribed
    SUBSCRIBED_OR_CUSTOMER = "subscribed_or_customer"


# --- steps ------------------------------------------------------------------------


@dataclass(frozen=True)
class Wait:
    """Move the cursor forward by the option's duration (hours), or ``duration``."""

    option: str | None = None
    duration: timedelta | None = None


@dataclass(frozen=True)
class WaitUntil:
    """Move the cursor to the next ``local_time`` in the contact's timezone."""

    local_time: time


@dataclass(frozen=True)
class WaitForEvent:
    """Wait up to ``timeout`` for one of ``events`` about this enrollment.

    If it comes, continue at label ``goto``; on timeout, continue after this step.
    """

    events: tuple[type[Event], ...]
    timeout: timedelta
    goto: str


@dataclass(frozen=True)
class Branch:
    """Continue at ``then`` if ``condition`` holds, else at ``otherwise`` (None: next step)."""

    condition: Callable[[FlowContext], bool]
    then: str
    otherwise: str | None = None


@dataclass(frozen=True)
class Label:
    name: str


@dataclass(frozen=True)
class IssueDiscount:
    """The next Send carries a personal single-use code, if the shop's option is on."""

    option: str = "discount"


@dataclass(frozen=True)
class Send:
    """Plan one email: ``name`` is the step's name in the ledger and the decision log."""

    name: str
    template: str
    #: a step the shop may switch off by option, e.g. "email_3"; None: always on
    option: str | None = None


@dataclass(frozen=True)
class End:
    """Stop here (the end of a branch)."""


Step = Wait | WaitUntil | WaitForEvent | Branch | Label | IssueDiscount | Send | End


# --- trigger and exits ---------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    """Enroll on ``events`` when ``when`` holds; ``subject`` and ``anchor`` come from the event."""

    events: tuple[type[Event], ...]
    subject: Callable[[Event], str | None]
    anchor: Callable[[Event], datetime]
    when: Callable[[FlowContext], bool] | None = None
    #: later events of these types re-anchor an active enrollment on the same subject
    #: (a checkout updated again pushes its reminders back)
    reanchor: bool = False


@dataclass(frozen=True)
class Exit:
    """End the enrollment when ``check`` holds; ``on`` events make us look at once.

    The check reads current state, so it is asked again right before every send
    (the late re-check) whatever the order events arrived in.
    """

    reason: str
    check: Callable[[FlowContext], bool]
    on: tuple[type[Event], ...] = ()


@dataclass(frozen=True)
class Flow:
    name: str
    title: str
    #: what a preferences page lets a contact leave ("cart", "reviews", ...)
    category: str
    kind: MessageKind
    #: higher wins when a frequency cap lets only one through (cart recovery 40,
    #: review request 30, win-back 20, announcements 10)
    priority: int
    trigger: Trigger
    steps: tuple[Step, ...]
    exits: tuple[Exit, ...] = ()
    reentry: Reentry = Reentry.PER_SUBJECT
    #: the platform order whose live state is asked right before a send (the
    #: optional late re-check through the shop's API), from the shop and the
    #: enrollment's subject: paid, cancelled or refunded there ends the
    #: enrollment even if its webhook never came
    live_order: Callable[[Shop, str], str | None] | None = None
    #: options a shop may override; "enabled", "consent", "holdout_percent" and
    #: "expires_hours" are understood for every flow
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sends(self) -> tuple[Send, ...]:
        return tuple(step for step in self.steps if isinstance(step, Send))

    @property
    def single_email(self) -> bool:
        return len(self.sends) == 1

    def labels(self) -> dict[str, int]:
        return {step.name: i for i, step in enumerate(self.steps) if isinstance(step, Label)}

    def __post_init__(self) -> None:
        names = [send.name for send in self.sends]
        if len(set(names)) != len(names):
            raise ValueError(f"flow {self.name}: step names must be unique")
        labels = self.labels()
        for step in self.steps:
            targets = (
                [step.then, step.otherwise]
                if isinstance(step, Branch)
                else [step.goto]
                if isinstance(step, WaitForEvent)
                else []
            )
            for target in targets:
                if target is not None and target not in labels:
                    raise ValueError(f"flow {self.name}: no label {target!r}")
