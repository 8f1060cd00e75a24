"""Merchant sessions, held in the store so that they can end.

A signed cookie alone cannot be taken back: it stays good until it expires,
whatever becomes of the shop or the merchant's wish to sign out. So the
browser's cookie carries only a random session id, and the row it names
decides: a session is live while it is not revoked, younger than
``LIFETIME``, used within ``IDLE_TIMEOUT``, and its shop is installed. Only
the SHA-256 of the id is stored, so a copy of the table signs nobody in.

Sessions end at logout (:func:`end`), when the shop is uninstalled
(``jobs.merchant.shops.mark_uninstalled``) and when it is installed or connected again
(:func:`end_sessions`): whoever held the shop before a new grant signs in
anew. Rows that can never be live again are purged whenever a session starts.

Time is passed in (``at``), so tests move the clock instead of waiting.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from jobs.store.models import MerchantSession, Shop, ShopStatus
from jobs.store.secrets import token_digest

#: a working day: a copied cookie is dead by the next, however it is used
LIFETIME = timedelta(hours=12)
#: a browser left open and unattended stops being signed in
IDLE_TIMEOUT = timedelta(hours=2)
#: the idle bound needs no second's precision: one write a minute, not one per page
TOUCH_EVERY = timedelta(minutes=1)


def start(session: Session, shop_id: int, at: datetime) -> str:
    """A new session for this shop; returns the id for the cookie (never stored as is)."""
    purge(session, at)
    token = secrets.token_urlsafe(32)
    session.add(
        MerchantSession(
            shop_id=shop_id,
            token_hash=token_digest(token),
            created_at=at,
            expires_at=at + LIFETIME,
            last_seen_at=at,
        )
    )
    session.flush()
    return token


def resolve(session: Session, token: str, at: datetime) -> int | None:
    """The shop of a live session, or None; a session whose shop is gone ends here."""
    found = session.execute(
        select(MerchantSession, Shop.status)
        .join(Shop, Shop.id == MerchantSession.shop_id)
        .where(MerchantSession.token_hash == token_digest(token))
    ).one_or_none()
    if found is None:
        return None
    row, status = found
    if row.revoked_at is not None or at >= row.expires_at or at >= row.last_seen_at + IDLE_TIMEOUT:
        return None
    if status != ShopStatus.ACTIVE:
        row.revoked_at = at
        return None
    if at - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = at
    return row.shop_id


def end(session: Session, token: str, at: datetime) -> bool:
    """Logout: this session ends; False if it had ended already (or never was)."""
    ended = session.execute(
        update(MerchantSession)
        .where(
            MerchantSession.token_hash == token_digest(token), MerchantSession.revoked_at.is_(None)
        )
        .values(revoked_at=at)
        .execution_options(synchronize_session=False)
    )
    return bool(ended.rowcount)  # type: ignore[attr-defined]


def end_sessions(session: Session, shop_id: int, at: datetime) -> int:
    """Every session of the shop ends (uninstall, a new install or connect); how many."""
    ended = session.execute(
        update(MerchantSession)
        .where(MerchantSession.shop_id == shop_id, MerchantSession.revoked_at.is_(None))
        .values(revoked_at=at)
        .execution_options(synchronize_session=False)
    )
    return int(ended.rowcount or 0)  # type: ignore[attr-defined]


def purge(session: Session, at: datetime) -> int:
    """Delete the sessions that can never be live again; how many."""
    gone = session.execute(
        delete(MerchantSession)
        .where(
            or_(
                MerchantSession.revoked_at.is_not(None),
                MerchantSession.expires_at <= at,
                MerchantSession.last_seen_at <= at - IDLE_TIMEOUT,
            )
        )
        .execution_options(synchronize_session=False)
    )
    return int(gone.rowcount or 0)  # type: ignore[attr-defined]
