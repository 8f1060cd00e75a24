"""Bounce and complaint webhooks from email providers: they feed the suppression list.

The URL carries a secret derived from the deployment's secret key (print it
with ``triggerpost email-webhook-url postmark``); configure it as the
provider's bounce and spam-complaint webhook. A hard bounce or a complaint
suppresses the address for the shop that sent the message, for every kind of
email; a soft bounce is only logged. A report about a message we do not know
is answered 200 and logged, so the provider does not retry it forever.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request
from sqlalchemy import or_, select

from connector.runtime import runtime_of
from emails.feedback import Feedback, FeedbackError, FeedbackKind, from_postmark, from_sendgrid
from jobs.engine import suppressions
from jobs.settings import Settings
from jobs.store.models import SCOPE_ALL, Message, SuppressionReason

log = logging.getLogger(__name__)
blueprint = Blueprint("email_events", __name__)


def _postmark(payload: object) -> list[Feedback]:
    if not isinstance(payload, dict):
        raise FeedbackError("a Postmark webhook body is a JSON object")
    report = from_postmark(payload)
    return [report] if report is not None else []


READERS: dict[str, Callable[[object], list[Feedback]]] = {
    "postmark": _postmark,
    "sendgrid": from_sendgrid,
}


def webhook_token(settings: Settings, provider: str) -> str:
    return hmac.new(
        settings.secret_key.encode(), f"email-events:{provider}".encode(), hashlib.sha256
    ).hexdigest()[:40]


def webhook_url(settings: Settings, provider: str) -> str:
    return f"{settings.base_url}/webhooks/email/{provider}/{webhook_token(settings, provider)}"


@blueprint.post("/webhooks/email/<provider>/<token>")
def feedback(provider: str, token: str) -> Any:
    runtime = runtime_of(current_app)
    reader = READERS.get(provider)
    if reader is None:
        abort(404, f"no email provider {provider!r}")
    if not hmac.compare_digest(token, webhook_token(runtime.settings, provider)):
        abort(401, "unknown webhook token")
    payload = request.get_json(silent=True)
    if payload is None:
        log.warning("%s feedback: the body is not JSON", provider)
        abort(400, "the body must be JSON")
    try:
        reports = reader(payload)
    except FeedbackError as exc:
        log.warning("%s feedback refused: %s", provider, exc)
        abort(400, str(exc))
    outcomes = [_apply(provider, report) for report in reports]
    if not outcomes:
        return jsonify(status="ignored")
    return jsonify(status=outcomes[0] if len(outcomes) == 1 else outcomes)


def _apply(provider: str, report: Feedback) -> str:
    runtime = runtime_of(current_app)
    if report.kind == FeedbackKind.SOFT_BOUNCE:
        log.info(
            "%s: soft bounce for a message to %s (%s)", provider, report.email, report.description
        )
        return "soft_bounce"
    ours = report.metadata.get("message")
    conditions = []
    if report.provider_message_id:
        conditions.append(Message.provider_message_id == report.provider_message_id)
    if ours and ours.isdigit():
        conditions.append(Message.id == int(ours))
    with runtime.sessions.begin() as session:
        message = (
            session.scalars(select(Message).where(or_(*conditions)).limit(1)).first()
            if conditions
            else None
        )
        if message is None:
            log.warning(
                "%s: %s for an unknown message (%s)",
                provider,
                report.kind,
                report.provider_message_id,
            )
            return "unknown_message"
        reason = (
            SuppressionReason.COMPLAINT
            if report.kind == FeedbackKind.COMPLAINT
            else SuppressionReason.HARD_BOUNCE
        )
        suppressions.suppress(
            session,
            message.shop_id,
            report.email,
            scope=SCOPE_ALL,
            reason=reason,
            source=f"{provider}:{report.kind}",
            at=report.occurred_at,
            message_id=message.id,
        )
    return "suppressed"
