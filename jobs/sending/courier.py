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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from adapters.http import RetryPolicy
from adapters.platform import AdminClient, DiscountRequest, LiveOrderState
from emails.content import (
    Brand,
    DiscountBlock,
    EmailContent,
    MessageKind,
    ProductBlock,
    Rendered,
)
from emails.delivery import (
    Backend,
    PermanentDeliveryError,
    RateLimitError,
    TransientDeliveryError,
    backend_from_url,
)
from emails.outgoing import OutgoingEmail, make_message_id
from emails.render import render
from jobs import metrics
from jobs.flows import registry
from jobs.flows.model import ProductLine, SubjectView
from jobs.platforms import admin
from jobs.runtime import Runtime
from jobs.sending import content, links
from jobs.sending.catalogue import PlatformCatalogue
from jobs.sending.pipeline import Composed, PermanentSendError, Sender, TransientSendError
from jobs.settings import Settings
from jobs.shop_settings import STORE_LANGUAGE, ShopSettings
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
        view = content.resolve(session, shop, registry.get(message.flow), enrollment)
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
        where = EmailLinks(
            link=link,
            unsubscribe=links.unsubscribe_url(settings, shop.id, message.id) if marketing else None,
            preferences=links.preferences_url(settings, shop.id, message.id) if marketing else None,
            open_pixel=links.open_pixel_url(settings, shop.id, message.id)
            if shop_settings.engine.open_tracking
            else None,
        )
        email = email_content(
            shop,
            shop_settings,
            template=message.template,
            kind=MessageKind(message.kind),
            view=view,
            # an email about a checkout or an order in its language, else in hers
            locale=view.locale or contact.locale,
            first_name=contact.first_name,
            discount=discount,
            links=where,
        )
        rendered = render(email)
        message_id = message.message_id_header or make_message_id(sending_domain(settings))
        outgoing = outgoing_email(
            settings,
            shop_settings,
            email.brand,
            rendered,
            to=contact.email,
            kind=message.kind,
            at=at,
            message_id=message_id,
            unsubscribe_url=where.unsubscribe,
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
        except RateLimitError as exc:
            metrics.count_rate_limit_wait(self.provider, exc.retry_after or 0.0)
            raise TransientSendError(exc.reason, exc.retry_after) from exc
        except TransientDeliveryError as exc:
            metrics.count_provider_error(self.provider, exc.reason)
            raise TransientSendError(exc.reason, exc.retry_after) from exc
        except PermanentDeliveryError as exc:
            metrics.count_provider_error(self.provider, exc.reason)
            raise PermanentSendError(exc.reason) from exc
        return result.provider_message_id


def brand_of(shop: Shop, shop_settings: ShopSettings) -> Brand:
    """How the shop's emails look and who they are from, from its settings."""
    branding, sender = shop_settings.branding, shop_settings.sender
    return Brand(
        shop_name=shop.name,
        storefront_url=shop.base_url,
        sender_name=sender.name or shop.name,
        logo_url=branding.logo_url,
        colour=branding.colour,
        postal_address=branding.postal_address,
        default_locale=(branding.language if branding.language != STORE_LANGUAGE else shop.locale)
        or "en",
        reply_to=sender.reply_to,
    )


@dataclass(frozen=True)
class EmailLinks:
    """Where an email's links go: every URL through ``link`` (click tracking), and
    the unsubscribe, preferences and open pixel URLs (None: the email has none)."""

    link: Callable[[str], str]
    unsubscribe: str | None = None
    preferences: str | None = None
    open_pixel: str | None = None


def email_content(
    shop: Shop,
    shop_settings: ShopSettings,
    *,
    template: str,
    kind: MessageKind,
    view: SubjectView,
    locale: str | None,
    first_name: str | None,
    discount: DiscountBlock | None,
    links: EmailLinks,
) -> EmailContent:
    """What an email of ``template`` says about ``view``, in the shop's branding and copy
    (the one assembly for a customer's email and a merchant's preview alike)."""
    return EmailContent(
        template=template,
        kind=kind,
        brand=brand_of(shop, shop_settings),
        locale=locale,
        first_name=first_name,
        products=_blocks(view.products),
        recommended=_blocks(view.recommended),
        action_url=view.link or shop.base_url,
        discount=discount,
        values=dict(view.values),
        copy_overrides=shop_settings.copy.get(template) or {},
        unsubscribe_url=links.unsubscribe,
        preferences_url=links.preferences,
        link=links.link,
        open_pixel_url=links.open_pixel,
    )


def sending_domain(settings: Settings) -> str:
    """The domain of our Message-IDs: the service's sending address's."""
    return settings.email_from.partition("@")[2] or "triggerpost.localhost"


def outgoing_email(
    settings: Settings,
    shop_settings: ShopSettings,
    brand: Brand,
    rendered: Rendered,
    *,
    to: str,
    kind: str,
    at: datetime,
    message_id: str,
    unsubscribe_url: str | None,
    metadata: Mapping[str, str],
) -> OutgoingEmail:
    """The rendered email as it leaves: from the shop's sender (else the service's address)."""
    return OutgoingEmail(
        message_id=message_id,
        from_name=brand.sender_name,
        from_address=shop_settings.sender.address or settings.email_from,
        to=to,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        kind=kind,
        date=at,
        reply_to=brand.reply_to,
        unsubscribe_url=unsubscribe_url,
        idempotency_key=message_id,
        metadata=metadata,
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
    """The process's sender for this runtime: one backend (and its connections) reused,
    and closed when the runtime closes."""
    with _lock:
        found = runtime.sender
        if not isinstance(found, Sender):
            backend = backend_from_url(runtime.settings.email_url, redis=runtime.redis)
            runtime.on_close(backend.close)
            found = Sender(
                runtime,
                EmailCourier(runtime, backend),
                discounts=PlatformDiscounts(runtime),
                live_orders=PlatformLiveOrders(runtime),
                catalogue=PlatformCatalogue(runtime),
            )
            runtime.sender = found
        return found
