"""Products an email is about to show that the store holds nothing of, asked of the platform.

A cart or an order may hold products no product webhook ever told us of (made
before the shop installed us, or a webhook that never came): the email could
only show them as the line item remembers them, and count them as for sale.
Right before such messages are sent (a send drain's batch, or one message sent
on its own), outside any transaction, the products their emails would show
(:func:`jobs.sending.content.subject_product_ids`, the first :data:`MAX_ASKED`
of each) that have no row are asked of the shop's platform in one call per
batch (:meth:`adapters.platform.AdminClient.products`), and its answer is
stored by the intake's own writer (:func:`jobs.intake.apply.store_product`): this
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
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.events import Product as ProductNews
from adapters.http import RetryPolicy
from adapters.platform import AdminApiError, AdminClient
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
    session: Session, message_ids: list[int], at: datetime, can_ask: Callable[[Shop], bool]
) -> dict[int, tuple[Shop, list[str]]]:
    """By shop id: the shop and the products these messages' emails would show that the
    store has no row for, for the shops ``can_ask`` says may be asked. Only messages
    about to be sent count (not ended, due, their enrollment active). Read in a few
    statements for the whole batch: a shop that cannot be asked costs one."""
    found = session.execute(
        select(Message.state, Message.flow, Message.due_at, Enrollment, Shop)
        .join(Enrollment, Enrollment.id == Message.enrollment_id)
        .join(Shop, Shop.id == Message.shop_id)
        .where(Message.id.in_(message_ids))
        .order_by(Message.id)
    ).all()
    askable: dict[int, bool] = {}
    shown: dict[int, tuple[Shop, list[str]]] = {}
    for row in found:
        if (
            row.state != MessageState.PLANNED
            or row.due_at > at
            or row.Enrollment.state != EnrollmentState.ACTIVE
        ):
            continue
        shop = row.Shop
        if not askable.setdefault(shop.id, can_ask(shop)):
            continue
        flow = registry.get(row.flow)
        if flow is None:
            continue  # the send is cancelled: it shows nothing
        ids = content.subject_product_ids(session, shop, flow, row.Enrollment)
        # an id longer than any platform's names no product: not asked, not stored
        ids = [p for p in ids if len(p) <= apply.IDENTITY_LENGTH][:MAX_ASKED]
        wanted = shown.setdefault(shop.id, (shop, []))[1]
        wanted += [p for p in ids if p not in wanted]
    missing: dict[int, tuple[Shop, list[str]]] = {}
    for shop_id, (shop, ids) in shown.items():
        held = set(
            session.scalars(
                select(Product.product_id).where(
                    Product.shop_id == shop_id, Product.product_id.in_(ids)
                )
            )
        )
        if absent := [p for p in ids if p not in held]:
            missing[shop_id] = (shop, absent)
    return missing


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

    def complete(self, message_ids: list[int], at: datetime) -> None:
        # best effort and it holds up a send worker: short timeouts, one retry
        quick = self.runtime.api_session(timeout=(3.0, 8.0), retry=RetryPolicy(attempts=2, cap=2.0))
        clients: dict[int, AdminClient] = {}

        def can_ask(shop: Shop) -> bool:
            client = admin.client_for(self.runtime, shop, quick)
            if client is not None:
                clients[shop.id] = client
            return client is not None

        with self.runtime.reads() as session:
            found = missing_products(session, message_ids, at, can_ask)
        for shop_id, (shop, missing) in found.items():
            self._ask(clients[shop_id], shop, missing, at)

    def _ask(self, client: AdminClient, shop: Shop, missing: list[str], at: datetime) -> None:
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
