"""The real courier: a ledger message -> what the email says -> rendered -> delivered.

It gathers what the email needs from the store (the shop's branding, what
the email is about by the flow's subject kind (:mod:`jobs.sending.content`),
the contact's name and language), wraps every
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

from sqlalchemy.orm import Session

from adapters.http import RetryPolicy
from adapters.platform import AdminClient, DiscountRequest, LiveOrderState
from emails.content import Brand, DiscountBlock, EmailContent, MessageKind, ProductBlock
from emails.delivery import (
    Backend,
    PermanentDeliveryError,
    TransientDeliveryError,
    backend_from_url,
)
from emails.outgoing import OutgoingEmail, make_message_id
from emails.render import render
from jobs.flows import registry
from jobs.flows.model import ProductLine
from jobs.platforms import admin
from jobs.runtime import Runtime
from jobs.sending import content, links
from jobs.sending.catalogue import PlatformCatalogue
from jobs.sending.pipeline import Composed, PermanentSendError, Sender, TransientSendError
from jobs.shop_settings import STORE_LANGUAGE
from jobs.shop_settings import load as load_settings
from jobs.store.models import Contact, Enrollment, Message, Shop


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
        shop_settings = load_settings(shop)
        branding, sender = shop_settings.branding, shop_settings.sender
        brand = Brand(
            shop_name=shop.name,
            storefront_url=shop.base_url,
            sender_name=sender.name or shop.name,
            logo_url=branding.logo_url,
            colour=branding.colour,
            postal_address=branding.postal_address,
            default_locale=(
                branding.language if branding.language != STORE_LANGUAGE else shop.locale
            )
            or "en",
            reply_to=sender.reply_to,
        )
        details = _subject_details(session, shop, message, enrollment)
        products, recommended, action_url, values, locale = details
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
            # an email about a checkout or an order in its language, else in hers
            locale=locale or contact.locale,
            first_name=contact.first_name,
            products=products,
            recommended=recommended,
            action_url=action_url or shop.base_url,
            discount=discount,
            values=values,
            copy_overrides=shop_settings.copy.get(message.template) or {},
            unsubscribe_url=unsubscribe,
            preferences_url=links.preferences_url(settings, shop.id, message.id)
            if marketing
            else None,
            link=link,
            open_pixel_url=links.open_pixel_url(settings, shop.id, message.id)
            if shop_settings.engine.open_tracking
            else None,
        )
        rendered = render(content)
        domain = settings.email_from.partition("@")[2] or "triggerpost.localhost"
        message_id = message.message_id_header or make_message_id(domain)
        outgoing = OutgoingEmail(
            message_id=message_id,
            from_name=brand.sender_name,
            from_address=sender.address or settings.email_from,
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
    session: Session, shop: Shop, message: Message, enrollment: Enrollment
) -> tuple[
    tuple[ProductBlock, ...], tuple[ProductBlock, ...], str | None, dict[str, Any], str | None
]:
    """Products, recommended products, the main link, template values and a locale,
    by the flow's subject kind."""
    view = content.resolve(session, shop, registry.get(message.flow), enrollment)
    return (
        _blocks(view.products),
        _blocks(view.recommended),
        view.link,
        dict(view.values),
        view.locale,
    )


def _blocks(lines: tuple[ProductLine, ...]) -> tuple[ProductBlock, ...]:
    return tuple(
        ProductBlock(
            title=line.title,
            url=line.url,
            image_url=line.image_url,
            price=line.price,
            quantity=line.quantity,
            variant=line.variant,
        )
        for line in lines
    )


class PlatformDiscounts:
    """Discount codes through the shop's platform API (the Shopify and WooCommerce clients)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def issue(self, shop: Shop, request: DiscountRequest) -> None:
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
        client = self._client(shop)
        return client.order_state(order_id) if client is not None else None

    def ordered_since(self, shop: Shop, email: str, since: datetime) -> LiveOrderState | None:
        client = self._client(shop)
        return client.ordered_since(email, since) if client is not None else None

    def _client(self, shop: Shop) -> AdminClient | None:
        quick = self.runtime.api_session(timeout=(3.0, 8.0), retry=RetryPolicy(attempts=2, cap=2.0))
        return admin.client_for(self.runtime, shop, quick)


_lock = threading.Lock()


def build_sender(runtime: Runtime) -> Sender:
    """The process's sender for this runtime: one backend (and its connections) reused."""
    with _lock:
        found = runtime.sender
        if not isinstance(found, Sender):
            backend = backend_from_url(runtime.settings.email_url, redis=runtime.redis)
            found = Sender(
                runtime,
                EmailCourier(runtime, backend),
                discounts=PlatformDiscounts(runtime),
                live_orders=PlatformLiveOrders(runtime),
                catalogue=PlatformCatalogue(runtime),
            )
            runtime.sender = found
        return found
