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

Delays and other tunables name an *option* (``Wait(option="delay_1_hours")``)
that the flow declares itself (:class:`Option`: its kind, range, default, and
the label and help a merchant reads), and which the shop may override in its
settings (``Shop.settings["flows"][flow.name]``, validated by
:mod:`jobs.shop_settings`). The options every flow has are declared once, in
:data:`COMMON_OPTIONS`.

What an email is about is the flow's *subject kind* (a checkout, an order, a
contact, a product): the sending side finds its products, main link and
template values by kind (:mod:`jobs.sending.content`), and a flow may name its
own main link (``link``) from a read-only :class:`SubjectView`. A trigger may
carry values for the templates (``Trigger.values``, kept on the enrollment),
and may fan one event out to many contacts (``Trigger.audience``): a selection
that runs in the database, in batches by contact id. A flow whose emails offer
other products declares ``recommend=Recommend(...)``: the view then carries
them apart from the subject's own (:attr:`SubjectView.recommended`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from adapters.events import Event, Money
from emails.content import MessageKind as MessageKind

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.orm import Session

    from adapters.platform import LiveQuestion, Platform
    from jobs.flows.context import FlowContext
    from jobs.store.models import Enrollment


class SubjectKind(StrEnum):
    """What an enrollment's subject names, so what the email shows and links to."""

    #: a checkout token: its line items, the checkout's recovery link
    CHECKOUT = "checkout"
    #: a platform order id: its line items, the order status page
    ORDER = "order"
    #: the contact themselves (a birthday, a lapse): no products, the shop's home page
    CONTACT = "contact"
    #: a platform product id: that product, its page
    PRODUCT = "product"


class WaitUnit(StrEnum):
    """What a ``Wait`` option's number counts."""

    HOURS = "hours"
    DAYS = "days"


class Reentry(StrEnum):
    #: one enrollment per subject (a checkout, an order) and contact
    PER_SUBJECT = "per_subject"
    #: one enrollment per contact, ever
    ONCE = "once"
    #: one per subject, and only once the flow's ``reentry_days`` option has passed
    #: since the contact last entered it (about any subject): a win-back at most
    #: every 180 days, however often she lapses
    AFTER_DAYS = "after_days"


class ConsentPolicy(StrEnum):
    """Who may receive a marketing flow (transactional flows ignore this)."""

    #: only contacts who subscribed (the default, and the safe choice everywhere)
    SUBSCRIBED = "subscribed"
    #: also existing customers who never opted out (the "soft opt-in" some laws
    #: allow for similar products to a past buyer, e.g. UK PECR, Sweden's
    #: marknadsföringslagen 19 §); never someone who unsubscribed
    SUBSCRIBED_OR_CUSTOMER = "subscribed_or_customer"


#: The product's order between flows, by flow name: when the frequency caps let
#: only one marketing email through (``jobs.engine.guards``: ``cap:priority``),
#: the higher one takes the slot and the lower waits a gap after it, or expires
#: with that reason. The ones a shopper's intent is freshest in go first (a cart
#: or a browsed product goes cold in hours), then the first impression after a
#: sign-up, then what follows an order (a review once it arrived, thanks), and
#: last what can wait days without losing its point (loyalty, win-back, a new
#: product). Every built-in flow is listed here with the priority it declares
#: (a test checks it); a flow not yet built is simply absent.
PRIORITIES: Mapping[str, int] = {
    "cart_recovery": 40,
    "browse_abandonment": 35,
    "welcome": 33,
    # a greeting is for one day only: held back a day it is belated, so it goes
    # before a review request, which loses nothing by waiting a day
    "birthday": 31,
    "review_request": 30,
    "thank_you": 25,
    # dated too (the day of her first order), but no loss if it is a day late:
    # after the thanks for a fresh order, before a reward that can wait its week
    "anniversary": 24,
    "loyalty": 22,
    "win_back": 20,
    # a subscriber who never bought: after the win-back of a real customer,
    # before an announcement to everyone who bought a kind
    "re_engagement": 15,
    "new_product": 10,
    # transactional mail is never held back by marketing caps: its priority is moot
    "delivered_notice": 0,
}


# --- steps ------------------------------------------------------------------------


@dataclass(frozen=True)
class Wait:
    """Move the cursor forward by the option's number of ``unit``s, or by ``duration``."""

    option: str | None = None
    duration: timedelta | None = None
    unit: WaitUnit = WaitUnit.HOURS

    def length(self, options: Mapping[str, Any]) -> timedelta:
        if self.option is None:
            return self.duration or timedelta(0)
        amount = float(options[self.option])
        return timedelta(days=amount) if self.unit == WaitUnit.DAYS else timedelta(hours=amount)


@dataclass(frozen=True)
class WaitUntil:
    """Move the cursor to the next ``local_time`` in the contact's timezone.

    ``day``: the name of a trigger value holding a date (``Trigger(values=lambda e:
    {"on": e.on.isoformat()})``): the cursor goes to ``local_time`` on that date in
    the contact's zone instead (her birthday morning where she lives, whenever the
    fact came); if that moment is already behind the cursor, or the enrollment has
    no such value, the next ``local_time`` after the cursor as without ``day``.
    ``option``: an ``Hours`` option giving the hour of the day instead of ``local_time``.
    """

    local_time: time = time(9)
    day: str | None = None
    option: str | None = None

    def time_of_day(self, options: Mapping[str, Any]) -> time:
        if self.option is None:
            return self.local_time
        return time(int(options[self.option]) % 24)

    def date_of(self, values: Mapping[str, Any]) -> date | None:
        """The date this wait aims at, from the enrollment's trigger values; None if
        it names none (or the value is not a date)."""
        if self.day is None:
            return None
        raw = values.get(self.day)
        try:
            return date.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            return None


@dataclass(frozen=True)
class WaitForEvent:
    """Wait up to ``timeout`` (or the option's number of days) for one of ``events``.

    If it comes, continue at label ``goto``; on timeout, continue after this step.
    ``same_subject``: only an event about the enrollment's own subject counts (the
    delivery of this order, not of another order of the same contact). ``when``:
    only an event it holds for counts (it reads the event as ``ctx.event``: a test
    order is not the order awaited). The subject of the event that came is kept
    on the enrollment (``FlowContext.resumed_by``), so later exits can ask about it.
    """

    events: tuple[type[Event], ...]
    timeout: timedelta = timedelta(0)
    goto: str = ""
    #: a ``Days`` option naming the timeout, so a shop may tune it
    option: str | None = None
    same_subject: bool = False
    when: Callable[[FlowContext], bool] | None = None

    def length(self, options: Mapping[str, Any]) -> timedelta:
        if self.option is None:
            return self.timeout
        return timedelta(days=float(options[self.option]))


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


# --- options ------------------------------------------------------------------------


@dataclass(frozen=True)
class Hours:
    """A whole number of hours from ``min`` to ``max``."""

    default: int
    min: int = 0
    max: int = 24 * 7


@dataclass(frozen=True)
class Days:
    """A whole number of days from ``min`` to ``max`` (a ``Wait`` in days names one)."""

    default: int
    min: int = 0
    max: int = 365


@dataclass(frozen=True)
class Percent:
    """A whole percentage from ``min`` to ``max``."""

    default: int
    min: int = 0
    max: int = 100


@dataclass(frozen=True)
class Count:
    """A whole number of ``unit`` (products, emails) from ``min`` to ``max``."""

    default: int
    min: int = 1
    max: int = 100
    unit: str = "items"


@dataclass(frozen=True)
class Switch:
    """On or off."""

    default: bool


@dataclass(frozen=True)
class Text:
    """A line of text up to ``max_length``; ``placeholders`` are the only ``{names}`` allowed."""

    default: str
    max_length: int = 200
    placeholders: tuple[str, ...] = ()


@dataclass(frozen=True)
class Numbers:
    """A few whole numbers from ``min`` to ``max`` (at most ``most``), kept in ascending order."""

    default: tuple[int, ...]
    min: int = 1
    max: int = 1000
    most: int = 10


@dataclass(frozen=True)
class Choice:
    """One of a vocabulary's values."""

    default: StrEnum
    choices: type[StrEnum]


@dataclass(frozen=True)
class Segment:
    """Who the flow is for: a saved segment's name, or a condition written out
    (jobs.audience.segments); None, everyone. Checked at enrolment and again at send."""

    default: str | None = None


OptionKind = Hours | Days | Percent | Count | Switch | Text | Numbers | Choice | Segment


@dataclass(frozen=True)
class Option:
    """One setting of a flow a shop may tune, with the words a merchant reads about it."""

    name: str
    kind: OptionKind
    label: str
    help: str

    @property
    def default(self) -> Any:
        return self.kind.default

    def with_default(self, default: Any) -> Option:
        return replace(self, kind=replace(self.kind, default=default))


#: the options every flow has; a flow may give one another default (see :func:`common`)
COMMON_OPTIONS: tuple[Option, ...] = (
    Option(
        "enabled",
        Switch(True),
        label="Turned on",
        help="When off, no new customer starts this flow. Emails already planned "
        "are still checked again before they go out.",
    ),
    Option(
        "consent",
        Choice(ConsentPolicy.SUBSCRIBED, ConsentPolicy),
        label="Who may receive it",
        help="Only customers who subscribed to your emails, or also past buyers who "
        "never unsubscribed (allowed for similar products in some countries, "
        "e.g. the UK and Sweden). Order emails ignore this.",
    ),
    Option(
        "holdout_percent",
        Percent(0, max=100),
        label="Hold-out group (%)",
        help="This share of customers gets nothing from this flow, so you can see how "
        "much the emails really earn compared with not sending them.",
    ),
    Option(
        "audience",
        Segment(),
        label="Only for",
        help="A segment of your customers, by name, or its conditions: only they start "
        "this flow, and anyone who has left the segment when an email is due gets "
        "nothing. Empty: everyone.",
    ),
    Option(
        "expires_hours",
        Hours(24, min=1, max=24 * 14),
        label="Give up after (hours)",
        help="An email held back (by sending limits or quiet hours) longer than this "
        "is not sent at all, because it would arrive too late to be useful.",
    ),
)


def common(**defaults: Any) -> tuple[Option, ...]:
    """Common options with this flow's own defaults, e.g. ``common(expires_hours=72)``."""
    by_name = {option.name: option for option in COMMON_OPTIONS}
    unknown = set(defaults) - set(by_name)
    if unknown:
        raise ValueError(f"not common options: {', '.join(sorted(unknown))}")
    return tuple(by_name[name].with_default(value) for name, value in defaults.items())


def send_hour_option(default: int, *, when: str, what: str = "the email") -> Option:
    """The ``send_hour`` option a ``WaitUntil(option="send_hour")`` reads: the hour of
    the customer's own day the email goes. ``when`` completes "The hour ...", ``what``
    names the email ("the greeting")."""
    return Option(
        "send_hour",
        Hours(default, min=6, max=20),
        label="Send at (hour, the customer's time)",
        help=f"The hour {when} {what} goes, in the customer's own timezone "
        "(or your shop's when we do not know it).",
    )


def discount_options(
    *, on: bool, label: str, where: str, percent: int, valid_hours: int, max_valid_hours: int
) -> tuple[Option, Option, Option]:
    """The three options an ``IssueDiscount`` step reads (``discount``,
    ``discount_percent``, ``discount_valid_hours``), with this flow's defaults and
    words: ``where`` completes "Give each customer a personal code, usable once, ..."."""
    days = valid_hours / 24
    in_days = f" ({valid_hours} hours is {days:g} days)" if valid_hours % 24 == 0 else ""
    return (
        Option(
            "discount",
            Switch(on),
            label=label,
            help=f"Give each customer a personal code, usable once, {where}. Your store "
            "creates the code when the email is sent.",
        ),
        Option(
            "discount_percent",
            Percent(percent, min=1, max=90),
            label="Discount (%)",
            help="How much the personal code takes off the order.",
        ),
        Option(
            "discount_valid_hours",
            Hours(valid_hours, min=1, max=max_valid_hours),
            label="Code valid for (hours)",
            help=f"How long the personal code works after the email is sent{in_days}.",
        ),
    )


# --- trigger and exits ---------------------------------------------------------------


#: a value a trigger keeps for the templates (stored with the enrollment, so plain)
TriggerValue = str | int


@dataclass(frozen=True)
class AudienceQuery:
    """What an audience's selection is built from."""

    shop_id: int
    event: Event
    #: the database's dialect name ("sqlite", "postgresql"), for JSON and the like
    dialect: str


#: the key of the enrollment that carries an audience's progress (it has no contact)
AUDIENCE_KEY_PREFIX = "audience:"


@dataclass(frozen=True)
class Audience:
    """Many contacts for one event (a new product to those who bought its kind).

    ``select`` builds a SQLAlchemy Core SELECT whose one column is the contact
    id; the engine runs it in the database ``batch`` contacts at a time, in
    contact id order, enrolling each one with the trigger's subject.
    """

    select: Callable[[AudienceQuery], Select[tuple[int]]]
    batch: int = 500


def occurred_at(event: Event) -> datetime:
    """When the event happened: the anchor of most flows."""
    return event.occurred_at


@dataclass(frozen=True)
class Trigger:
    """Enroll on ``events`` when ``when`` holds; ``subject`` and ``anchor`` come from the
    event (the anchor is when it happened, unless the flow says otherwise)."""

    events: tuple[type[Event], ...]
    subject: Callable[[Event], str | None]
    anchor: Callable[[Event], datetime] = occurred_at
    when: Callable[[FlowContext], bool] | None = None
    #: later events of these types re-anchor an active enrollment on the same subject
    #: (a checkout updated again pushes its reminders back)
    reanchor: bool = False
    #: values the templates may use, read from the event when the contact enrolls
    #: (``{"years": event.years}``); they travel with the enrollment to every send
    values: Callable[[Event], Mapping[str, TriggerValue]] | None = None
    #: enroll every contact this selects instead of the contact the event is about
    audience: Audience | None = None


@dataclass(frozen=True)
class Exit:
    """End the enrollment when ``check`` holds; ``on`` events make us look at once.

    The check reads current state, so it is asked again right before every send
    (the late re-check) whatever the order events arrived in.
    """

    reason: str
    check: Callable[[FlowContext], bool]
    on: tuple[type[Event], ...] = ()


# --- what an email is about -------------------------------------------------------------


@dataclass(frozen=True)
class ProductLine:
    """One product an email shows."""

    title: str
    url: str
    product_id: str | None = None
    #: the product's handle in the shop's catalogue (its URL name), when we hold it
    handle: str | None = None
    image_url: str | None = None
    price: Money | None = None
    quantity: int | None = None
    variant: str | None = None


class RecommendBasis(StrEnum):
    """What recommendations start from (jobs.audience.recommendations ranks them)."""

    #: the products the email is about (the order's, the checkout's, the product)
    SUBJECT = "subject"
    #: everything the contact has bought
    PURCHASES = "purchases"
    #: nothing in particular: the shop's bestsellers
    BESTSELLERS = "bestsellers"


@dataclass(frozen=True)
class Recommend:
    """The flow's emails offer up to ``limit`` other products, never one the
    contact bought or the email already shows, nor one out of stock."""

    limit: int = 3
    basis: RecommendBasis = RecommendBasis.SUBJECT
    #: a ``Count`` option the shop tunes the number with (0: none); ``limit`` its most
    option: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= 12:
            raise ValueError(f"recommend between 1 and 12 products, not {self.limit}")


@dataclass(frozen=True)
class SubjectView:
    """What the email is about, as found at send time: what a flow's ``link`` may read."""

    kind: SubjectKind
    subject: str
    shop_url: str
    products: tuple[ProductLine, ...] = ()
    #: the kind's main link (recovery link, order status page, product page, home page)
    link: str | None = None
    #: values for the templates (the subject's, then the trigger's)
    values: Mapping[str, Any] = field(default_factory=dict)
    locale: str | None = None
    #: other products to offer (the flow's ``recommend``), never the subject's own
    recommended: tuple[ProductLine, ...] = ()
    #: the flow's options for this shop (a flow's ``link`` may build links from them)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Flow:
    name: str
    title: str
    #: what a preferences page lets a contact leave ("cart", "reviews", ...)
    category: str
    kind: MessageKind
    #: higher wins when a frequency cap lets only one through: the product's
    #: order is :data:`PRIORITIES` (cart recovery 40 ... new product 10)
    priority: int
    trigger: Trigger
    steps: tuple[Step, ...]
    exits: tuple[Exit, ...] = ()
    reentry: Reentry = Reentry.PER_SUBJECT
    #: what the trigger's subject names, so what the email shows
    subject_kind: SubjectKind = SubjectKind.CHECKOUT
    #: the email's main link instead of the kind's (e.g. the review page of what was bought)
    link: Callable[[SubjectView], str | None] | None = None
    #: what the optional late re-check asks the shop's API right before a send,
    #: from the shop's platform (what it declares, e.g. ``checkout_is_pending_order``)
    #: and the state of the moment: an order paid, cancelled or refunded there, or
    #: the customer's order since, ends the enrollment even if its webhook never came
    live_check: Callable[[Platform, FlowContext], LiveQuestion | None] | None = None
    #: the flow's emails also offer other products (shown where a template has the block)
    recommend: Recommend | None = None
    #: other products the email shows besides its subject's, as product ids in order,
    #: from the enrollment and the flow's options (a new product's email also lists
    #: the contact's other new products of the moment); the sending side keeps only
    #: those still for sale
    also_show: Callable[[Session, Enrollment, Mapping[str, Any]], Sequence[str]] | None = None
    #: each product's link instead of its page (e.g. its review form)
    product_link: Callable[[ProductLine, SubjectView], str] | None = None
    #: a ``Days`` option: after this flow mailed a contact (about any subject), its
    #: next email to them waits this long (deferred, not skipped as a one-email
    #: flow's repeat otherwise is: each order's review request still comes, later)
    spacing: str | None = None
    #: options a shop may tune, besides the common ones (:data:`COMMON_OPTIONS`);
    #: an option named like a common one replaces it (another default)
    options: tuple[Option, ...] = ()
    #: one line on what it does, for the merchant's list of flows (every built-in has one)
    summary: str = ""
    #: a ``Days`` option: with ``Reentry.AFTER_DAYS``, how long after the contact
    #: last entered this flow she may enter it again
    reentry_days: str | None = None
    #: with ``SubjectKind.PRODUCT``: the product the email is about, chosen at send
    #: time from the enrollment and the flow's options, instead of the trigger's
    #: subject (the product she looked at most lately); None: no product to show
    subject_product: Callable[[Session, Enrollment, Mapping[str, Any]], str | None] | None = None

    @property
    def all_options(self) -> tuple[Option, ...]:
        """Every option of this flow: the common ones, then its own, by name once."""
        own = {option.name: option for option in self.options}
        common_ = tuple(own.pop(option.name, option) for option in COMMON_OPTIONS)
        return (*common_, *own.values())

    @property
    def defaults(self) -> Mapping[str, Any]:
        """Each option's default, by name."""
        return {option.name: option.default for option in self.all_options}

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
        declared = [option.name for option in self.options]
        if len(set(declared)) != len(declared):
            raise ValueError(f"flow {self.name}: option names must be unique")
        options = {option.name for option in self.all_options}
        kinds = {option.name: option.kind for option in self.all_options}
        for step in self.steps:
            named = getattr(step, "option", None)
            if named is not None and named not in options:
                raise ValueError(f"flow {self.name}: step option {named!r} is not declared")
            if (
                isinstance(step, WaitUntil)
                and named is not None
                and not isinstance(kinds[named], Hours)
            ):
                raise ValueError(
                    f"flow {self.name}: a wait until an hour names option {named!r}, "
                    "which is not Hours"
                )
            if isinstance(step, (Wait, WaitForEvent)) and named is not None:
                kind = kinds[named]
                unit = step.unit if isinstance(step, Wait) else WaitUnit.DAYS
                wanted = Days if unit == WaitUnit.DAYS else Hours
                if not isinstance(kind, wanted):
                    raise ValueError(
                        f"flow {self.name}: a wait in {unit} names option {named!r}, "
                        f"which is not {wanted.__name__}"
                    )
        if self.spacing is not None and not isinstance(kinds.get(self.spacing), Days):
            raise ValueError(f"flow {self.name}: spacing {self.spacing!r} is not a Days option")
        if (self.reentry == Reentry.AFTER_DAYS) != (self.reentry_days is not None):
            raise ValueError(f"flow {self.name}: reentry after days needs reentry_days, only it")
        if self.reentry_days is not None and not isinstance(kinds.get(self.reentry_days), Days):
            raise ValueError(
                f"flow {self.name}: reentry_days {self.reentry_days!r} is not a Days option"
            )
        if self.subject_product is not None and self.subject_kind != SubjectKind.PRODUCT:
            raise ValueError(f"flow {self.name}: subject_product needs the product subject kind")
        counted = self.recommend.option if self.recommend is not None else None
        if counted is not None and not isinstance(kinds.get(counted), Count):
            raise ValueError(
                f"flow {self.name}: recommend option {counted!r} is not a Count option"
            )
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
