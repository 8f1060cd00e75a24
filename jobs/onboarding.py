"""The onboarding checklist: what a shop still lacks before its emails can do their work.

================  ====================================================================
sender            a sender name and address (the From of every email)
postal_address    the postal address marketing mail must carry (CAN-SPAM, the EU's
                  e-commerce rules)
consent_source    platforms without a consent field of their own: the checkbox the
                  checkout writes is known (the merchant saved the consent settings,
                  or the store has subscribed someone through it)
own_cart_email_off  platforms that mail abandoned checkouts themselves: the merchant
                  has ticked that their own one is off, so customers don't get two
flow_on           at least one flow is turned on
history           the history import is done (platforms that offer one)
connection        no open notice about the shop's connection (webhooks, keys)
================  ====================================================================

Which platform needs which of its own steps is the platform's declaration
(``PlatformServer.onboarding``). The tick of ``own_cart_email_off`` is a fact
the merchant states, not a setting the engine reads, so it is kept as a cleared
notice (one row per shop and code, with when it was ticked), not in the
settings, whose every section is a form and a schema; un-ticking reopens it, and
the open notice then says what to do wherever notices are shown.

The module sits beside the subsystems it reads (settings, history, platforms,
notices) rather than inside ``jobs.merchant``, which they import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import exists, not_, select
from sqlalchemy.orm import Session

from adapters.events import ConsentState
from adapters.registry import platform as platform_named
from jobs import shop_settings
from jobs.flows import registry
from jobs.merchant import notices
from jobs.platforms.registry import SERVERS
from jobs.platforms.server import CONSENT_SOURCE, OWN_CART_EMAIL_OFF
from jobs.store.models import Contact, HistoryImport, HistoryStatus, Notice, Shop

#: the pages where each step is done, by endpoint name (the merchant app's)
SETTINGS_PAGE = "merchant.settings_editor"
OVERVIEW_PAGE = "merchant.overview"
HEALTH_PAGE = "merchant.health_page"

#: steps the merchant ticks off themselves (kept as cleared notices of this prefix)
TICKED = (OWN_CART_EMAIL_OFF,)
NOTICE_PREFIX = "checklist:"

#: what each unticked step's notice says
_TICK_NOTICES = {
    OWN_CART_EMAIL_OFF: "Turn off {platform}'s own abandoned checkout email, "
    "so customers don't get two reminders.",
}


class ChecklistError(ValueError):
    """A step that cannot be ticked (unknown, or not one the merchant ticks)."""


@dataclass(frozen=True)
class Item:
    """One step of the checklist. ``words`` is English with ``{name}`` placeholders
    filled from ``values`` (the merchant UI translates the text, then fills them)."""

    code: str
    done: bool
    words: str
    #: the page where it is done, an endpoint name (None: nowhere to go)
    fix: str | None
    values: Mapping[str, Any] = field(default_factory=dict)
    #: the merchant ticks it off themselves (:func:`tick`)
    tickable: bool = False

    @property
    def text(self) -> str:
        return self.words.format(**self.values)

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "done": self.done,
            "words": self.text,
            "fix": self.fix,
            "tickable": self.tickable,
        }


def checklist(session: Session, shop: Shop) -> list[Item]:
    """The shop's steps in the order a merchant does them."""
    settings = shop_settings.load(shop)
    server = SERVERS.get(shop.platform)
    own_steps = server.onboarding if server is not None else ()
    label = _label(shop.platform)
    items = [
        Item(
            "sender",
            bool(settings.sender.name and settings.sender.address),
            "Set the name and address your emails come from",
            SETTINGS_PAGE,
        ),
        Item(
            "postal_address",
            bool(settings.branding.postal_address),
            "Add your postal address: marketing emails must show it",
            SETTINGS_PAGE,
        ),
    ]
    if CONSENT_SOURCE in own_steps:
        items.append(
            Item(
                CONSENT_SOURCE,
                _consent_known(session, shop),
                "Add a marketing consent checkbox to your checkout, "
                "and tell us the field it writes",
                SETTINGS_PAGE,
            )
        )
    if OWN_CART_EMAIL_OFF in own_steps:
        items.append(
            Item(
                OWN_CART_EMAIL_OFF,
                _ticked(session, shop.id, OWN_CART_EMAIL_OFF),
                "Turn off {platform}'s own abandoned checkout email, "
                "so customers don't get two reminders",
                None,
                {"platform": label},
                tickable=True,
            )
        )
    items.append(
        Item(
            "flow_on",
            any(settings.flow(flow).get("enabled") for flow in registry.flows().values()),
            "Turn on at least one flow",
            OVERVIEW_PAGE,
        )
    )
    if server is not None and server.history is not None:
        status = session.scalar(
            select(HistoryImport.status).where(HistoryImport.shop_id == shop.id)
        )
        items.append(
            Item(
                "history",
                status == HistoryStatus.DONE,
                "Import your past customers and orders",
                None,
            )
        )
    problems = [
        found
        for found in notices.open_notices(session, shop.id)
        if not found.code.startswith(NOTICE_PREFIX)
    ]
    items.append(
        Item(
            "connection",
            not problems,
            "Fix what the notices about your shop's connection say ({count})"
            if problems
            else "Your shop's connection has no problems",
            HEALTH_PAGE,
            {"count": len(problems)} if problems else {},
        )
    )
    return items


def _label(platform: str) -> str:
    try:
        return platform_named(platform).label
    except KeyError:
        return platform


def _consent_known(session: Session, shop: Shop) -> bool:
    """The merchant said where consent is, or the store's checkbox has subscribed someone."""
    if isinstance(shop.settings, dict) and shop.settings.get("consent"):
        return True
    return bool(
        session.scalar(
            select(
                exists().where(
                    Contact.shop_id == shop.id,
                    Contact.consent_state == ConsentState.SUBSCRIBED,
                    not_(Contact.consent_source.startswith("triggerpost:", autoescape=True)),
                    not_(Contact.consent_source.endswith(":assumed", autoescape=True)),
                )
            )
        )
    )


def _ticked(session: Session, shop_id: int, code: str) -> bool:
    cleared = session.scalar(
        select(Notice.cleared_at).where(
            Notice.shop_id == shop_id, Notice.code == NOTICE_PREFIX + code
        )
    )
    return cleared is not None


def tick(session: Session, shop: Shop, code: str, done: bool, at: datetime) -> None:
    """The merchant ticks a step off (``done``) or un-ticks it."""
    server = SERVERS.get(shop.platform)
    if code not in TICKED or server is None or code not in server.onboarding:
        raise ChecklistError(f"{code!r} is not a step you tick off")
    message = _TICK_NOTICES[code].format(platform=_label(shop.platform))
    if done:
        notices.raise_notice(session, shop.id, NOTICE_PREFIX + code, message, at)
        notices.clear_notice(session, shop.id, NOTICE_PREFIX + code, at)
    else:
        notices.raise_notice(session, shop.id, NOTICE_PREFIX + code, message, at)
