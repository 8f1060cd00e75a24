"""New product: a product that became available goes to those who bought its kind.

A product *becomes available* when it is for sale (the store's one rule,
jobs.store.models.for_sale: not a draft, archived, private..., not sold out,
not deleted): at once if it was created that way, or at
the first update that publishes or stocks a product created while the shop had
triggerpost (a draft, then published). A product we first hear of through an
update is part of the catalogue from before, and is never announced. One
announcement per product, ever: the fan-out's key is the product, so a replay,
a second update or a restock announces nothing again.

Its audience is selected in the database, in batches: the contacts with a paid
order (counted: not a test, not cancelled or refunded) holding a product that
shares a collection or a tag with the new one. Consent is asked at send time,
as for every flow: an unsubscribed buyer enrolls, and her send is skipped with
the reason.

A merchant who publishes many products at once sends one email, not many:
each announcement waits a short window, and the first to go lists the
contact's other new products of the moment (up to a number of products in all,
only those still for sale). Those it listed then end
(``announced_with_another``); one it had no room for, or one that becomes
available later the same week, waits until the week since the last
announcement has passed (the flow's spacing), then goes with whatever else
came meanwhile, or expires if that is past its expiry (ten days: so fifty
products at once make two emails of four, not a season of weekly mail).
A product no longer available at send time (deleted included) is not
announced (``product_unavailable``), and a deleted product makes nobody a
buyer of its kind. Marketing mail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Select, and_, exists, false, func, or_, select, true
from sqlalchemy.orm import Session

from adapters import events as ev
from jobs.flows.context import FlowContext, unavailable_products
from jobs.flows.model import (
    Audience,
    AudienceQuery,
    Count,
    Days,
    Exit,
    Flow,
    Hours,
    MessageKind,
    Option,
    Send,
    SubjectKind,
    Trigger,
    Wait,
    common,
)
from jobs.store import queries
from jobs.store.models import (
    CountedOrder,
    Enrollment,
    EnrollmentState,
    Message,
    Order,
    ProductGroup,
    ProductGroupKind,
    StoredEvent,
    for_sale,
)


def available(product: ev.Product) -> bool:
    """For sale as the event tells it (the store's one rule: jobs.store.models.for_sale)."""
    return for_sale(product.status, product.available)


def _subject(event: ev.Event) -> str | None:
    """The product, when the event shows it available; None: nothing to announce yet."""
    if isinstance(event, (ev.ProductCreated, ev.ProductUpdated)) and available(event.product):
        return event.product.product_id
    return None


def _bought_ids(dialect: str) -> Any:
    """The product ids of a counted order, as a table joined to it."""
    if dialect == "postgresql":
        return (
            func.json_array_elements_text(CountedOrder.product_ids).table_valued("value").lateral()
        )
    return func.json_each(CountedOrder.product_ids).table_valued("value")


def buyers_of_its_kind(query: AudienceQuery) -> Select[tuple[int]]:
    """Contacts with a counted paid order of another product sharing a collection or tag."""
    event = query.event
    assert isinstance(event, (ev.ProductCreated, ev.ProductUpdated))
    product = event.product
    kinds = [
        # kept as product_groups keeps them (jobs.audience.recommendations.on_product)
        and_(
            ProductGroup.kind == kind, ProductGroup.name.in_(sorted({name[:255] for name in names}))
        )
        for kind, names in (
            (ProductGroupKind.COLLECTION, product.collections),
            (ProductGroupKind.TAG, product.tags),
        )
        if names
    ]
    bought = _bought_ids(query.dialect)
    selection = (
        select(Order.contact_id)
        .select_from(CountedOrder)
        .join(Order, Order.id == CountedOrder.order_row_id)
        .join(bought, true())
        .join(
            ProductGroup,
            and_(
                ProductGroup.shop_id == CountedOrder.shop_id,
                ProductGroup.product_id == bought.c.value,
            ),
        )
        .where(
            CountedOrder.shop_id == query.shop_id,
            Order.contact_id.is_not(None),
            Order.test.is_(False),
            ProductGroup.product_id != product.product_id,
            or_(*kinds) if kinds else false(),
        )
    )
    if isinstance(event, ev.ProductUpdated):
        # an update announces only a product created while the shop had us (a draft
        # published): one first heard of through an update is old catalogue
        selection = selection.where(
            exists().where(
                StoredEvent.shop_id == query.shop_id,
                StoredEvent.type == ev.ProductCreated.__name__,
                StoredEvent.subject == product.product_id,
            )
        )
    # the column is nullable; the condition above keeps only contacts
    return cast("Select[tuple[int]]", selection)


def other_new_products(
    session: Session, enrollment: Enrollment, options: Mapping[str, Any]
) -> Sequence[str]:
    """The contact's other products of this flow still waiting for their email, first
    come first, leaving room for the enrollment's own among ``most_products``."""
    room = int(options.get("most_products", 1)) - 1
    if room <= 0 or enrollment.contact_id is None:
        return ()
    waiting = session.scalars(
        select(Enrollment.subject)
        .where(
            Enrollment.shop_id == enrollment.shop_id,
            Enrollment.flow == enrollment.flow,
            Enrollment.contact_id == enrollment.contact_id,
            Enrollment.state == EnrollmentState.ACTIVE,
            Enrollment.holdout.is_(False),
            Enrollment.id != enrollment.id,
        )
        .order_by(Enrollment.entered_at, Enrollment.id)
    ).all()
    gone = unavailable_products(session, enrollment.shop_id, waiting)
    return [product_id for product_id in waiting if product_id not in gone][:room]


def _product_unavailable(ctx: FlowContext) -> bool:
    """Off sale or out of stock now, as the store last heard it."""
    return bool(unavailable_products(ctx.session, ctx.shop.id, [ctx.subject]))


def _announced_with_another(ctx: FlowContext) -> bool:
    """An email of this flow sent to the contact since this product's turn began
    listed it: its own product, then the first of the contact's waiting ones
    (:func:`other_new_products`, read again as they stood when it went out)."""
    enrollment = ctx.enrollment
    if enrollment is None or enrollment.contact_id is None:
        return False
    sent = ctx.session.execute(
        select(Message.enrollment_id, Message.sent_at)
        .where(
            Message.shop_id == enrollment.shop_id,
            Message.contact_id == enrollment.contact_id,
            Message.flow == enrollment.flow,
            Message.enrollment_id != enrollment.id,
            Message.state.in_(queries.OCCUPYING),
            Message.sent_at >= enrollment.entered_at,
        )
        .order_by(Message.sent_at)
    ).all()
    room = int(ctx.options.get("most_products", 1)) - 1
    for other, sent_at in sent:
        waiting = ctx.session.scalars(
            select(Enrollment.id)
            .where(
                Enrollment.shop_id == enrollment.shop_id,
                Enrollment.flow == enrollment.flow,
                Enrollment.contact_id == enrollment.contact_id,
                Enrollment.holdout.is_(False),
                Enrollment.id != other,
                Enrollment.entered_at <= sent_at,
                or_(Enrollment.ended_at.is_(None), Enrollment.ended_at >= sent_at),
            )
            .order_by(Enrollment.entered_at, Enrollment.id)
            .limit(max(room, 0))
        ).all()
        if enrollment.id in waiting:
            return True
    return False


FLOW = Flow(
    name="new_product",
    title="New product",
    summary="Tells the customers who buy that kind of thing about a new product.",
    category="announcements",
    kind=MessageKind.MARKETING,
    priority=10,
    trigger=Trigger(
        events=(ev.ProductCreated, ev.ProductUpdated),
        subject=_subject,
        audience=Audience(buyers_of_its_kind, batch=500),
    ),
    steps=(Wait(option="window_hours"), Send("announcement", "new_product")),
    exits=(
        Exit("product_unavailable", _product_unavailable),
        Exit("announced_with_another", _announced_with_another),
    ),
    subject_kind=SubjectKind.PRODUCT,
    also_show=other_new_products,
    spacing="spacing_days",
    options=(
        Option(
            "window_hours",
            Hours(2, min=0, max=48),
            label="Announce after (hours)",
            help="Hours after a product became available. Products you publish within "
            "this time go out together, in one email.",
        ),
        Option(
            "most_products",
            Count(4, min=1, max=6, unit="products"),
            label="Products in one email, at most",
            help="An announcement lists this many new products at most; the first ones "
            "that became available are shown.",
        ),
        Option(
            "spacing_days",
            Days(7, min=0, max=60),
            label="At most one announcement per customer every (days)",
            help="A product that becomes available sooner after the last announcement "
            "waits until this many days have passed, and goes with any others that came "
            "meanwhile. 0: no waiting.",
        ),
        # an announcement held back a week (spacing) must still go out
        *common(expires_hours=24 * 10),
    ),
)
