"""Products an email is about to show that the store holds nothing of, asked of the platform.

A cart or an order may hold products no product webhook ever told us of (made
before the shop installed us, or a webhook that never came): the email could
only show them as the line item remembers them, and count them as for sale.
Right before such a message is sent, outside any transaction, the products its
email would show (:func:`jobs.sending.content.subject_product_ids`, the first
:data:`MAX_ASKED`) that have no row are asked of the shop's platform in one
call (:meth:`adapters.platform.AdminClient.products`), and its answer is stored
by the intake's own writer (:func:`jobs.intake.apply.store_product`): this
email shows them as they are now, and no later email asks again. A product the
platform says it does not have is stored as deleted
(:func:`jobs.intake.apply.delete_product`): left out, and never asked about again.

Best effort, like the live re-check before a send: a shop without API access
is not asked, and an API that fails, refuses or is slow (short timeouts, one
retry) is logged while the email goes as it would have (a product we know
nothing of counts as for sale, :func:`jobs.flows.context.unavailable_products`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.events import Product as ProductNews
from adapters.http import RetryPolicy
from adapters.platform import AdminApiError
from jobs.flows import registry
from jobs.intake import apply
from jobs.platforms import admin
from jobs.runtime import Runtime
from jobs.sending import content
from jobs.store.models import (
    Enrollment,
    EnrollmentState,
    Message,
    MessageState,
    Product,
    Shop,
)

log = logging.getLogger(__name__)

#: products asked per email, at most: what one email shows (content.MAX_PRODUCTS) and
#: as many again, for the cart items found gone; one cheap call on either platform
MAX_ASKED = 2 * content.MAX_PRODUCTS


def missing_products(
    session: Session, message_id: int, at: datetime
) -> tuple[Shop, list[str]] | None:
    """The message's shop and the products its email would show that the store has no
    row for; None when there are none, or the message is not about to be sent (ended,
    not yet due, its enrollment over)."""
    found = session.execute(
        select(Message.state, Message.flow, Message.due_at, Enrollment, Shop)
        .join(Enrollment, Enrollment.id == Message.enrollment_id)
        .join(Shop, Shop.id == Message.shop_id)
        .where(Message.id == message_id)
    ).one_or_none()
    if (
        found is None
        or found.state != MessageState.PLANNED
        or found.due_at > at
        or found.Enrollment.state != EnrollmentState.ACTIVE
    ):
        return None
    flow = registry.get(found.flow)
    if flow is None:
        return None  # the send is cancelled: it shows nothing
    shop = found.Shop
    shown = content.subject_product_ids(session, shop, flow, found.Enrollment)
    # an id longer than any platform's names no product: not asked, not stored
    ids = [p for p in shown if len(p) <= apply.IDENTITY_LENGTH][:MAX_ASKED]
    if not ids:
        return None
    held = set(
        session.scalars(
            select(Product.product_id).where(
                Product.shop_id == shop.id, Product.product_id.in_(ids)
            )
        )
    )
    missing = [p for p in ids if p not in held]
    return (shop, missing) if missing else None


def store_answer(
    session: Session, shop: Shop, asked: list[str], answer: list[ProductNews], at: datetime
) -> None:
    """What the platform said of the products asked: each it has, as it is now; each
    it left out, deleted as of ``at``."""
    for product in answer:
        apply.store_product(session, shop, product)
    told = {product.product_id for product in answer}
    for product_id in asked:
        if product_id not in told:
            apply.delete_product(session, shop, product_id, at)


class PlatformCatalogue:
    """Asks a shop's platform for the products a message's email would show and the
    store holds nothing of (see the module docstring). Never raises for the platform."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def complete(self, message_id: int, at: datetime) -> None:
        with self.runtime.reads() as session:
            found = missing_products(session, message_id, at)
        if found is None:
            return
        shop, missing = found
        # best effort and it holds up a send worker: short timeouts, one retry
        quick = self.runtime.api_session(timeout=(3.0, 8.0), retry=RetryPolicy(attempts=2, cap=2.0))
        client = admin.client_for(self.runtime, shop, quick)
        if client is None:
            return
        try:
            answer = client.products(missing)
        except AdminApiError as exc:
            log.warning(
                "shop %s: asking for %d products the email shows failed: %s",
                shop.id,
                len(missing),
                exc,
            )
            return
        try:
            with self.runtime.sessions.begin() as session:
                store_answer(session, session.get_one(Shop, shop.id), missing, answer, at)
        except IntegrityError:
            # a webhook stored one of them meanwhile: its row is the newer word
            log.info("shop %s: products arrived by webhook while asked for", shop.id)
