"""The links inside emails: click redirects, the open pixel, unsubscribe, preferences.

No cookies and no login: the signed token is the credential (see jobs.sending.links).
``/preview-link/...`` is where a preview's (and a test email's) unsubscribe and
preferences links go: a page saying what they would do, changing nothing.
``GET /u/...`` only asks (mail scanners follow every link; none of them may
unsubscribe anyone); ``POST /u/...`` unsubscribes at once, including the
RFC 8058 one-click POST mail clients send (``List-Unsubscribe=One-Click``, no
cookies, no CSRF token). Every change is committed before the answer.

Flask answers ``HEAD`` with the ``GET`` view, and link scanners send ``HEAD``:
so a view changes something only for the one method that means it (``POST``
for unsubscribe and preferences, ``GET`` for a click or an open), never for
"anything but GET". A ``HEAD`` gets the same status and headers and records
nothing.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, redirect, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.events import ConsentState
from connector.runtime import runtime_of
from emails import i18n
from jobs.engine import schedule, suppressions
from jobs.flows import registry
from jobs.flows.model import MessageKind
from jobs.sending import links
from jobs.store.models import (
    SCOPE_MARKETING,
    Contact,
    Engagement,
    EngagementKind,
    Message,
    Shop,
    now,
)

log = logging.getLogger(__name__)
blueprint = Blueprint("email_links", __name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Pragma": "no-cache"}


def _page(
    language: str,
    title: str,
    lines: list[str],
    *,
    form: Any = None,
    note: str | None = None,
    status: int = 200,
) -> tuple[str, int, dict[str, str]]:
    html = render_template(
        "email_page.html",
        lang=language,
        direction=i18n.direction(language),
        title=title,
        lines=lines,
        form=form,
        note=note,
    )
    return html, status, {**NO_STORE, "X-Robots-Tag": "noindex"}


def _invalid() -> tuple[str, int, dict[str, str]]:
    language = i18n.resolve_locale(request.accept_languages.best)
    text = i18n.text(language, "page.invalid", {})
    return _page(language, "triggerpost", [text], status=400)


@dataclass
class Visit:
    """Who opened a link: their message, shop, address and language, in an open session."""

    session: Session
    message: Message
    shop: Shop
    email: str
    language: str

    @property
    def values(self) -> dict[str, str]:
        return {"shop_name": self.shop.name, "email": self.email}

    def text(self, key: str) -> str:
        return i18n.text(self.language, key, self.values)


@contextmanager
def _visit(shop_id: int, purpose: str, token: str) -> Iterator[Visit | None]:
    """The visit a valid token stands for; None for a forged, foreign or unusable one."""
    runtime = runtime_of(current_app)
    try:
        target = links.read(runtime.settings, shop_id, purpose, token)
    except links.LinkError:
        yield None
        return
    with runtime.sessions() as session:
        message = session.get(Message, target.message_id)
        if message is None or message.shop_id != shop_id:
            yield None
            return
        shop = session.get_one(Shop, shop_id)
        contact = session.get(Contact, message.contact_id) if message.contact_id else None
        email = message.email_to or (contact.email if contact else None)
        language = i18n.resolve_locale(
            message.locale or (contact.locale if contact else None), shop.locale
        )
        yield Visit(session, message, shop, email, language) if email else None


@blueprint.route("/preview-link/<purpose>", methods=["GET", "POST"])
def preview_link(purpose: str) -> Any:
    """Where a preview's or a test email's unsubscribe and preferences links go
    (jobs.sending.links.preview_url): what the link does for a customer, in the
    email's language. It names no message and no shop: it changes nothing, for any
    method (a mail client's one-click POST to a test's List-Unsubscribe included)."""
    if purpose not in links.PREVIEW_PURPOSES:
        return _invalid()
    language = i18n.resolve_locale(request.args.get("lang"), request.accept_languages.best)
    title = i18n.text(language, "page.preview.title", {})
    return _page(language, title, [i18n.text(language, f"page.preview.{purpose}", {})])


@blueprint.get("/t/c/<int:shop_id>/<token>")
def click(shop_id: int, token: str) -> Any:
    runtime = runtime_of(current_app)
    try:
        target = links.read_click(runtime.settings, shop_id, token)
    except links.LinkError:
        return _invalid()
    with runtime.sessions.begin() as session:
        message = session.get(Message, target.message_id)
        if message is None or message.shop_id != shop_id:
            return _invalid()
        if request.method == "GET":  # a scanner's HEAD is not a click
            session.add(
                Engagement(
                    shop_id=shop_id,
                    message_id=message.id,
                    contact_id=message.contact_id,
                    kind=EngagementKind.CLICK,
                    url=target.url,
                    at=now(),
                )
            )
    response = redirect(str(target.url), code=302)
    response.headers.update(NO_STORE)
    return response


@blueprint.get("/t/o/<int:shop_id>/<token>.gif")
def pixel(shop_id: int, token: str) -> Response:
    runtime = runtime_of(current_app)
    if request.method != "GET":  # a scanner's HEAD is not an open
        return Response(PIXEL, mimetype="image/gif", headers=NO_STORE)
    try:
        target = links.read(runtime.settings, shop_id, links.OPEN, token)
        with runtime.sessions.begin() as session:
            message = session.get(Message, target.message_id)
            if message is not None and message.shop_id == shop_id:
                session.add(
                    Engagement(
                        shop_id=shop_id,
                        message_id=message.id,
                        contact_id=message.contact_id,
                        kind=EngagementKind.OPEN,
                        at=now(),
                    )
                )
    except links.LinkError:
        log.info("open pixel with an invalid token for shop %s", shop_id)
    # a broken image would look broken to the reader: always the pixel
    return Response(PIXEL, mimetype="image/gif", headers=NO_STORE)


@blueprint.route("/u/<int:shop_id>/<token>", methods=["GET", "POST"])
def unsubscribe(shop_id: int, token: str) -> Any:
    with _visit(shop_id, links.UNSUBSCRIBE, token) as visit:
        if visit is None:
            return _invalid()
        title = visit.text("page.unsubscribe.title")
        note = visit.text("page.unsubscribe.note")
        if request.method != "POST":  # GET and HEAD only ask
            form = {"choices": [], "button": visit.text("page.unsubscribe.button")}
            question = visit.text("page.unsubscribe.question")
            return _page(visit.language, title, [question], form=form, note=note)
        one_click = request.form.get("List-Unsubscribe") == "One-Click"
        suppressions.unsubscribe(
            visit.session,
            shop_id,
            visit.email,
            scope=SCOPE_MARKETING,
            source="one_click" if one_click else "unsubscribe_page",
            at=now(),
            message_id=visit.message.id,
        )
        visit.session.commit()  # before the answer: an unsubscribe is never lost
        _withdraw_cancelled(visit.session)
        log.info("shop %s: message %s unsubscribed (%s)", shop_id, visit.message.id,
                 "one-click" if one_click else "page")  # fmt: skip
        done = visit.text("page.unsubscribe.done")
        return _page(visit.language, title, [done], note=note)


def _withdraw_cancelled(session: Session) -> None:
    """The jobs of the emails an unsubscribe just cancelled need not wait in Redis."""
    schedule.hand_off_committed(runtime_of(current_app), session)


def categories() -> list[str]:
    """The kinds of marketing email the flows send, in the order a person reads them."""
    seen: list[str] = []
    for flow in registry.flows().values():
        if flow.kind == MessageKind.MARKETING and flow.category not in seen:
            seen.append(flow.category)
    return seen


@blueprint.route("/p/<int:shop_id>/<token>", methods=["GET", "POST"])
def preferences(shop_id: int, token: str) -> Any:
    with _visit(shop_id, links.PREFERENCES, token) as visit:
        if visit is None:
            return _invalid()
        kinds = categories()
        lines = [visit.text("page.preferences.intro")]
        if request.method == "POST":
            _save_preferences(visit.session, shop_id, visit.message.id, visit.email, kinds)
            visit.session.commit()
            _withdraw_cancelled(visit.session)
            lines.append(visit.text("page.preferences.saved"))
        left = suppressions.scopes_for(visit.session, shop_id, visit.email)
        choices = [
            {
                "name": scope,
                "label": visit.text(
                    "page.preferences.all" if scope == SCOPE_MARKETING else f"category.{scope}"
                ),
                "checked": scope not in left,
            }
            for scope in [SCOPE_MARKETING, *kinds]
        ]
        form = {"choices": choices, "button": visit.text("page.preferences.save")}
        return _page(visit.language, visit.text("page.preferences.title"), lines, form=form)


def _save_preferences(
    session: Any, shop_id: int, message_id: int, email: str, kinds: list[str]
) -> None:
    """Checked means "I want these": unchecked kinds are left, checked ones come back."""
    at = now()
    for scope in [SCOPE_MARKETING, *kinds]:
        if request.form.get(scope) == "1":
            if suppressions.resubscribe(session, shop_id, email, scope) and (
                scope == SCOPE_MARKETING
            ):
                _restore_consent(session, shop_id, email, at)
        else:
            suppressions.unsubscribe(
                session,
                shop_id,
                email,
                scope=scope,
                source="preferences",
                at=at,
                message_id=message_id,
            )


def _restore_consent(session: Any, shop_id: int, email: str, at: Any) -> None:
    """Back to subscribed, but only where our own unsubscribe had ended it."""
    for contact in session.scalars(
        select(Contact).where(Contact.shop_id == shop_id, Contact.email == email)
    ):
        if (contact.consent_source or "").startswith("triggerpost:"):
            contact.consent_state = ConsentState.SUBSCRIBED
            contact.consent_source = "triggerpost:preferences"
            contact.consent_at = at
