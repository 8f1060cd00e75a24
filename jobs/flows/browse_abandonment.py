"""Browse abandonment: a known customer looked at a product and left it there.

A storefront's ``ProductViewed`` that names a customer (signed in, or a visitor
identified since: jobs.intake.apply counts each view in ``product_views``)
starts it; an anonymous view names nobody and starts nothing. If within
``delay_hours`` (4) she neither put anything in a cart, started a checkout nor
ordered, one email shows the product she looked at most among those she looked
at since it started (at least ``min_views`` times; ties: the latest), with a few
others that go with it. Never a product she bought (at send time too: the
order may have come after the view), nor one no longer for sale.

A cart or checkout of hers is cart recovery's to answer: any cart, checkout or
order of hers since the first view ends this (``added_to_cart``,
``checkout_started``, ``ordered``), and so does a cart reminder under way for
her (``cart_reminder``: the cart came before the views): she gets the cart's
email, never both. Cart recovery also ranks above it (``PRIORITIES``) where the
caps let one email through.

At most one every ``again_after_days`` (7): a view within that time of the last
start starts nothing (``too_soon``); the subject is the day of the first view,
so a replayed view adds nothing. Marketing mail, subscribed contacts only by
default: a storefront's word never grants consent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters import events as ev
from jobs.audience import recommendations
from jobs.flows.context import FlowContext, unavailable_products
from jobs.flows.model import (
    Count,
    Days,
    Exit,
    Flow,
    Hours,
    MessageKind,
    Option,
    Recommend,
    Reentry,
    Send,
    SubjectKind,
    Trigger,
    Wait,
    common,
)
from jobs.store.models import Checkout, Enrollment, ProductView, StoredEvent

NAME = "browse_abandonment"
CHECKOUT_EVENTS = (ev.CheckoutStarted, ev.CheckoutUpdated)
ORDER_EVENTS = (ev.OrderPlaced, ev.OrderPaid)
#: the flow whose email a contact with a cart gets instead
CART_FLOW = "cart_recovery"
#: a view told this late (a visitor's past views, applied when she is identified) is
#: no fresh interest: it is counted, but starts nothing
FRESH = timedelta(hours=24)


def _subject(event: ev.Event) -> str | None:
    """A customer's view: the day of the view names it (a replay is the same)."""
    if not isinstance(event, ev.ProductViewed) or event.customer is None:
        return None
    return f"browse:{event.occurred_at.date().isoformat()}"


def _since(ctx: FlowContext) -> datetime:
    """Where her browsing began: the first view (the anchor); before she enrolls, the
    view at hand (told late, after a cart of hers, it is over before it starts)."""
    if ctx.enrollment is not None:
        return ctx.enrollment.anchor_at
    return ctx.event.occurred_at if isinstance(ctx.event, ev.ProductViewed) else ctx.now


def viewed(
    session: Session, enrollment: Enrollment, options: Mapping[str, Any]
) -> list[ProductView]:
    """The products she looked at since the first view, at least ``min_views`` times,
    the most looked at first (ties: the latest, then by id, so the choice is stable)."""
    if enrollment.contact_id is None:
        return []
    return list(
        session.scalars(
            select(ProductView)
            .where(
                ProductView.contact_id == enrollment.contact_id,
                ProductView.last_viewed_at >= enrollment.anchor_at,
                ProductView.views >= int(options.get("min_views", 1)),
            )
            .order_by(
                ProductView.views.desc(),
                ProductView.last_viewed_at.desc(),
                ProductView.product_id,
            )
        )
    )


def _candidates(session: Session, enrollment: Enrollment, options: Mapping[str, Any]) -> list[str]:
    """The viewed products she has not bought, most looked at first."""
    bought = recommendations.bought_by(session, enrollment.shop_id, enrollment.contact_id)
    return [
        row.product_id
        for row in viewed(session, enrollment, options)
        if row.product_id not in bought
    ]


def most_viewed(session: Session, enrollment: Enrollment, options: Mapping[str, Any]) -> str | None:
    """The email's product: the most looked-at one she has not bought and can still buy."""
    candidates = _candidates(session, enrollment, options)
    gone = unavailable_products(session, enrollment.shop_id, candidates)
    return next((p for p in candidates if p not in gone), None)


def _interested(ctx: FlowContext) -> bool:
    """A fresh view by a contact with an address, of a product she has not bought and
    looked at at least ``min_views`` times (this view counted)."""
    event = ctx.event
    contact = ctx.contact
    if not isinstance(event, ev.ProductViewed) or contact is None or not contact.email:
        return False
    if event.occurred_at < ctx.now - FRESH:
        return False
    if event.product_id in recommendations.bought_by(ctx.session, ctx.shop.id, contact.id):
        return False
    views = ctx.session.scalar(
        select(ProductView.views).where(
            ProductView.contact_id == contact.id, ProductView.product_id == event.product_id
        )
    )
    return (views or 0) >= int(ctx.options.get("min_views", 1))


def _ordered(ctx: FlowContext) -> bool:
    return ctx.ordered_since(_since(ctx))


def _checkout_started(ctx: FlowContext) -> bool:
    """A checkout of hers changed since the first view (a checkout with her address is
    hers: the intake finds her by it)."""
    contact = ctx.contact
    if contact is None:
        return False
    found = ctx.session.scalar(
        select(Checkout.id)
        .where(
            Checkout.shop_id == ctx.shop.id,
            Checkout.contact_id == contact.id,
            Checkout.platform_updated_at >= _since(ctx),
        )
        .limit(1)
    )
    return found is not None


def _added_to_cart(ctx: FlowContext) -> bool:
    """A cart of hers changed since the first view (as the event log tells it)."""
    if ctx.contact is None:
        return False
    found = ctx.session.scalar(
        select(StoredEvent.id)
        .where(
            StoredEvent.shop_id == ctx.shop.id,
            StoredEvent.contact_id == ctx.contact.id,
            StoredEvent.type == ev.CartUpdated.__name__,
            StoredEvent.occurred_at >= _since(ctx),
        )
        .limit(1)
    )
    return found is not None


def _product_bought(ctx: FlowContext) -> bool:
    """Everything she looked at (enough) she has bought since: nothing left to remind of."""
    enrollment = ctx.enrollment
    if enrollment is None:
        return False
    return bool(viewed(ctx.session, enrollment, ctx.options)) and not _candidates(
        ctx.session, enrollment, ctx.options
    )


def _product_unavailable(ctx: FlowContext) -> bool:
    """What she looked at and did not buy is no longer for sale."""
    enrollment = ctx.enrollment
    if enrollment is None:
        return False
    return (
        bool(_candidates(ctx.session, enrollment, ctx.options))
        and most_viewed(ctx.session, enrollment, ctx.options) is None
    )


FLOW = Flow(
    name=NAME,
    title="Browse abandonment",
    summary=(
        "Reminds a known customer of a product they looked at and left, with a few that go with it."
    ),
    category="browse",
    kind=MessageKind.MARKETING,
    # below cart recovery: a cart is the stronger sign, and gets the slot
    priority=35,
    trigger=Trigger(events=(ev.ProductViewed,), subject=_subject, when=_interested),
    steps=(Wait(option="delay_hours"), Send("email", "browse_abandonment")),
    exits=(
        Exit("ordered", _ordered, on=ORDER_EVENTS),
        Exit("checkout_started", _checkout_started, on=CHECKOUT_EVENTS),
        Exit("added_to_cart", _added_to_cart, on=(ev.CartUpdated,)),
        # the cart came before the views: its reminders are hers, not this
        Exit("cart_reminder", lambda ctx: ctx.in_flow(CART_FLOW), on=CHECKOUT_EVENTS),
        Exit("product_bought", _product_bought, on=ORDER_EVENTS),
        Exit("product_unavailable", _product_unavailable),
    ),
    reentry=Reentry.AFTER_DAYS,
    reentry_days="again_after_days",
    subject_kind=SubjectKind.PRODUCT,
    subject_product=most_viewed,
    recommend=Recommend(limit=6, option="recommendations"),
    options=(
        Option(
            "delay_hours",
            Hours(4, min=1, max=72),
            label="Send after (hours)",
            help="Hours after the customer first looked at a product, if they have not "
            "added anything to a cart, started a checkout or ordered by then.",
        ),
        Option(
            "min_views",
            Count(1, min=1, max=10, unit="views"),
            label="Only after looking at a product (times)",
            help="Start only once a customer has looked at the same product this many "
            "times. 1: the first look is enough.",
        ),
        Option(
            "recommendations",
            Count(3, min=0, max=6, unit="products"),
            label="Other products to suggest",
            help="How many products that go with the one they looked at the email also "
            "shows. 0: only that product.",
        ),
        Option(
            "again_after_days",
            Days(7, min=1, max=90),
            label="At most once every (days)",
            help="A customer gets this reminder at most once in this many days, however "
            "much they browse.",
        ),
        # interest in a product fades within the day: a reminder held back longer is dropped
        *common(expires_hours=24),
    ),
)
