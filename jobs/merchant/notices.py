"""Notices: what a merchant should know about their shop's connection.

Raised by background work that finds something wrong it cannot fix alone
(a webhook the platform disabled, credentials that stopped working) and
shown on the settings page until the condition clears. A repeat of the same
``code`` updates the one row instead of piling up.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.store.models import Notice, now


def raise_notice(
    session: Session, shop_id: int, code: str, message: str, at: datetime | None = None
) -> Notice:
    at = at or now()
    notice = session.scalar(select(Notice).where(Notice.shop_id == shop_id, Notice.code == code))
    if notice is None:
        notice = Notice(
            shop_id=shop_id, code=code, message=message, first_seen_at=at, last_seen_at=at, count=1
        )
        session.add(notice)
    else:
        if notice.cleared_at is not None:
            notice.first_seen_at = at
            notice.count = 0
            notice.cleared_at = None
        notice.message = message
        notice.last_seen_at = at
        notice.count += 1
    session.flush()
    return notice


def clear_notice(session: Session, shop_id: int, code: str, at: datetime | None = None) -> bool:
    """Mark the notice resolved; False when there was none open."""
    notice = session.scalar(
        select(Notice).where(
            Notice.shop_id == shop_id, Notice.code == code, Notice.cleared_at.is_(None)
        )
    )
    if notice is None:
        return False
    notice.cleared_at = at or now()
    session.flush()
    return True


def open_notices(session: Session, shop_id: int) -> list[Notice]:
    return list(
        session.scalars(
            select(Notice)
            .where(Notice.shop_id == shop_id, Notice.cleared_at.is_(None))
            .order_by(Notice.last_seen_at.desc())
        )
    )
