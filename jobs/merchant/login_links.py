"""Login links: a signed-in session for a shop whose admin cannot frame our pages.

A WooCommerce merchant (or a developer) has no platform admin that vouches
for them on every request, as Shopify's session tokens do. They get a link
instead: ``/login/<token>``, printed by ``triggerpost shop login-link SHOP``
or sent through at the end of a WooCommerce connect. The token is random
and only its SHA-256 is stored (as for sessions, jobs.merchant.sessions);
the link is good for ``LIFETIME`` (15 minutes unless asked otherwise), once
(a conditional UPDATE spends it, so of two uses at the same moment exactly
one wins), and only while its shop is installed.

Time is passed in (``at``), so tests move the clock instead of waiting.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from jobs.store.models import LoginLink, Shop, ShopStatus
from jobs.store.secrets import token_digest

#: long enough to open an email or switch windows, short enough that a link left
#: in a chat log or a terminal's history is dead by the time anyone reads it
LIFETIME = timedelta(minutes=15)
#: the longest a link may be asked to live (a day: a link is not a password)
LONGEST = timedelta(days=1)


class LoginLinkError(ValueError):
    """A link cannot be issued as asked."""


def issue(session: Session, shop_id: int, at: datetime, lifetime: timedelta = LIFETIME) -> str:
    """A new link's token for this (installed) shop; only its digest is stored."""
    if not timedelta(0) < lifetime <= LONGEST:
        raise LoginLinkError(f"a login link lives between a minute and {LONGEST}, not {lifetime}")
    status = session.scalar(select(Shop.status).where(Shop.id == shop_id))
    if status != ShopStatus.ACTIVE:
        raise LoginLinkError(f"shop {shop_id} is not installed: nobody can sign in to it")
    purge(session, at)
    token = secrets.token_urlsafe(32)
    session.add(
        LoginLink(
            shop_id=shop_id, token_hash=token_digest(token), created_at=at, expires_at=at + lifetime
        )
    )
    session.flush()
    return token


def spend(session: Session, token: str, at: datetime) -> int | None:
    """Use the link up: its shop the first time, while live and the shop installed; else None."""
    digest = token_digest(token)
    spent = session.execute(
        update(LoginLink)
        .where(
            LoginLink.token_hash == digest,
            LoginLink.used_at.is_(None),
            LoginLink.expires_at > at,
            LoginLink.shop_id.in_(select(Shop.id).where(Shop.status == ShopStatus.ACTIVE)),
        )
        .values(used_at=at)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.scalar(select(LoginLink.shop_id).where(LoginLink.token_hash == digest))


def purge(session: Session, at: datetime) -> int:
    """Delete the links that can never sign anyone in again; how many."""
    gone = session.execute(
        delete(LoginLink)
        .where(or_(LoginLink.used_at.is_not(None), LoginLink.expires_at <= at))
        .execution_options(synchronize_session=False)
    )
    return int(gone.rowcount or 0)  # type: ignore[attr-defined]
