"""What each platform's server side declares (one :class:`PlatformServer` per platform).

Generic code (sending, the sweeper, the webhook intake) reaches a platform's
server side only through these members, found in :mod:`jobs.platforms.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from adapters import events as ev
from adapters.http import ApiSession
from adapters.platform import AdminClient
from jobs.runtime import Runtime
from jobs.settings import Settings
from jobs.store.models import Shop, ShopStatus, SyncCursor

#: (runtime, shop, http) -> client, None when the shop has none (not installed,
#: no keys); ``http`` None means the client's default policy
AdminClientFactory = Callable[[Runtime, Shop, ApiSession | None], AdminClient | None]


@dataclass(frozen=True)
class HistoryPage:
    """One page of a shop's past, as a history source reads it (jobs.intake.history)."""

    events: Sequence[ev.Event]  # in the order to apply (customers before their orders)
    cursor: str | None  # where to resume AFTER this page; None: the last page
    read: int  # items read so far in the whole import
    total: int | None  # the platform's estimate of all items, if it gives one
    #: items of this page left out because they could not be read (logged by the source)
    skipped: int = 0


#: (runtime, shop, since, cursor) -> pages from the cursor on (None: from the start)
HistorySource = Callable[[Runtime, Shop, datetime, str | None], Iterator[HistoryPage]]


#: steps of a merchant's setup only some platforms' shops need (jobs.onboarding checks
#: them): the store has no consent field of its own, so the checkbox its checkout
#: writes must be known (jobs.shop_settings' consent section) ...
CONSENT_SOURCE = "consent_source"
#: ... the platform mails abandoned checkouts itself, which the merchant turns off
OWN_CART_EMAIL_OFF = "own_cart_email_off"


def _no_app_secrets(settings: Settings) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class PlatformServer:
    name: str
    admin_client: AdminClientFactory
    #: the app's secrets that sign webhooks (newest first, the rotated-out one
    #: after it); none for a platform whose shops sign with their own
    app_webhook_secrets: Callable[[Settings], tuple[str, ...]] = _no_app_secrets
    #: enqueue the reconciliation of every shop that is due; the number enqueued
    #: (None: the platform's webhooks need no reconciling)
    reconcile_due: Callable[[Runtime], int] | None = None
    #: the shop's past customers and orders, page by page (None: the platform
    #: offers no history import)
    history: HistorySource | None = None
    #: shop settings only this platform reads, as paths of a group or a field
    #: (``"consent"``, ``"birthday.meta_key"``): the merchant's settings page shows a
    #: setting some platform claims only to that platform's shops
    settings: frozenset[str] = frozenset()
    #: the setup steps this platform's shops need beyond every shop's
    #: (:data:`CONSENT_SOURCE`, :data:`OWN_CART_EMAIL_OFF`)
    onboarding: tuple[str, ...] = ()


def passes_due(
    session: Session,
    platform: str,
    credential: InstrumentedAttribute[Any],
    resource: str,
    every: timedelta,
    at: datetime,
) -> list[int]:
    """The platform's installed shops (``credential``: the column of what we reach them
    with, set) whose last periodic pass over ``resource`` (its sync cursor's
    ``ran_at``) is ``every`` or longer ago, or that never had one."""
    shops = session.scalars(
        select(Shop.id).where(
            Shop.platform == platform,
            Shop.status == ShopStatus.ACTIVE,
            credential.is_not(None),
        )
    ).all()
    recent = set(
        session.scalars(
            select(SyncCursor.shop_id).where(
                SyncCursor.resource == resource, SyncCursor.ran_at > at - every
            )
        )
    )
    return [s for s in shops if s not in recent]


def sync_cursor(session: Session, shop_id: int, resource: str) -> SyncCursor | None:
    """How far the periodic pass over the shop's ``resource`` has read (None: never)."""
    return session.scalars(
        select(SyncCursor).where(SyncCursor.shop_id == shop_id, SyncCursor.resource == resource)
    ).one_or_none()


def advance_cursor(
    session: Session, shop_id: int, resource: str, until: datetime, at: datetime
) -> None:
    """A pass over ``resource`` ran at ``at`` and read up to ``until``: the cursor never
    goes back; ``ran_at`` says a pass ran (what :func:`passes_due` reads)."""
    row = sync_cursor(session, shop_id, resource)
    if row is None:
        session.add(SyncCursor(shop_id=shop_id, resource=resource, synced_until=until, ran_at=at))
    else:
        row.synced_until = max(row.synced_until, until)
        row.ran_at = at
