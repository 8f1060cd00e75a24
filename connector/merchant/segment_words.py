"""A segment's condition as a merchant reads it: sentences in the merchant's language
("Customer tags: any of wholesale, staff"), nested for all, any and not; shown on
the segments page, in a flow's "Only for" and in the builder's list of conditions."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from connector.merchant import ui
from connector.merchant.ui import _
from jobs.audience import segments

#: how each operator reads, with the field's label and the value in words
PHRASES: dict[segments.Op, str] = {
    segments.Op.IN: "{label} is one of {value}",
    segments.Op.NOT_IN: "{label} is none of {value}",
    segments.Op.ANY_OF: "{label}: any of {value}",
    segments.Op.ALL_OF: "{label}: all of {value}",
    segments.Op.NONE_OF: "{label}: none of {value}",
    segments.Op.BEFORE: "{label} before {value}",
    segments.Op.AFTER: "{label} after {value}",
    segments.Op.WITHIN_DAYS: "{label} within the last {value} days",
    segments.Op.MORE_THAN_DAYS_AGO: "{label} more than {value} days ago",
    segments.Op.EQ: "{label} is {value}",
    segments.Op.NE: "{label} is not {value}",
    segments.Op.GT: "{label} is more than {value}",
    segments.Op.GTE: "{label} is at least {value}",
    segments.Op.LT: "{label} is less than {value}",
    segments.Op.LTE: "{label} is at most {value}",
}
_MONEY_FIELDS = (segments.Field.TOTAL_SPENT, segments.Field.AVERAGE_ORDER_VALUE)


def described(
    condition: segments.Condition,
    currency: str | None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The condition as a merchant reads it: a line, and the lines of its parts
    (``{"text": ..., "parts": [...]}``), in the merchant's language; ``names``: the
    products' names, by id (:func:`product_names`)."""
    names = names or {}
    if isinstance(condition, segments.All):
        return {
            "text": _("All of these:"),
            "parts": [described(c, currency, names) for c in condition.items],
        }
    if isinstance(condition, segments.AnyOf):
        return {
            "text": _("Any of these:"),
            "parts": [described(c, currency, names) for c in condition.items],
        }
    if isinstance(condition, segments.Not):
        return {"text": _("Not this:"), "parts": [described(condition.item, currency, names)]}
    value = condition.value
    if isinstance(value, tuple | list):
        words = ", ".join(str(names.get(v, v)) for v in value)
    elif condition.field in _MONEY_FIELDS:
        words = ui.money(Decimal(value), currency)
    else:
        words = ui.number(value) if isinstance(value, int) else str(value)
    text = _(PHRASES[condition.op], label=_(segments.LABELS[condition.field]), value=words)
    if condition.within_days is not None:
        text = _("{text}, in the last {days} days", text=text, days=condition.within_days)
    return {"text": text, "parts": []}
