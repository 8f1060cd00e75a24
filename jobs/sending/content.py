"""What an email shows, by what it is about: its products, its main link, template values.

One resolver per subject kind (``RESOLVERS``), each reading the store for the
enrollment's subject at send time:

=========  ==========================================  ==========================
kind       products                                    main link
=========  ==========================================  ==========================
checkout   its line items still for sale               the checkout's recovery link
order      the order's line items                      the order status page
contact    none                                        the shop's home page
product    that product                                the product's page
=========  ==========================================  ==========================

A flow about a product may choose it at send time (``subject_product``: the one
she looked at most lately), instead of the trigger's subject.

Then the values the trigger kept on the enrollment are laid over the
subject's, a flow's ``also_show`` adds the other products it names (only those
still for sale, after the subject's own, up to ``MAX_PRODUCTS``), a flow's own
``product_link`` may give each product another link (its review form), and a
flow's own ``link`` (over the read-only view, with the flow's options) may
replace the main link. A subject no longer found shows no products and links
home.

A flow that declares ``recommend`` also gets ``recommended``: other products
(jobs.audience.recommendations), never the subject's own nor one the contact
bought, and only products on sale and in stock as the store holds them now.
The subject's own products are shown as they are (a line item of an order is
what was bought, whatever the product's state today), except a checkout's
items the store no longer sells: a reminder shows only what can still be bought.
Products no webhook told us of were asked of the platform right before the
send (jobs.sending.catalogue, from :func:`subject_product_ids`), where it could.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.events import Money
from jobs import shop_settings
from jobs.audience import recommendations
from jobs.flows.context import unavailable_products
from jobs.flows.model import Flow, ProductLine, RecommendBasis, SubjectKind, SubjectView
from jobs.store import rows
from jobs.store.models import Checkout, Enrollment, Order, Product, Shop

Resolver = Callable[[Session, Shop, Enrollment], SubjectView]

#: a short list reads better, and keeps the email small
MAX_PRODUCTS = 6


def resolve(session: Session, shop: Shop, flow: Flow | None, enrollment: Enrollment) -> SubjectView:
    """The view of the enrollment's subject, with the trigger's values and the flow's link."""
    kind = flow.subject_kind if flow is not None else SubjectKind.CHECKOUT
    if flow is not None and flow.subject_product is not None:
        chosen = _chosen_product(session, shop, flow, enrollment)
        view = product_view_of(session, shop, enrollment, chosen)
    else:
        view = RESOLVERS[kind](session, shop, enrollment)
    return finish(session, shop, flow, enrollment, view)


def _chosen_product(session: Session, shop: Shop, flow: Flow, enrollment: Enrollment) -> str | None:
    """The product a flow with ``subject_product`` shows, chosen now."""
    assert flow.subject_product is not None
    return flow.subject_product(session, enrollment, shop_settings.load(shop).flow(flow))


def finish(
    session: Session, shop: Shop, flow: Flow | None, enrollment: Enrollment, view: SubjectView
) -> SubjectView:
    """A subject's view as the email shows it: the trigger's values over the subject's,
    the flow's options, the products it also shows, its links and recommendations.
    (A preview finishes a sample subject's view here too, so it shows what a send would.)"""
    kept = enrollment.context.get("values")
    if kept:
        view = dataclasses.replace(view, values={**view.values, **kept})
    if flow is not None:
        view = dataclasses.replace(view, options=shop_settings.load(shop).flow(flow))
    if flow is not None and flow.also_show is not None and view.products:
        more = also_shown(session, shop, flow.also_show(session, enrollment, view.options), view)
        view = dataclasses.replace(view, products=(*view.products, *more))
    if flow is not None and flow.product_link is not None:
        to = flow.product_link
        lines = tuple(dataclasses.replace(line, url=to(line, view)) for line in view.products)
        view = dataclasses.replace(view, products=lines)
    if flow is not None and flow.link is not None:
        link = flow.link(view)
        if link:
            view = dataclasses.replace(view, link=link)
    if flow is not None and flow.recommend is not None:
        view = dataclasses.replace(
            view, recommended=recommended(session, shop, flow, enrollment, view)
        )
    return view


def also_shown(
    session: Session, shop: Shop, product_ids: Sequence[str], view: SubjectView
) -> tuple[ProductLine, ...]:
    """The catalogue's products of these ids, in their order, except those the view
    shows already and those no longer for sale (or never heard of: nothing to show)."""
    shown = {line.product_id for line in view.products}
    room = MAX_PRODUCTS - len(view.products)
    ids = [p for p in dict.fromkeys(product_ids) if p not in shown]
    if not ids or room <= 0:
        return ()
    gone = unavailable_products(session, shop.id, ids)
    known = {
        product.product_id: product
        for product in session.scalars(
            select(Product).where(Product.shop_id == shop.id, Product.product_id.in_(ids))
        )
    }
    kept = [known[p] for p in ids if p in known and p not in gone]
    return tuple(product_line(product, shop) for product in kept[:room])


def recommended(
    session: Session, shop: Shop, flow: Flow, enrollment: Enrollment, view: SubjectView
) -> tuple[ProductLine, ...]:
    """The products the flow's email offers besides the subject's own."""
    assert flow.recommend is not None
    shown = [line.product_id for line in view.products if line.product_id]
    bought = recommendations.bought_by(session, shop.id, enrollment.contact_id)
    basis = flow.recommend.basis
    seeds = (
        shown
        if basis == RecommendBasis.SUBJECT
        else sorted(bought)
        if basis == RecommendBasis.PURCHASES
        else []
    )
    limit = flow.recommend.limit
    if flow.recommend.option is not None:
        limit = min(limit, int(view.options.get(flow.recommend.option, limit)))
    if limit <= 0:
        return ()
    products = recommendations.related(
        session, shop.id, seeds, exclude=shown, bought=bought, limit=limit
    )
    return tuple(product_line(product, shop) for product in products)


def subject_product_ids(
    session: Session, shop: Shop, flow: Flow | None, enrollment: Enrollment
) -> list[str]:
    """The products an email about the enrollment's subject would show, in its order,
    before any is left out: a checkout's or an order's line items, a product subject.
    (What ``also_show`` and ``recommended`` add comes from products the store holds.)"""
    kind = flow.subject_kind if flow is not None else SubjectKind.CHECKOUT
    if flow is not None and flow.subject_product is not None:
        chosen = _chosen_product(session, shop, flow, enrollment)
        return [chosen] if chosen is not None else []
    if kind == SubjectKind.PRODUCT:
        return [enrollment.subject]
    found: Checkout | Order | None = None
    if kind == SubjectKind.CHECKOUT:
        found = rows.checkout(session, shop.id, enrollment.subject)
    elif kind == SubjectKind.ORDER:
        found = rows.order(session, shop.id, enrollment.subject)
    return recommendations.order_products(found.data) if found is not None else []


def checkout_view(session: Session, shop: Shop, enrollment: Enrollment) -> SubjectView:
    checkout = rows.checkout(session, shop.id, enrollment.subject)
    if checkout is None:
        return _missing(SubjectKind.CHECKOUT, shop, enrollment)
    return SubjectView(
        kind=SubjectKind.CHECKOUT,
        subject=enrollment.subject,
        shop_url=shop.base_url,
        products=line_products(session, shop, _still_for_sale(session, shop, checkout.data)),
        link=checkout.recovery_url,
        locale=checkout.locale,
    )


def _still_for_sale(session: Session, shop: Shop, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The checkout's line items without those the store no longer sells (an item
    of a product we never heard of stays: we cannot know it is gone)."""
    items: list[dict[str, Any]] = data.get("line_items") or []
    gone = unavailable_products(session, shop.id, (str(i.get("product_id") or "") for i in items))
    return [item for item in items if str(item.get("product_id") or "") not in gone]


def order_view(session: Session, shop: Shop, enrollment: Enrollment) -> SubjectView:
    order = rows.order(session, shop.id, enrollment.subject)
    if order is None:
        return _missing(SubjectKind.ORDER, shop, enrollment)
    return SubjectView(
        kind=SubjectKind.ORDER,
        subject=enrollment.subject,
        shop_url=shop.base_url,
        products=line_products(session, shop, order.data.get("line_items") or []),
        link=order.data.get("status_url"),
        values={"order_name": order.name, "order_total": Money(order.total, order.currency)},
        locale=order.locale,
    )


def contact_view(session: Session, shop: Shop, enrollment: Enrollment) -> SubjectView:
    # the contact's own name and language reach the email anyway (the courier reads them)
    return SubjectView(
        kind=SubjectKind.CONTACT,
        subject=enrollment.subject,
        shop_url=shop.base_url,
        link=shop.base_url,
    )


def product_view(session: Session, shop: Shop, enrollment: Enrollment) -> SubjectView:
    return product_view_of(session, shop, enrollment, enrollment.subject)


def product_view_of(
    session: Session, shop: Shop, enrollment: Enrollment, product_id: str | None
) -> SubjectView:
    """The view of one product of the catalogue (None, or one we do not hold: none)."""
    product = (
        session.scalar(
            select(Product).where(Product.shop_id == shop.id, Product.product_id == product_id)
        )
        if product_id is not None
        else None
    )
    if product is None:
        return _missing(SubjectKind.PRODUCT, shop, enrollment)
    line = product_line(product, shop)
    return SubjectView(
        kind=SubjectKind.PRODUCT,
        subject=enrollment.subject,
        shop_url=shop.base_url,
        products=(line,),
        link=line.url,
        values={"product_title": product.title},
    )


RESOLVERS: dict[SubjectKind, Resolver] = {
    SubjectKind.CHECKOUT: checkout_view,
    SubjectKind.ORDER: order_view,
    SubjectKind.CONTACT: contact_view,
    SubjectKind.PRODUCT: product_view,
}


def product_line(product: Product, shop: Shop) -> ProductLine:
    """A product of the catalogue as an email shows it."""
    return ProductLine(
        title=product.title,
        url=product.url or shop.base_url,
        product_id=product.product_id,
        handle=product.handle,
        image_url=product.image_url,
        price=Money(product.price, product.currency)
        if product.price is not None and product.currency
        else None,
    )


def _missing(kind: SubjectKind, shop: Shop, enrollment: Enrollment) -> SubjectView:
    return SubjectView(kind=kind, subject=enrollment.subject, shop_url=shop.base_url)


def line_products(
    session: Session, shop: Shop, items: list[dict[str, Any]]
) -> tuple[ProductLine, ...]:
    """Stored line items as products, filling image and link from the catalogue we hold."""
    items = items[:MAX_PRODUCTS]
    ids = [str(item["product_id"]) for item in items if item.get("product_id")]
    known = {
        p.product_id: p
        for p in session.scalars(
            select(Product).where(Product.shop_id == shop.id, Product.product_id.in_(ids))
        )
    }
    lines = []
    for item in items:
        product_id = str(item["product_id"]) if item.get("product_id") else None
        product = known.get(product_id) if product_id else None
        price = item.get("unit_price")
        lines.append(
            ProductLine(
                title=item.get("title") or (product.title if product else ""),
                url=item.get("product_url")
                or (product.url if product and product.url else "")
                or shop.base_url,
                product_id=product_id,
                handle=product.handle if product else None,
                image_url=item.get("image_url") or (product.image_url if product else None),
                price=Money(Decimal(price["amount"]), price["currency"]) if price else None,
                quantity=item.get("quantity"),
                variant=item.get("variant_title"),
            )
        )
    return tuple(lines)
