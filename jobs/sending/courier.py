"""The real courier: a ledger message -> what the email says -> rendered -> delivered.

It gathers what the email needs from the store (the shop's branding, the
checkout's or order's products, the contact's name and language), wraps every
link for click tracking, adds the unsubscribe and preferences links to
marketing mail, renders (:mod:`emails.render`), and hands the result to the
backend ``TRIGGERPOST_EMAIL_URL`` chose. The Message-ID is kept on the ledger
row, so a resend after a crash reuses it (the outbox and providers with
idempotency keys then cannot make a second copy).
"""

from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.events import Money
from adapters.http import RetryPolicy
from adapters.platform import DiscountRequest, LiveOrderState
from emails.content import Brand, DiscountBlock, EmailContent, MessageKind, ProductBlock
from emails.delivery import (
    Backend,
    PermanentDeliveryError,
    TransientDeliveryError,
    backend_from_url,
)
from emails.outgoing import OutgoingEmail, make_message_id
from emails.render import render
from jobs.runtime import Runtime
from jobs.sending import links
from jobs.sending.pipeline import Composed, PermanentSendError, Sender, TransientSendError
from jobs.store import rows
from jobs.store.models import Contact, Enrollment, Message, Product, Shop


class EmailCourier:
    def __init__(self, runtime: Runtime, backend: Backend) -> None:
        self.runtime = runtime
        self.backend = backend

    @property
    def provider(self) -> str:
        return self.backend.name

    @property
    def supports_idempotency(self) -> bool:
        return self.backend.supports_idempotency

    def compose(
        self, session: Session, shop: Shop, message: Message, contact: Contact, at: datetime
    ) -> Composed:
        settings = self.runtime.settings
        if not contact.email:
            raise PermanentSendError("no_email")
        enrollment = session.get_one(Enrollment, message.enrollment_id)
        branding = (shop.settings or {}).get("branding") or {}
        sender = (shop.settings or {}).get("sender") or {}
        brand = Brand(
            shop_name=shop.name,
            storefront_url=shop.base_url,
            sender_name=sender.get("name") or shop.name,
            logo_url=branding.get("logo_url"),
            colour=branding.get("colour") or "#1f2937",
            postal_address=branding.get("postal_address"),
            default_locale=shop.locale or "en",
            reply_to=sender.get("reply_to"),
        )
        products, action_url, values, locale = _subject_details(session, shop, enrollment)
        marketing = message.kind == MessageKind.MARKETING

        def link(url: str) -> str:
            return links.click_url(
                settings, shop.id, message.id, url, flow=message.flow, step=message.step
            )

        discount = None
        if message.discount_code:
            expires = message.data.get("discount_expires_at")
            discount = DiscountBlock(
                code=message.discount_code,
                expires_at=datetime.fromisoformat(expires) if expires else at,
                percent=Decimal(message.data.get("discount_percent", "10")),
            )
        unsubscribe = links.unsubscribe_url(settings, shop.id, message.id) if marketing else None
        content = EmailContent(
            template=message.template,
            kind=MessageKind(message.kind),
            brand=brand,
            locale=contact.locale or locale,
            first_name=contact.first_name,
            products=products,
            action_url=action_url or shop.base_url,
            discount=discount,
            values=values,
            copy_overrides=((shop.settings or {}).get("copy") or {}).get(message.template) or {},
            unsubscribe_url=unsubscribe,
            preferences_url=links.preferences_url(settings, shop.id, message.id)
            if marketing
            else None,
            link=link,
            open_pixel_url=links.open_pixel_url(settings, shop.id, message.id)
            if (shop.settings or {}).get("engine", {}).get("open_tracking")
            else None,
        )
        rendered = render(content)
        domain = settings.email_from.partition("@")[2] or "triggerpost.localhost"
        message_id = message.message_id_header or make_message_id(domain)
        outgoing = OutgoingEmail(
            message_id=message_id,
            from_name=brand.sender_name,
            from_address=sender.get("address") or settings.email_from,
            to=contact.email,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            kind=message.kind,
            date=at,
            reply_to=brand.reply_to,
            unsubscribe_url=unsubscribe,
            idempotency_key=message_id,
            metadata={"shop": str(shop.id), "message": str(message.id)},
        )
        return Composed(
            email_to=contact.email,
            subject=rendered.subject,
            locale=rendered.locale,
            message_id_header=message_id,
            payload=outgoing,
        )

    def deliver(self, composed: Composed) -> str | None:
        try:
            result = self.backend.send(composed.payload)
        except TransientDeliveryError as exc:
            raise TransientSendError(exc.reason, exc.retry_after) from exc
        except PermanentDeliveryError as exc:
            raise PermanentSendError(exc.reason) from exc
        return result.provider_message_id


def _subject_details(
    session: Session, shop: Shop, enrollment: Enrollment
) -> tuple[tuple[ProductBlock, ...], str | None, dict[str, Any], str | None]:
    """Products, the main link, extras and a locale from what the enrollment is about."""
    checkout = rows.checkout(session, shop.id, enrollment.subject)
    if checkout is not None:
        items = checkout.data.get("line_items") or []
        return _products(session, shop, items), checkout.recovery_url, {}, checkout.locale
    order = rows.order(session, shop.id, enrollment.subject)
    if order is not None:
        items = order.data.get("line_items") or []
        values = {"order_name": order.name}
        return _products(session, shop, items), order.data.get("status_url"), values, order.locale
    return (), None, {}, None


def _products(
    session: Session, shop: Shop, items: list[dict[str, Any]]
) -> tuple[ProductBlock, ...]:
    ids = [str(item["product_id"]) for item in items if item.get("product_id")]
    known = {
        p.product_id: p
        for p in session.scalars(
            select(Product).where(Product.shop_id == shop.id, Product.product_id.in_(ids))
        )
    }
    blocks = []
    for item in items[:6]:  # a short list reads better, and keeps the email small
        product = known.get(str(item.get("product_id")))
        price = item.get("unit_price")
        blocks.append(
            ProductBlock(
                title=item.get("title") or (product.title if product else ""),
                url=item.get("product_url")
                or (product.url if product and product.url else "")
                or shop.base_url,
                image_url=item.get("image_url") or (product.image_url if product else None),
                price=Money(Decimal(price["amount"]), price["currency"]) if price else None,
                quantity=item.get("quantity"),
                variant=item.get("variant_title"),
            )
        )
    return tuple(blocks)


class PlatformDiscounts:
    """Discount codes through the shop's platform API (the Shopify and WooCommerce clients)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def issue(self, shop: Shop, request: DiscountRequest) -> None:
        from jobs.platforms import admin

        client = admin.client_for(self.runtime, shop)
        if client is None:
            raise PermanentSendError("discount_unavailable")
        client.create_discount(request)


class PlatformLiveOrders:
    """The re-check before a send, through the shop's platform API (None: no client).

    It is best effort and holds up a send worker, so it asks quickly: short
    timeouts and one retry. If the shop cannot answer, local state decides.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def order_state(self, shop: Shop, order_id: str) -> LiveOrderState | None:
        from jobs.platforms import admin

        quick = self.runtime.api_session(timeout=(3.0, 8.0), retry=RetryPolicy(attempts=2, cap=2.0))
        client = admin.client_for(self.runtime, shop, quick)
        return client.order_state(order_id) if client is not None else None


_lock = threading.Lock()


def build_sender(runtime: Runtime) -> Sender:
    """The process's sender for this runtime: one backend (and its connections) reused."""
    with _lock:
        found: Sender | None = runtime.extensions.get("engine")
        if found is None:
            backend = backend_from_url(runtime.settings.email_url, redis=runtime.redis)
            found = Sender(
                runtime,
                EmailCourier(runtime, backend),
                discounts=PlatformDiscounts(runtime),
                live_orders=PlatformLiveOrders(runtime),
            )
            runtime.extensions["engine"] = found
        return found
