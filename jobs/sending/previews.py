"""A merchant's preview of a flow's email, and a test of it sent to the merchant.

A preview is the email the courier would send, built by the courier's own
pieces (:mod:`jobs.sending.courier`: the shop's branding, sender and copy;
:mod:`jobs.sending.content`: what the email shows by the flow's subject kind,
finished with the flow's options, links and recommendations;
:mod:`emails.render`): there is no second renderer to drift from the first.
What it is about is either sample data (a plausible name, the shop's own
products when the store holds some, else neutral ones; a sample order or
checkout when the flow is about one; a sample code when the step carries
one) or a real contact of this shop, chosen by address (their name and
language, and their last checkout or order when the flow is about one).

Nothing here writes: no message, decision, enrollment or engagement, so a
preview or a test is never counted and never changes what a customer gets.
Its links cannot act for a customer either: every link goes straight to its
destination (no click is recorded, no order attributed), the unsubscribe and
preferences links go to a page that only says what they would do
(:func:`jobs.sending.links.preview_url`), there is no open pixel, and the
sample code is not created in the store (it would not work at the checkout).

A test goes through the backend the courier sends with, to the merchant's
address only, its subject prefixed by "[Test]" in the email's language and
marked ``X-Triggerpost-Test: 1``; a shop may send :data:`TESTS_PER_HOUR`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from marshmallow import ValidationError
from marshmallow.validate import Email
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.events import Money, normalise_email
from emails import i18n
from emails.content import Brand, DiscountBlock, MessageKind, Rendered
from emails.delivery import PermanentDeliveryError, TransientDeliveryError, backend_from_url
from emails.outgoing import make_message_id
from emails.render import render
from jobs.flows import registry
from jobs.flows.model import (
    Flow,
    IssueDiscount,
    ProductLine,
    Send,
    SubjectKind,
    SubjectView,
)
from jobs.runtime import Runtime
from jobs.sending import content, courier, links
from jobs.sending.pipeline import Composed, PermanentSendError, TransientSendError
from jobs.shop_settings import ShopSettings
from jobs.shop_settings import load as load_settings
from jobs.store.models import (
    PRODUCT_FOR_SALE,
    Checkout,
    Contact,
    Enrollment,
    Order,
    Product,
    Shop,
    now,
)

#: test emails a shop may send an hour (a test is for looking at, not for mailing lists)
TESTS_PER_HOUR = 20
#: the rate limit's window, in seconds
WINDOW_SECONDS = 3600
#: the header that marks a test (sent as ``X-Triggerpost-Test: 1``, from the metadata)
TEST_HEADER = "X-Triggerpost-Test"
#: the sample code a preview shows: never created in the store, so it cannot be spent
SAMPLE_CODE = "TP-SAMPLECODE"
#: a sample order's name, as shops number their orders
SAMPLE_ORDER = "#1001"
#: a plausible customer, by the email's language
SAMPLE_NAMES = {"en": "Emma", "sv": "Anna", "nb": "Ingrid", "ru": "Анна", "fa": "سارا"}
#: neutral products for a shop whose store holds none yet, by the email's language
SAMPLE_PRODUCTS = {
    "en": ("Wool scarf", "Ceramic mug", "Linen tea towel", "Scented candle", "Notebook"),
    "sv": ("Ullhalsduk", "Keramikmugg", "Kökshandduk i linne", "Doftljus", "Anteckningsbok"),
    "nb": ("Ullskjerf", "Keramikkrus", "Kjøkkenhåndkle i lin", "Duftlys", "Notatbok"),
    "ru": ("Шерстяной шарф", "Керамическая кружка", "Льняное полотенце", "Свеча", "Блокнот"),
    "fa": ("شال پشمی", "ماگ سرامیکی", "حوله کتان", "شمع معطر", "دفترچه"),
}
SAMPLE_PRICES = (Decimal("349.00"), Decimal("189.00"), Decimal("129.00"), Decimal("99.00"))
#: how many products a sample checkout or order holds, and how many it may offer
SAMPLE_ITEMS = 2
#: the values a flow's trigger keeps for its templates (years since a first order, the
#: day of a birthday), as a sample: a flow that keeps none ignores them
SAMPLE_YEARS = 2


class PreviewError(ValueError):
    """A preview or test that cannot be made as asked: ``field`` names what to change,
    ``code`` what is wrong (the merchant's pages word it from the code and ``values``
    in their language), ``message`` the same in English."""

    def __init__(self, field: str, code: str, message: str, **values: Any) -> None:
        super().__init__(message)
        self.field = field
        self.code = code
        self.message = message
        self.values = values


class UnknownError(PreviewError):
    """No such flow, step or contact (in this shop)."""


class InvalidError(PreviewError):
    """A value that cannot be used: a language we do not write, an address that is none."""


class TestLimitError(PreviewError):
    """The shop sent its tests for this hour; ``retry_after`` seconds until the next."""

    def __init__(self, retry_after: int) -> None:
        minutes = max(1, -(-retry_after // 60))
        super().__init__(
            "to",
            "too_many_tests",
            f"You have sent {TESTS_PER_HOUR} test emails in the last hour, the most "
            f"there may be. Try again in {minutes} minutes.",
            count=TESTS_PER_HOUR,
            minutes=minutes,
        )
        self.retry_after = retry_after


class TestDeliveryError(PreviewError):
    """The delivery backend did not take the test; ``reason`` is its code."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        words = (
            "The email service did not answer. Try again in a few minutes."
            if transient
            else "The email service refused the test email."
        )
        super().__init__(
            "to",
            "delivery_unavailable" if transient else "delivery_refused",
            f"{words} ({reason})",
            reason=reason,
        )
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True)
class Preview:
    """An email as it would go out, with what it was made from."""

    flow: str
    step: str
    rendered: Rendered
    #: the real contact it was made for, or None: sample data
    contact: str | None
    #: whether what the email is about (checkout, order) is sample data
    sample_subject: bool

    def as_dict(self) -> dict[str, Any]:
        r = self.rendered
        return {
            "subject": r.subject,
            "preheader": r.preheader,
            "html": r.html,
            "text": r.text,
            "language": r.locale,
            "direction": r.direction,
        }


@dataclass(frozen=True)
class TestSent:
    to: str
    subject: str
    language: str
    message_id: str
    provider_message_id: str | None


# --- what there is to preview ------------------------------------------------------------


def find_flow(name: str) -> Flow:
    flow = registry.get(name)
    if flow is None:
        raise UnknownError("flow", "unknown_flow", f"There is no flow called {name!r}.", name=name)
    return flow


def find_step(flow: Flow, name: str) -> Send:
    for send in flow.sends:
        if send.name == name:
            return send
    steps = ", ".join(send.name for send in flow.sends)
    raise UnknownError(
        "step",
        "unknown_step",
        f"The flow {flow.name} has no email {name!r} (it has: {steps}).",
        name=name,
        steps=steps,
    )


def languages() -> tuple[str, ...]:
    """The languages an email may be written in (en, fa, nb, ru, sv)."""
    return i18n.languages()


def check_language(language: str | None) -> str | None:
    if language is None or language == "":
        return None
    if language not in languages():
        known = ", ".join(languages())
        named = language[:20] + ("…" if len(language) > 20 else "")  # never an echo of a page
        raise InvalidError(
            "locale",
            "unknown_language",
            f"Emails are not written in {named!r}; choose one of {known}.",
            name=named,
            languages=known,
        )
    return language


def check_address(address: str, field: str = "to") -> str:
    """A syntactically valid address, normalised; never one that could add a header."""
    text = address.strip()
    if not text:
        raise InvalidError(field, "no_address", "Give an email address.")
    valid = len(text) <= 254 and not any(ch in text for ch in "\r\n\0,;<>")
    if valid:
        try:
            Email()(text)
        except ValidationError:
            valid = False
    if not valid:
        raise InvalidError(field, "not_an_address", "This is not an email address.")
    return normalise_email(text)


def carries_discount(flow: Flow, step: Send, options: Mapping[str, Any]) -> bool:
    """Whether the step's email carries a code with these options: an ``IssueDiscount``
    since the previous email, whose option is on (as the engine plans it)."""
    discount = False
    for each in flow.steps:
        if isinstance(each, IssueDiscount):
            discount = bool(options.get(each.option))
        elif isinstance(each, Send):
            if each is step:
                return discount
            discount = False
    return False


# --- building it ----------------------------------------------------------------------------


def preview(
    runtime: Runtime,
    shop_id: int,
    flow_name: str,
    step_name: str,
    language: str | None = None,
    contact: str | None = None,
    at: datetime | None = None,
) -> Preview:
    """The step's email for this shop, in ``language`` (None: the contact's, else the
    shop's), with sample data or for the contact of this shop at ``contact``."""
    flow = find_flow(flow_name)
    step = find_step(flow, step_name)
    language = check_language(language)
    with runtime.reads() as session:
        shop = session.get_one(Shop, shop_id)
        return _build(runtime, session, shop, flow, step, language, contact, at or now()).preview


@dataclass(frozen=True)
class _Built:
    preview: Preview
    links: courier.EmailLinks
    shop_settings: ShopSettings
    brand: Brand


def _build(
    runtime: Runtime,
    session: Session,
    shop: Shop,
    flow: Flow,
    step: Send,
    language: str | None,
    address: str | None,
    at: datetime,
) -> _Built:
    settings = runtime.settings
    shop_settings = load_settings(shop)
    options = dict(shop_settings.flow(flow))
    person = _contact(session, shop, address) if address else None
    view, sample_subject = _view(session, shop, flow, person, at)
    # the language asked for, else the one a send would choose: the checkout's or
    # order's, then hers, then the shop's (the brand's default, in render)
    wanted = language or view.locale or (person.locale if person else None)
    shown = i18n.resolve_locale(wanted, courier.brand_of(shop, shop_settings).default_locale)
    first_name = person.first_name if person else SAMPLE_NAMES.get(shown, SAMPLE_NAMES["en"])
    view = replace(
        view,
        products=_localised(view.products, shown),
        recommended=_localised(view.recommended, shown),
    )
    discount = None
    if carries_discount(flow, step, options):
        discount = DiscountBlock(
            code=SAMPLE_CODE,
            expires_at=at + timedelta(hours=float(options.get("discount_valid_hours", 48))),
            percent=Decimal(str(options.get("discount_percent", 10))),
        )
    marketing = flow.kind == MessageKind.MARKETING
    where = courier.EmailLinks(
        # straight to where it leads: no click recorded, nothing attributed
        link=_same,
        unsubscribe=links.preview_url(settings, links.UNSUBSCRIBE, shown) if marketing else None,
        preferences=links.preview_url(settings, links.PREFERENCES, shown) if marketing else None,
        open_pixel=None,
    )
    email = courier.email_content(
        shop,
        shop_settings,
        template=step.template,
        kind=flow.kind,
        view=view,
        locale=shown,
        first_name=first_name,
        discount=discount,
        links=where,
    )
    rendered = render(email)
    found = Preview(
        flow=flow.name,
        step=step.name,
        rendered=rendered,
        contact=person.email if person else None,
        sample_subject=sample_subject,
    )
    return _Built(found, where, shop_settings, email.brand)


def _same(url: str) -> str:
    return url


def _contact(session: Session, shop: Shop, address: str) -> Contact:
    email = check_address(address, "contact")
    found = session.scalar(
        select(Contact).where(
            Contact.shop_id == shop.id,
            Contact.email == email,
            Contact.redacted_at.is_(None),
        )
    )
    if found is None:
        raise UnknownError(
            "contact",
            "unknown_contact",
            f"Your shop has no customer with the address {email}.",
            email=email,
        )
    return found


def _view(
    session: Session, shop: Shop, flow: Flow, person: Contact | None, at: datetime
) -> tuple[SubjectView, bool]:
    """What the email is about, finished as a send finishes it, and whether that is sample
    data: the contact's own last checkout or order when the flow is about one and she
    has one; the contact herself; else a sample subject of the flow's kind."""
    kind = flow.subject_kind
    subject = _own_subject(session, shop, kind, person) if person is not None else None
    values: dict[str, Any] = _trigger_values(person, at)
    enrollment = Enrollment(
        shop_id=shop.id,
        flow=flow.name,
        key="preview",
        subject=subject or "preview",
        contact_id=person.id if person is not None else None,
        context={"values": values},
    )
    sample = subject is None and not (kind == SubjectKind.CONTACT and person is not None)
    if sample:
        base = _sample_view(session, shop, kind)
    else:
        base = content.RESOLVERS[kind](session, shop, enrollment)
    view = content.finish(session, shop, flow, enrollment, base)
    if flow.recommend is not None and not view.recommended:
        # a shop without sales counted yet still sees where its offers go
        shown = {line.product_id for line in view.products}
        more = [p for p in _shop_products(session, shop, 12) if p.product_id not in shown]
        offered = tuple(more[: flow.recommend.limit]) or _neutral(
            shop, flow.recommend.limit, offset=SAMPLE_ITEMS
        )
        view = replace(view, recommended=offered)
    return view, sample


def _own_subject(session: Session, shop: Shop, kind: SubjectKind, person: Contact) -> str | None:
    """The contact's last checkout or order (the subject a flow about one would have)."""
    if kind == SubjectKind.CHECKOUT:
        return session.scalar(
            select(Checkout.token)
            .where(Checkout.shop_id == shop.id, Checkout.contact_id == person.id)
            .order_by(Checkout.platform_updated_at.desc(), Checkout.id.desc())
            .limit(1)
        )
    if kind == SubjectKind.ORDER:
        return session.scalar(
            select(Order.order_id)
            .where(Order.shop_id == shop.id, Order.contact_id == person.id)
            .order_by(Order.placed_at.desc(), Order.id.desc())
            .limit(1)
        )
    return None


def _trigger_values(person: Contact | None, at: datetime) -> dict[str, Any]:
    """The values a date-based trigger keeps: years since her first order, her day."""
    years = SAMPLE_YEARS
    if person is not None and person.first_order_at is not None:
        years = max(1, at.year - person.first_order_at.year)
    day = at.date()
    if person is not None and person.birthday is not None:
        day = _this_year(person.birthday, at.date())
    return {"years": years, "on": day.isoformat()}


def _this_year(birthday: date, today: date) -> date:
    try:
        return birthday.replace(year=today.year)
    except ValueError:  # 29 February in a common year
        return date(today.year, 3, 1)


def _sample_view(session: Session, shop: Shop, kind: SubjectKind) -> SubjectView:
    """A sample subject of the kind, with the shop's own products where it has some."""
    if kind == SubjectKind.CONTACT:
        return SubjectView(kind=kind, subject="preview", shop_url=shop.base_url, link=shop.base_url)
    wanted = 1 if kind == SubjectKind.PRODUCT else SAMPLE_ITEMS
    products = tuple(_shop_products(session, shop, wanted)) or _neutral(shop, wanted)
    values: dict[str, Any] = {}
    link, subject = shop.base_url, "preview"
    if kind == SubjectKind.ORDER:
        prices = [p.price for p in products if p.price is not None]
        currency = prices[0].currency if prices else shop.currency or "USD"
        total = sum((p.amount for p in prices if p.currency == currency), Decimal(0))
        values = {"order_name": SAMPLE_ORDER, "order_total": Money(total, currency)}
    elif kind == SubjectKind.PRODUCT:
        values = {"product_title": products[0].title}
        link, subject = products[0].url, products[0].product_id or subject
    return SubjectView(
        kind=kind,
        subject=subject,
        shop_url=shop.base_url,
        products=products,
        link=link,
        values=values,
    )


def _shop_products(session: Session, shop: Shop, limit: int) -> list[ProductLine]:
    """The shop's own products for sale, newest first."""
    found = session.scalars(
        select(Product)
        .where(Product.shop_id == shop.id, PRODUCT_FOR_SALE)
        .order_by(Product.platform_updated_at.desc(), Product.id.desc())
        .limit(limit)
    )
    return [content.product_line(product, shop) for product in found]


#: the marker of a neutral sample product's title, replaced in the email's language
_NEUTRAL = "preview-sample:"


def _neutral(shop: Shop, count: int, offset: int = 0) -> tuple[ProductLine, ...]:
    """Neutral sample products (their titles written in the email's language later)."""
    currency = shop.currency or "USD"
    return tuple(
        ProductLine(
            title=f"{_NEUTRAL}{offset + i}",
            url=shop.base_url,
            price=Money(SAMPLE_PRICES[(offset + i) % len(SAMPLE_PRICES)], currency),
            quantity=1,
        )
        for i in range(count)
    )


def _localised(lines: tuple[ProductLine, ...], language: str) -> tuple[ProductLine, ...]:
    titles = SAMPLE_PRODUCTS.get(language, SAMPLE_PRODUCTS["en"])
    return tuple(
        replace(line, title=titles[int(line.title.removeprefix(_NEUTRAL)) % len(titles)])
        if line.title.startswith(_NEUTRAL)
        else line
        for line in lines
    )


# --- a test, to the merchant -----------------------------------------------------------------


def default_address(runtime: Runtime, shop_id: int) -> str | None:
    """Where a test goes unless the merchant says: the shop's sender address."""
    with runtime.reads() as session:
        shop = session.get_one(Shop, shop_id)
        return load_settings(shop).sender.address


def send_test(
    runtime: Runtime,
    shop_id: int,
    flow_name: str,
    step_name: str,
    language: str | None,
    to_address: str | None = None,
    contact: str | None = None,
    at: datetime | None = None,
) -> TestSent:
    """Send the step's preview to the merchant through the shop's delivery backend."""
    at = at or now()
    flow = find_flow(flow_name)
    step = find_step(flow, step_name)
    language = check_language(language)
    settings = runtime.settings
    with runtime.reads() as session:
        shop = session.get_one(Shop, shop_id)
        if to_address is None or not to_address.strip():
            to_address = load_settings(shop).sender.address
            if not to_address:
                raise InvalidError(
                    "to",
                    "no_sender_address",
                    "Your shop has no sender address yet: give the address to send the test to.",
                )
        to = check_address(to_address)
        built = _build(runtime, session, shop, flow, step, language, contact, at)
    _count_test(runtime, shop_id)
    rendered = built.preview.rendered
    subject = i18n.text(rendered.locale, "test.subject", {"subject": rendered.subject})
    message_id = make_message_id(courier.sending_domain(settings))
    outgoing = courier.outgoing_email(
        settings,
        built.shop_settings,
        built.brand,
        replace(rendered, subject=subject),
        to=to,
        kind=flow.kind.value,
        at=at,
        message_id=message_id,
        unsubscribe_url=built.links.unsubscribe,
        # no message: a bounce or complaint about a test maps to none, suppresses no one
        metadata={"shop": str(shop_id), "test": "1"},
    )
    # a backend of its own, closed after: the process's pools its connections per thread,
    # and a web request's thread would leave its connection open when it ends
    backend = backend_from_url(runtime.settings.email_url, redis=runtime.redis)
    composed = Composed(
        email_to=to,
        subject=subject,
        locale=rendered.locale,
        message_id_header=message_id,
        payload=outgoing,
    )
    try:
        provider_id = courier.EmailCourier(runtime, backend).deliver(composed)
    except TransientSendError as exc:
        raise TestDeliveryError(exc.reason, transient=True) from exc
    except (PermanentSendError, PermanentDeliveryError, TransientDeliveryError) as exc:
        raise TestDeliveryError(str(exc), transient=False) from exc
    finally:
        backend.close()
    return TestSent(
        to=to,
        subject=subject,
        language=rendered.locale,
        message_id=message_id,
        provider_message_id=provider_id,
    )


def _key(shop_id: int) -> str:
    return f"triggerpost:test-sends:{shop_id}"


def _count_test(runtime: Runtime, shop_id: int) -> None:
    """Count a test against the shop's hour (a window from its first test), or refuse."""
    key = _key(shop_id)
    pipe = runtime.redis.pipeline(transaction=True)
    pipe.set(key, 0, ex=WINDOW_SECONDS, nx=True)
    pipe.incr(key)
    pipe.ttl(key)
    _, sent, ttl = pipe.execute()
    if int(sent) > TESTS_PER_HOUR:
        raise TestLimitError(int(ttl) if int(ttl) > 0 else WINDOW_SECONDS)
