"""Review request: after the order arrived, ask for a review of each product in it.

Seven days after the shipment was delivered; where the store reports no
delivery (WooCommerce, or Shopify without carrier tracking), fourteen days
after the order was fulfilled. One request per order; it ends if the order is
cancelled or refunded. A customer asked in the last seven days (about another
order) gets this one later, not a second request that week. Each product links
to its review form, built from the shop's pattern. Marketing mail.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from adapters import events as ev
from jobs.flows.context import ORDER_ENDED, FlowContext
from jobs.flows.model import (
    Days,
    End,
    Flow,
    Label,
    MessageKind,
    Option,
    ProductLine,
    Reentry,
    Send,
    SubjectKind,
    SubjectView,
    Text,
    Trigger,
    Wait,
    WaitForEvent,
    WaitUnit,
    common,
)

#: where a product's review form is, from its page, handle or id
PLACEHOLDERS = ("url", "handle", "product_id")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def _subject(event: ev.Event) -> str | None:
    return event.order.order_id if isinstance(event, ev.OrderFulfilled) else None


def review_link(line: ProductLine, view: SubjectView) -> str:
    """The product's review form from the shop's pattern; its page when the pattern
    needs what we do not know of it (a custom item, a product we never saw), or
    does not make a web address."""
    pattern = str(view.options.get("review_url") or "")
    if not pattern or line.product_id is None:
        return line.url
    known = {"url": line.url, "handle": line.handle, "product_id": line.product_id}
    if any(not known[name] for name in _PLACEHOLDER.findall(pattern)):
        return line.url

    def fill(match: re.Match[str]) -> str:
        value = known[match.group(1)] or ""
        return value if match.group(1) == "url" else quote(value, safe="")

    link = _PLACEHOLDER.sub(fill, pattern)  # one pass: a value is never read as a pattern
    if link.startswith("/"):
        link = view.shop_url.rstrip("/") + link
    return link if link.startswith(("https://", "http://")) else line.url


def _first_review(view: SubjectView) -> str | None:
    return view.products[0].url if view.products else None


FLOW = Flow(
    name="review_request",
    title="Review request",
    summary="Asks for a review of each product a week after it was delivered.",
    category="reviews",
    kind=MessageKind.MARKETING,
    priority=30,
    trigger=Trigger(events=(ev.OrderFulfilled,), subject=_subject, when=FlowContext.order_open),
    steps=(
        WaitForEvent(
            events=(ev.ShipmentDelivered,),
            option="fallback_days",
            goto="delivered",
            same_subject=True,
        ),
        # no delivery reported: ask the fallback days after fulfilment
        Send("after_fulfilment", "review_request"),
        End(),
        Label("delivered"),
        Wait(option="delay_days", unit=WaitUnit.DAYS),
        Send("after_delivery", "review_request"),
    ),
    exits=ORDER_ENDED,
    reentry=Reentry.PER_SUBJECT,
    subject_kind=SubjectKind.ORDER,
    link=_first_review,
    product_link=review_link,
    spacing="spacing_days",
    options=(
        Option(
            "delay_days",
            Days(7, min=0, max=60),
            label="Ask after delivery (days)",
            help="Days after the parcel was delivered, so the customer has had time to "
            "use what they bought.",
        ),
        Option(
            "fallback_days",
            Days(14, min=1, max=90),
            label="Ask after shipping, when no delivery is reported (days)",
            help="Days after the order was shipped, for orders whose delivery your store "
            "does not report (no carrier tracking).",
        ),
        Option(
            "review_url",
            Text("{url}#reviews", max_length=500, placeholders=PLACEHOLDERS),
            label="Review page of a product",
            help="Where each product's 'write a review' link leads. {url} is the product's "
            "page, {handle} its handle, {product_id} its id; e.g. {url}#reviews or "
            "https://reviews.example/write?product={product_id}.",
        ),
        Option(
            "spacing_days",
            Days(7, min=0, max=60),
            label="At most one request per customer every (days)",
            help="A customer asked lately about another order gets the next request "
            "when this many days have passed, not two in a row. 0: no waiting.",
        ),
        # a request held back a week (spacing) must still go out
        *common(expires_hours=24 * 10),
    ),
)
